"""Class-wise self-knowledge distillation, CS-KD (Yun, Park, Lee & Shin, CVPR 2020).

Every image in a batch is paired with another, different labelled image of the same class; the
model's softened prediction on the pair (no gradient through it) is the target for the image:

    loss = lambda * T^2 * KL(softmax(z_pair / T) || softmax(z / T)),   T = 4, lambda = 1 (paper defaults)

added to the cross-entropy (objective "ce"). As in the reference code the pair goes through the model
in train mode (its batch-norm statistics count) under no_grad. A class with a single labelled image
pairs that image with itself (another random augmentation of it), since no different image exists.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from dalkit.objectives.base import Objective, Step, register_objective
from dalkit.options import require


def class_pairs(labels: torch.Tensor, positions: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """For each i in `positions`, a random j != i with labels[j] == labels[i] (i itself if its class has one)."""
    order = torch.argsort(labels, stable=True)
    counts = torch.bincount(labels)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(labels), device=labels.device) - starts[labels[order]]
    cls, own = labels[positions], rank[positions]
    size = counts[cls]
    draw = (torch.rand(len(positions), device=labels.device, generator=generator) * (size - 1)).long()
    draw = torch.minimum(draw, (size - 2).clamp_min(0))
    other = torch.where(size > 1, draw + (draw >= own).long(), own)
    return order[starts[cls] + other]


def distillation_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * KL(softmax(teacher/T) || softmax(student/T)), averaged over the batch."""
    log_student = F.log_softmax(student.float() / temperature, dim=1)
    log_teacher = F.log_softmax(teacher.float() / temperature, dim=1)
    return F.kl_div(log_student, log_teacher, reduction="batchmean", log_target=True) * temperature**2


@register_objective("cskd")
class ClassWiseSelfKD(Objective):
    """CS-KD: match the softened predictions of two images of the same class (T = 4, lambda = 1)."""

    def __init__(self, temperature: float = 4.0, weight: float = 1.0) -> None:
        require(temperature > 0, "cskd", "temperature", temperature, "be positive", "temperature=4")
        require(weight >= 0, "cskd", "weight", weight, "be 0 or more", "weight=1")
        self.temperature = temperature
        self.weight = weight

    def loss(self, step: Step) -> torch.Tensor:
        pairs = class_pairs(step.all_labels, step.indices, step.generator)
        with torch.no_grad():
            teacher = step.model(step.inputs_for(pairs)).logits
        return self.weight * distillation_kl(step.output.logits, teacher, self.temperature)
