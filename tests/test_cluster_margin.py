"""Cluster-Margin: round-robin over the k_m lowest margins' clusters, HAC of the pool once, exact and at scale."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.cluster.hierarchy import fcluster, linkage

from dalkit.data.augment import Normalizer
from dalkit.data.pool import Pool
from dalkit.errors import DalkitError
from dalkit.models.base import Classifier, ModelOutput
from dalkit.seeding import make_generator
from dalkit.strategies import QueryContext, checked_select, create_strategy
from dalkit.strategies import cluster_margin as cm


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """True when two labelings group the points identically (up to renaming the clusters)."""
    pairs = np.unique(np.stack([a, b]), axis=1)
    return len(pairs[0]) == len(np.unique(a)) == len(np.unique(b))


def blobs(sizes: list[int], dim: int = 8, spread: float = 0.3, gap: float = 20.0, seed: int = 0):
    """Well-separated gaussian blobs: points (n, dim) float32 and the blob of each."""
    g = torch.Generator().manual_seed(seed)
    centres = gap * torch.eye(dim)[: len(sizes)]
    points = torch.cat([c + spread * torch.randn(s, dim, generator=g) for c, s in zip(centres, sizes)])
    truth = np.repeat(np.arange(len(sizes)), sizes)
    return points, truth


class PlantedModel(Classifier):
    """Reads a 1x1x4 image: pixels 0-1 are its 2-D embedding, pixels 2-3 its two logits (x 4)."""

    num_classes = 2
    embedding_dim = 2

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += len(x)
        return x.reshape(len(x), -1)

    def head(self, z: torch.Tensor) -> ModelOutput:
        return ModelOutput(4 * z[:, 2:4], z[:, :2])


def planted_context(places: np.ndarray, gaps: np.ndarray, labelled: int = 0, seed: int = 0) -> QueryContext:
    """A pool whose image i sits at `places[i]` (2-D, 0..255) with logit gap `gaps[i]` (margin grows with it)."""
    images = np.zeros((len(places), 1, 1, 4), dtype=np.uint8)
    images[:, 0, 0, :2] = places
    images[:, 0, 0, 2] = 100 + gaps
    images[:, 0, 0, 3] = 100
    pool = Pool(len(places))
    if labelled:
        pool.label(np.arange(labelled), np.zeros(labelled, dtype=np.int64), cycle=0)
    return QueryContext(
        model=PlantedModel(),
        images=torch.from_numpy(images),
        normalizer=Normalizer(torch.tensor([0.5]), torch.tensor([0.25])),
        pool=pool,
        candidates=pool.unlabelled_indices(),
        generator=make_generator(seed),
        batch_size=16,
        chunk_size=8,
    )


def four_groups(sizes=(30, 15, 10, 5), seed: int = 0):
    """Four far-apart groups of pool images in the embedding plane, distinct random margins."""
    rng = np.random.default_rng(seed)
    corners = np.array([[20, 20], [20, 230], [230, 20], [230, 230]])
    places = np.concatenate([c + rng.integers(-6, 7, size=(s, 2)) for c, s in zip(corners, sizes)])
    gaps = rng.permutation(np.arange(sum(sizes)) * 2)  # distinct logit gaps 0..2n: distinct margins
    return places, gaps, np.repeat(np.arange(len(sizes)), sizes)


def check_round_robin(picks: np.ndarray, cluster_of: dict[int, int], margin_set: np.ndarray) -> None:
    """No cluster gives its (r+2)-th pick while another cluster of the margin set has fewer than r+1 picks
    and an untaken member; within a round, clusters with fewer members in the margin set come first."""
    members = {}
    for i in margin_set.tolist():
        members.setdefault(cluster_of[i], []).append(i)
    taken = dict.fromkeys(members, 0)
    for pick in picks.tolist():
        c = cluster_of[pick]
        r = taken[c]
        for other, group in members.items():
            if other != c and taken[other] < r and taken[other] < len(group):
                raise AssertionError(f"a second pick from cluster {c} while cluster {other} still waited")
        taken[c] += 1
    first_round = []
    for pick in picks.tolist():
        c = cluster_of[pick]
        if c in first_round:
            break
        first_round.append(c)
    sizes = [len(members[c]) for c in first_round]
    assert sizes == sorted(sizes), f"first round not smallest first: {sizes}"


# --- HAC ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_weighted_linkage_with_unit_weights_is_scipy_average_linkage(seed):
    points = np.random.default_rng(seed).normal(size=(40, 3))
    merges, heights = cm.weighted_average_linkage(points, np.ones(40))
    tree = linkage(points, method="average")
    np.testing.assert_allclose(np.sort(heights), tree[:, 2], rtol=1e-9)
    for k in [1, 2, 5, 13, 40]:
        ours = cm.flat_clusters(40, merges, heights, k, None)
        assert same_partition(ours, fcluster(tree, k, criterion="maxclust")), k


@pytest.mark.parametrize("seed", [0, 1])
def test_weighted_linkage_is_average_linkage_of_the_points_moved_onto_their_centroids(seed):
    """The centroid path's claim: HAC of centroids weighted by size = exact HAC of the quantised pool."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(12, 4))
    weights = rng.integers(1, 6, size=12)
    expanded = np.repeat(centres, weights, axis=0)
    owner = np.repeat(np.arange(12), weights)
    merges, heights = cm.weighted_average_linkage(centres, weights)
    tree = linkage(expanded, method="average")
    for k in [2, 3, 5, 8]:
        ours = cm.flat_clusters(12, merges, heights, k, None)[owner]
        assert same_partition(ours, fcluster(tree, k, criterion="maxclust")), k
    unweighted = cm.weighted_average_linkage(centres, np.ones(12))[1]
    assert not np.allclose(np.sort(unweighted), np.sort(heights)), "the weights must change the dendrogram"


def test_threshold_cut_applies_merges_up_to_epsilon():
    points, truth = blobs([6, 9, 4], spread=0.3, gap=20.0)
    merges, heights = cm.weighted_average_linkage(points.double().numpy(), np.ones(len(points)))
    assert same_partition(cm.flat_clusters(len(points), merges, heights, None, 5.0), truth)
    assert len(np.unique(cm.flat_clusters(len(points), merges, heights, None, 1e-9))) == len(points)


def test_exact_hac_recovers_planted_blobs():
    points, truth = blobs([40, 25, 10, 3])
    found = cm.cluster_embeddings(points, make_generator(0), clusters=4)
    assert found.method.startswith("exact")
    assert same_partition(found.labels, truth)
    by_threshold = cm.cluster_embeddings(points, make_generator(0), threshold=8.0)
    assert same_partition(by_threshold.labels, truth)


@pytest.mark.parametrize("chunk", [13, 4096])
def test_centroid_path_recovers_planted_blobs(chunk):
    points, truth = blobs([300, 150, 60, 25, 9], seed=3)
    found = cm.cluster_embeddings(points, make_generator(0), clusters=5, exact_max=100, centroids=40, chunk_size=chunk)
    assert found.method.startswith("k-means")
    assert 5 <= found.centroids <= 40
    assert same_partition(found.labels, truth)


def test_kmeans_is_chunk_invariant_and_assigns_every_point():
    points, _ = blobs([53, 20, 8], seed=1)
    first = cm.kmeans(points, 9, make_generator(4), chunk_size=11)
    second = cm.kmeans(points, 9, make_generator(4), chunk_size=1000)
    torch.testing.assert_close(first[1], second[1])
    assert torch.equal(first[0], second[0])
    labels, centroids, counts = first
    assert len(labels) == len(points) and int(counts.sum()) == len(points)
    assert torch.equal(torch.bincount(labels, minlength=len(centroids)), counts)


# --- the round-robin ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_round_robin_takes_one_per_cluster_per_round_smallest_first(seed):
    rng = np.random.default_rng(seed)
    clusters = rng.integers(0, 7, size=60)
    order = cm.round_robin(clusters, 60, make_generator(seed))
    assert sorted(order.tolist()) == list(range(60))
    check_round_robin(order, dict(enumerate(clusters.tolist())), np.arange(60))


def test_km_equal_to_budget_takes_exactly_the_lowest_margins():
    places, gaps, _ = four_groups()
    ctx = planted_context(places, gaps, labelled=4)
    budget = 9
    selection = checked_select(create_strategy("cluster-margin", km_ratio=1, clusters=4), ctx, budget)
    lowest = ctx.candidates[np.argsort(gaps[ctx.candidates])[:budget]]
    assert sorted(selection.indices.tolist()) == sorted(lowest.tolist())


def test_km_below_budget_fills_with_the_next_lowest_margins():
    places, gaps, _ = four_groups()
    ctx = planted_context(places, gaps)
    selection = checked_select(create_strategy("cluster-margin", km_ratio=0.5, clusters=4), ctx, 10)
    ranked = np.argsort(gaps)
    assert sorted(selection.indices[:5].tolist()) == sorted(ranked[:5].tolist())
    assert selection.indices[5:].tolist() == ranked[5:10].tolist()


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("km_ratio", [2, 3, 10])
def test_never_a_second_pick_from_a_cluster_while_another_waits(seed, km_ratio):
    places, gaps, truth = four_groups(seed=seed)
    ctx = planted_context(places, gaps, labelled=3, seed=seed)
    budget = 12
    strategy = create_strategy("cluster-margin", km_ratio=km_ratio, clusters=4)
    selection = checked_select(strategy, ctx, budget)
    assert same_partition(strategy.pool_clusters.labels, truth)
    km = min(len(ctx.candidates), km_ratio * budget)
    margin_set = ctx.candidates[np.argsort(gaps[ctx.candidates])[:km]]
    assert np.isin(selection.indices, margin_set).all()
    check_round_robin(selection.indices, dict(enumerate(truth.tolist())), margin_set)
    assert selection.info["km"] == km and selection.info["clusters"] == 4


def test_planted_counts_follow_the_round_robin():
    """All 60 candidates in M (sizes 30, 15, 10, 5): 14 picks are 3 rounds of 4, then the two smallest."""
    places, gaps, truth = four_groups()
    ctx = planted_context(places, gaps)
    selection = checked_select(create_strategy("cluster-margin", clusters=4), ctx, 14)
    counts = np.bincount(truth[selection.indices], minlength=4)
    assert counts.tolist() == [3, 3, 4, 4]
    assert truth[selection.indices[:4]].tolist() == [3, 2, 1, 0]


# --- clustering once ------------------------------------------------------------------------------------------------


def test_clustering_is_computed_once_and_reused(monkeypatch):
    calls = []
    original = cm.cluster_embeddings

    def counting(*args, **kwargs):
        calls.append(len(args[0]))
        return original(*args, **kwargs)

    monkeypatch.setattr(cm, "cluster_embeddings", counting)
    places, gaps, _ = four_groups()
    strategy = create_strategy("cluster-margin", clusters=4)
    ctx = planted_context(places, gaps, labelled=2)
    first = checked_select(strategy, ctx, 5)
    clusters = strategy.pool_clusters
    assert ctx.model.calls == len(places)  # one pass over the pool, the margins read from it
    ctx.pool.label(first.indices, np.zeros(5, dtype=np.int64), cycle=1)
    later = planted_context(places, gaps[::-1].copy(), labelled=0, seed=1)  # a new cycle: other model outputs
    later.pool = ctx.pool
    later.candidates = ctx.pool.unlabelled_indices()
    checked_select(strategy, later, 5)
    assert calls == [len(places)]
    assert strategy.pool_clusters is clusters
    assert later.model.calls == len(later.candidates)  # only the candidates' outputs
    bigger = planted_context(np.concatenate([places, places[:3]]), np.concatenate([gaps, gaps[:3]]))
    checked_select(strategy, bigger, 5)
    assert calls == [len(places), len(places) + 3]


# --- options -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options, match",
    [
        ({"km_ratio": 0}, "km_ratio must be positive"),
        ({"clusters": 0}, "clusters must be at least 1"),
        ({"threshold": -1.0}, "threshold must be a positive distance"),
        ({"clusters": 10, "threshold": 2.0}, "pass only one of them"),
        ({"clusters": 3000}, "at most centroids=2000"),
        ({"centroids": 1}, "centroids must be at least 2"),
    ],
)
def test_bad_options_are_refused_in_one_sentence(options, match):
    with pytest.raises(DalkitError, match=match):
        create_strategy("cluster-margin", **options)
