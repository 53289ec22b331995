"""Learning Loss (Yoo & Kweon, CVPR 2019): query the candidates with the largest predicted loss.

Reads the loss prediction module that the `learning-loss` objective trains with the classifier. On a
cold start (no training yet) the module is freshly initialised, so its ranking carries no knowledge.
"""

from __future__ import annotations

import torch

from dalkit.objectives.learning_loss import loss_module
from dalkit.strategies.base import QueryContext, RankingStrategy, autocast
from dalkit.strategies.registry import register_strategy


@register_strategy("learning-loss")
class LearningLossStrategy(RankingStrategy):
    """Largest predicted loss first (needs the learning-loss objective during training)."""

    objective = "learning-loss"

    def scores(self, ctx: QueryContext) -> torch.Tensor:
        model = ctx.model
        module = loss_module(model)
        was_training = model.training
        model.eval()
        scores = []
        with torch.inference_mode(), autocast(ctx.device):
            for x in ctx.batches(ctx.candidates):
                scores.append(module(model(x).features).float())
        model.train(was_training)
        return torch.cat(scores)
