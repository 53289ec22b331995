"""A compact class-conditional VAE (Kingma & Welling 2014; Sohn, Lee & Yan 2015) that dalkit trains itself.

The built-in generator of Hybrid Mixup: small enough to train on the labelled images at every active learning
cycle, on a CPU for small images. It stands in for the thesis's pre-trained StyleGAN2, whose samples are far
sharper on natural images; plug in such a generator through `dalkit.generators.LatentGenerator`.

Network, for (C, H, W) images and K classes (K = the largest label seen in `fit` plus one):

- encoder q(z | x, c): 4x4 stride-2 convolutions with LeakyReLU(0.2), `width` channels doubling up to 4 x
  `width`, halving while the short side stays at least 2 (8x8 -> 2x2 in 2 steps, 28x28 -> 3x3 in 3, 32x32 ->
  2x2 in 4), flattened and concatenated with the class embedding e_c (`embed_dim`), then one linear layer to
  the mean and log-variance of z (`latent_dim`);
- the latent code (what `class_latents` returns and Hybrid Mixup interpolates) is w = [z, e_c] (default,
  `mapping_layers=0`): mixing two codes mixes the noise and the class embeddings. With `mapping_layers=L > 0`,
  w = MLP_L([z, e_c]) instead (L LeakyReLU layers of width latent_dim + embed_dim), a mapping network in the
  spirit of StyleGAN2's mapping(z, c);
- decoder p(x | w): a linear layer to a map of ceil(H / 2^(steps-1)) x ceil(W / 2^(steps-1)), mirrored 4x4
  stride-2 transposed convolutions, a 3x3 convolution to C channels and a sigmoid, cropped to H x W.
  No normalisation layers, so synthesis is the same in train and eval mode and does not depend on the batch.

Training: pixels scaled to [0, 1]; per image, the binary cross-entropy of the reconstruction summed over pixels
plus `beta` x KL(q(z | x, c) || N(0, I)) summed over z, averaged over the batch; Adam (`lr`), `batch_size`,
`epochs` passes over the labelled images but at least `min_steps` optimizer steps (rounded up to whole epochs,
so that a labelled set of a few dozen images still trains the generator). Each `fit` trains a fresh network
(the labelled set has changed); `warm_start=True` continues from the previous fit's weights when the image shape
and class count are unchanged.

Sampling: `class_latents` draws z ~ N(0, temperature^2 I) (`temperature` < 1 is the usual truncation trick:
more typical, less varied samples) and returns its class's code.

Randomness: the weights are initialised under `isolated_rng` with a seed drawn from the `fit` generator (torch's
global RNG is left untouched), batch order and reparameterisation noise come from that generator, and sampling
from the one given to `class_latents`: the same generators give the same generator and the same samples.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import nn
from torch.nn import functional as F

from dalkit.errors import DalkitError
from dalkit.generators.base import LatentGenerator, register_generator
from dalkit.models.vae import gaussian_kl, halvings
from dalkit.runtime import fit_loop, isolated_rng
from dalkit.seeding import draw_seed


class CVAENet(nn.Module):
    """The conditional VAE's encoder, class embedding, optional mapping network and decoder."""

    def __init__(
        self,
        channels: int,
        height: int,
        width: int,
        num_classes: int,
        latent_dim: int,
        embed_dim: int,
        mapping_layers: int,
        base_width: int,
    ) -> None:
        super().__init__()
        self.shape = (channels, height, width, num_classes)
        self.latent_dim = latent_dim
        steps = halvings(height, width)
        widths = [base_width * 2 ** min(i, 2) for i in range(steps)]
        layers: list[nn.Module] = []
        h, w, cin = height, width, channels
        for cout in widths:
            layers += [nn.Conv2d(cin, cout, 4, 2, 1), nn.LeakyReLU(0.2)]
            h, w, cin = (h - 2) // 2 + 1, (w - 2) // 2 + 1, cout
        self.encoder = nn.Sequential(*layers, nn.Flatten())
        self.embedding = nn.Embedding(num_classes, embed_dim)
        self.posterior = nn.Linear(cin * h * w + embed_dim, 2 * latent_dim)
        w_dim = latent_dim + embed_dim
        mapping: list[nn.Module] = []
        for _ in range(mapping_layers):
            mapping += [nn.Linear(w_dim, w_dim), nn.LeakyReLU(0.2)]
        self.mapping = nn.Sequential(*mapping)
        ups = steps - 1
        start = (cin, -(-height // 2**ups), -(-width // 2**ups))
        decoder: list[nn.Module] = [nn.Linear(w_dim, math.prod(start)), nn.Unflatten(1, start), nn.LeakyReLU(0.2)]
        for cout in reversed(widths[:-1]):
            decoder += [nn.ConvTranspose2d(cin, cout, 4, 2, 1), nn.LeakyReLU(0.2)]
            cin = cout
        self.decoder = nn.Sequential(*decoder, nn.Conv2d(cin, channels, 3, padding=1))

    def encode(self, x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of q(z | x, c) for images x in [0, 1]."""
        stats = self.posterior(torch.cat([self.encoder(x), self.embedding(labels)], dim=1))
        return stats.chunk(2, dim=1)

    def latent(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The code w of noise z for class `labels`: [z, e_c], through the mapping network if there is one."""
        return self.mapping(torch.cat([z, self.embedding(labels)], dim=1))

    def decode(self, w: torch.Tensor) -> torch.Tensor:
        """Pixel logits (n, C, H, W) for codes w."""
        _, height, width, _ = self.shape
        return self.decoder(w)[:, :, :height, :width]


INTEGER_MINIMA = {
    "latent_dim": 1,
    "embed_dim": 1,
    "width": 1,
    "epochs": 1,
    "batch_size": 1,
    "mapping_layers": 0,
    "min_steps": 0,
}
NUMBER_MINIMA = {"lr": None, "temperature": None, "beta": 0}  # None: positive


def check_options(**options) -> None:
    """Each option's type and bound, with one sentence naming the option when it is wrong."""
    for name, value in options.items():
        is_int = isinstance(value, int) and not isinstance(value, bool)
        if name in INTEGER_MINIMA:
            minimum = INTEGER_MINIMA[name]
            if not is_int or value < minimum:
                bound = "positive" if minimum else "0 or more"
                raise DalkitError(f"the cvae generator option {name} must be an integer, {bound}, got {value!r}.")
        else:
            minimum = NUMBER_MINIMA[name]
            ok = (is_int or isinstance(value, float)) and (value > 0 if minimum is None else value >= minimum)
            if not ok:
                bound = "positive" if minimum is None else "0 or more"
                raise DalkitError(f"the cvae generator option {name} must be a number, {bound}, got {value!r}.")


@register_generator("cvae")
class ConditionalVAE(LatentGenerator):
    """Compact class-conditional VAE trained on the labelled images; latent code w = [z, class embedding]."""

    def __init__(
        self,
        latent_dim: int = 32,
        embed_dim: int = 16,
        mapping_layers: int = 0,
        width: int = 32,
        epochs: int = 30,
        min_steps: int = 500,
        batch_size: int = 64,
        lr: float = 1e-3,
        beta: float = 1.0,
        temperature: float = 1.0,
        warm_start: bool = False,
    ) -> None:
        check_options(
            latent_dim=latent_dim,
            embed_dim=embed_dim,
            mapping_layers=mapping_layers,
            width=width,
            epochs=epochs,
            min_steps=min_steps,
            batch_size=batch_size,
            lr=lr,
            beta=beta,
            temperature=temperature,
        )
        self.latent_dim = latent_dim
        self.embed_dim = embed_dim
        self.mapping_layers = mapping_layers
        self.width = width
        self.epochs = epochs
        self.min_steps = min_steps
        self.batch_size = batch_size
        self.lr = lr
        self.beta = beta
        self.temperature = temperature
        self.warm_start = bool(warm_start)
        self.net: CVAENet | None = None

    def build(self, shape: tuple[int, int, int, int], device: torch.device, seed: int) -> CVAENet:
        """A freshly initialised network for (C, H, W, classes), its weights from `seed` (global RNG untouched)."""
        with isolated_rng(seed):
            net = CVAENet(*shape, self.latent_dim, self.embed_dim, self.mapping_layers, self.width)
        return net.to(device)

    def fit(
        self, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator, progress: bool = True
    ) -> None:
        if images.dim() != 4 or len(images) == 0 or len(images) != len(labels):
            raise DalkitError("the cvae generator needs a non-empty (N, C, H, W) image batch with one label each.")
        n, channels, height, width = images.shape
        if min(height, width) < 4:
            raise DalkitError(f"the cvae generator needs images of at least 4x4 pixels, got {height}x{width}.")
        device = images.device
        shape = (channels, height, width, int(labels.max()) + 1)
        seed = draw_seed(generator)
        if not (self.warm_start and self.net is not None and self.net.shape == shape):
            self.net = self.build(shape, device, seed)
        net = self.net.train().requires_grad_(True)
        optimizer = torch.optim.Adam(net.parameters(), lr=self.lr)
        x_all, labels = images.float() / 255, labels.to(device)
        per_epoch = -(-n // self.batch_size)
        epochs = max(self.epochs, -(-self.min_steps // per_epoch))

        def epoch_steps(_: int) -> Iterator[tuple[torch.Tensor, int]]:
            order = torch.randperm(n, generator=generator, device=generator.device).to(device)
            for start in range(0, n, self.batch_size):
                idx = order[start : start + self.batch_size]
                x, y = x_all[idx], labels[idx]
                mu, logvar = net.encode(x, y)
                noise = torch.randn(mu.shape, generator=generator, device=generator.device).to(device)
                z = mu + noise * (0.5 * logvar).exp()
                recon = F.binary_cross_entropy_with_logits(net.decode(net.latent(z, y)), x, reduction="sum")
                kl = gaussian_kl(mu, logvar)
                loss = (recon + self.beta * kl) / len(idx)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                yield loss, len(idx)

        fit_loop(epochs, n, epoch_steps, progress=progress, description="CVAE")
        net.eval().requires_grad_(False)

    def fitted(self) -> CVAENet:
        if self.net is None:
            raise RuntimeError("the cvae generator has not been fitted: call fit(images, labels, generator) first")
        return self.net

    def class_latents(self, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        net = self.fitted()
        z = torch.randn(len(labels), self.latent_dim, generator=generator, device=generator.device)
        return net.latent(self.temperature * z.to(labels.device), labels)

    def synthesize(self, w: torch.Tensor) -> torch.Tensor:
        return self.fitted().decode(w).float().sigmoid() * 255
