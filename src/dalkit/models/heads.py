"""Heads that training objectives fit beside the classifier, owned by the model (and so by its saved state).

A head is declared when the model is created (`create_model(..., heads={"loss-prediction": {}})`): the engine
asks each objective of a run which heads it trains (`Objective.heads`), so the optimizer sees them, `model.pt`
holds them and `load_classifier` rebuilds them. An objective or a strategy finds its head with `model_head`.

- `loss-prediction` (Learning Loss, Yoo & Kweon 2019): per stage feature map, global average pooling, a
  128-unit fully connected layer and ReLU; the vectors are concatenated and a linear layer gives one number
  per image, the predicted loss.
- `moby` (MoBYv2AL): the projector Linear(d -> 128) and predictor Linear(128 -> 128) on the embedding, one
  linear layer each as the reference's proj_num_layers = pred_num_layers = 1.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from dalkit.errors import DalkitError
from dalkit.models.base import Classifier
from dalkit.registry import Registry

HEADS: Registry[nn.Module] = Registry("head")
register_head: Callable = HEADS.register


class LossPredictionModule(nn.Module):
    def __init__(self, stage_channels: tuple[int, ...], hidden: int = 128) -> None:
        super().__init__()
        self.branches = nn.ModuleList(nn.Linear(c, hidden) for c in stage_channels)
        self.out = nn.Linear(hidden * len(stage_channels), 1)

    def forward(self, features: tuple[torch.Tensor, ...]) -> torch.Tensor:
        pooled = [F.relu(fc(f.float().mean(dim=(2, 3)))) for fc, f in zip(self.branches, features, strict=True)]
        return self.out(torch.cat(pooled, dim=1)).squeeze(1)


@register_head("loss-prediction")
def loss_prediction_head(model: Classifier, hidden: int = 128) -> LossPredictionModule:
    if not hasattr(model, "stage_channels"):
        raise DalkitError(
            f"Learning Loss needs a model with stage features; {type(model).__name__} has none, "
            "use resnet18, resnet18-sa or small-cnn."
        )
    return LossPredictionModule(model.stage_channels, hidden)


class MoBYHead(nn.Module):
    """MoBY's projector and predictor on the encoder's embedding."""

    def __init__(self, embedding_dim: int, projection_dim: int = 128) -> None:
        super().__init__()
        self.projector = nn.Linear(embedding_dim, projection_dim)
        self.predictor = nn.Linear(projection_dim, projection_dim)


@register_head("moby")
def moby_head(model: Classifier, projection_dim: int = 128) -> MoBYHead:
    return MoBYHead(model.embedding_dim, projection_dim)


def attach_heads(model: Classifier, heads: dict[str, dict]) -> Classifier:
    """Give `model` the named heads (name -> options), built for it; recorded in `model.head_options`."""
    model.heads = nn.ModuleDict()
    model.head_options = {}
    for name, options in heads.items():
        model.heads[name] = HEADS.create(name, model=model, **options)
        model.head_options[name] = dict(options)
    return model


def model_head(model: Classifier, name: str) -> nn.Module:
    """The model's head `name`; a clear error when the model was created without it."""
    heads = getattr(model, "heads", None)
    if heads is None or name not in heads:
        raise DalkitError(
            f"the model has no {name!r} head; create it with create_model(..., heads={{{name!r}: {{}}}}), "
            "as the engine does for the objective that trains it."
        )
    return heads[name]
