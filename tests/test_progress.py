"""`--no-progress` reaches every training loop: the classifier's, VAAL's, the GCN's, SimCLR's and the CVAE's."""

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
