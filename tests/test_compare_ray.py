"""`dalkit compare --executor ray` on a local Ray (2 CPUs, started once for the module): a 2 x 2 grid, retries,
a run that always fails, and several data sets."""

from __future__ import annotations

import json

import pytest
from test_compare_grid import FAST, flaky_runner

from dalkit.compare import run_comparison
from dalkit.loop import ExperimentConfig

ray = pytest.importorskip("ray", reason="--executor ray needs dalkit[ray]")


@pytest.fixture(scope="module")
def local_ray():
    from dalkit.ray_executor import start_local_ray

    start_local_ray(num_cpus=2)
    yield
    ray.shutdown()


def test_a_2x2_grid_on_ray_writes_four_runs_and_the_merged_summary(local_ray, tmp_path, capsys):
    from dalkit.cli import main

    grid = ["--strategies", "random,margin", "--seeds", "0,1", "--executor", "ray", "--out", str(tmp_path)]
    assert main(["compare", *FAST, *grid]) == 0
    assert capsys.readouterr().out.count(": finished, final accuracy") == 4
    for strategy in ("random", "margin"):
        runs = sorted(p.name for p in (tmp_path / strategy).iterdir())
        assert runs == [f"digits-{strategy}-seed0", f"digits-{strategy}-seed1"]
        for run in runs:
            assert (tmp_path / strategy / run / "cycles.csv").read_text().count("\n") == 3  # header + 2 cycles
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary) == {"random", "margin"} and all(s["seeds"] == [0, 1] for s in summary.values())
    assert all(s["labelled"] == [10, 15] for s in summary.values())
    assert ray.is_initialized()  # the module's Ray was used, not shut down by the command


def test_on_ray_a_flaky_run_is_retried_and_one_that_always_fails_is_reported(local_ray, tmp_path):
    base = ExperimentConfig(out_dir=str(tmp_path), progress=False)
    lines: list[str] = []
    comparison = run_comparison(
        base, ["random", "margin"], [0, 1], log=lines.append, executor="ray", runner=flaky_runner
    )
    assert [s.strategy for s in comparison.summaries] == ["random"]
    assert [(f.strategy, f.seed, f.attempts) for f in comparison.failed] == [("margin", 0, 3), ("margin", 1, 3)]
    assert comparison.failed[0].error == "RuntimeError: margin cannot run with seed 0"  # the task's, not Ray's
    assert list((tmp_path / "margin").iterdir()) == []  # nothing --resume could take as finished
    finals = sorted(p.name for p in (tmp_path / "random").iterdir() if p.is_dir())
    assert finals == ["digits-random-seed0", "digits-random-seed1"]
    assert sum("disk hiccupped" in line and "trying again" in line for line in lines) == 2
    assert "margin, seed 1: failed after 3 attempt(s)" in (tmp_path / "summary.md").read_text()
    assert set(json.loads((tmp_path / "summary.json").read_text())) == {"random"}


def test_a_request_no_node_can_meet_is_one_sentence(local_ray, tmp_path, capsys):
    from dalkit.cli import main

    assert main(["compare", *FAST, "--executor", "ray", "--gpus-per-run", "1000", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "--gpus-per-run 1000 asks for more GPUs than the Ray cluster has" in err and len(err.splitlines()) == 1
