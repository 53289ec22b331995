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


def prepare_model(model: Classifier, device: torch.device) -> Classifier:
    """Move to `device` in channels_last, the faster layout for convolutions on CUDA and on CPU."""
    return model.to(device=device, memory_format=torch.channels_last)


def model_input(x: torch.Tensor) -> torch.Tensor:
    """A normalised image batch in the layout `prepare_model` gives the model."""
    return x.contiguous(memory_format=torch.channels_last)


@dataclass(frozen=True)
class TrainDefaults:
    """A model's default training schedule (SGD with momentum, step decay at `milestones`)."""

    epochs: int
    lr: float
    milestones: tuple[int, ...]
    batch_size: int = 128
    momentum: float = 0.9
    weight_decay: float = 5e-4
    gamma: float = 0.1
