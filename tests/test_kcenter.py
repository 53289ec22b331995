"""Pruned k-center greedy: the same picks as the exact traversal it replaced, reading few vectors on clusters."""

from __future__ import annotations

import pytest
import torch

from dalkit.seeding import make_generator
from dalkit.strategies.coreset import k_center_greedy
from dalkit.strategies.kcenter import farthest_first


def reference_k_center(points: torch.Tensor, centers: torch.Tensor, budget: int, generator) -> list[int]:
    """The exact float32 version that was replaced: every distance recomputed each pick, ties by one permutation."""
    order = torch.randperm(len(points), generator=generator)
    sq = torch.cdist(points, centers).square().min(1).values if len(centers) else torch.full((len(points),), torch.inf)
    picked = torch.zeros(len(points), dtype=torch.bool)
    picks = []
    for _ in range(budget):
        pick = int(order[sq.masked_fill(picked, -1.0)[order].argmax()])
        picks.append(pick)
        picked[pick] = True
        sq = torch.minimum(sq, (points - points[pick]).square().sum(1))
    return picks


def clustered(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    means = 20 * torch.randn(40, 16, generator=g)
    return means[torch.randint(40, (n,), generator=g)] + torch.randn(n, 16, generator=g)


@pytest.mark.parametrize("labelled", [0, 5])
@pytest.mark.parametrize("data", ["random", "clustered"])
def test_same_picks_as_the_exact_float32_traversal(data, labelled):
    points = torch.randn(400, 8, generator=torch.Generator().manual_seed(3)) if data == "random" else clustered(400)
    centers = points[:labelled] + 0.5
    want = reference_k_center(points, centers, 60, make_generator(7))
    got, _ = k_center_greedy(points, centers, 60, make_generator(7), 32, torch.float32)
    assert got.tolist() == want


def test_float16_storage_gives_the_exact_picks_of_the_stored_values():
    points = clustered(300, seed=1).half().float()  # what float16 storage holds exactly
    want = reference_k_center(points, points[:0], 40, make_generator(2))
    got, _ = k_center_greedy(points, points[:0], 40, make_generator(2), 50, torch.float16)
    assert got.tolist() == want


def test_float16_rows_converted_in_small_pieces_give_the_same_picks(monkeypatch):
    from dalkit.strategies import kcenter

    points = clustered(300, seed=1).half().float()
    want = reference_k_center(points, points[:0], 40, make_generator(2))
    monkeypatch.setattr(kcenter, "CONVERT_BYTES", 4 * 16 * 7)  # 7-row pieces: many, and a short last one
    got, _ = k_center_greedy(points, points[:0], 40, make_generator(2), 50, torch.float16)
    assert got.tolist() == want


def test_pruning_reads_few_vectors_on_clustered_data():
    points = clustered(4000)
    picks, _, state = farthest_first(points, points[:0], 200, make_generator(0), 512, torch.float16)
    assert state.touched[0] == len(points)  # the first centre settles nothing
    late = state.touched[100:]
    assert max(late) < len(points) / 4
    assert picks.unique().numel() == 200


@pytest.mark.parametrize("scale", [1.0, 300.0])  # 300: float16 products of these rows would overflow unscaled
def test_float16_screen_gives_the_same_picks_and_computes_few_rows_exactly(monkeypatch, scale):
    from dalkit.strategies import kcenter

    points = (scale * clustered(3000, seed=4)).half().float()
    assert torch.isfinite(points).all()
    runs = {}
    for screen_rows in (10**9, 1):  # screen off, then on for every chunk
        monkeypatch.setattr(kcenter, "SCREEN_ROWS", screen_rows)
        runs[screen_rows] = farthest_first(points, points[:0], 120, make_generator(5), 1024, torch.float16)
    (off, off_values, off_state), (on, on_values, on_state) = runs[10**9], runs[1]
    assert on.tolist() == off.tolist()
    # float32 sums in another order: within a few units in the last place of the squared norms
    torch.testing.assert_close(on_values, off_values, rtol=0, atol=1e-6 * float(points.square().sum(1).max()))
    assert off_state.exact == 0
    assert 0 < on_state.exact < sum(on_state.touched) / 4  # the screen ruled out most rows it read
    assert torch.isfinite(torch.cat(on_state.min_sq)).all()
