"""Learning Loss for Active Learning (Yoo & Kweon, CVPR 2019): a module that predicts the target loss.

The loss prediction module reads the stage feature maps: per stage global average pooling, a fully
connected layer of 128 units and ReLU; the four vectors are concatenated and a final linear layer
gives one number per image. It is trained with the pairwise margin ranking loss of the paper: the
batch is split into pairs (i, B-1-i); for each pair, with l the detached per-image cross-entropy and
l^ the prediction, loss = max(0, -sign(l_i - l_j) * (l^_i - l^_j) + margin), averaged over the pairs
(margin 1, weight lambda 1). From epoch 120 of the paper's 200 the features are detached, so the module keeps
learning but its gradient no longer reaches the backbone: by default at `stop_fraction` = 0.6 of the run's epochs
(60 of a 100-epoch schedule), or at an absolute `stop_epoch` when one is given.

The module is the model's `loss-prediction` head (`dalkit.models.heads`), declared when the model is
created, so it is part of the model's parameters (one optimizer, the paper's SGD settings) and of its
saved state, and the `learning-loss` strategy finds it at query time.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from dalkit.models.heads import model_head
from dalkit.objectives.base import Objective, Step, register_objective
from dalkit.options import require


def margin_ranking_loss(predicted: torch.Tensor, target: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """The paper's pairwise ranking loss over pairs (i, B-1-i); the target loss carries no gradient."""
    half = len(predicted) // 2
    if half == 0:
        return predicted.sum() * 0
    predicted_diff = (predicted - predicted.flip(0))[:half]
    target_diff = (target - target.flip(0))[:half].detach()
    sign = torch.where(target_diff > 0, 1.0, -1.0)
    return F.relu(margin - sign * predicted_diff).mean()


@register_objective("learning-loss")
class LearningLoss(Objective):
    """Loss prediction module trained with the margin ranking loss (margin 1, weight 1, stop at 60% of the epochs)."""

    trains_head = "loss-prediction"

    def __init__(
        self, margin: float = 1.0, weight: float = 1.0, stop_fraction: float = 0.6, stop_epoch: int | None = None
    ) -> None:
        require(margin >= 0, "learning-loss", "margin", margin, "be 0 or more", "margin=1")
        require(weight >= 0, "learning-loss", "weight", weight, "be 0 or more", "weight=1")
        require(
            0 <= stop_fraction <= 1,
            "learning-loss",
            "stop_fraction",
            stop_fraction,
            "be in [0, 1]",
            "stop_fraction=0.6",
        )
        ok = stop_epoch is None or stop_epoch >= 0
        require(ok, "learning-loss", "stop_epoch", stop_epoch, "be 0 or more, or None", "stop_epoch=120")
        self.margin = margin
        self.weight = weight
        self.stop_fraction = stop_fraction
        self.stop_epoch = stop_epoch

    def stopped(self, step: Step) -> bool:
        """Whether this step's epoch is past the stop, where the module's gradient leaves the backbone."""
        stop = self.stop_epoch if self.stop_epoch is not None else self.stop_fraction * step.epochs
        return step.epoch >= stop

    def loss(self, step: Step) -> torch.Tensor:
        module = model_head(step.model, self.trains_head)
        features = step.output.features
        if self.stopped(step):
            features = tuple(f.detach() for f in features)
        target = F.cross_entropy(step.output.logits.float(), step.labels, reduction="none")
        return self.weight * margin_ranking_loss(module(features), target, self.margin)
