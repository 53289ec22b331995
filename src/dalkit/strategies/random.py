"""Random sampling: the baseline every AL paper compares against."""

from __future__ import annotations

import torch

from dalkit.strategies.base import QueryContext, Selection, Strategy
from dalkit.strategies.registry import register_strategy


@register_strategy("random")
class RandomStrategy(Strategy):
    """Uniformly random candidates, drawn from the context's generator."""

    def select(self, ctx: QueryContext, budget: int) -> Selection:
        picked = torch.randperm(len(ctx.candidates), generator=ctx.generator)[:budget].numpy()
        return Selection(ctx.candidates[picked])
