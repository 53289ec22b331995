"""`dalkit compare` across processes: the same numbers as in one process, retries, and failed runs reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dalkit.cli import main
from dalkit.compare import run_comparison
from dalkit.errors import DalkitError
from dalkit.loop import ExperimentConfig, ExperimentResult

FAST = ["--epochs", "2", "--initial", "10", "--budget", "5", "--cycles", "2", "--no-progress", "--device", "cpu"]


def flaky_runner(config: ExperimentConfig, log) -> ExperimentResult:
    """A stand-in for run_experiment (importable by name, so worker processes can run it): margin always fails,
    random fails on its first attempt per seed (a marker file beside the run remembers it) and then succeeds."""
    out = Path(config.out_dir)
    out.mkdir(parents=True)
    (out / "config.json").write_text("{}")
    if config.strategy == "margin":
        raise RuntimeError(f"margin cannot run with seed {config.seed}\nsecond line of the traceback-ish text")
    marker = out.parent / f"tried-{config.seed}"
    if not marker.exists():
        marker.write_text("")
        raise OSError("the disk hiccupped")
    (out / "cycles.csv").write_text("cycle\n")
    records = [{"cycle": c, "labelled": 10 + 5 * c, "accuracy": 0.5 + 0.1 * c + 0.01 * config.seed} for c in range(2)]
    return ExperimentResult(config, records, out)


def test_processes_give_the_same_summary_as_local(tmp_path, capsys):
    grid = ["--strategies", "random,margin", "--seeds", "0,1"]
    assert main(["compare", *FAST, *grid, "--out", str(tmp_path / "local")]) == 0
    capsys.readouterr()
    out = ["--out", str(tmp_path / "processes")]
    assert main(["compare", *FAST, *grid, "--executor", "processes", "--jobs", "2", *out]) == 0
    printed = capsys.readouterr().out
    assert printed.count(": finished, final accuracy") == 4
    local, processes = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("local", "processes"))
    assert local == processes
    for strategy in ("random", "margin"):
        runs = sorted(p.name for p in (tmp_path / "processes" / strategy).iterdir())
        assert runs == [f"digits-{strategy}-seed0", f"digits-{strategy}-seed1"]
    assert not (tmp_path / "processes" / "failed.json").exists()


@pytest.mark.parametrize("executor", ["local", "processes"])
def test_a_failing_run_is_retried_and_one_that_always_fails_is_reported(executor, tmp_path):
    base = ExperimentConfig(out_dir=str(tmp_path), progress=False)
    lines: list[str] = []
    comparison = run_comparison(
        base, ["random", "margin"], [0, 1], log=lines.append, executor=executor, jobs=2, runner=flaky_runner
    )
    assert [s.strategy for s in comparison.summaries] == ["random"]
    assert [r.config.seed for r in comparison.summaries[0].runs] == [0, 1]
    assert [(f.strategy, f.seed, f.attempts) for f in comparison.failed] == [("margin", 0, 3), ("margin", 1, 3)]
    assert comparison.failed[0].error == "RuntimeError: margin cannot run with seed 0"
    assert list((tmp_path / "margin").iterdir()) == []  # neither a final-named nor a partial directory
    finals = sorted(p.name for p in (tmp_path / "random").iterdir() if p.is_dir())
    assert finals == ["digits-random-seed0", "digits-random-seed1"]
    assert (
        json.loads((tmp_path / "failed.json").read_text())[1]["error"] == "RuntimeError: margin cannot run with seed 1"
    )
    assert "margin, seed 1: failed after 3 attempt(s)" in (tmp_path / "summary.md").read_text()
    assert set(json.loads((tmp_path / "summary.json").read_text())) == {"random"}
    assert any("disk hiccupped" in line for line in lines)


def test_every_run_failing_is_one_sentence_and_retries_zero_tries_once(tmp_path):
    base = ExperimentConfig(out_dir=str(tmp_path), progress=False)
    with pytest.raises(DalkitError, match="every run failed .*margin, seed 0"):
        run_comparison(base, ["margin"], [0], log=lambda _: None, retries=0, runner=flaky_runner)
    assert list((tmp_path / "margin").iterdir()) == []


def test_compare_exits_1_when_a_run_failed(tmp_path, monkeypatch, capsys):
    import dalkit.executors

    monkeypatch.setattr(dalkit.executors, "run_experiment", flaky_runner)
    args = ["compare", *FAST, "--strategies", "random,margin", "--seeds", "0", "--retries", "1", "--out", str(tmp_path)]
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "failed runs" in out and "margin, seed 0: failed after 2 attempt(s): RuntimeError" in out


@pytest.mark.parametrize("flag", [["--jobs", "0"], ["--retries", "-1"]])
def test_bad_executor_flags_are_one_sentence(flag, tmp_path, capsys):
    assert main(["compare", *FAST, *flag, "--out", str(tmp_path)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_executor_ray_without_ray_says_to_install_the_extra(tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    assert main(["compare", *FAST, "--executor", "ray", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "install dalkit[ray]" in err and len(err.splitlines()) == 1
    assert not any((tmp_path / "margin").glob("*/cycles.csv"))
