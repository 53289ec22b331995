"""Training objectives: each adds one term to the loss of a batch; the trainer sums them.

An objective sees a `Step`: the model, the batch's (augmented) inputs, labels and outputs, the
epoch, and `inputs_for(indices)`, which gathers and augments other labelled images (CS-KD uses it
for the paired images). Objectives are registered by name; a method from a paper names a bundle.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import torch

from dalkit.models.base import Classifier, ModelOutput
from dalkit.registry import Registry


@dataclass
class Step:
    model: Classifier
    inputs: torch.Tensor
    labels: torch.Tensor
    output: ModelOutput
    indices: torch.Tensor
    all_labels: torch.Tensor
    epoch: int
    generator: torch.Generator
    inputs_for: Callable[[torch.Tensor], torch.Tensor]


class Objective(ABC):
    """Constructors store parameters; `loss(step)` returns a scalar tensor.

    `prepare(model)` runs before the optimizer is built, so an objective can attach trainable modules
    to the model (Learning Loss attaches its loss prediction module).
    """

    def prepare(self, model: Classifier) -> None:  # noqa: B027  (an optional hook)
        """Called once per fit, before the optimizer exists; nothing to do by default."""

    @abstractmethod
    def loss(self, step: Step) -> torch.Tensor:
        """This objective's term for one batch."""


OBJECTIVES: Registry[Objective] = Registry("objective", "--objective-option")
register_objective: Callable = OBJECTIVES.register
