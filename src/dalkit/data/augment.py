"""Whole-batch augmentation and normalisation on the training device (no per-image Python).

Random crop with zero padding is done as one gather with per-image offsets, flip as one `where`.
"""

from __future__ import annotations

import torch

from dalkit.data.base import AugmentSpec


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Zero-pad by `padding` and crop back to the input size at a random offset per image."""
    if padding == 0:
        return x
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (padding, padding, padding, padding))
    offsets = torch.randint(0, 2 * padding + 1, (2, n), device=x.device, generator=generator)
    rows = (offsets[0, :, None] + torch.arange(h, device=x.device)).view(n, 1, h, 1)
    cols = (offsets[1, :, None] + torch.arange(w, device=x.device)).view(n, 1, 1, w)
    batch = torch.arange(n, device=x.device).view(n, 1, 1, 1)
    channel = torch.arange(x.shape[1], device=x.device).view(1, -1, 1, 1)
    return padded[batch, channel, rows, cols]


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Flip each image horizontally with probability 1/2."""
    flip = torch.rand(x.shape[0], device=x.device, generator=generator) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)


def augment_batch(x: torch.Tensor, spec: AugmentSpec, generator: torch.Generator) -> torch.Tensor:
    x = random_crop(x, spec.crop_padding, generator)
    if spec.flip:
        x = random_flip(x, generator)
    return x


class Normalizer:
    """uint8 (N, C, H, W) -> float, scaled to [0, 1] (divided by `scale`) and standardised per channel.

    `scale=1` with mean 0 and std 1 passes float inputs through unchanged (cached encoder features)."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, dtype: torch.dtype = torch.float32, scale: float = 255):
        self.mean = mean.view(1, -1, 1, 1)
        self.std = std.view(1, -1, 1, 1)
        self.dtype = dtype
        self.scale = scale

    def to(self, device: torch.device) -> Normalizer:
        return Normalizer(self.mean.to(device), self.std.to(device), self.dtype, self.scale)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return ((x.float() / self.scale - self.mean) / self.std).to(self.dtype)

    def pixels(self, x: torch.Tensor) -> torch.Tensor:
        """The inverse: normalised input -> float images on the 0..255 scale."""
        return (x.float() * self.std + self.mean) * self.scale
