"""Learning Loss (Yoo & Kweon, CVPR 2019): query the candidates with the largest predicted loss.

Reads the model's `loss-prediction` head, which the `learning-loss` objective trains with the classifier
(the engine adds that objective to a run with this strategy). On a cold start (no training yet) the head is
as initialised, so its ranking carries no knowledge.

The predicted loss is a linear output trained with a ranking loss: only its order and differences mean something,
and it can be negative. Power sampling (`sampling=power`, see `RankingStrategy`) therefore shifts it by the
candidates' minimum (`score_floor = None`); `softmax` and `softrank` take it as it is.
"""

from __future__ import annotations

import torch

from dalkit.models.heads import model_head
from dalkit.runtime import autocast
from dalkit.strategies.base import QueryContext, RankingStrategy
from dalkit.strategies.registry import register_strategy


@register_strategy("learning-loss")
class LearningLossStrategy(RankingStrategy):
    """Largest predicted loss first (needs the learning-loss objective during training)."""

    needs_head = "loss-prediction"
    score_floor = None  # unbounded below: power sampling shifts by the candidates' minimum

    def scores(self, ctx: QueryContext) -> torch.Tensor:
        model = ctx.model
        module = model_head(model, self.needs_head)
        was_training = model.training
        model.eval()
        scores = []
        with torch.inference_mode(), autocast(ctx.device):
            for x in ctx.batches(ctx.candidates, "loss prediction"):
                scores.append(module(model(x).features).float())
        model.train(was_training)
        return torch.cat(scores)
