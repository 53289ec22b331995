"""Batched self-supervised views on the device: every image draws its own parameters from one generator.

The strong view follows MoBYv2AL's (and MoBY's) torchvision pipeline, in its order:

    RandomResizedCrop(scale 0.2-1, ratio 3/4-4/3) -> horizontal flip (p 0.5)
    -> ColorJitter(0.4, 0.4, 0.2, 0.1) (p 0.8) -> grayscale (p 0.2) -> Gaussian blur (p 0.1) -> solarize (p 0.2)

The blur probability is the one the reference actually ran: its RandomApply(p=0.2) wraps
`GaussianBlur()`, and load_dataset.py defines that class twice; the later definition (the one in
force when the transforms are built) blurs with its own probability 0.5, so 0.2 x 0.5 = 0.1. Colour
jitter saturation is 0.2 (ColorJitter(0.4, 0.4, 0.2, 0.1)). The weak view is the usual random crop
after zero padding 4 plus a flip (`dalkit.data.augment`; the reference flips first, the same law).

The functions take float images in [0, 1], (B, C, H, W), C = 1 or 3, and return the same shape;
`strong_view` and `weak_view` take and return uint8, so their output goes through `Step.normalize`
like any other batch (the strong view is computed in float and rounded back to uint8 once, at the
end: a 1/255 quantisation, as torchvision's PIL pipeline quantises after every operation).

Where this departs from torchvision/PIL:
- hue is rotated in YIQ space (the chroma plane (I, Q) turned by 2 pi h, h in [-0.1, 0.1], i.e. up to
  36 degrees) rather than shifted in HSV; both turn the colour wheel by the same fraction, YIQ keeps
  the luma (before clamping) and needs no per-pixel branching. The result is clamped to [0, 1].
- random_resized_crop samples the box from the whole image with bilinear `grid_sample` (one batched
  op); a box's border pixels may blend with their neighbours outside the box, where torchvision
  resizes the cut-out crop.
- the blur is a true Gaussian (replicate padding) with sigma uniform in [0.1, 2.0] and, by default,
  a kernel covering +-3 sigma_max (13 taps, capped to the image), as PIL's GaussianBlur(radius=sigma)
  is not truncated; the SimCLR "10% of the image" kernel (3 taps at 32 px) would barely blur at
  sigma 2. Pass `kernel_size` for that convention.
- for 1-channel images, grayscale, saturation and hue are no-ops; brightness and contrast apply.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from dalkit.data.augment import random_crop, random_flip

#: RGB -> luma weights (ITU-R 601), as torchvision's rgb_to_grayscale
LUMA = (0.299, 0.587, 0.114)
#: RGB -> YIQ (rows Y, I, Q)
RGB_TO_YIQ = ((0.299, 0.587, 0.114), (0.596, -0.274, -0.322), (0.211, -0.523, 0.312))


def uniform(n: int, low: float, high: float, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """n draws from U[low, high)."""
    return low + (high - low) * torch.rand(n, device=device, generator=generator)


def chosen(n: int, p: float, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """A (n, 1, 1, 1) mask: True for each image with probability p."""
    return (torch.rand(n, device=device, generator=generator) < p).view(n, 1, 1, 1)


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """Luma (B, 1, H, W) of an RGB batch; a 1-channel batch is its own luma."""
    if x.shape[1] == 1:
        return x
    weights = torch.tensor(LUMA, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * weights).sum(dim=1, keepdim=True)


def crop_boxes(
    n: int,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator,
    device: torch.device,
    attempts: int = 10,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """torchvision's RandomResizedCrop boxes (top, left, box height, box width), one per image.

    Each image tries `attempts` (area fraction, log-aspect) draws and keeps the first that fits;
    an image with none falls back to torchvision's centre crop with the aspect clamped to `ratio`.
    """
    area = height * width * uniform(n * attempts, *scale, generator, device).view(n, attempts)
    log_ratio = uniform(n * attempts, math.log(ratio[0]), math.log(ratio[1]), generator, device).view(n, attempts)
    aspect = torch.exp(log_ratio)
    box_w = torch.round(torch.sqrt(area * aspect))
    box_h = torch.round(torch.sqrt(area / aspect))
    fits = (box_w > 0) & (box_w <= width) & (box_h > 0) & (box_h <= height)
    first = fits.int().argmax(dim=1, keepdim=True)
    fallback_h, fallback_w = fallback_box(height, width, ratio)
    found = fits.any(dim=1)
    box_h = torch.where(found, box_h.gather(1, first)[:, 0], float(fallback_h))
    box_w = torch.where(found, box_w.gather(1, first)[:, 0], float(fallback_w))
    top = torch.floor(torch.rand(n, device=device, generator=generator) * (height - box_h + 1))
    left = torch.floor(torch.rand(n, device=device, generator=generator) * (width - box_w + 1))
    top = torch.where(found, top.clamp(max=height - box_h), float((height - fallback_h) // 2))
    left = torch.where(found, left.clamp(max=width - box_w), float((width - fallback_w) // 2))
    return top, left, box_h, box_w


def fallback_box(height: int, width: int, ratio: tuple[float, float]) -> tuple[int, int]:
    """torchvision's fallback: the whole image, its aspect clamped into `ratio`."""
    aspect = width / height
    if aspect < min(ratio):
        return int(round(width / min(ratio))), width
    if aspect > max(ratio):
        return height, int(round(height * max(ratio)))
    return height, width


def random_resized_crop(
    x: torch.Tensor,
    generator: torch.Generator,
    scale: tuple[float, float] = (0.2, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> torch.Tensor:
    """A random box per image (area fraction in `scale`, aspect in `ratio`) resized back to the input size."""
    n, c, h, w = x.shape
    top, left, box_h, box_w = crop_boxes(n, h, w, scale, ratio, generator, x.device)
    theta = torch.zeros(n, 2, 3, device=x.device, dtype=torch.float32)
    theta[:, 0, 0] = box_w / w
    theta[:, 0, 2] = (2 * left + box_w) / w - 1
    theta[:, 1, 1] = box_h / h
    theta[:, 1, 2] = (2 * top + box_h) / h - 1
    grid = F.affine_grid(theta, [n, c, h, w], align_corners=False)
    return F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)


def blend(x: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """factor * x + (1 - factor) * other, clamped to [0, 1]; `factor` holds one value per image."""
    factor = factor.view(-1, 1, 1, 1)
    return (factor * x + (1 - factor) * other).clamp(0, 1)


def adjust_brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return blend(x, torch.zeros_like(x), factor)


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return blend(x, grayscale(x).mean(dim=(1, 2, 3), keepdim=True), factor)


def adjust_saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return x if x.shape[1] == 1 else blend(x, grayscale(x), factor)


def adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Turn the (I, Q) chroma plane by 2 pi * shift per image (an approximation of an HSV hue shift)."""
    if x.shape[1] == 1:
        return x
    to_yiq = torch.tensor(RGB_TO_YIQ, device=x.device, dtype=torch.float32)
    angle = 2 * math.pi * shift.float()
    cos, sin = torch.cos(angle), torch.sin(angle)
    rotation = torch.zeros(len(x), 3, 3, device=x.device)
    rotation[:, 0, 0] = 1
    rotation[:, 1, 1], rotation[:, 1, 2] = cos, -sin
    rotation[:, 2, 1], rotation[:, 2, 2] = sin, cos
    matrix = torch.linalg.inv(to_yiq) @ rotation @ to_yiq
    return torch.einsum("bij,bjhw->bihw", matrix, x.float()).clamp(0, 1).to(x.dtype)


def colour_jitter(
    x: torch.Tensor,
    generator: torch.Generator,
    brightness: float = 0.4,
    contrast: float = 0.4,
    saturation: float = 0.2,
    hue: float = 0.1,
    p: float = 0.8,
) -> torch.Tensor:
    """torchvision's ColorJitter applied to each image with probability p, in a random order per image.

    Factors are uniform in [max(0, 1 - v), 1 + v] (hue: shift in [-hue, hue]). Every order position
    evaluates the four operations on the whole batch and keeps, per image, the one it drew: no
    per-image Python and no host synchronisation.
    """
    n, device = len(x), x.device
    operations = [
        (adjust_brightness, uniform(n, max(0.0, 1 - brightness), 1 + brightness, generator, device)),
        (adjust_contrast, uniform(n, max(0.0, 1 - contrast), 1 + contrast, generator, device)),
        (adjust_saturation, uniform(n, max(0.0, 1 - saturation), 1 + saturation, generator, device)),
        (adjust_hue, uniform(n, -hue, hue, generator, device)),
    ]
    order = torch.rand(n, len(operations), device=device, generator=generator).argsort(dim=1)
    out = x
    for position in range(len(operations)):
        current = out
        for k, (operation, factor) in enumerate(operations):
            out = torch.where((order[:, position] == k).view(n, 1, 1, 1), operation(current, factor), out)
    return torch.where(chosen(n, p, generator, device), out, x)


def random_grayscale(x: torch.Tensor, generator: torch.Generator, p: float = 0.2) -> torch.Tensor:
    """Replace each image by its luma (on every channel) with probability p; no-op for 1 channel."""
    if x.shape[1] == 1:
        return x
    return torch.where(chosen(len(x), p, generator, x.device), grayscale(x).expand_as(x), x)


def gaussian_kernels(sigma: torch.Tensor, size: int) -> torch.Tensor:
    """(n, size) normalised 1-D Gaussian kernels, one per sigma."""
    offsets = torch.arange(size, device=sigma.device, dtype=torch.float32) - size // 2
    kernels = torch.exp(-(offsets**2) / (2 * sigma.float().view(-1, 1) ** 2))
    return kernels / kernels.sum(dim=1, keepdim=True)


def default_kernel_size(height: int, width: int, sigma_max: float) -> int:
    """Odd, +-3 sigma_max, at most the image's smaller side (kept odd)."""
    size = 2 * math.ceil(3 * sigma_max) + 1
    limit = min(height, width)
    return min(size, limit if limit % 2 else limit - 1)


def gaussian_blur(
    x: torch.Tensor,
    generator: torch.Generator,
    p: float = 0.1,
    sigma: tuple[float, float] = (0.1, 2.0),
    kernel_size: int | None = None,
) -> torch.Tensor:
    """Blur each image with probability p by a separable Gaussian of its own sigma ~ U[sigma]."""
    n, c, h, w = x.shape
    size = kernel_size or default_kernel_size(h, w, sigma[1])
    if size % 2 == 0:
        raise ValueError(f"the blur kernel size must be odd (got {size})")
    kernels = gaussian_kernels(uniform(n, *sigma, generator, x.device), size).repeat_interleave(c, dim=0)
    pad = size // 2
    flat = x.float().reshape(1, n * c, h, w)
    flat = F.conv2d(F.pad(flat, (pad, pad, 0, 0), mode="replicate"), kernels.view(n * c, 1, 1, size), groups=n * c)
    flat = F.conv2d(F.pad(flat, (0, 0, pad, pad), mode="replicate"), kernels.view(n * c, 1, size, 1), groups=n * c)
    return torch.where(chosen(n, p, generator, x.device), flat.view(n, c, h, w).to(x.dtype), x)


def solarize(x: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Invert every value at or above `threshold` (x -> 1 - x). On k/255 images, 0.5 is PIL's threshold 128."""
    return torch.where(x >= threshold, 1 - x, x)


def random_solarize(
    x: torch.Tensor, generator: torch.Generator, p: float = 0.2, threshold: float = 0.5
) -> torch.Tensor:
    return torch.where(chosen(len(x), p, generator, x.device), solarize(x, threshold), x)


def to_unit(x: torch.Tensor) -> torch.Tensor:
    return x.float() / 255


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    return (x * 255).round().clamp(0, 255).to(torch.uint8)


def strong_view(
    x: torch.Tensor,
    generator: torch.Generator,
    scale: tuple[float, float] = (0.2, 1.0),
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.2, 0.1),
    jitter_p: float = 0.8,
    grayscale_p: float = 0.2,
    blur_p: float = 0.1,
    solarize_p: float = 0.2,
) -> torch.Tensor:
    """MoBYv2AL's strong view of a uint8 batch, as uint8 (see the module docstring for the pipeline).

    Computed in float32 even inside an autocast region (bf16 would move pixels by a grey level).
    """
    with torch.autocast(x.device.type, enabled=False):
        out = random_flip(random_resized_crop(to_unit(x), generator, scale), generator)
        out = colour_jitter(out, generator, *jitter, p=jitter_p)
        out = random_grayscale(out, generator, grayscale_p)
        out = gaussian_blur(out, generator, blur_p)
        return to_uint8(random_solarize(out, generator, solarize_p))


def weak_view(x: torch.Tensor, generator: torch.Generator, padding: int = 4, flip: bool = True) -> torch.Tensor:
    """Random crop after zero padding and (if `flip`) a horizontal flip; dtype and shape are kept."""
    out = random_crop(x, padding, generator)
    return random_flip(out, generator) if flip else out
