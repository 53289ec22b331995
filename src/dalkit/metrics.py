"""Accuracy summaries for imbalanced and long-tailed training sets.

Many-, medium- and few-shot accuracy follow Liu et al. (OLTR, CVPR 2019) and Kang et al. (Decoupling, ICLR 2020):
classes are grouped by their number of training images, many-shot > 100, medium-shot 20..100 (both ends
included) and few-shot < 20, and each group reports the mean test accuracy of its classes. A group without a
class is reported as None, not 0, so an empty group cannot pass for a failed one (CIFAR-10-LT has no few-shot
class at IF = 100). Classes whose accuracy is NaN (no test image) are left out of every mean.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MANY_SHOT = 100
FEW_SHOT = 20


def nan_mean(values: np.ndarray) -> float | None:
    """Mean of the non-NaN values, or None when there is none."""
    values = values[~np.isnan(values)]
    return float(values.mean()) if len(values) else None


def balanced_accuracy(per_class_accuracy: Sequence[float]) -> float | None:
    """The mean of the per-class accuracies, ignoring NaN (classes without a test image); None if none is left."""
    return nan_mean(np.asarray(per_class_accuracy, dtype=float))


def shot_accuracies(
    per_class_accuracy: Sequence[float], train_counts: Sequence[int], many: int = MANY_SHOT, few: int = FEW_SHOT
) -> dict[str, float | None]:
    """Mean accuracy of the many-shot (> many), medium-shot (few..many) and few-shot (< few) classes.

    `train_counts[c]` is the number of training images of class c; an empty group is None.
    """
    accuracy = np.asarray(per_class_accuracy, dtype=float)
    counts = np.asarray(train_counts)
    if accuracy.shape != counts.shape or accuracy.ndim != 1:
        raise ValueError("per_class_accuracy and train_counts need one entry per class")
    groups = {
        "many_shot_accuracy": counts > many,
        "medium_shot_accuracy": (counts >= few) & (counts <= many),
        "few_shot_accuracy": counts < few,
    }
    return {name: nan_mean(accuracy[members]) for name, members in groups.items()}
