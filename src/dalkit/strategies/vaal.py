"""VAAL, Variational Adversarial Active Learning (Sinha, Ebrahimi & Darrell, ICCV 2019).

Setting: a beta-VAE learns one latent space for labelled and unlabelled images, and an MLP discriminator on
the latent mean mu learns to tell the two sets apart, in a minimax game: the VAE minimises

    MSE(x_L) + beta KL(x_L) + MSE(x_U) + beta KL(x_U) + adversary_weight [BCE(D(mu_L), 1) + BCE(D(mu_U), 1)]

(it tries to make the discriminator call everything "labelled"), the discriminator minimises
BCE(D(mu_L), 1) + BCE(D(mu_U), 0) on detached latents. The candidates the discriminator finds least likely
to be labelled are picked. Task-agnostic: the classifier plays no part (only the images do), and the VAE and
discriminator are trained from scratch in every `select` call, as the paper retrains them every cycle.

Defaults, from the authors' code (github.com/sinhasam/vaal: arguments.py, solver.py, model.py): latent size
32, beta 1, adversary weight 1 (`adversary_param`, lambda2 in the paper), Adam lr 5e-4 for both networks,
batch size 128, 100 epochs, 2 VAE steps and 1 discriminator step per iteration (each VAE step and every
further discriminator step on a fresh pair of batches), a discriminator of four 512-unit ReLU layers with a
sigmoid output (here logits with BCE-with-logits: the same loss, stabler). The reconstruction term is the MSE
averaged over pixels and the KL term is summed over the batch and the latent dimensions, as in the code. This
is kept, though it weighs KL batch * pixels times more than a per-pixel likelihood would; on small images it
collapses mu towards 0 and leaves the discriminator little to see: pass a smaller `beta` (e.g. 0.01) to weaken
it. The VAE is the reference's WAE-style network: 4x4 stride-2 convolutions with batch norm and ReLU (128,
256, 512, 1024 channels) down to a 2x2 map for 32x32 images, linear heads for mu and log-variance, and a
mirrored decoder (a linear layer to a 4x4 map, 4x4 stride-2 transposed convolutions, a final 1x1 one).

Departures and choices the paper leaves open:
- Any image size and channel count: halvings continue while the map is at least 4 pixels on its short side
  (2 halvings for 8x8 images, 3 for 28x28, 4 for 32x32 as in the reference), channels double from `width` up to
  8 * `width`; the decoder starts from ceil(size / 2^(halvings - 1)) and crops to the image size.
- Training length. The paper states epochs; the public code trains for a fixed number of iterations,
  `train_epochs * num_images // batch_size`, where num_images is the whole training split, whatever the
  labelled set's size, and reproductions have stumbled over the mismatch (sinhasam/vaal issues #7, #11).
  Here epochs count over the labelled set, as the paper describes and as the Sequential-GCN authors' VAAL
  port does (`(labelled) * EPOCHV / BATCH` iterations): iterations = max(1, epochs * |labelled| //
  batch_size), so small labelled sets train quickly. Batches cycle through fresh random permutations of the
  labelled images and of the candidates (`--candidates` subsets the unlabelled side too).
- Each step forwards the labelled and the unlabelled batch through the VAE together (the losses are still
  computed per set, as above): the reference forwards them separately, so batch norm's batch statistics
  differ between the sets and the discriminator can learn them instead of the images, which do not exist at
  scoring time (on a toy set this shortcut hid a plain brightness difference).
- Scoring uses the networks in eval mode (batch-norm running statistics), so a candidate's score does not
  depend on which images share its batch; the reference scores in train mode.
- Cold start (nothing labelled): the discriminator would have no positive examples, so nothing is trained and
  the picks are uniformly random (from `ctx.generator`), which is how the paper seeds its own first labelled
  set. Scores are then None.
- Randomness comes from `ctx.generator`: the weights are initialised under `isolated_rng` with a seed drawn
  from it, batch order and reparameterisation noise come from a generator seeded by a second draw, so the
  global RNG is untouched and the same generator gives the same picks.

Scores: the discriminator's probability that each pick is labelled (the lowest are picked first).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from dalkit.errors import DalkitError
from dalkit.models.base import model_input
from dalkit.models.vae import gaussian_kl, halvings
from dalkit.runtime import batch_slices, fit_loop, isolated_rng
from dalkit.seeding import draw_seed, make_generator
from dalkit.strategies.base import QueryContext, Selection, Strategy, top_k
from dalkit.strategies.registry import register_strategy


def conv_block(conv: nn.Module, channels: int) -> list[nn.Module]:
    return [conv, nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]


class VAE(nn.Module):
    """The reference's convolutional beta-VAE, sized for (channels, height, width) images."""

    def __init__(self, channels: int, height: int, width: int, latent_dim: int = 32, base_width: int = 128) -> None:
        super().__init__()
        depth = halvings(height, width)
        widths = [base_width * 2 ** min(i, 3) for i in range(depth)]
        encoder, h, w, cin = [], height, width, channels
        for cout in widths:
            encoder += conv_block(nn.Conv2d(cin, cout, 4, 2, 1, bias=False), cout)
            h, w, cin = h // 2, w // 2, cout
        self.encoder = nn.Sequential(*encoder, nn.Flatten())
        self.fc_mu = nn.Linear(cin * h * w, latent_dim)
        self.fc_logvar = nn.Linear(cin * h * w, latent_dim)
        ups = depth - 1
        self.start = (cin, -(-height // 2**ups), -(-width // 2**ups))
        decoder: list[nn.Module] = [
            nn.Linear(latent_dim, cin * self.start[1] * self.start[2]),
            nn.Unflatten(1, self.start),
        ]
        for cout in reversed(widths[:-1]):
            decoder += conv_block(nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), cout)
            cin = cout
        self.decoder = nn.Sequential(*decoder, nn.ConvTranspose2d(cin, channels, 1))
        self.size = (height, width)
        kaiming_init(self.encoder, self.decoder)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encoder(x)
        return self.fc_mu(z), self.fc_logvar(z)

    def forward(self, x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reconstruction, mu and log-variance; the latent's noise is drawn from `generator` (on x's device)."""
        mu, logvar = self.encode(x)
        z = mu + torch.randn(mu.shape, generator=generator, device=mu.device) * (0.5 * logvar).exp()
        return self.decoder(z)[:, :, : self.size[0], : self.size[1]], mu, logvar


class Discriminator(nn.Module):
    """The reference's adversary: four ReLU layers of `hidden` units on the latent mean; returns logits."""

    def __init__(self, latent_dim: int = 32, hidden: int = 512, layers: int = 4) -> None:
        super().__init__()
        sizes = [latent_dim] + [hidden] * layers
        blocks: list[nn.Module] = []
        for cin, cout in zip(sizes[:-1], sizes[1:]):
            blocks += [nn.Linear(cin, cout), nn.ReLU(inplace=True)]
        self.net = nn.Sequential(*blocks, nn.Linear(hidden, 1))
        kaiming_init(self.net)

    def forward(self, mu: torch.Tensor) -> torch.Tensor:
        return self.net(mu).squeeze(1)


def kaiming_init(*modules: nn.Module) -> None:
    """The reference's init: Kaiming-normal weights, zero biases for the Conv2d and Linear layers in `modules`.

    As there, the mu/log-variance heads and the transposed convolutions keep PyTorch's default init.
    """
    for module in modules:
        for m in module.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.kaiming_normal_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)


def vae_loss(x: torch.Tensor, recon: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, beta: float) -> torch.Tensor:
    """Reference beta-VAE loss: pixel-mean MSE + beta * KL(q(z|x) || N(0, I)) summed over batch and latent."""
    return F.mse_loss(recon, x) + beta * gaussian_kl(mu, logvar)


def labelled_bce(logits: torch.Tensor, labelled: bool) -> torch.Tensor:
    """BCE of the discriminator's logits against the target 'labelled' (1) or 'unlabelled' (0)."""
    target = torch.full_like(logits, float(labelled))
    return F.binary_cross_entropy_with_logits(logits, target)


def train_iterations(num_labelled: int, epochs: int, batch_size: int) -> int:
    """Iterations for `epochs` passes over the labelled set (at least 1)."""
    return max(1, epochs * num_labelled // batch_size)


def image_batches(
    ctx: QueryContext, indices: np.ndarray, batch_size: int, generator: torch.Generator
) -> Iterator[torch.Tensor]:
    """Normalised images of `indices` on the device, in endless fresh random permutations drawn from `generator`.

    A trailing batch of one image is dropped as in training, batch norm needs two (unless there is one image).
    """
    index = torch.as_tensor(indices, dtype=torch.long, device=generator.device)
    slices = batch_slices(len(index), batch_size)
    while True:
        order = index[torch.randperm(len(index), generator=generator, device=generator.device)]
        for part in slices:
            batch = ctx.images[order[part].to(ctx.images.device)]
            yield model_input(ctx.normalizer(batch.to(ctx.device, non_blocking=True)))


def check_positive(**options: float) -> None:
    for name, value in options.items():
        if not value > 0:
            raise DalkitError(f"the vaal option {name} must be positive (got {value}); pass e.g. {name}=1.")


@register_strategy("vaal")
class VAAL(Strategy):
    """VAAL: pick the candidates an adversarially trained latent-space discriminator finds least 'labelled'."""

    reads_pixels = True  # its VAE and discriminator learn from the images

    def __init__(
        self,
        latent_dim: int = 32,
        epochs: int = 100,
        lr: float = 5e-4,
        batch_size: int = 128,
        beta: float = 1.0,
        adversary_weight: float = 1.0,
        vae_steps: int = 2,
        adversary_steps: int = 1,
        width: int = 128,
        discriminator_width: int = 512,
    ) -> None:
        check_positive(
            latent_dim=latent_dim,
            epochs=epochs,
            lr=lr,
            batch_size=batch_size,
            vae_steps=vae_steps,
            adversary_steps=adversary_steps,
            width=width,
            discriminator_width=discriminator_width,
        )
        if beta < 0 or adversary_weight < 0:
            raise DalkitError("the vaal options beta and adversary_weight must be 0 or more; pass e.g. beta=1.")
        self.latent_dim = latent_dim
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.beta = beta
        self.adversary_weight = adversary_weight
        self.vae_steps = vae_steps
        self.adversary_steps = adversary_steps
        self.width = width
        self.discriminator_width = discriminator_width

    def build(self, ctx: QueryContext) -> tuple[VAE, Discriminator]:
        _, channels, height, width = ctx.images.shape
        vae = VAE(channels, height, width, self.latent_dim, self.width)
        return vae.to(ctx.device), Discriminator(self.latent_dim, self.discriminator_width).to(ctx.device)

    def vae_step(
        self,
        vae: VAE,
        disc: Discriminator,
        optimizer: torch.optim.Optimizer,
        generator: torch.Generator,
        x_l: torch.Tensor,
        x_u: torch.Tensor,
    ) -> torch.Tensor:
        n = len(x_l)
        recon, mu, logvar = vae(torch.cat([x_l, x_u]), generator)
        loss = (
            vae_loss(x_l, recon[:n], mu[:n], logvar[:n], self.beta)
            + vae_loss(x_u, recon[n:], mu[n:], logvar[n:], self.beta)
            + self.adversary_weight * (labelled_bce(disc(mu[:n]), True) + labelled_bce(disc(mu[n:]), True))
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()

    @staticmethod
    def discriminator_step(
        vae: VAE, disc: Discriminator, optimizer: torch.optim.Optimizer, x_l: torch.Tensor, x_u: torch.Tensor
    ) -> torch.Tensor:
        n = len(x_l)
        with torch.no_grad():
            mu = vae.encode(torch.cat([x_l, x_u]))[0]
        loss = labelled_bce(disc(mu[:n]), True) + labelled_bce(disc(mu[n:]), False)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()

    def fit(self, ctx: QueryContext) -> tuple[VAE, Discriminator]:
        """Train a fresh VAE and discriminator on labelled vs candidate images, drawing from `ctx.generator`."""
        with isolated_rng(draw_seed(ctx.generator)):
            vae, disc = self.build(ctx)
        generator = make_generator(draw_seed(ctx.generator), ctx.device)
        vae_optimizer = torch.optim.Adam(vae.parameters(), lr=self.lr)
        disc_optimizer = torch.optim.Adam(disc.parameters(), lr=self.lr)
        labelled = image_batches(ctx, ctx.labelled, self.batch_size, generator)
        unlabelled = image_batches(ctx, ctx.candidates, self.batch_size, generator)
        vae.train()
        disc.train()
        iterations = train_iterations(len(ctx.labelled), self.epochs, self.batch_size)

        def steps(_: int) -> Iterator[tuple[torch.Tensor, int]]:
            for _ in range(iterations):
                for _ in range(self.vae_steps):
                    x_l, x_u = next(labelled), next(unlabelled)
                    vae_loss_value = self.vae_step(vae, disc, vae_optimizer, generator, x_l, x_u)
                for step in range(self.adversary_steps):
                    if step > 0:
                        x_l, x_u = next(labelled), next(unlabelled)
                    disc_loss_value = self.discriminator_step(vae, disc, disc_optimizer, x_l, x_u)
                yield torch.stack([vae_loss_value, disc_loss_value]), 1

        # the iterations are not whole epochs (see the module docstring): one pass, its losses read at the end
        fit_loop(1, iterations, steps, progress=ctx.progress, description="VAAL", unit="it", names=("vae", "disc"))
        return vae, disc

    @staticmethod
    def discriminate(ctx: QueryContext, vae: VAE, disc: Discriminator) -> torch.Tensor:
        """The discriminator's probability that each candidate is labelled, networks in eval mode."""
        vae.eval()
        disc.eval()
        with torch.inference_mode():
            return torch.cat([disc(vae.encode(x)[0]).sigmoid() for x in ctx.batches(ctx.candidates, "VAAL scores")])

    def labelled_probabilities(self, ctx: QueryContext) -> torch.Tensor:
        """Train (`fit`), then the discriminator's P(labelled) for every candidate."""
        vae, disc = self.fit(ctx)
        return self.discriminate(ctx, vae, disc)

    def select(self, ctx: QueryContext, budget: int) -> Selection:
        if len(ctx.labelled) == 0:
            picked = torch.randperm(len(ctx.candidates), generator=ctx.generator)[:budget].numpy()
            return Selection(ctx.candidates[picked])
        probability = self.labelled_probabilities(ctx)
        picked = top_k(-probability, budget, ctx.generator).cpu().numpy()
        return Selection(ctx.candidates[picked], probability[picked].cpu().numpy())
