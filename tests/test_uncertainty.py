"""Uncertainty scores on a hand-made probability matrix, and BALD's mutual information."""

from __future__ import annotations

import numpy as np
import torch

from dalkit.strategies import create_strategy
from dalkit.strategies.bald import mutual_information
from dalkit.strategies.base import Outputs, entropy

PROBS = torch.tensor(
    [
        [0.98, 0.01, 0.01],  # confident
        [0.50, 0.49, 0.01],  # tiny margin, low entropy
        [0.34, 0.33, 0.33],  # near uniform: least confident, highest entropy
        [0.60, 0.20, 0.20],
        [0.45, 0.10, 0.45],  # zero margin
    ]
)


def picks(name: str, context_factory, budget: int = 5) -> list[int]:
    ctx = context_factory(pool_size=len(PROBS), labelled=0)
    ctx._cache["candidates"] = Outputs(PROBS, torch.zeros(len(PROBS), 4))
    return create_strategy(name).select(ctx, budget).indices.tolist()


def test_least_confidence_order(context_factory):
    assert picks("least-confidence", context_factory) == [2, 4, 1, 3, 0]


def test_margin_order(context_factory):
    # margins: 0.97, 0.01, 0.01, 0.40, 0.00 -> 4 first; 1 and 2 tie (broken at random); then 3, 0
    order = picks("margin", context_factory)
    assert order[0] == 4 and set(order[1:3]) == {1, 2} and order[3:] == [3, 0]


def test_entropy_order(context_factory):
    expected = np.argsort(-entropy(PROBS).numpy(), kind="stable").tolist()
    assert picks("entropy", context_factory) == expected
    assert expected[0] == 2


def test_bald_is_zero_for_identical_samples():
    samples = 20
    prob_sum = PROBS * samples
    entropy_sum = entropy(PROBS) * samples
    torch.testing.assert_close(mutual_information(prob_sum, entropy_sum, samples), torch.zeros(len(PROBS)))


def test_bald_is_positive_when_samples_disagree():
    a = torch.tensor([[0.9, 0.1], [0.5, 0.5]])
    b = torch.tensor([[0.1, 0.9], [0.5, 0.5]])
    mi = mutual_information(a + b, entropy(a) + entropy(b), 2)
    assert mi[0] > 0.3 and mi[1].abs() < 1e-6
