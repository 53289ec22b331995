"""BALD with MC dropout (Houlsby et al. 2011; Gal, Islam & Ghahramani, ICML 2017).

score = H[mean_s p_s] - mean_s H[p_s], the mutual information between the label and the weights,
estimated from `samples` stochastic forward passes with batch norm in eval mode (`dalkit.strategies.mc_dropout`:
consistent masks, one per dropout layer and sample, shared by all candidates; the trunk computed once per batch,
the head once per sample; running sums, so memory does not grow with the number of samples). Masks come from the
context's generator: same seed, same picks. `power-bald` and `softmax-bald` draw the batch at random instead of
taking the top scores (stochastic batch acquisition, Kirsch et al., TMLR 2023; see `RankingStrategy`).
"""

from __future__ import annotations

import torch

from dalkit.options import require
from dalkit.strategies.base import QueryContext, RankingStrategy
from dalkit.strategies.mc_dropout import ConsistentDropout, bald_scores, mc_reduce, mutual_information
from dalkit.strategies.registry import register_strategy

__all__ = ["BALD", "ConsistentDropout", "PowerBALD", "SoftmaxBALD", "mutual_information"]  # older import paths


@register_strategy("bald")
class BALD(RankingStrategy):
    """Highest mutual information first; `samples` MC-dropout passes (20 by default)."""

    def __init__(self, samples: int = 20, sampling: str = "topk", beta: float = 1.0) -> None:
        super().__init__(sampling, beta)
        require(samples >= 2, self.name, "samples", samples, "be at least 2 (MC dropout samples)", "samples=20")
        self.samples = samples

    def scores(self, ctx: QueryContext) -> torch.Tensor:
        return mc_reduce(ctx, self.samples, bald_scores, "BALD")


@register_strategy("power-bald")
class PowerBALD(BALD):
    """PowerBALD (Kirsch et al., TMLR 2023): BALD's batch drawn with probability proportional to score^beta."""

    def __init__(self, samples: int = 20, sampling: str = "power", beta: float = 1.0) -> None:
        super().__init__(samples, sampling, beta)


@register_strategy("softmax-bald")
class SoftmaxBALD(BALD):
    """SoftmaxBALD (Kirsch et al., TMLR 2023): BALD's batch drawn with probability proportional to exp(beta score)."""

    def __init__(self, samples: int = 20, sampling: str = "softmax", beta: float = 1.0) -> None:
        super().__init__(samples, sampling, beta)
