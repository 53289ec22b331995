"""TypiClust: the centre of each uncovered planted cluster, largest first; chunked typicality equals brute force."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dalkit.errors import DalkitError
from dalkit.strategies import checked_select, create_strategy
from dalkit.strategies.base import Outputs
from dalkit.strategies.typiclust import mean_knn_distances, typicality

SIZES = (11, 7, 15, 9, 13)  # planted cluster sizes, deliberately out of order


def star_clusters(sizes=SIZES, spread: float = 0.1) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Cluster c: a centre on axis c plus points at `spread` from it along +-1 tangent axes (shared by clusters).

    Each centre is the unique most typical point of its cluster: it is at `spread` from every other member,
    while the others are at least spread * sqrt(2) from each other. Returns the shuffled points, their cluster,
    and each cluster's centre position.
    """
    dims = len(sizes) + max(sizes) // 2
    points, blobs = [], []
    for c, size in enumerate(sizes):
        centre = torch.zeros(dims)
        centre[c] = 1.0
        offsets = torch.cat([torch.eye(dims)[len(sizes) : len(sizes) + size // 2] * s for s in (spread, -spread)])
        points.append(torch.cat([centre[None], centre + offsets]))
        blobs += [c] * size
    order = torch.randperm(sum(sizes), generator=torch.Generator().manual_seed(0))
    points, blobs = torch.cat(points)[order], np.asarray(blobs)[order.numpy()]
    centres = np.array([int(np.flatnonzero(order.numpy() == sum(sizes[:c]))[0]) for c in range(len(sizes))])
    return points, blobs, centres


def planted_context(context_factory, points: torch.Tensor, labelled=()):
    """A context whose labelled set is points[labelled] and whose candidates are the other points, in order."""
    labelled = np.asarray(labelled, dtype=np.int64)
    rest = np.setdiff1d(np.arange(len(points)), labelled)
    ctx = context_factory(pool_size=len(points), labelled=len(labelled), chunk_size=8)
    ctx._cache["labelled"] = Outputs(torch.full((len(labelled), 3), 1 / 3), points[labelled])
    ctx._cache["candidates"] = Outputs(torch.full((len(rest), 3), 1 / 3), points[rest])
    return ctx, rest


def picked_positions(ctx, rest: np.ndarray, budget: int, **options) -> tuple[np.ndarray, np.ndarray]:
    selection = checked_select(create_strategy("typiclust", **options), ctx, budget)
    return rest[selection.indices - len(ctx.labelled)], selection.scores


def by_size(sizes=SIZES) -> list[int]:
    return sorted(range(len(sizes)), key=lambda c: -sizes[c])


def test_cold_start_picks_each_centre_largest_cluster_first(context_factory):
    points, _, centres = star_clusters()
    ctx, rest = planted_context(context_factory, points)
    picks, scores = picked_positions(ctx, rest, 5)
    assert picks.tolist() == centres[by_size()].tolist()
    assert np.isfinite(scores).all() and (scores > 0).all()


@pytest.mark.parametrize("labelled_member", ["centre", "edge"])
def test_a_cluster_with_a_labelled_point_is_skipped(labelled_member, context_factory):
    points, blobs, centres = star_clusters()
    largest = by_size()[0]
    members = np.flatnonzero(blobs == largest)
    labelled = centres[largest] if labelled_member == "centre" else members[members != centres[largest]][0]
    ctx, rest = planted_context(context_factory, points, np.array([labelled]))
    picks, _ = picked_positions(ctx, rest, 4)
    assert picks.tolist() == centres[by_size()[1:]].tolist()


def test_never_two_from_one_cluster_until_all_are_covered(context_factory):
    points, blobs, centres = star_clusters()
    ctx, rest = planted_context(context_factory, points)
    picks, _ = picked_positions(ctx, rest, 8, max_clusters=5)
    assert picks[:5].tolist() == centres[by_size()].tolist()
    assert blobs[picks[5:]].tolist() == by_size()[:3]  # then the largest clusters again, one pick each


def test_clusters_below_the_minimum_size_are_skipped(context_factory):
    sizes = (5, 9, 11, 13, 15)
    points, blobs, centres = star_clusters(sizes)
    ctx, rest = planted_context(context_factory, points)
    picks, _ = picked_positions(ctx, rest, 5)
    assert picks[:4].tolist() == centres[[4, 3, 2, 1]].tolist()
    assert blobs[picks[4]] == 4  # the 5-point cluster is never chosen; the largest one is, again
    ctx, rest = planted_context(context_factory, points)
    picks, _ = picked_positions(ctx, rest, 5, min_cluster_size=1)
    assert picks.tolist() == centres[[4, 3, 2, 1, 0]].tolist()


def brute_typicality(points: torch.Tensor, k: int) -> np.ndarray:
    dist = torch.cdist(points.double(), points.double()).sort(dim=1).values[:, 1 : k + 1]
    return (1 / (dist.mean(1) + 1e-5)).numpy()


def test_gaussian_blobs_match_brute_force_typicality(context_factory):
    """Picks on noisy blobs: each is the brute-force most typical point of its blob, k = min(20, m // 2)."""
    g = torch.Generator().manual_seed(1)
    sizes = (13, 21, 30, 45, 37)
    points = torch.cat([torch.eye(6)[c] + 0.08 * torch.randn(size, 6, generator=g) for c, size in enumerate(sizes)])
    blobs = np.repeat(np.arange(5), sizes)
    ctx, rest = planted_context(context_factory, points)
    picks, scores = picked_positions(ctx, rest, 5)
    unit = torch.nn.functional.normalize(points, dim=1)
    for pick, score, c in zip(picks, scores, by_size(sizes)):
        members = np.flatnonzero(blobs == c)
        want = brute_typicality(unit[members], min(20, len(members) // 2))
        assert pick == members[want.argmax()]
        assert score == pytest.approx(want.max(), rel=1e-3)


@pytest.mark.parametrize("n, k, chunk", [(53, 5, 8), (53, 20, 8), (9, 4, 1), (30, 3, 100)])
def test_chunked_knn_distances_match_brute_force(n, k, chunk):
    points = torch.randn(n, 4, generator=torch.Generator().manual_seed(n))
    want = torch.cdist(points.double(), points.double()).sort(dim=1).values[:, 1 : k + 1].mean(1)
    torch.testing.assert_close(mean_knn_distances(points, k, chunk).double(), want, rtol=1e-4, atol=1e-5)


def test_small_clusters_use_half_their_points_and_a_lone_point_has_no_typicality():
    points = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    np.testing.assert_allclose(typicality(points, 20, 2).numpy(), 1 / (np.array([2, 1.5, 2.5, 5]) + 1e-5), rtol=1e-5)
    assert typicality(points[:1], 20, 2).isnan().all()


@pytest.mark.parametrize("option", ["k_neighbours", "max_clusters", "min_cluster_size"])
def test_bad_options_are_refused_naming_the_option(option):
    with pytest.raises(DalkitError, match=option):
        create_strategy("typiclust", **{option: 0})
