"""BALD with MC dropout: dropout on, batch norm frozen, trunk computed once, deterministic."""

from __future__ import annotations

import pytest
import torch

from dalkit.errors import DalkitError
from dalkit.strategies import create_strategy
from dalkit.strategies.bald import BALD


def test_batch_norm_stays_in_eval_mode_and_statistics_do_not_move(context_factory):
    ctx = context_factory(pool_size=30, labelled=2)
    bn = [m for m in ctx.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    before = [m.running_mean.clone() for m in bn]
    modes = []
    hook = bn[0].register_forward_hook(lambda m, i, o: modes.append(m.training))
    BALD(samples=4).scores(ctx)
    hook.remove()
    assert modes and not any(modes)
    for m, mean in zip(bn, before):
        torch.testing.assert_close(m.running_mean, mean)


def test_trunk_runs_once_per_batch_and_head_once_per_sample(context_factory, monkeypatch):
    ctx = context_factory(pool_size=40, labelled=0)  # 40 candidates, batch 16 -> 3 batches
    calls = {"trunk": 0, "head": 0}
    trunk, head = ctx.model.trunk, ctx.model.head

    def counting(name, fn):
        def wrapped(x):
            calls[name] += 1
            return fn(x)

        return wrapped

    monkeypatch.setattr(ctx.model, "trunk", counting("trunk", trunk))
    monkeypatch.setattr(ctx.model, "head", counting("head", head))
    BALD(samples=5).scores(ctx)
    assert calls == {"trunk": 3, "head": 15}


def test_dropout_makes_samples_differ_and_scores_positive(context_factory):
    scores = BALD(samples=10).scores(context_factory(pool_size=20, labelled=0))
    assert (scores > 0).all()


def test_model_without_dropout_is_refused_clearly(context_factory):
    ctx = context_factory()
    for module in ctx.model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    with pytest.raises(DalkitError, match="dropout"):
        create_strategy("bald").select(ctx, 3)


def test_masks_are_consistent_across_batches(context_factory):
    """One MC sample is one weight draw: the same image scores the same in any batch."""
    ctx = context_factory(pool_size=40, labelled=0)  # batches of 16: positions 1 and 33 differ in batch
    ctx.images[33] = ctx.images[1]
    scores = BALD(samples=6).scores(ctx)
    assert scores[33] == scores[1]
    assert scores[2] != scores[1]
