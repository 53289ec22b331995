"""Variation ratios and mean STD with MC dropout: the rest of the acquisition functions of Gal, Islam & Ghahramani
(ICML 2017, "Deep Bayesian Active Learning with Image Data", section 3), beside `bald` and `entropy` (Max Entropy
with `samples`). Both read `samples` MC-dropout passes (`dalkit.strategies.mc_dropout`: consistent masks, batch norm
in eval mode, trunk once per batch, running sums) and need a model with dropout.

- variation-ratios: 1 - f/S, f the number of the S samples whose argmax is the modal class (Freeman 1965; the
  paper's 1 - max_y p(y | x), with the mode frequency as its MC estimate, as in Gal's thesis and the authors' code).
- mean-std: the mean over classes of the standard deviation over samples of p(y=c | x, w),
  sigma_c = sqrt(E[p^2] - E[p]^2) (Kampffmeyer et al. 2016; Kendall et al. 2015).

Both are >= 0 and zero when the samples agree (power sampling reads zero as uninformative); both take
`sampling`/`beta` (see `RankingStrategy`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from dalkit.options import require
from dalkit.strategies.base import QueryContext, RankingStrategy
from dalkit.strategies.mc_dropout import mc_reduce, mean_std, variation_ratios
from dalkit.strategies.registry import register_strategy


class MCStrategy(RankingStrategy):
    """A ranking by one reduction of `samples` MC-dropout predictions per candidate."""

    #: the per-batch reduction of the MC samples (see `dalkit.strategies.mc_dropout`)
    reduction: Callable[[Iterator[torch.Tensor]], torch.Tensor]

    def __init__(self, samples: int = 20, sampling: str = "topk", beta: float = 1.0) -> None:
        super().__init__(sampling, beta)
        require(samples >= 2, self.name, "samples", samples, "be at least 2 (MC dropout samples)", "samples=20")
        self.samples = samples

    def scores(self, ctx: QueryContext) -> torch.Tensor:
        return mc_reduce(ctx, self.samples, self.reduction, self.name)


@register_strategy("variation-ratios")
class VariationRatios(MCStrategy):
    """Least agreement of the samples' predicted classes first: 1 - (modal class count) / samples."""

    reduction = staticmethod(variation_ratios)


@register_strategy("mean-std")
class MeanSTD(MCStrategy):
    """Largest mean (over classes) standard deviation of the samples' class probabilities first."""

    reduction = staticmethod(mean_std)
