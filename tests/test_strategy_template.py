"""The template every registered strategy passes (scikit-activeml style): budget bounds, cold start,
determinism without global state, no repeated picks, pool sizes that are not a multiple of the chunk size."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dalkit.errors import DalkitError
from dalkit.strategies import checked_select, create_strategy, list_strategies

ALL = list_strategies()


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("budget", [1, 7])
def test_picks_budget_distinct_candidates(name, budget, context_factory):
    ctx = context_factory(pool_size=37, labelled=5, chunk_size=8)
    selection = checked_select(create_strategy(name), ctx, budget)
    assert len(selection.indices) == budget
    assert len(set(selection.indices.tolist())) == budget
    assert np.isin(selection.indices, ctx.candidates).all()
    if selection.scores is not None:
        assert len(selection.scores) == budget


@pytest.mark.parametrize("name", ALL)
def test_cold_start_with_nothing_labelled(name, context_factory):
    ctx = context_factory(pool_size=21, labelled=0)
    selection = checked_select(create_strategy(name), ctx, 4)
    assert len(set(selection.indices.tolist())) == 4


def model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: t.detach().clone() for name, t in [*model.named_parameters(), *model.named_buffers()]}


@pytest.mark.parametrize("name", ALL)
def test_select_is_pure_given_its_generator(name, context_factory):
    """The same generator seed gives the same picks; the model (parameters and buffers) and torch's and NumPy's
    global RNGs are left as they were: every draw comes from `ctx.generator`."""
    ctx = context_factory(seed=3)
    model, torch_rng, numpy_rng = model_state(ctx.model), torch.get_rng_state(), np.random.get_state()
    first = checked_select(create_strategy(name), ctx, 6).indices
    assert torch.equal(torch.get_rng_state(), torch_rng), f"{name} drew from torch's global RNG"
    np.testing.assert_equal(np.random.get_state(), numpy_rng, err_msg=f"{name} drew from NumPy's global RNG")
    after = model_state(ctx.model)
    assert after.keys() == model.keys()
    changed = [key for key, value in model.items() if not torch.equal(after[key], value)]
    assert not changed, f"{name} changed the model's {changed}"
    second = checked_select(create_strategy(name), context_factory(seed=3), 6).indices
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("name", ALL)
def test_whole_pool_when_budget_equals_candidates(name, context_factory):
    ctx = context_factory(pool_size=13, labelled=3, chunk_size=4)
    selection = checked_select(create_strategy(name), ctx, len(ctx.candidates))
    assert sorted(selection.indices.tolist()) == sorted(ctx.candidates.tolist())


@pytest.mark.parametrize("name", ALL)
def test_budget_larger_than_candidates_is_refused_clearly(name, context_factory):
    ctx = context_factory(pool_size=10, labelled=4)
    with pytest.raises(DalkitError, match="larger than the 6 candidates"):
        checked_select(create_strategy(name), ctx, 7)


@pytest.mark.parametrize("name", ALL)
def test_candidate_subset_is_respected(name, context_factory):
    ctx = context_factory(pool_size=40, labelled=4)
    ctx.candidates = ctx.candidates[::3]
    selection = checked_select(create_strategy(name), ctx, 5)
    assert np.isin(selection.indices, ctx.candidates).all()
