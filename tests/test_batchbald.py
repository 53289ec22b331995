"""BatchBALD: the greedy batch's joint mutual information equals brute-force enumeration, the first pick is
BALD's, a duplicate adds nothing when labels are determined by the weights, the sampled estimator converges to
the exact one, lazy greedy picks what exhaustive greedy picks, and chunking changes nothing."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from dalkit.errors import DalkitError
from dalkit.strategies import batchbald as bb
from dalkit.strategies import checked_select, create_strategy
from dalkit.strategies.bald import BALD


def random_probs(n: int, samples: int, classes: int, seed: int = 0, sharpness: float = 2.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(sharpness * torch.randn(n, samples, classes, generator=g, dtype=torch.float64), dim=-1)


def brute_force_mi(probs: torch.Tensor, batch: list[int]) -> float:
    """I(y_batch; w) = H(y_batch) - sum_i E_w H(y_i | w), the joint by enumerating every label configuration."""
    _, samples, classes = probs.shape
    joint_entropy = 0.0
    for labels in itertools.product(range(classes), repeat=len(batch)):
        per_sample = torch.ones(samples, dtype=torch.float64)
        for i, y in zip(batch, labels):
            per_sample = per_sample * probs[i, :, y]
        p = float(per_sample.mean())
        joint_entropy -= p * math.log(p) if p > 0 else 0.0
    conditional = sum(float(-(probs[i] * probs[i].log()).sum(-1).mean()) for i in batch)
    return joint_entropy - conditional


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_greedy_batch_scores_equal_brute_force_enumeration():
    probs = random_probs(4, 5, 3)
    batch = bb.greedy_batchbald(probs, 4, generator(), lazy=False)
    assert batch.exact == [True] * 4 and batch.configurations == [1, 3, 9, 27]
    for k in range(1, 5):
        assert batch.scores[k - 1] == pytest.approx(brute_force_mi(probs, batch.picks[:k]), abs=1e-10)


def test_each_pick_maximises_the_brute_force_joint_information_given_the_previous_picks():
    probs = random_probs(7, 5, 3, seed=1)
    batch = bb.greedy_batchbald(probs, 4, generator())
    for k, pick in enumerate(batch.picks):
        rest = [i for i in range(7) if i not in batch.picks[:k]]
        values = {i: brute_force_mi(probs, [*batch.picks[:k], i]) for i in rest}
        assert max(values, key=values.get) == pick


def test_float32_path_agrees_with_float64():
    probs = random_probs(30, 10, 4, seed=2)
    exact64 = bb.greedy_batchbald(probs, 4, generator())
    exact32 = bb.greedy_batchbald(probs.float(), 4, generator())
    assert exact32.picks == exact64.picks
    np.testing.assert_allclose(exact32.scores, exact64.scores, atol=1e-4)


def test_first_pick_is_balds_argmax_under_the_same_mc_samples(context_factory):
    ctx = context_factory(pool_size=40, labelled=3, seed=5)
    bald_scores = BALD(samples=8).scores(context_factory(pool_size=40, labelled=3, seed=5))
    selection = checked_select(create_strategy("batchbald", samples=8), ctx, 3)
    assert selection.indices[0] == ctx.candidates[int(bald_scores.argmax())]
    assert selection.scores[0] == pytest.approx(float(bald_scores.max()), abs=1e-5)


def test_first_step_gains_are_bald_scores():
    probs = random_probs(50, 12, 5, seed=3)
    mean = probs.mean(1)
    bald = -(mean * mean.log()).sum(-1) + (probs * probs.log()).sum(-1).mean(-1)
    configs = bb.configurations(probs[:0], 40_000, generator(), torch.float64)
    gains = bb.conditional_entropy(configs, probs) - bb.expected_entropy(probs)
    torch.testing.assert_close(gains, bald)


def one_hot_mc_probs(distinct: int, samples: int, classes: int, seed: int = 0) -> torch.Tensor:
    """Every MC sample predicts one class with certainty (labels determined by the weights)."""
    g = generator(seed)
    labels = torch.randint(classes, (distinct, samples), generator=g)
    return torch.nn.functional.one_hot(labels, classes).double()


def test_an_exact_duplicate_adds_zero_information_when_labels_are_determined_by_the_weights():
    probs = one_hot_mc_probs(6, 10, 4)
    for k in range(1, 4):
        configs = bb.configurations(probs[:k], 40_000, generator(), torch.float64)
        gains = bb.conditional_entropy(configs, probs[:k]) - bb.expected_entropy(probs[:k])
        torch.testing.assert_close(gains, torch.zeros(k, dtype=torch.float64), atol=1e-12, rtol=0)


def test_a_duplicate_still_informs_when_labels_are_noisy_given_the_weights():
    """With soft p(y | w) a second label of the same point is a second noisy observation: its gain is
    I(y'; w | y) = a({x, x}) - a({x}), positive but below its BALD score."""
    probs = random_probs(1, 6, 3, seed=4).repeat(2, 1, 1)
    batch = bb.greedy_batchbald(probs, 2, generator())
    duplicate_gain = batch.scores[1] - batch.scores[0]
    assert duplicate_gain == pytest.approx(brute_force_mi(probs, [0, 1]) - brute_force_mi(probs, [0]), abs=1e-10)
    assert 0 < duplicate_gain < batch.scores[0]


@pytest.mark.parametrize("lazy", [True, False])
def test_triplicated_pool_never_gives_two_copies_while_top_k_bald_does(lazy):
    distinct = one_hot_mc_probs(20, 16, 4, seed=1)
    probs = distinct.repeat(3, 1, 1)  # point i has copies i, i + 20, i + 40
    batch = bb.greedy_batchbald(probs, 6, generator(), lazy=lazy)
    assert len({pick % 20 for pick in batch.picks}) == 6
    mean = probs.mean(1)
    bald = -(mean * mean.clamp_min(1e-300).log()).sum(-1)  # one-hot samples: E_w H(y | w) = 0
    top = torch.argsort(bald, descending=True, stable=True)[:6]
    assert len({int(i) % 20 for i in top}) < 6


def test_sampled_estimator_converges_to_the_exact_joint_entropy():
    probs = random_probs(35, 20, 4, seed=5)
    batch, candidates = probs[:5], probs[5:]
    exact = bb.joint_entropy(bb.exact_configurations(batch, torch.float64), candidates)
    errors = []
    for num in (100, 1_000, 10_000, 100_000):
        err = [
            (bb.joint_entropy(bb.sampled_configurations(batch, num, generator(s), torch.float64), candidates) - exact)
            .abs()
            .mean()
            for s in range(4)
        ]
        errors.append(float(torch.stack(err).mean()))
    assert all(later < earlier for earlier, later in zip(errors, errors[1:])), errors
    assert errors[-1] < 0.01 and errors[-1] < errors[0] / 10, errors


def test_stratified_sampling_is_exact_when_labels_are_determined_by_the_weights():
    """Each MC sample then fixes one configuration; drawing every sample equally often (stratified) gives the
    exact joint entropy, scored on at most S distinct configurations (repeats merged into weights)."""
    probs = one_hot_mc_probs(30, 10, 4, seed=3)
    batch, candidates = probs[:8], probs[8:]
    sampled = bb.sampled_configurations(batch, 50, generator(), torch.float64)
    assert len(sampled) <= 10 and float(sampled.weights.sum()) == pytest.approx(1.0)
    exact = bb.exact_configurations(batch, torch.float64)
    torch.testing.assert_close(bb.joint_entropy(sampled, candidates), bb.joint_entropy(exact, candidates))


def test_switch_from_exact_to_sampled_follows_the_number_of_configurations():
    probs = random_probs(40, 8, 3, seed=6)
    batch = bb.greedy_batchbald(probs, 6, generator(), num_configurations=9)
    assert batch.exact == [True, True, True, False, False, False]
    assert batch.configurations[:3] == [1, 3, 9] and all(1 <= m <= 9 for m in batch.configurations[3:])


def test_lazy_greedy_picks_what_exhaustive_greedy_picks_with_the_exact_estimator():
    probs = random_probs(300, 10, 3, seed=7, sharpness=3.0)
    lazy = bb.greedy_batchbald(probs, 6, generator(), chunk_size=16)
    full = bb.greedy_batchbald(probs, 6, generator(), chunk_size=16, lazy=False)
    assert all(lazy.exact)
    assert lazy.picks == full.picks
    np.testing.assert_allclose(lazy.scores, full.scores, atol=1e-12)
    assert sum(lazy.evaluated) < sum(full.evaluated)
    assert full.evaluated == [300 - k for k in range(6)]


@pytest.mark.parametrize("num_configurations", [40_000, 20])
def test_chunking_changes_nothing_and_bounds_each_chunk(num_configurations, monkeypatch):
    probs = random_probs(45, 6, 3, seed=8).float()
    whole = bb.greedy_batchbald(probs, 5, generator(), num_configurations, lazy=False)
    sizes = []
    original = bb.conditional_entropy

    def recording(configs, chunk):
        sizes.append(len(chunk))
        return original(configs, chunk)

    monkeypatch.setattr(bb, "conditional_entropy", recording)
    chunked = bb.greedy_batchbald(probs, 5, generator(), num_configurations, chunk_size=4, lazy=False)
    assert max(sizes) == 4
    assert chunked.picks == whole.picks
    np.testing.assert_allclose(chunked.scores, whole.scores, atol=1e-5)


def test_default_chunk_keeps_one_block_under_the_float_budget(monkeypatch):
    probs = random_probs(300, 10, 10, seed=9).float()
    monkeypatch.setattr(bb, "CHUNK_FLOATS", 50_000)
    blocks = []
    original = bb.conditional_entropy

    def recording(configs, chunk):
        blocks.append(len(configs) * len(chunk) * chunk.shape[2])
        return original(configs, chunk)

    monkeypatch.setattr(bb, "conditional_entropy", recording)
    bb.greedy_batchbald(probs, 4, generator(), num_configurations=1000, lazy=False)
    assert max(blocks) <= 50_000


def test_sampled_selection_is_deterministic_given_the_generator(context_factory):
    def run(seed):
        ctx = context_factory(pool_size=37, labelled=5, seed=seed)
        return checked_select(create_strategy("batchbald", samples=10, num_configurations=5), ctx, 6)

    first, second = run(3), run(3)
    np.testing.assert_array_equal(first.indices, second.indices)
    np.testing.assert_array_equal(first.scores, second.scores)
    assert first.info["exact_picks"] == 2 and first.info["configurations"][:2] == [1, 3]
    assert all(m <= 5 for m in first.info["configurations"][2:])


def test_info_reports_the_estimator_per_pick(context_factory):
    ctx = context_factory(pool_size=37, labelled=5)
    info = checked_select(create_strategy("batchbald", samples=10), ctx, 4).info
    assert info["exact_picks"] == 4 and info["configurations"] == [1, 3, 9, 27]
    assert info["samples"] == 10 and len(info["evaluated"]) == 4


def test_model_without_dropout_is_refused_clearly(context_factory):
    ctx = context_factory()
    for module in ctx.model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    with pytest.raises(DalkitError, match="dropout"):
        create_strategy("batchbald").select(ctx, 3)


@pytest.mark.parametrize(
    "options", [{"samples": 1}, {"num_configurations": 0}, {"num_configurations": 10**7}, {"chunk_size": 0}]
)
def test_bad_options_are_refused_in_one_sentence(options):
    with pytest.raises(DalkitError, match="the batchbald option"):
        create_strategy("batchbald", **options)


def test_probabilities_that_are_not_finite_are_refused_clearly():
    probs = torch.full((5, 4, 3), float("nan"))
    with pytest.raises(DalkitError, match="not finite"):
        bb.greedy_batchbald(probs, 2, generator())
