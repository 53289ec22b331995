"""Training objectives: each adds one term to the loss of a batch; the trainer sums them.

An objective sees a `Step`: the model, the batch's (augmented) inputs, labels and outputs, the
epoch and the fraction of training done, `inputs_for(indices)`, which gathers and augments other
labelled images (CS-KD uses it for the paired images), `normalize` (uint8 -> model input), `pixels`
(its inverse, for a teacher with its own normalisation) and, when the run offers unlabelled
candidates, `unlabelled_batch(count)` (uint8 images, for self-supervised terms). Objectives are
registered by name; a method from a paper names a bundle.
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
    output: ModelOutput | None  # the model on `inputs`; None when no objective reads it (see Objective.reads_output)
    indices: torch.Tensor
    all_labels: torch.Tensor
    epoch: int
    generator: torch.Generator
    inputs_for: Callable[[torch.Tensor], torch.Tensor]
    progress: float = 0.0
    epochs: int = 1
    normalize: Callable[[torch.Tensor], torch.Tensor] | None = None
    unlabelled_batch: Callable[[int], torch.Tensor] | None = None
    raw: torch.Tensor | None = None  # the batch's labelled images before augmentation (uint8)
    pixels: Callable[[torch.Tensor], torch.Tensor] | None = None  # model input -> 0..255 images (inverse of normalize)


class Objective(ABC):
    """Constructors store parameters; `loss(step)` returns a scalar tensor.

    `prepare(model, images, labels, generator, progress)` runs before the optimizer is built, with the labelled
    uint8 images and labels on the training device, so an objective can fit what it needs from the labelled set;
    it draws any randomness from `generator` (the fit's) and shows a progress bar only if `progress`. Trainable
    modules it needs beside the classifier are heads of the model (`heads()`, see `dalkit.models.heads`),
    declared when the engine creates the model, so they are optimised with it and saved with it.
    """

    #: the model head this objective trains (a strategy that reads that head brings this objective along)
    trains_head: str | None = None

    #: set by objectives that learn from unlabelled images: the loop then offers the candidates
    uses_unlabelled: bool = False
    #: whether `loss` reads `Step.output`; when no objective of a run does (mixup alone), the trainer skips that
    #: forward pass on the clean batch
    reads_output: bool = True
    #: one fit depends on the earlier fits of the run (a generator warm-started from the last cycle's weights), so
    #: an interrupted run cannot continue from its last completed cycle (`dalkit.loop`)
    carries_state: bool = False

    def heads(self) -> dict[str, dict]:
        """The heads (name -> options) the model must be created with for this objective; none by default."""
        return {self.trains_head: {}} if self.trains_head else {}

    def prepare(  # noqa: B027
        self,
        model: Classifier,
        images: torch.Tensor,
        labels: torch.Tensor,
        generator: torch.Generator,
        progress: bool = True,
    ) -> None:
        """Called once per fit, before the optimizer exists; nothing to do by default."""

    def after_step(self, step: Step) -> None:  # noqa: B027  (an optional hook)
        """Called after each optimizer step (momentum encoders update here); nothing by default."""

    @abstractmethod
    def loss(self, step: Step) -> torch.Tensor:
        """This objective's term for one batch."""


OBJECTIVES: Registry[Objective] = Registry("objective", "--objective-option")
register_objective: Callable = OBJECTIVES.register
