"""mixup (Zhang, Cisse, Dauphin & Lopez-Paz, ICLR 2018), as in facebookresearch/mixup-cifar10 `train.py`.

Per batch, lam ~ Beta(alpha, alpha) (alpha = 1 by default, the reference's) and a random permutation `perm` of
the batch; the model sees x~ = lam * x + (1 - lam) * x[perm] and the loss is

    lam * CE(f(x~), y) + (1 - lam) * CE(f(x~), y[perm])

(the reference's `mixup_criterion`; here the cross-entropy against the mixed one-hot labels, the same value).
alpha = 0 means no mixing (lam = 1), as in the reference; alpha -> 0 gives lam in {0, 1}.

mixup replaces cross-entropy: name it alone (`--objectives mixup`, not `ce,mixup`). It runs its own forward pass
on the mixed batch and does not read the trainer's pass on the clean batch (`reads_output = False`), so with
mixup alone the trainer skips that pass: as in the reference, the model (and batch norm's running statistics)
sees only the mixed batch.

Randomness comes only from `Step.generator`, on its device, with no host synchronisation: `perm` from
torch.randperm, and lam = G1 / (G1 + G2) with G1, G2 ~ Gamma(alpha, 1) drawn by Marsaglia & Tsang's (2000)
method from normal and uniform draws of the generator (a fixed number of candidates, the first accepted one
taken; each is accepted with probability > 0.95, so a batch with no acceptance does not happen in practice). For
alpha < 1, Gamma(alpha) = Gamma(alpha + 1) * U^(1/alpha); the ratio is taken in log space, so a tiny alpha gives
lam = 0 or 1 rather than 0/0.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from dalkit.models.base import model_input
from dalkit.objectives.base import Objective, Step, register_objective
from dalkit.options import require

GAMMA_CANDIDATES = 32


def mix(
    x: torch.Tensor, y_onehot: torch.Tensor, lam: float | torch.Tensor, perm: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The mixup of a batch with `perm` of itself: (lam * x + (1 - lam) * x[perm], the same for the labels)."""
    return lam * x + (1 - lam) * x[perm], lam * y_onehot + (1 - lam) * y_onehot[perm]


def log_gamma_sample(shape: float, generator: torch.Generator, candidates: int = GAMMA_CANDIDATES) -> torch.Tensor:
    """log of one Gamma(shape, 1) draw (Marsaglia & Tsang 2000), from `generator` only, as a 0-dim tensor."""
    device = generator.device
    boosted = shape + 1.0 if shape < 1 else shape
    d = boosted - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    z = torch.randn(candidates, generator=generator, device=device, dtype=torch.float64)
    u = torch.rand(candidates, generator=generator, device=device, dtype=torch.float64)
    v = (1.0 + c * z) ** 3
    log_v = torch.log(v.clamp_min(1e-300))
    accepted = (v > 0) & (torch.log(u) < 0.5 * z**2 + d - d * v + d * log_v)
    log_draw = math.log(d) + log_v[accepted.to(torch.uint8).argmax()]
    if shape < 1:
        boost = 1.0 - torch.rand((), generator=generator, device=device, dtype=torch.float64)  # in (0, 1]
        log_draw = log_draw + torch.log(boost) / shape
    return log_draw


def sample_beta(alpha: float, generator: torch.Generator) -> torch.Tensor:
    """One lam ~ Beta(alpha, alpha) as a 0-dim float32 tensor on the generator's device; 1 when alpha is 0."""
    if alpha == 0:
        return torch.ones((), device=generator.device)
    log_a, log_b = log_gamma_sample(alpha, generator), log_gamma_sample(alpha, generator)
    return torch.sigmoid(log_a - log_b).float()  # G_a / (G_a + G_b)


@register_objective("mixup")
class Mixup(Objective):
    """mixup: cross-entropy on a convex mix of the batch with a permutation of itself (use instead of "ce")."""

    reads_output = False

    def __init__(self, alpha: float = 1.0) -> None:
        require(alpha >= 0, "mixup", "alpha", alpha, "be 0 or more", "alpha=1")
        self.alpha = float(alpha)

    def loss(self, step: Step) -> torch.Tensor:
        device = step.inputs.device
        lam = sample_beta(self.alpha, step.generator).to(device)
        perm = torch.randperm(len(step.inputs), generator=step.generator, device=step.generator.device).to(device)
        targets = F.one_hot(step.labels, step.model.num_classes).float()
        inputs, targets = mix(step.inputs, targets, lam, perm)
        logits = step.model(model_input(inputs)).logits.float()
        return F.cross_entropy(logits, targets)  # probability targets: -sum_k targets_k log softmax_k, batch mean
