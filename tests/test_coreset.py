"""Core-Set: chunked k-center greedy equals brute force, radii never grow, the robust MIP drops outliers."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from dalkit.errors import DalkitError
from dalkit.seeding import make_generator
from dalkit.strategies import checked_select, create_strategy
from dalkit.strategies.base import Outputs
from dalkit.strategies.coreset import k_center_greedy, min_sq_distances, robust_k_center


def brute_k_center(
    points: torch.Tensor, centers: torch.Tensor, budget: int, dtype: torch.dtype = torch.float16
) -> tuple[list[int], list[float]]:
    """Farthest-first with the full distance matrix in float64 (m >= 1) over the points as stored in `dtype`."""
    points, centers = points.to(dtype), centers.to(dtype)
    dist = torch.cdist(points.double(), torch.cat([centers, points]).double())
    nearest = dist[:, : len(centers)].min(1).values
    picks, radii = [], []
    for _ in range(budget):
        pick = int(nearest.argmax())
        picks.append(pick)
        radii.append(float(nearest.max()))
        nearest = torch.minimum(nearest, dist[:, len(centers) + pick])
    return picks, radii


def planted(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Three tight 2-D clusters, one far outlier; one labelled point sits in the first cluster."""
    g = torch.Generator().manual_seed(seed)
    means = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    points = torch.cat([m + 0.1 * torch.randn(8, 2, generator=g) for m in means] + [torch.tensor([[60.0, 60.0]])])
    return points, means[:1], len(points) - 1


def planted_context(context_factory) -> tuple:
    points, labelled, outlier = planted()
    ctx = context_factory(pool_size=len(points) + 1, labelled=1)
    ctx._cache["candidates"] = Outputs(torch.full((len(points), 3), 1 / 3), points)
    ctx._cache["labelled"] = Outputs(torch.full((1, 3), 1 / 3), labelled)
    return ctx, ctx.candidates[outlier]


@pytest.mark.parametrize("n, m, chunk", [(53, 11, 7), (53, 11, 1), (20, 3, 64), (40, 0, 7)])
def test_min_distances_cover_every_chunk(n, m, chunk):
    g = torch.Generator().manual_seed(1)
    points, centers = torch.randn(n, 5, generator=g), torch.randn(m, 5, generator=g)
    got = min_sq_distances(points, centers, chunk)
    want = torch.cdist(points, centers).square().min(1).values if m else torch.full((n,), torch.inf)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("chunk, dtype", [(7, torch.float16), (1, torch.float32), (100, torch.bfloat16)])
def test_chunked_greedy_matches_brute_force(chunk, dtype):
    g = torch.Generator().manual_seed(0)
    points, centers = torch.randn(53, 6, generator=g), torch.randn(11, 6, generator=g)
    picks, radii = k_center_greedy(points, centers, 20, make_generator(0), chunk, dtype)
    want_picks, want_radii = brute_k_center(points, centers, 20, dtype)
    assert picks.tolist() == want_picks
    np.testing.assert_allclose(radii.numpy(), want_radii, rtol=1e-4)


def test_cold_start_is_a_random_point_then_brute_force():
    points = torch.randn(53, 6, generator=torch.Generator().manual_seed(0))
    firsts = set()
    for seed in range(6):
        picks, radii = k_center_greedy(points, torch.empty(0, 6), 15, make_generator(seed), 7)
        assert radii[0] == torch.inf
        firsts.add(int(picks[0]))
        rest, rest_radii = brute_k_center(points, points[picks[:1]], 14, torch.float16)
        assert picks[1:].tolist() == rest
        np.testing.assert_allclose(radii[1:].numpy(), rest_radii, rtol=1e-4)
    assert len(firsts) > 1
    again, _ = k_center_greedy(points, torch.empty(0, 6), 15, make_generator(5), 7)
    assert int(again[0]) == int(picks[0])


def test_farthest_point_first_and_radius_never_grows():
    points = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-5.0, 0.0], [3.0, 3.0], [0.5, 0.5]])
    picks, radii = k_center_greedy(points, torch.zeros(1, 2), 5, make_generator(0), 2)
    assert int(picks[0]) == 2 and radii[0].item() == pytest.approx(5.0)
    assert (radii[1:] <= radii[:-1]).all()


def test_ties_and_duplicates_never_repeat_a_pick():
    points = torch.zeros(30, 4)
    picks, radii = k_center_greedy(points, torch.zeros(2, 4), 30, make_generator(0), 7)
    assert sorted(picks.tolist()) == list(range(30))
    assert (radii == 0).all()
    other, _ = k_center_greedy(points, torch.zeros(2, 4), 30, make_generator(1), 7)
    assert other.tolist() != picks.tolist()  # ties go to the generator


def test_greedy_strategy_picks_the_planted_outlier_first(context_factory):
    ctx, outlier = planted_context(context_factory)
    selection = checked_select(create_strategy("coreset"), ctx, 2)
    assert selection.indices[0] == outlier
    assert selection.scores[0] == pytest.approx(np.hypot(60, 60), rel=1e-4)


@pytest.mark.parametrize("name, options", [("coreset-robust", {}), ("coreset", {"robust": True})])
def test_robust_strategy_leaves_the_planted_outlier_out(name, options, context_factory):
    ctx, outlier = planted_context(context_factory)
    selection = checked_select(create_strategy(name, outliers=1, **options), ctx, 2)
    assert outlier not in selection.indices
    points = ctx.outputs("candidates").embeddings
    clusters = {int(points[np.flatnonzero(ctx.candidates == i)[0]].argmax()) for i in selection.indices}
    assert clusters == {0, 1}  # one centre in each uncovered cluster (x-axis and y-axis)


def robust_radius(points, centers, picks, outliers):
    nearest = torch.cdist(points.double(), torch.cat([centers, points[torch.as_tensor(picks)]]).double()).min(1).values
    return float(nearest.sort(descending=True).values[outliers])


def test_robust_without_outliers_finds_the_optimal_k_center():
    """Outliers=0 is exact k-center: the MIP search reaches the brute-force optimum, greedy does not."""
    points = torch.rand(12, 2, generator=torch.Generator().manual_seed(0))
    centers = points[:1]
    greedy, _ = k_center_greedy(points, centers, 3, make_generator(0), 5)
    picks, scores = robust_k_center(points, centers, 3, make_generator(0), 5, outliers=0, max_iters=30)
    best = min(robust_radius(points, centers, list(c), 0) for c in itertools.combinations(range(12), 3))
    assert robust_radius(points, centers, greedy, 0) > best * 1.3
    assert robust_radius(points, centers, picks, 0) == pytest.approx(best, rel=1e-4)
    assert len(set(picks.tolist())) == 3 and (scores[1:] <= scores[:-1]).all()


def test_robust_keeps_greedy_when_no_program_can_be_built():
    points = torch.randn(30, 3, generator=torch.Generator().manual_seed(0))
    greedy = k_center_greedy(points, points[:2], 4, make_generator(0), 8, torch.float32)
    robust = robust_k_center(points, points[:2], 4, make_generator(0), 8, outliers=0, max_pairs=0)
    for a, b in zip(greedy, robust):
        torch.testing.assert_close(a, b)


def test_robust_refuses_too_many_candidates_naming_the_option(context_factory):
    ctx = context_factory(pool_size=30, labelled=2)
    with pytest.raises(DalkitError, match="max_points=20.*--candidates"):
        checked_select(create_strategy("coreset-robust", max_points=20), ctx, 3)


def test_bad_outlier_options_are_refused():
    with pytest.raises(DalkitError, match="outliers"):
        create_strategy("coreset-robust", outliers=-1)
    with pytest.raises(DalkitError, match="outlier_fraction"):
        create_strategy("coreset", outlier_fraction=1.5)
