"""Classic uncertainty sampling on the softmax output (Lewis & Gale 1994; Settles 2009 survey).

- least-confidence: 1 - max_c p_c
- margin: -(p_top1 - p_top2), the smallest gap between the two most likely classes first
- entropy: -sum_c p_c log p_c; with `samples=S`, of the MC-dropout mean prediction instead ("Max Entropy" of
  Gal, Islam & Ghahramani, ICML 2017: H[mean_s p(y | x, w_s)] over S dropout samples, `dalkit.strategies.mc_dropout`)

Each takes `sampling`/`beta` (top-k by default, or stochastic batch acquisition: see `RankingStrategy`);
`power-entropy` and `softmax-entropy` are entropy with `sampling=power` / `softmax` (Kirsch et al., TMLR 2023).
"""

from __future__ import annotations

import torch

from dalkit.options import require
from dalkit.strategies.base import QueryContext, ScoreStrategy, entropy
from dalkit.strategies.mc_dropout import mc_reduce, predictive_entropy
from dalkit.strategies.registry import register_strategy


@register_strategy("least-confidence")
class LeastConfidence(ScoreStrategy):
    """Lowest top-class probability first: 1 - max_c p_c."""

    def score(self, probs: torch.Tensor) -> torch.Tensor:
        return 1 - probs.max(dim=1).values


@register_strategy("margin")
class Margin(ScoreStrategy):
    """Smallest gap between the two most likely classes first. Scores lie in [-1, 0], so power sampling weighs a
    candidate by (1 - (p_top1 - p_top2))^beta: zero for a certain prediction, one for a tie."""

    score_floor = -1.0

    def score(self, probs: torch.Tensor) -> torch.Tensor:
        top2 = probs.topk(2, dim=1).values
        return top2[:, 1] - top2[:, 0]


@register_strategy("entropy")
class Entropy(ScoreStrategy):
    """Highest predictive entropy first: of the deterministic softmax (`samples=None`, the default), or of the mean
    of `samples` MC-dropout predictions (Max Entropy, Gal et al. 2017; needs a model with dropout)."""

    def __init__(self, samples: int | None = None, sampling: str = "topk", beta: float = 1.0) -> None:
        super().__init__(sampling, beta)
        rule = "be at least 2 (MC dropout samples), or None for the deterministic softmax"
        require(samples is None or samples >= 2, self.name, "samples", samples, rule, "samples=20")
        self.samples = samples

    def score(self, probs: torch.Tensor) -> torch.Tensor:
        return entropy(probs)

    def scores(self, ctx: QueryContext) -> torch.Tensor:
        if self.samples is None:
            return super().scores(ctx)
        return mc_reduce(ctx, self.samples, predictive_entropy, f"{self.name} with samples")


@register_strategy("power-entropy")
class PowerEntropy(Entropy):
    """PowerEntropy (Kirsch et al., TMLR 2023): entropy's batch drawn with probability proportional to score^beta."""

    def __init__(self, samples: int | None = None, sampling: str = "power", beta: float = 1.0) -> None:
        super().__init__(samples, sampling, beta)


@register_strategy("softmax-entropy")
class SoftmaxEntropy(Entropy):
    """SoftmaxEntropy (Kirsch et al., TMLR 2023): entropy's batch drawn with probability proportional to
    exp(beta score)."""

    def __init__(self, samples: int | None = None, sampling: str = "softmax", beta: float = 1.0) -> None:
        super().__init__(samples, sampling, beta)
