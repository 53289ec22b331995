"""Gal et al. (2017)'s MC-dropout acquisition set: variation ratios, mean STD, Max Entropy (entropy with samples)
and BALD, on hand-made MC tensors and through the shared MC-dropout machinery (`mc_dropout`)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dalkit.errors import DalkitError
from dalkit.seeding import make_generator
from dalkit.strategies import create_strategy
from dalkit.strategies.base import entropy
from dalkit.strategies.mc_dropout import (
    ConsistentDropout,
    bald_scores,
    mc_probabilities,
    mean_probabilities,
    mean_std,
    predictive_entropy,
    variation_ratios,
)

# (b=3 candidates, S=4 weight samples, C=3 classes)
MC = torch.tensor(
    [
        # argmax 0, 0, 1, 2: the mode (class 0) twice in 4 -> variation ratio 1 - 2/4
        [[0.6, 0.3, 0.1], [0.5, 0.4, 0.1], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8]],
        # argmax always 1, probabilities moving -> variation ratio 0, mean STD > 0
        [[0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0.3, 0.6, 0.1], [0.25, 0.5, 0.25]],
        # identical samples -> every score that measures disagreement is 0
        [[0.5, 0.3, 0.2], [0.5, 0.3, 0.2], [0.5, 0.3, 0.2], [0.5, 0.3, 0.2]],
    ]
)
MC_STRATEGIES = ["variation-ratios", "mean-std", "bald", "entropy"]


def passes(mc: torch.Tensor):
    """The per-sample (b, C) matrices, in sample order, as `mc_reduce` hands them to a reduction."""
    return iter(mc.unbind(dim=1))


def test_variation_ratios_by_hand():
    torch.testing.assert_close(variation_ratios(passes(MC)), torch.tensor([0.5, 0.0, 0.0]))
    # two samples that disagree: each class once -> 1 - 1/2; the mean prediction would say 1 - 0.5 too, so also
    # check a case where the mode frequency and 1 - max(mean p) differ (first row: 0.5 vs 1 - 0.375)
    two = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    torch.testing.assert_close(variation_ratios(passes(two)), torch.tensor([0.5]))
    assert not math.isclose(0.5, 1 - MC[0].mean(dim=0).max().item())


def test_mean_std_by_hand():
    # sigma_c = sqrt(E[p^2] - E[p]^2) over the 4 samples (divided by S), then the mean over the 3 classes
    p = MC.double().numpy()
    sigma = np.sqrt((p**2).mean(axis=1) - p.mean(axis=1) ** 2)
    torch.testing.assert_close(mean_std(passes(MC)), torch.from_numpy(sigma.mean(axis=1)).float())
    # one sample says class 0 for sure, the other class 1: sigma = (0.5, 0.5, 0) -> 1/3
    two = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    torch.testing.assert_close(mean_std(passes(two)), torch.tensor([1 / 3]))
    assert mean_std(passes(MC))[2] == 0


def test_mean_std_is_exact_for_confident_predictions():
    """Tiny deviations around p ~ 1 survive (E[p^2] - E[p]^2 in float32 would cancel them to noise)."""
    eps = torch.tensor([1e-4, -1e-4, 2e-4, -2e-4])
    mc = torch.stack([1 - 0.5 - eps, 0.5 + eps], dim=1)[None]  # (1, 4, 2)
    expected = eps.double().std(unbiased=False).item()
    torch.testing.assert_close(mean_std(passes(mc)), torch.tensor([expected], dtype=torch.float32), rtol=1e-3, atol=0)


def test_max_entropy_is_the_entropy_of_the_mc_mean():
    torch.testing.assert_close(predictive_entropy(passes(MC)), entropy(MC.mean(dim=1)))
    torch.testing.assert_close(mean_probabilities(passes(MC)), MC.mean(dim=1))
    two = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    torch.testing.assert_close(predictive_entropy(passes(two)), torch.tensor([math.log(2)]))


def test_bald_is_entropy_of_mean_minus_mean_entropy():
    expected = entropy(MC.mean(dim=1)) - entropy(MC).mean(dim=1)
    torch.testing.assert_close(bald_scores(passes(MC)), expected.clamp_min(0))
    assert bald_scores(passes(MC))[2].abs() < 1e-6


@pytest.mark.parametrize(
    ("name", "reduction"),
    [("variation-ratios", variation_ratios), ("mean-std", mean_std), ("bald", bald_scores), ("entropy", None)],
)
def test_streamed_scores_equal_the_reduction_of_mc_probabilities(name, reduction, context_factory):
    """The running-sum scores are the reduction of the (n, S, C) tensor batchbald reads: same seed, same masks."""
    options = {"samples": 6}
    scores = create_strategy(name, **options).scores(context_factory(pool_size=40, labelled=3, seed=5))
    mc = mc_probabilities(context_factory(pool_size=40, labelled=3, seed=5), 6)
    expected = entropy(mc.mean(dim=1)) if reduction is None else reduction(passes(mc))
    torch.testing.assert_close(scores, expected)


def test_mc_probabilities_shape_rows_and_consistent_masks(context_factory):
    ctx = context_factory(pool_size=40, labelled=0)  # batches of 16: positions 1 and 33 are in different batches
    ctx.images[33] = ctx.images[1]
    mc = mc_probabilities(ctx, 5)
    assert mc.shape == (40, 5, ctx.num_classes) and mc.dtype == torch.float32
    torch.testing.assert_close(mc.sum(dim=2), torch.ones(40, 5))
    torch.testing.assert_close(mc[33], mc[1])  # one weight sample is one mask for every candidate
    assert not torch.allclose(mc[:, 0], mc[:, 1])  # dropout on: the samples differ
    log = mc_probabilities(context_factory(pool_size=40, labelled=0), 5, log=True)
    plain = mc_probabilities(context_factory(pool_size=40, labelled=0), 5)
    torch.testing.assert_close(log.exp(), plain)


@pytest.mark.parametrize("name", MC_STRATEGIES)
def test_trunk_once_per_batch_head_once_per_sample(name, context_factory, monkeypatch):
    ctx = context_factory(pool_size=40, labelled=0)  # 40 candidates, batch 16 -> 3 batches
    calls = {"trunk": 0, "head": 0}
    trunk, head = ctx.model.trunk, ctx.model.head

    def counting(key, fn):
        def wrapped(x):
            calls[key] += 1
            return fn(x)

        return wrapped

    monkeypatch.setattr(ctx.model, "trunk", counting("trunk", trunk))
    monkeypatch.setattr(ctx.model, "head", counting("head", head))
    create_strategy(name, samples=5).scores(ctx)
    assert calls == {"trunk": 3, "head": 15}


@pytest.mark.parametrize("name", MC_STRATEGIES)
def test_batch_norm_frozen_and_mode_restored(name, context_factory):
    ctx = context_factory(pool_size=30, labelled=2)
    ctx.model.train()
    bn = [m for m in ctx.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    before = [m.running_mean.clone() for m in bn]
    modes = []
    hook = bn[0].register_forward_hook(lambda m, i, o: modes.append(m.training))
    create_strategy(name, samples=4).scores(ctx)
    hook.remove()
    assert modes and not any(modes)
    assert ctx.model.training
    for m, mean in zip(bn, before):
        torch.testing.assert_close(m.running_mean, mean)


def test_scores_are_in_range_and_disagreement_is_seen(context_factory):
    ctx = lambda: context_factory(pool_size=30, labelled=0)  # noqa: E731
    vr = create_strategy("variation-ratios", samples=10).scores(ctx())
    assert ((vr >= 0) & (vr <= 1 - 1 / 3 + 1e-6)).all()  # at most 1 - 1/C with C = 3 classes
    assert torch.allclose(vr * 10, (vr * 10).round())  # multiples of 1/S
    std = create_strategy("mean-std", samples=10).scores(ctx())
    assert (std > 0).all() and (std <= 0.5).all()
    mc_entropy = create_strategy("entropy", samples=10).scores(ctx())
    plain = create_strategy("entropy").scores(ctx())
    assert (mc_entropy <= math.log(3) + 1e-6).all() and not torch.allclose(mc_entropy, plain)


@pytest.mark.parametrize(("name", "options"), [("variation-ratios", {}), ("mean-std", {}), ("entropy", {"samples": 5})])
def test_model_without_dropout_is_refused_clearly(name, options, context_factory):
    ctx = context_factory()
    for module in ctx.model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    with pytest.raises(DalkitError, match="needs a model with dropout"):
        create_strategy(name, **options).select(ctx, 3)
    assert len(create_strategy("entropy").select(ctx, 3).indices) == 3  # the deterministic entropy needs none


@pytest.mark.parametrize("name", MC_STRATEGIES)
def test_one_sample_is_refused(name):
    with pytest.raises(DalkitError, match=f"the {name} option samples must be at least 2"):
        create_strategy(name, samples=1)


def test_channel_dropout_masks_whole_channels():
    """A Dropout2d layer is sampled as it trains: one keep/drop per channel, shared by its pixels."""
    model = torch.nn.Sequential(torch.nn.Dropout2d(0.5))
    with ConsistentDropout(model, make_generator(0)) as dropout:
        out = model.eval()(torch.ones(2, 16, 3, 3))
    mask = dropout.masks[(0, 0)]
    assert mask.shape == (16, 1, 1)
    assert set(out[0].flatten().tolist()) <= {0.0, 2.0} and torch.equal(out[0], out[1])
    assert 0 < (mask == 0).sum() < 16
