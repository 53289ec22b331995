"""Learning Loss for Active Learning (Yoo & Kweon, CVPR 2019): a module that predicts the target loss.

The loss prediction module reads the stage feature maps: per stage global average pooling, a fully
connected layer of 128 units and ReLU; the four vectors are concatenated and a final linear layer
gives one number per image. It is trained with the pairwise margin ranking loss of the paper: the
batch is split into pairs (i, B-1-i); for each pair, with l the detached per-image cross-entropy and
l^ the prediction, loss = max(0, -sign(l_i - l_j) * (l^_i - l^_j) + margin), averaged over the pairs
(margin 1, weight lambda 1). After `stop_epoch` (epoch 120 of the paper's 200) the features are
detached, so the module keeps learning but its gradient no longer reaches the backbone.

The module is attached to the model as `model.loss_prediction` when training starts, so it is part
of the model's parameters (one optimizer, the paper's SGD settings) and the `learning-loss` strategy
finds it at query time.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from dalkit.errors import DalkitError
from dalkit.models.base import Classifier
from dalkit.objectives.base import Objective, Step, register_objective


class LossPredictionModule(nn.Module):
    def __init__(self, stage_channels: tuple[int, ...], hidden: int = 128) -> None:
        super().__init__()
        self.branches = nn.ModuleList(nn.Linear(c, hidden) for c in stage_channels)
        self.out = nn.Linear(hidden * len(stage_channels), 1)

    def forward(self, features: tuple[torch.Tensor, ...]) -> torch.Tensor:
        pooled = [F.relu(fc(f.float().mean(dim=(2, 3)))) for fc, f in zip(self.branches, features, strict=True)]
        return self.out(torch.cat(pooled, dim=1)).squeeze(1)


def loss_module(model: Classifier) -> LossPredictionModule:
    """The model's loss prediction module, attached (freshly initialised) on first use."""
    if not hasattr(model, "stage_channels"):
        raise DalkitError(
            f"Learning Loss needs a model with stage features; {type(model).__name__} has none, "
            "use resnet18, resnet18-sa or small-cnn."
        )
    if not hasattr(model, "loss_prediction"):
        device = next(model.parameters()).device
        model.loss_prediction = LossPredictionModule(model.stage_channels).to(device)
    return model.loss_prediction


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
    """Loss prediction module trained with the margin ranking loss (margin 1, weight 1, stop at epoch 120)."""

    def __init__(self, margin: float = 1.0, weight: float = 1.0, stop_epoch: int | None = 120) -> None:
        self.margin = margin
        self.weight = weight
        self.stop_epoch = stop_epoch

    def prepare(self, model: Classifier, images: torch.Tensor, labels: torch.Tensor) -> None:
        loss_module(model)

    def loss(self, step: Step) -> torch.Tensor:
        module = loss_module(step.model)
        features = step.output.features
        if self.stop_epoch is not None and step.epoch >= self.stop_epoch:
            features = tuple(f.detach() for f in features)
        target = F.cross_entropy(step.output.logits.float(), step.labels, reduction="none")
        return self.weight * margin_ranking_loss(module(features), target, self.margin)
