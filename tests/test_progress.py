"""`--no-progress` reaches every long loop: the classifier's, VAAL's, the GCN's, SimCLR's and the CVAE's training, a
query's passes over the pool and BatchBALD's picks."""

from __future__ import annotations

import sys

import pytest

import dalkit.features.simclr as ssl
from dalkit.loop import ExperimentConfig, run_experiment

TINY_SSL = {"features": "ssl", "ssl_backbone": "small-cnn", "ssl_width": 4, "ssl_epochs": 1, "ssl_cache_dir": "none"}
RUNS = {
    "vaal + hybrid-mixup": (
        dict(
            strategy="vaal",
            strategy_options={"epochs": 1, "width": 4, "discriminator_width": 8},
            objectives=("hybrid-mixup",),
            objective_options={"epochs": 1, "min_steps": 1, "width": 4, "latent_dim": 2, "embed_dim": 2},
        ),
        ("train", "VAAL", "CVAE"),
    ),
    "uncertaingcn": (dict(strategy="uncertaingcn", strategy_options={"epochs": 2}), ("train", "uncertaingcn")),
    "typiclust on SimCLR": (dict(strategy="typiclust", strategy_options=TINY_SSL), ("train", "SimCLR")),
    # a query's pass over the pool (MC dropout: minutes at 60,000 images) and BatchBALD's greedy picks
    "batchbald": (
        dict(strategy="batchbald", strategy_options={"samples": 4}),
        ("train", "4 MC dropout passes", "BatchBALD"),
    ),
    "learning-loss": (dict(strategy="learning-loss", objectives=("ce", "learning-loss")), ("train", "loss prediction")),
}


@pytest.mark.parametrize("progress", [True, False])
@pytest.mark.parametrize("run", RUNS)
def test_bars_show_only_with_progress(run, progress, tmp_path, capsys, monkeypatch):
    """On a terminal each training loop shows its bar; with progress off none does."""
    fields, bars = RUNS[run]
    ssl._MEMORY.clear()  # SimCLR trains here, not in an earlier test
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # tqdm hides bars from a stderr that is no terminal
    shape = dict(epochs=1, initial=10, budget=5, cycles=2, candidates=40, device="cpu", out_dir=str(tmp_path))
    run_experiment(ExperimentConfig(**fields, **shape, progress=progress), lambda _: None)
    err = capsys.readouterr().err
    if progress:
        assert all(f"{bar}:" in err for bar in bars), err
    else:
        assert "%|" not in err and not any(f"{bar}:" in err for bar in bars), err


def test_in_a_log_a_bar_writes_plain_lines_with_rate_and_eta(capsys, monkeypatch):
    """stderr here is no terminal (a run in the background): each refresh is a line of its own, no carriage return,
    and a step shorter than LOG_INTERVAL writes nothing."""
    import torch

    from dalkit import runtime

    def epoch(_):
        for _ in range(4):
            yield torch.tensor(0.5), 8

    runtime.fit_loop(3, 32, epoch, progress=True, description="train")
    assert capsys.readouterr().err == ""  # shorter than a minute: silent
    monkeypatch.setattr(runtime, "LOG_INTERVAL", 0.0)
    runtime.fit_loop(3, 32, epoch, progress=True, description="train")
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert "\r" not in err and len(lines) >= 3
    assert all(line.startswith("train:") for line in lines)
    assert "100%" in err and "img/s" in err and "<" in err and "loss=0.500" in err
    runtime.fit_loop(3, 32, epoch, progress=False, description="train")
    assert capsys.readouterr().err == ""


def test_in_a_log_a_bar_writes_at_most_a_line_an_interval(capsys, monkeypatch):
    """tqdm's monitor thread (here every 0.05 s) must not add lines between update()'s: a log gets at most one line
    per LOG_INTERVAL, however fast the steps."""
    import time

    import torch

    from dalkit import runtime

    monkeypatch.setattr(runtime, "LOG_INTERVAL", 0.3)
    monkeypatch.setattr(runtime.tqdm, "monitor_interval", 0.05)
    monkeypatch.setattr(runtime.tqdm, "monitor", None)  # a monitor started by an earlier bar sleeps 10 s

    def epoch(_):
        for i in range(400):
            time.sleep(0.0005 if i % 100 else 0.35)  # fast steps with a slow one now and then
            yield torch.tensor(0.5), 1

    start = time.perf_counter()
    runtime.fit_loop(3, 400, epoch, progress=True, description="train")
    elapsed = time.perf_counter() - start
    lines = capsys.readouterr().err.splitlines()
    assert 3 <= len(lines) <= elapsed / 0.3 + 1, (elapsed, lines)
