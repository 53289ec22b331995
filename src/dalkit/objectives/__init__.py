"""Training objectives that compose: the trainer sums the terms of the objectives a run names."""

from __future__ import annotations

from dalkit.objectives import (  # noqa: F401  (register the objectives)
    cross_entropy,
    cskd,
    distill,
    hybrid_mixup,
    learning_loss,
    mixup,
    moby,
)
from dalkit.objectives.base import OBJECTIVES, Objective, Step
from dalkit.objectives.cross_entropy import CrossEntropy


def create_objective(name: str, **options) -> Objective:
    """Build a registered objective; `options` are its own parameters."""
    return OBJECTIVES.create(name, **options)


def list_objectives() -> list[str]:
    return OBJECTIVES.names()


__all__ = ["OBJECTIVES", "CrossEntropy", "Objective", "Step", "create_objective", "list_objectives"]
