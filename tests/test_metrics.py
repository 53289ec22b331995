"""Many/medium/few-shot accuracy (> 100, 20..100, < 20 training images) and balanced accuracy."""

from __future__ import annotations

import math

import pytest

from dalkit.metrics import balanced_accuracy, shot_accuracies


def test_threshold_edges_100_and_20_are_medium_19_is_few_101_is_many():
    accuracy = [0.9, 0.7, 0.5, 0.3, 0.1]
    counts = [101, 100, 20, 19, 0]
    shots = shot_accuracies(accuracy, counts)
    assert shots["many_shot_accuracy"] == pytest.approx(0.9)
    assert shots["medium_shot_accuracy"] == pytest.approx((0.7 + 0.5) / 2)
    assert shots["few_shot_accuracy"] == pytest.approx((0.3 + 0.1) / 2)


def test_an_empty_group_is_none_not_zero():
    shots = shot_accuracies([0.8, 0.6, 0.0], [5000, 645, 50])  # CIFAR-10-LT has no few-shot class
    assert shots["few_shot_accuracy"] is None
    assert shots["many_shot_accuracy"] == pytest.approx(0.7) and shots["medium_shot_accuracy"] == 0.0
    assert shot_accuracies([], []) == {
        "many_shot_accuracy": None,
        "medium_shot_accuracy": None,
        "few_shot_accuracy": None,
    }


def test_classes_without_a_test_image_are_left_out():
    nan = float("nan")
    shots = shot_accuracies([nan, 0.4, nan, 1.0], [500, 500, 3, 50])
    assert shots["many_shot_accuracy"] == pytest.approx(0.4)
    assert shots["few_shot_accuracy"] is None  # its only class has no test image
    assert shots["medium_shot_accuracy"] == 1.0


def test_custom_thresholds():
    shots = shot_accuracies([1.0, 0.5, 0.0], [10, 5, 4], many=9, few=5)
    assert (shots["many_shot_accuracy"], shots["medium_shot_accuracy"], shots["few_shot_accuracy"]) == (1.0, 0.5, 0.0)


def test_mismatched_lengths_are_an_error():
    with pytest.raises(ValueError):
        shot_accuracies([0.5, 0.5], [10])


def test_balanced_accuracy_is_the_mean_per_class_accuracy_ignoring_nan():
    assert balanced_accuracy([1.0, 0.5, float("nan"), 0.0]) == pytest.approx(0.5)
    assert balanced_accuracy([float("nan")]) is None and balanced_accuracy([]) is None
    value = balanced_accuracy([0.25, 0.75])
    assert isinstance(value, float) and math.isclose(value, 0.5)
