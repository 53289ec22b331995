"""ProbCover: the chunked delta-graph equals brute force, each pick is the greedy max-coverage one, purity rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dalkit.errors import DalkitError
from dalkit.seeding import make_generator
from dalkit.strategies import checked_select, create_strategy
from dalkit.strategies.base import Outputs
from dalkit.strategies.probcover import DELTAS, ball_purity, coverage, delta_graph, max_coverage, purity_delta
from dalkit.strategies.typiclust import kmeans_labels


def unit_points(n: int, d: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=1)


def brute_adjacency(points: torch.Tensor, delta: float) -> np.ndarray:
    return (torch.cdist(points.double(), points.double()) < delta).numpy()


def brute_coverage(adjacency: np.ndarray, sources) -> float:
    return float(adjacency[np.asarray(sources, dtype=np.int64)].any(axis=0).mean())


@pytest.mark.parametrize("n, chunk", [(53, 8), (53, 1), (53, 100), (16, 8)])
def test_graph_has_exactly_the_brute_force_edges(n, chunk):
    points = unit_points(n)
    graph = delta_graph(points, 0.6, chunk, max_edges=10**6)
    adjacency = brute_adjacency(points, 0.6)
    np.testing.assert_array_equal(graph.toarray(), adjacency)
    assert adjacency[n - 1].sum() > 1  # the last partial chunk has edges beyond its self-loop
    assert np.all(np.diff(graph.indices[graph.indptr[-2] :]) > 0)  # columns ascending in a row


@pytest.mark.parametrize("labelled", [0, 4])
def test_every_pick_is_the_greedy_max_coverage_pick(labelled):
    points, delta = unit_points(53), 0.5
    adjacency = brute_adjacency(points, delta)
    graph = delta_graph(points, delta, 8, max_edges=10**6)
    picks, gains = max_coverage(graph, np.arange(labelled), 30, make_generator(0))
    covered = adjacency[:labelled].any(axis=0)
    if labelled == 0:
        assert adjacency[picks[0]].sum() == adjacency.sum(axis=1).max()  # cold start: a max-degree point first
    available = np.arange(53) >= labelled
    for pick, gain in zip(picks, gains):
        new = (adjacency & ~covered).sum(axis=1)
        assert available[pick] and gain == new[pick] == new[available].max()
        covered |= adjacency[pick]
        available[pick] = False


def test_coverage_never_decreases_and_equals_brute_force():
    points, delta = unit_points(53, seed=1), 0.4
    adjacency = brute_adjacency(points, delta)
    graph = delta_graph(points, delta, 8, max_edges=10**6)
    picks, gains = max_coverage(graph, np.arange(2), 40, make_generator(1))
    sources = [0, 1]
    values = [coverage(graph, sources)]
    for pick, gain in zip(picks, gains):
        sources.append(pick)
        values.append(coverage(graph, sources))
        assert values[-1] == pytest.approx(brute_coverage(adjacency, sources))
        assert values[-1] - values[-2] == pytest.approx(gain / 53)
    assert np.all(np.diff(values) >= 0) and values[-1] == 1.0


def test_random_picks_once_everything_is_covered():
    points = torch.cat([torch.eye(3)[:1].repeat(6, 1), torch.eye(3)[1:2].repeat(5, 1)])
    graph = delta_graph(points, 0.1, 4, max_edges=1000)
    picks, gains = max_coverage(graph, np.arange(0), 7, make_generator(0))
    assert gains.tolist() == [6, 5, 0, 0, 0, 0, 0] and len(set(picks.tolist())) == 7
    others = {tuple(max_coverage(graph, np.arange(0), 7, make_generator(seed))[0][2:]) for seed in range(5)}
    assert len(others) > 1  # the fallback picks are drawn from the generator


def planted_context(context_factory, n_labelled: int, n_candidates: int, seed: int = 0):
    points = unit_points(n_labelled + n_candidates, seed=seed)
    ctx = context_factory(pool_size=len(points), labelled=n_labelled, chunk_size=8)
    ctx._cache["labelled"] = Outputs(torch.full((n_labelled, 3), 1 / 3), points[:n_labelled])
    ctx._cache["candidates"] = Outputs(torch.full((n_candidates, 3), 1 / 3), points[n_labelled:])
    return ctx, points


@pytest.mark.parametrize("n_labelled", [0, 3])
def test_strategy_covers_greedily_with_a_pool_not_a_multiple_of_the_chunk(n_labelled, context_factory):
    ctx, points = planted_context(context_factory, n_labelled, 53 - n_labelled)
    selection = checked_select(create_strategy("probcover", delta=0.5), ctx, 10)
    adjacency = brute_adjacency(points, 0.5)
    positions = selection.indices  # pool index == position in labelled + candidates here
    covered = adjacency[:n_labelled].any(axis=0)
    first_gain = (adjacency[n_labelled:] & ~covered).sum(axis=1).max()
    assert selection.scores[0] == first_gain == (adjacency[positions[0]] & ~covered).sum()
    values = [brute_coverage(adjacency, [*range(n_labelled), *positions[:t]]) for t in range(11)]
    assert np.all(np.diff(values) >= 0)
    np.testing.assert_allclose(np.diff(values) * 53, selection.scores)


def three_blobs(seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    g = torch.Generator().manual_seed(seed)
    angles = torch.tensor([0.0, 1.0, 2.0])  # radians on a great circle: neighbouring blobs ~0.96 apart
    means = torch.stack([angles.cos(), angles.sin(), torch.zeros(3)], dim=1)
    points = torch.cat([m + 0.12 * torch.randn(40, 3, generator=g) for m in means])
    return torch.nn.functional.normalize(points, dim=1), np.repeat(np.arange(3), 40)


def brute_purity(points: torch.Tensor, clusters: np.ndarray, delta: float) -> float:
    inside = brute_adjacency(points, delta)
    return float(np.mean([np.all(clusters[row] == clusters[i]) for i, row in enumerate(inside)]))


def test_purity_rule_picks_the_largest_pure_enough_delta():
    points, _ = three_blobs()
    clusters = kmeans_labels(points, 3, make_generator(0))
    delta = purity_delta(points, clusters, 0.95, 8)
    step = int(np.flatnonzero(np.isclose(DELTAS, delta))[0])
    assert 0 < step < len(DELTAS) - 1  # an interior delta, so maximality is tested
    assert brute_purity(points, clusters, delta) >= 0.95
    assert brute_purity(points, clusters, DELTAS[step + 1]) < 0.95
    np.testing.assert_allclose(
        ball_purity(points, clusters, DELTAS, 8), [brute_purity(points, clusters, d) for d in DELTAS]
    )


def test_strategy_without_delta_uses_the_purity_rule(context_factory):
    points, _ = three_blobs(seed=2)
    ctx = context_factory(pool_size=len(points), labelled=0, chunk_size=8)  # the model has 3 classes
    ctx._cache["labelled"] = Outputs(torch.empty(0, 3), torch.empty(0, 3))
    ctx._cache["candidates"] = Outputs(torch.full((len(points), 3), 1 / 3), points)
    selection = checked_select(create_strategy("probcover"), ctx, 3)
    delta = purity_delta(points, kmeans_labels(points, 3, make_generator(0)), 0.95, 8)
    graph = delta_graph(points, delta, 8, max_edges=10**6)
    want, gains = max_coverage(graph, np.arange(0), 3, _after_kmeans_seed(0))  # the context's generator, past k-means
    assert selection.indices.tolist() == want.tolist()
    assert selection.scores.tolist() == gains.tolist()


def _after_kmeans_seed(seed: int) -> torch.Generator:
    generator = make_generator(seed)
    torch.randint(2**31 - 1, (1,), generator=generator)
    return generator


def test_too_many_edges_are_refused_naming_the_option(context_factory):
    ctx, _ = planted_context(context_factory, 2, 30)
    with pytest.raises(DalkitError, match=r"max_edges=40 .*smaller --strategy-option delta.*--candidates"):
        checked_select(create_strategy("probcover", delta=1.5, max_edges=40), ctx, 3)


@pytest.mark.parametrize("options", [{"delta": 0.0}, {"alpha": 0.0}, {"alpha": 1.5}, {"max_edges": 0}])
def test_bad_options_are_refused(options):
    with pytest.raises(DalkitError, match=next(iter(options))):
        create_strategy("probcover", **options)


def frozen_context(context_factory, points: torch.Tensor, labelled: np.ndarray, seed: int):
    """A context whose embeddings are `points` by pool index (features that do not change between cycles)."""
    ctx = context_factory(pool_size=len(points), labelled=0, seed=seed, chunk_size=8)
    ctx.pool.label(labelled, labelled % 3, cycle=0)
    ctx.candidates = ctx.pool.unlabelled_indices()
    ctx._cache["labelled"] = Outputs(torch.full((len(labelled), 3), 1 / 3), points[ctx.labelled])
    ctx._cache["candidates"] = Outputs(torch.full((len(ctx.candidates), 3), 1 / 3), points[ctx.candidates])
    return ctx


def test_the_graph_is_built_once_while_the_representation_stays_the_same(context_factory, monkeypatch):
    from dalkit.strategies import probcover

    built = []
    real = probcover.delta_graph
    monkeypatch.setattr(probcover, "delta_graph", lambda *a, **k: built.append(1) or real(*a, **k))
    points, _ = three_blobs(seed=4)
    strategy = create_strategy("probcover")
    first = checked_select(strategy, frozen_context(context_factory, points, np.array([5, 50]), seed=1), 4)
    labelled = np.array([5, 50, *first.indices])
    second = checked_select(strategy, frozen_context(context_factory, points, labelled, seed=2), 4)
    assert len(built) == 1 and second.info["graph_reused"] and not first.info["graph_reused"]
    want = checked_select(  # a strategy that builds the graph this cycle, with the delta the first cycle chose
        create_strategy("probcover", delta=second.info["delta"]),
        frozen_context(context_factory, points, labelled, seed=2),
        4,
    )
    assert second.indices.tolist() == want.indices.tolist()
    assert second.scores.tolist() == want.scores.tolist()
    moved = checked_select(strategy, frozen_context(context_factory, points.flip(0), labelled, seed=2), 4)
    assert len(built) == 3 and not moved.info["graph_reused"]  # new embeddings: delta and graph afresh
