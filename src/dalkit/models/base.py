"""What every dalkit model is: a deterministic trunk and a (possibly stochastic) head.

`forward(x)` returns logits, the penultimate embedding and, for models with stages, the stage
feature maps, all from one pass. The split `head(trunk(x))` puts every dropout layer in the head, so
MC-dropout methods (BALD) compute the trunk once per batch and repeat only the head.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn


class ModelOutput(NamedTuple):
    logits: torch.Tensor
    embedding: torch.Tensor
    features: tuple[torch.Tensor, ...] = ()


class Classifier(nn.Module, ABC):
    """Base class: subclasses define `trunk` (no dropout) and `head`, and set `embedding_dim`."""

    num_classes: int
    embedding_dim: int

    @abstractmethod
    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """The deterministic part of the network."""

    @abstractmethod
    def head(self, z: torch.Tensor) -> ModelOutput:
        """The rest, holding every dropout layer."""

    def forward(self, x: torch.Tensor) -> ModelOutput:
        return self.head(self.trunk(x))

    def has_dropout(self) -> bool:
        return any(isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0 for m in self.modules())


class StagedClassifier(Classifier):
    """A stem, then stages; the embedding is the pooled last stage map, then dropout and a linear layer.

    `forward` also returns every stage's map (Learning Loss and attention-based selection read them);
    `stage_channels` lists their widths.
    """

    def __init__(
        self,
        stem: nn.Module,
        stages: list[nn.Module],
        stage_channels: tuple[int, ...],
        num_classes: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.stem = stem
        self.stages = nn.ModuleList(stages)
        self.stage_channels = stage_channels
        self.embedding_dim = stage_channels[-1]
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(self.embedding_dim, num_classes)

    def stage_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        return self.stage_features(x)[-1].mean(dim=(2, 3))

    def head(self, z: torch.Tensor) -> ModelOutput:
        return ModelOutput(self.linear(self.dropout(z)), z)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        features = self.stage_features(x)
        return self.head(features[-1].mean(dim=(2, 3)))._replace(features=tuple(features))


def prepare_model(model: Classifier, device: torch.device) -> Classifier:
    """Move to `device` in channels_last, the faster layout for convolutions on CUDA and on CPU."""
    return model.to(device=device, memory_format=torch.channels_last)


def model_input(x: torch.Tensor) -> torch.Tensor:
    """A normalised image batch in the layout `prepare_model` gives the model."""
    return x.contiguous(memory_format=torch.channels_last)


@dataclass(frozen=True)
class TrainDefaults:
    """A model's default training schedule (SGD with momentum unless `optimizer` says "adam", step decay at
    `milestones`; `weight_decay_per_label` divides the weight decay by the number of labelled images)."""

    epochs: int
    lr: float
    milestones: tuple[int, ...]
    batch_size: int = 128
    momentum: float = 0.9
    weight_decay: float = 5e-4
    gamma: float = 0.1
    optimizer: str = "sgd"
    weight_decay_per_label: bool = False
