"""Stochastic batch acquisition (Kirsch et al., TMLR 2023), implemented once in RankingStrategy: power, softmax and
softrank draws without replacement (Gumbel-top-k) with the right distributions, top-k in the beta -> infinity
limit, for every score-based strategy, from the context's generator only."""

from __future__ import annotations

import inspect
import itertools

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from dalkit.errors import DalkitError
from dalkit.models.heads import model_head
from dalkit.seeding import make_generator
from dalkit.strategies import checked_select, create_strategy, list_strategies
from dalkit.strategies.base import Outputs, RankingStrategy, sample_batch, top_k
from dalkit.strategies.registry import STRATEGIES

RANKING = [n for n in list_strategies() if issubclass(STRATEGIES.get(n), RankingStrategy)]
DRAWS = 4000
SCORES = torch.tensor([0.1, 0.2, 0.3, 0.4, 1.0])


def build(name: str, **options):
    """The strategy with few MC samples where it takes `samples` (the tests are about the sampling, not the MC)."""
    if "samples" in inspect.signature(STRATEGIES.get(name)).parameters:
        options.setdefault("samples", 3)
    return create_strategy(name, **options)


def first_picks(scores: torch.Tensor, sampling: str, beta: float, draws: int = DRAWS, k: int = 1) -> list[tuple]:
    """The first k picks of `draws` batches, one generator seed each."""
    return [tuple(sample_batch(scores, k, make_generator(seed), sampling, beta).tolist()) for seed in range(draws)]


def expected_first(scores: torch.Tensor, sampling: str, beta: float) -> np.ndarray:
    s = scores.double().numpy()
    if sampling == "power":
        w = s**beta
    elif sampling == "softmax":
        w = np.exp(beta * s)
    else:
        ranks = np.empty(len(s))
        ranks[np.argsort(-s)] = np.arange(1, len(s) + 1)
        w = ranks**-beta
    return w / w.sum()


@pytest.mark.parametrize(
    ("sampling", "beta", "scores"),
    [
        ("power", 1.0, SCORES),
        ("power", 2.0, SCORES),
        ("softmax", 1.0, torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0])),
        ("softmax", 3.0, SCORES),
        ("softrank", 1.0, torch.tensor([0.3, 0.9, 0.1, 0.5, 0.7])),
        ("softrank", 2.0, torch.tensor([5.0, -1.0, 2.0, 3.0, 0.0])),
    ],
)
def test_first_pick_follows_the_sampling_distribution(sampling, beta, scores):
    """Chi-square over fixed seeds (deterministic): the first pick is drawn with probability weight / sum."""
    counts = np.bincount([p[0] for p in first_picks(scores, sampling, beta)], minlength=len(scores))
    expected = expected_first(scores, sampling, beta) * DRAWS
    assert chisquare(counts, expected).pvalue > 0.01, (counts, expected.round())


def test_second_pick_is_drawn_without_replacement_from_the_rest():
    """The first two picks follow sequential sampling without replacement: P(i, j) = p_i p_j / (1 - p_i)."""
    scores = torch.tensor([0.2, 0.4, 0.6, 0.8])
    p = expected_first(scores, "power", 1.0)
    pairs = list(itertools.permutations(range(4), 2))
    expected = np.array([p[i] * p[j] / (1 - p[i]) for i, j in pairs]) * DRAWS
    seen = first_picks(scores, "power", 1.0, k=2)
    counts = np.array([seen.count(pair) for pair in pairs])
    assert chisquare(counts, expected).pvalue > 0.01, (counts, expected.round())


@pytest.mark.parametrize("sampling", ["power", "softmax", "softrank"])
def test_large_beta_reproduces_top_k(sampling):
    scores = torch.rand(60, generator=make_generator(7)) + 0.01  # distinct, positive
    expected = torch.argsort(scores, descending=True)[:25]
    for seed in range(5):
        picked = sample_batch(scores, 25, make_generator(seed), sampling, beta=1e6)
        torch.testing.assert_close(picked, expected)


def test_beta_one_does_not_reproduce_top_k():
    scores = torch.rand(60, generator=make_generator(7)) + 0.01
    topk = torch.argsort(scores, descending=True)[:25]
    for sampling in ("power", "softmax", "softrank"):
        assert not torch.equal(sample_batch(scores, 25, make_generator(0), sampling), topk)


def test_power_never_draws_a_zero_score_before_a_positive_one():
    scores = torch.tensor([0.0, 0.0, 0.5, 0.2, 0.0, 0.1])
    for seed in range(50):
        picked = sample_batch(scores, 6, make_generator(seed), "power").tolist()
        assert set(picked[:3]) == {2, 3, 5} and sorted(picked) == list(range(6))


def test_power_on_scores_without_floor_shifts_by_the_minimum():
    """Unbounded scores (learning-loss's predicted loss): shifted by the candidates' minimum, so the order of
    negative scores still counts (setting negatives to zero, as the authors' code does, would draw them at random)."""
    scores = torch.tensor([-3.0, -1.0, -2.0, -0.5, -4.0])
    picked = sample_batch(scores, 5, make_generator(0), "power", beta=1e6, floor=None)
    assert picked.tolist() == [3, 1, 2, 0, 4]


def test_margin_power_sampling_weighs_one_minus_the_gap(context_factory):
    """Margin's scores are -(p1 - p2) <= 0; power sampling uses 1 - (p1 - p2), so large beta is top-k margin."""
    probs = torch.tensor([[0.9, 0.05, 0.05], [0.5, 0.45, 0.05], [0.4, 0.1, 0.5], [0.7, 0.2, 0.1], [0.34, 0.33, 0.33]])
    ctx = context_factory(pool_size=5, labelled=0)
    ctx._cache["candidates"] = Outputs(probs, torch.zeros(5, 4))
    picked = create_strategy("margin", sampling="power", beta=1e6).select(ctx, 5).indices.tolist()
    assert picked == [4, 1, 2, 3, 0]


def test_softrank_ignores_the_scale_of_the_scores():
    scores = torch.tensor([0.3, 0.9, 0.1, 0.5, 0.7])
    for seed in range(20):
        a = sample_batch(scores, 5, make_generator(seed), "softrank")
        b = sample_batch(scores * 100 - 7, 5, make_generator(seed), "softrank")
        torch.testing.assert_close(a, b)


def test_topk_is_unchanged():
    scores = torch.tensor([0.3, 0.9, 0.1, 0.9, 0.7])
    for seed in range(10):
        torch.testing.assert_close(
            sample_batch(scores, 3, make_generator(seed)), top_k(scores, 3, make_generator(seed))
        )


def test_every_score_based_strategy_is_a_ranking_strategy_that_takes_sampling():
    expected = {"entropy", "margin", "least-confidence", "bald", "variation-ratios", "mean-std", "learning-loss"}
    assert expected | {"power-bald", "power-entropy", "softmax-bald", "softmax-entropy"} <= set(RANKING)
    for name in RANKING:
        parameters = inspect.signature(STRATEGIES.get(name)).parameters
        assert {"sampling", "beta"} <= set(parameters), f"{name} does not declare sampling/beta"
        strategy = create_strategy(name, sampling="softrank", beta=2)
        assert (strategy.sampling, strategy.beta) == ("softrank", 2.0)


SHORTCUTS = [
    ("power-bald", "power"),
    ("power-entropy", "power"),
    ("softmax-bald", "softmax"),
    ("softmax-entropy", "softmax"),
]


@pytest.mark.parametrize(("name", "sampling"), SHORTCUTS)
def test_named_shortcuts(name, sampling, context_factory):
    selection = checked_select(build(name), context_factory(), 5)
    assert selection.info == {"sampling": sampling, "beta": 1.0}


@pytest.mark.parametrize("name", RANKING)
@pytest.mark.parametrize("sampling", ["power", "softmax", "softrank"])
def test_every_ranking_strategy_samples_distinct_candidates_purely(name, sampling, context_factory):
    """Budget-many distinct candidates (checked_select), the sampling recorded, the same picks for the same seed,
    and torch's global RNG untouched: every draw comes from ctx.generator."""
    ctx = context_factory(pool_size=37, labelled=5, seed=2)
    rng = torch.get_rng_state()
    selection = checked_select(build(name, sampling=sampling, beta=2.0), ctx, 20)
    assert torch.equal(torch.get_rng_state(), rng)
    assert len(set(selection.indices.tolist())) == 20 and np.isin(selection.indices, ctx.candidates).all()
    assert selection.info == {"sampling": sampling, "beta": 2.0}
    whole = checked_select(build(name, sampling=sampling), context_factory(pool_size=13, labelled=3), 10)
    assert sorted(whole.indices.tolist()) == list(range(3, 13))
    again = checked_select(
        build(name, sampling=sampling, beta=2.0), context_factory(pool_size=37, labelled=5, seed=2), 20
    )
    np.testing.assert_array_equal(selection.indices, again.indices)


@pytest.mark.parametrize("name", RANKING)
def test_every_ranking_strategy_tends_to_top_k_as_beta_grows(name, context_factory):
    """With a huge beta the picks' scores are the highest scores, in order: power sampling reads every strategy's
    scores correctly, including margin's (all <= 0) and learning-loss's (any sign). (Softmax and softrank do not
    depend on the strategy: test_large_beta_reproduces_top_k.)"""

    def context():
        ctx = context_factory(pool_size=30, labelled=4, seed=1)
        with torch.no_grad():  # predicted losses of both signs (a trained head's are only meaningful up to a shift)
            model_head(ctx.model, "loss-prediction").out.bias -= 0.04
        return ctx

    scores = build(name).scores(context())
    if name == "learning-loss":
        assert (scores < 0).any() and (scores > 0).any()
    picked = checked_select(build(name, sampling="power", beta=1e9), context(), 12).scores
    np.testing.assert_array_equal(picked, np.sort(scores.numpy())[::-1][:12])


def test_top_k_selection_records_its_sampling(context_factory):
    assert checked_select(create_strategy("margin"), context_factory(), 3).info == {"sampling": "topk"}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"sampling": "gibbs"}, "the entropy option sampling must be one of topk, power, softmax, softrank"),
        ({"beta": 0}, "the entropy option beta must be a positive number"),
        ({"beta": float("inf")}, "the entropy option beta must be a positive number"),
        ({"beta": "hot"}, "option beta must be a number"),
        ({"temperature": 2}, "does not take the option temperature"),
    ],
)
def test_bad_sampling_options_end_in_one_sentence(options, message):
    with pytest.raises(DalkitError, match=message):
        create_strategy("entropy", **options)
