"""Hybrid Mixup: mixup in the latent space of a class-conditional generator, mixed with ordinary image mixup.

The thesis (known to us only by its abstract) mixes the latent codes of two classes in a conditional generator
(StyleGAN2), generates the image and labels it with the same interpolation, and mixes this with ordinary image
mixup in a set ratio. Here, per batch of B images with labels y:

    lam ~ Beta(alpha, alpha), perm a random permutation of the batch      (drawn as in `mixup`, in that order)
    k = round(ratio * B)                                                   (half up)
    samples i < k (latent mixup):  w_a = class_latents(y_i), w_b = class_latents(y_perm(i))   (fresh draws)
                                   x~_i = synthesize(lam * w_a + (1 - lam) * w_b)
    samples i >= k (image mixup):  x~_i = lam * x_i + (1 - lam) * x_perm(i)
    every sample's target:         t_i = lam * onehot(y_i) + (1 - lam) * onehot(y_perm(i))
    loss = mean_i  -sum_c t_ic log softmax(f(x~_i))_c                      (one forward pass over all B)

Like `mixup` it replaces cross-entropy: name it alone (`--objectives hybrid-mixup`); it does not read the
trainer's clean forward pass, which is then skipped, as for `mixup`. `ratio=0` gives exactly the `mixup`
objective's loss (the same draws in the same order) and `ratio=1` sees only generated images.

The generator (`dalkit.generators`) is fitted once per `Trainer.fit`, in `prepare`, on the labelled images
(the built-in `cvae` trains there; a pre-trained one does nothing or loads its weights). Its output shape is
checked then, once, against the data's (C, H, W).

Choices the abstract leaves open (each an option or stated here):
- `ratio` (default 0.5): the fraction of each batch that gets latent mixup; the count is rounded half up and
  the first k samples of the batch get it (the trainer shuffles every epoch, so they are a random subset). The
  abstract says only "in a set ratio"; 0.5 weighs the two kinds equally.
- `share_lambda` (default True): one lam per batch for both kinds, as `mixup` draws one per batch; False
  draws a second lam ~ Beta(alpha, alpha) for the latent part.
- Partners: the latent part's partner label is that of the same batch permutation as the image part, so
  class pairs follow the labelled set's class frequencies; both codes are fresh samples of their classes
  (not the codes of the partner images, which a generator without an encoder does not have).
- `generator` (default `cvae`, the compact class-conditional VAE dalkit trains itself): a registered name, a
  `package.module:attribute` path, or a `LatentGenerator` instance; every other option is passed to it
  (e.g. `hybrid-mixup.epochs=50`, `hybrid-mixup.latent_dim=64`).
- Generated images are not augmented (no random crop or flip): they are fresh samples every step, the
  generator already learned the un-augmented images, and a pre-trained generator's output is used as it
  comes. They are clamped to 0..255 (not rounded to integers) and go through `Step.normalize`, as the real
  images do.
- Synthesis runs under no_grad with autocast off (float32), so a pre-trained generator's custom kernels see
  the precision they were written for and no gradient reaches the generator: it is not trained by this loss.
- `seed` (default None): the generator's `fit` draws its randomness from the trainer's generator (seeded from
  the run's seed and cycle), so runs are repeatable; with a seed, from a torch generator seeded with
  derive_seed(seed, number of fits so far) instead. Sampling during training draws from `Step.generator` only,
  with no host synchronisation. The generator's `fit` shows a progress bar only when the trainer does.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from dalkit.errors import DalkitError
from dalkit.generators import LatentGenerator, create_generator
from dalkit.models.base import Classifier, model_input
from dalkit.objectives.base import Objective, Step, register_objective
from dalkit.objectives.mixup import mix, sample_beta
from dalkit.seeding import derive_seed, make_generator


def mix_latents(w_a: torch.Tensor, w_b: torch.Tensor, lam: float | torch.Tensor) -> torch.Tensor:
    """lam * w_a + (1 - lam) * w_b: at lam = 1 exactly w_a, at lam = 0 exactly w_b."""
    return lam * w_a + (1 - lam) * w_b


def latent_mixup(
    generator: LatentGenerator, w_a: torch.Tensor, w_b: torch.Tensor, lam: float | torch.Tensor
) -> torch.Tensor:
    """Images (0..255 floats) synthesised from the mixed codes, under no_grad and in float32."""
    with torch.no_grad(), torch.autocast(w_a.device.type, enabled=False):
        return generator.synthesize(mix_latents(w_a, w_b, lam)).float().clamp(0, 255)


def latent_count(ratio: float, batch_size: int) -> int:
    """How many of a batch get latent mixup: ratio * batch_size rounded half up."""
    return min(batch_size, math.floor(ratio * batch_size + 0.5))


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@register_objective("hybrid-mixup")
class HybridMixup(Objective):
    """Hybrid Mixup: mixup of a conditional generator's latent codes plus image mixup (use instead of "ce")."""

    reads_output = False

    def __init__(
        self,
        alpha: float = 1.0,
        ratio: float = 0.5,
        generator: str | LatentGenerator = "cvae",
        share_lambda: bool = True,
        seed: int | None = None,
        **generator_options,
    ) -> None:
        if not is_number(alpha) or not alpha >= 0:
            raise DalkitError(f"the hybrid-mixup option alpha must be a number >= 0, got {alpha!r}; e.g. alpha=1.")
        if not is_number(ratio) or not 0 <= ratio <= 1:
            raise DalkitError(f"the hybrid-mixup option ratio must be a number from 0 to 1, got {ratio!r}; e.g. 0.5.")
        if not isinstance(share_lambda, bool):
            raise DalkitError(f"the hybrid-mixup option share_lambda must be True or False, got {share_lambda!r}.")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
            raise DalkitError(f"the hybrid-mixup option seed must be an integer >= 0 or None, got {seed!r}.")
        self.alpha = float(alpha)
        self.ratio = float(ratio)
        self.share_lambda = share_lambda
        self.seed = seed
        self.latent_generator = create_generator(generator, **generator_options)
        self.fits = 0

    @property
    def carries_state(self) -> bool:  # type: ignore[override]
        """With a `seed`, each fit's draws depend on how many fits came before; a warm-started generator too."""
        return self.seed is not None or bool(getattr(self.latent_generator, "warm_start", False))

    def prepare(
        self,
        model: Classifier,
        images: torch.Tensor,
        labels: torch.Tensor,
        generator: torch.Generator,
        progress: bool = True,
    ) -> None:
        """Fit the generator on the labelled images, then check the shape of what it synthesises."""
        if self.seed is not None:
            generator = make_generator(derive_seed(self.seed, self.fits), images.device)
        self.fits += 1
        self.latent_generator.fit(images, labels, generator, progress)
        with torch.no_grad(), torch.autocast(images.device.type, enabled=False):
            w = self.latent_generator.class_latents(labels[:1], generator)
        sample = latent_mixup(self.latent_generator, w, w, 1.0)
        if tuple(sample.shape) != (1, *images.shape[1:]):
            raise DalkitError(
                f"the generator {type(self.latent_generator).__name__} synthesises images of shape "
                f"{tuple(sample.shape[1:])} but the data's are {tuple(images.shape[1:])}; resize in its synthesize."
            )

    def mixed_batch(self, step: Step) -> tuple[torch.Tensor, torch.Tensor]:
        """The model inputs (generated ones first) and the soft targets of one batch."""
        device = step.inputs.device
        lam = sample_beta(self.alpha, step.generator).to(device)
        perm = torch.randperm(len(step.inputs), generator=step.generator, device=step.generator.device).to(device)
        onehot = F.one_hot(step.labels, step.model.num_classes).float()
        inputs, targets = mix(step.inputs, onehot, lam, perm)
        k = latent_count(self.ratio, len(step.inputs))
        if k == 0:
            return inputs, targets
        if step.normalize is None:
            raise RuntimeError("hybrid-mixup needs Step.normalize to turn generated images into model inputs")
        latent_lam = lam if self.share_lambda else sample_beta(self.alpha, step.generator).to(device)
        partners = perm[:k]
        with torch.no_grad(), torch.autocast(device.type, enabled=False):
            w = self.latent_generator.class_latents(torch.cat([step.labels[:k], step.labels[partners]]), step.generator)
        generated = step.normalize(latent_mixup(self.latent_generator, w[:k], w[k:], latent_lam))
        latent_targets = latent_lam * onehot[:k] + (1 - latent_lam) * onehot[partners]
        return torch.cat([generated.to(inputs.dtype), inputs[k:]]), torch.cat([latent_targets, targets[k:]])

    def loss(self, step: Step) -> torch.Tensor:
        inputs, targets = self.mixed_batch(step)
        logits = step.model(model_input(inputs)).logits.float()
        return F.cross_entropy(logits, targets)  # probability targets: -sum_k targets_k log softmax_k, batch mean
