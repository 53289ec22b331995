"""Sequential GCN: the paper's adjacency, the labelled-vs-unlabelled loss, UncertainGCN's margin rule and
CoreGCN's k-center greedy on the GCN's own features."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dalkit.errors import DalkitError
from dalkit.seeding import make_generator
from dalkit.strategies import checked_select, create_strategy
from dalkit.strategies.base import Outputs
from dalkit.strategies.coreset import k_center_greedy
from dalkit.strategies.gcn import gcn_features, labelled_vs_unlabelled_loss, margin_picks, normalised_adjacency

R = 1 / math.sqrt(2)


def four_nodes() -> tuple[torch.Tensor, torch.Tensor]:
    """Features whose L2-normalised rows are (1,0), (r,r), (0,1), (1,0), and the paper's A by hand.

    S - I = [[0,r,0,1],[r,0,r,r],[0,r,0,0],[1,r,0,0]]; degrees 1+r, 3r, r, 1+r; A = D^-1 (S - I) + I.
    """
    features = torch.tensor([[1.0, 0.0], [2.0, 2.0], [0.0, 0.5], [3.0, 0.0]])
    a = 1 / (1 + R)
    want = torch.tensor(
        [
            [1.0, R * a, 0.0, a],
            [1 / 3, 1.0, 1 / 3, 1 / 3],
            [0.0, 1.0, 1.0, 0.0],
            [a, R * a, 0.0, 1.0],
        ]
    )
    return features, want


def test_adjacency_by_hand_on_four_nodes():
    features, want = four_nodes()
    torch.testing.assert_close(normalised_adjacency(features), want)


def test_column_option_is_the_reference_codes_formula():
    """aff_to_adj: adj = X X^T - I; adj = adj @ diag(1 / column sums); adj + I (the transpose of the paper's)."""
    features, want = four_nodes()
    x = torch.nn.functional.normalize(features).double().numpy()
    adj = x @ x.T - np.eye(4)
    reference = adj @ np.diag(1 / adj.sum(axis=0)) + np.eye(4)
    got = normalised_adjacency(features, columns=True)
    np.testing.assert_allclose(got.numpy(), reference, rtol=1e-6)
    torch.testing.assert_close(got, want.T)


def test_adjacency_has_self_loops_row_normalised_neighbours_and_symmetric_similarities():
    features = torch.rand(9, 5, generator=torch.Generator().manual_seed(0))
    adjacency = normalised_adjacency(features)
    x = torch.nn.functional.normalize(features)
    similarities = x @ x.T - torch.eye(9)  # S - I, symmetric
    neighbours = adjacency - torch.eye(9)
    torch.testing.assert_close(adjacency.diagonal(), torch.ones(9))
    torch.testing.assert_close(neighbours.sum(1), torch.ones(9))
    torch.testing.assert_close(similarities.sum(1, keepdim=True) * neighbours, similarities)  # D (A - I) = S - I
    assert not torch.allclose(adjacency, adjacency.T)  # row normalisation breaks the symmetry of S
    torch.testing.assert_close(normalised_adjacency(features * torch.arange(1.0, 10.0)[:, None]), adjacency)


def test_loss_is_the_references_weighted_binary_cross_entropy():
    logits = torch.randn(10, generator=torch.Generator().manual_seed(0))
    labelled = torch.tensor([True] * 3 + [False] * 7)
    s = logits.sigmoid()
    want = -s[:3].log().mean() - 1.2 * (1 - s[3:]).log().mean()
    torch.testing.assert_close(labelled_vs_unlabelled_loss(logits, labelled, 1.2), want)


def test_margin_rule_picks_the_confidences_closest_to_s_margin():
    confidence = torch.tensor([0.9, 0.12, 0.5, 0.1, 0.0, 0.3])
    picks = margin_picks(confidence, 0.1, 4, make_generator(0))
    assert picks.tolist() == [3, 1, 4, 5]  # |s - 0.1| = 0, 0.02, 0.1, 0.2
    assert margin_picks(confidence, 0.5, 1, make_generator(0)).tolist() == [2]


def test_margin_rule_breaks_ties_with_the_generator():
    confidence = torch.tensor([0.25, 0.75, 0.0, 1.0, 0.125])  # 0.25 and 0.75 are equally close to 0.5
    firsts = {margin_picks(confidence, 0.5, 2, make_generator(seed)).tolist()[0] for seed in range(12)}
    assert firsts == {0, 1}


def planted(context_factory, seed: int = 0):
    """Labelled embeddings in cluster A; candidates: 10 more in A, then 10 in an orthogonal cluster B."""
    g = torch.Generator().manual_seed(seed)
    a, b = torch.tensor([1.0, 0.0, 0.0, 0.0]), torch.tensor([0.0, 0.0, 1.0, 0.0])
    labelled = a + 0.05 * torch.rand(6, 4, generator=g)
    candidates = torch.cat([a + 0.05 * torch.rand(10, 4, generator=g), b + 0.05 * torch.rand(10, 4, generator=g)])
    ctx = context_factory(pool_size=26, labelled=6, seed=seed)
    ctx._cache["labelled"] = Outputs(torch.full((6, 3), 1 / 3), labelled)
    ctx._cache["candidates"] = Outputs(torch.full((20, 3), 1 / 3), candidates)
    return ctx


def test_gcn_tells_labelled_like_nodes_from_the_others(context_factory):
    logits, hidden = create_strategy("uncertaingcn").node_outputs(planted(context_factory))
    assert hidden.shape == (26, 128)
    confidence = logits.sigmoid()
    assert confidence[6:16].min() > confidence[16:].max()
    assert confidence[:6].mean() > 0.5 > confidence[16:].mean()


@pytest.mark.parametrize("options", [{}, {"normalise": "columns", "s_margin": 0.3}])
def test_uncertaingcn_picks_by_the_margin_rule_on_its_own_outputs(options, context_factory):
    strategy = create_strategy("uncertaingcn", **options)
    selection = checked_select(strategy, planted(context_factory), 5)
    ctx = planted(context_factory)
    logits, _ = strategy.node_outputs(ctx)
    confidence = logits[6:].sigmoid()
    picks = margin_picks(confidence, options.get("s_margin", 0.1), 5, ctx.generator)
    np.testing.assert_array_equal(selection.indices, ctx.candidates[picks.numpy()])
    np.testing.assert_allclose(selection.scores, confidence[picks].numpy())


def test_coregcn_is_k_center_greedy_on_its_gcn_features(context_factory):
    strategy = create_strategy("coregcn")
    selection = checked_select(strategy, planted(context_factory), 4)
    ctx = planted(context_factory)
    features = gcn_features(*strategy.node_outputs(ctx))
    assert features.shape == (26, 129)  # hidden features with the output logit appended, as the reference
    picks, radii = k_center_greedy(features[6:], features[:6], 4, ctx.generator, ctx.chunk_size)
    np.testing.assert_array_equal(selection.indices, ctx.candidates[picks.numpy()])
    np.testing.assert_allclose(selection.scores, radii.numpy())
    assert selection.indices[0] in ctx.candidates[10:]  # the farthest from the labelled nodes: cluster B


@pytest.mark.parametrize("name", ["uncertaingcn", "coregcn"])
def test_cold_start_is_k_center_greedy_on_the_raw_embeddings(name, context_factory):
    ctx = context_factory(pool_size=21, labelled=0, seed=2)
    selection = checked_select(create_strategy(name), ctx, 4)
    ctx = context_factory(pool_size=21, labelled=0, seed=2)
    points = ctx.outputs("candidates").embeddings
    picks, _ = k_center_greedy(points, points[:0], 4, ctx.generator, ctx.chunk_size)
    np.testing.assert_array_equal(selection.indices, ctx.candidates[picks.numpy()])


@pytest.mark.parametrize("name", ["uncertaingcn", "coregcn"])
def test_global_rng_is_left_alone(name, context_factory):
    state = torch.get_rng_state()
    checked_select(create_strategy(name, epochs=5), context_factory(), 3)
    assert torch.equal(state, torch.get_rng_state())


def test_a_graph_over_max_nodes_is_refused_naming_the_option(context_factory):
    ctx = context_factory(pool_size=30, labelled=5)
    with pytest.raises(DalkitError, match="max_nodes=29.*--candidates"):
        checked_select(create_strategy("coregcn", max_nodes=29), ctx, 3)
    checked_select(create_strategy("coregcn", max_nodes=30, epochs=2), ctx, 3)


@pytest.mark.parametrize("options", [{"normalise": "symmetric"}, {"dropout": 1.0}, {"epochs": 0}])
def test_bad_options_are_refused(options):
    with pytest.raises(DalkitError, match="uncertaingcn option"):
        create_strategy("uncertaingcn", **options)
