"""BADGE: factorised gradient distances equal explicit ones, largest gradient first, then D^2 sampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dalkit.seeding import make_generator
from dalkit.strategies import checked_select, create_strategy
from dalkit.strategies.badge import GradientEmbedding, kmeans_pp_seeding
from dalkit.strategies.base import Outputs


def explicit_gradients(probs: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
    """The n x (C * d) matrix BADGE never builds: (p - onehot(argmax p)) outer h, flattened."""
    residual = probs.double() - torch.eye(probs.shape[1], dtype=torch.double)[probs.argmax(1)]
    return (residual[:, :, None] * embeddings.double()[:, None, :]).flatten(1)


def random_outputs(n: int, classes: int = 4, dim: int = 6, seed: int = 0) -> Outputs:
    g = torch.Generator().manual_seed(seed)
    return Outputs(torch.randn(n, classes, generator=g).mul(2).softmax(1), torch.randn(n, dim, generator=g))


def line_outputs(scales: list[float]) -> Outputs:
    """Two classes, d = 1: g_i = s_i * (-1, 1) with s_i = (1 - p_max) * h_i = 0.25 * h_i."""
    n = len(scales)
    return Outputs(torch.tensor([[0.75, 0.25]]).repeat(n, 1), 4 * torch.tensor(scales)[:, None])


def test_factorised_distances_equal_explicit_gradient_distances():
    outputs = random_outputs(23)
    grads = GradientEmbedding(*outputs)
    explicit = explicit_gradients(*outputs)
    want = torch.cdist(explicit, explicit).square()
    torch.testing.assert_close(grads.sq_distances(torch.arange(23)).double(), want, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(grads.sq_norms.double(), explicit.square().sum(1), rtol=1e-5, atol=1e-6)
    some = torch.tensor([4, 0, 17])
    torch.testing.assert_close(grads.sq_distances(some).double(), want[:, some], rtol=1e-4, atol=1e-5)


def test_largest_gradient_norm_is_picked_first_and_scored_by_it():
    outputs = random_outputs(40, seed=1)
    norms = explicit_gradients(*outputs).square().sum(1)
    for seed in range(3):
        picks, scores = kmeans_pp_seeding(GradientEmbedding(*outputs), 5, make_generator(seed))
        assert int(picks[0]) == int(norms.argmax())
        assert scores[0].item() == pytest.approx(norms.max().item(), rel=1e-5)


def test_next_picks_follow_squared_distance_not_distance():
    """From A (s=3): B (s=2) has D^2 = 2, C (s=0) has D^2 = 18: C comes second 90% of the time (75% for D)."""
    grads = GradientEmbedding(*line_outputs([3.0, 2.0, 0.0]))
    seconds = [int(kmeans_pp_seeding(grads, 2, make_generator(seed))[0][1]) for seed in range(600)]
    assert seconds.count(0) == 0
    assert abs(seconds.count(2) / 600 - 0.9) < 0.04
    picks, scores = kmeans_pp_seeding(grads, 3, make_generator(0))
    second = int(picks[1])
    assert scores[1].item() == pytest.approx({1: 2.0, 2: 18.0}[second], rel=1e-5)


def test_zero_distances_never_repeat_a_pick():
    """Confident points (zero gradient) and duplicates: once every D^2 is 0 the rest are drawn uniformly."""
    grads = GradientEmbedding(*line_outputs([1.0, 1.0, 0.0, 0.0, 0.0, 2.0]))
    picks, scores = kmeans_pp_seeding(grads, 6, make_generator(0))
    assert sorted(picks.tolist()) == list(range(6))
    assert int(picks[0]) == 5 and (scores[3:] == 0).all()


def badge_context(context_factory, outputs: Outputs, seed: int = 0):
    ctx = context_factory(pool_size=len(outputs.probs) + 3, labelled=3, seed=seed)
    ctx._cache["candidates"] = outputs
    return ctx


def test_strategy_maps_positions_to_pool_indices_and_is_deterministic(context_factory):
    outputs = random_outputs(30, seed=2)
    first = checked_select(create_strategy("badge"), badge_context(context_factory, outputs, seed=7), 8)
    again = checked_select(create_strategy("badge"), badge_context(context_factory, outputs, seed=7), 8)
    np.testing.assert_array_equal(first.indices, again.indices)
    np.testing.assert_array_equal(first.scores, again.scores)
    assert first.indices[0] == 3 + int(explicit_gradients(*outputs).square().sum(1).argmax())
    seeds = [checked_select(create_strategy("badge"), badge_context(context_factory, outputs, s), 8) for s in range(4)]
    assert len({tuple(selection.indices) for selection in seeds}) > 1  # the generator drives D^2 sampling


def test_real_model_outputs(context_factory):
    ctx = context_factory(pool_size=37, labelled=5, chunk_size=8)
    selection = checked_select(create_strategy("badge"), ctx, 10)
    assert len(set(selection.indices.tolist())) == 10
    assert np.isfinite(selection.scores).all() and (selection.scores >= 0).all()
