"""Cross-entropy on the labelled batch, with optional label smoothing."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from dalkit.objectives.base import Objective, Step, register_objective
from dalkit.options import require


@register_objective("ce")
class CrossEntropy(Objective):
    """Cross-entropy with the batch's labels."""

    def __init__(self, label_smoothing: float = 0.0) -> None:
        require(
            0 <= label_smoothing < 1, "ce", "label_smoothing", label_smoothing, "be in [0, 1)", "label_smoothing=0.1"
        )
        self.label_smoothing = label_smoothing

    def loss(self, step: Step) -> torch.Tensor:
        return F.cross_entropy(step.output.logits.float(), step.labels, label_smoothing=self.label_smoothing)
