"""An interrupted run goes on from its last completed cycle and ends as it would have without the interruption."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from dalkit.cli import main
from dalkit.engine import Engine
from dalkit.executors import claimed_folder, run_in_folder, try_lock
from dalkit.loop import ExperimentConfig, run_experiment
from dalkit.results import RunRecorder, read_jsonl

BASE = ExperimentConfig(initial=10, budget=5, cycles=4, epochs=2, progress=False, device="cpu")


class Killed(BaseException):
    """What stops a run from outside (a kill, Ctrl-C): not an error the run could handle."""


def kill_before_recording(monkeypatch, cycle: int) -> None:
    """Stop the run just before it records `cycle`: after that cycle's query labelled its picks and saved the pool,
    the moment at which a kill leaves the most to undo."""
    record_cycle = RunRecorder.record_cycle

    def stopping(self, record):
        if record["cycle"] == cycle:
            raise Killed
        record_cycle(self, record)

    monkeypatch.setattr(RunRecorder, "record_cycle", stopping)


def count_fits(monkeypatch) -> list[int]:
    fits: list[int] = []
    fit = Engine.fit

    def counted(self, model, images, pool, cycle, candidates):
        fits.append(cycle)
        return fit(self, model, images, pool, cycle, candidates)

    monkeypatch.setattr(Engine, "fit", counted)
    return fits


def outcome(directory: Path) -> tuple:
    records = read_jsonl(directory / "cycles.jsonl")
    selections = [entry["indices"] for entry in read_jsonl(directory / "selections.jsonl")]
    return [r["accuracy"] for r in records], selections, (directory / "selected.csv").read_text()


@pytest.mark.parametrize(("strategy", "options"), [("margin", {"sampling": "power"}), ("bald", {}), ("coreset", {})])
def test_an_interrupted_run_goes_on_from_its_last_completed_cycle(strategy, options, tmp_path, monkeypatch):
    config = replace(BASE, strategy=strategy, strategy_options=options)
    whole = run_experiment(replace(config, out_dir=str(tmp_path / "whole")), log=lambda _: None)

    directory = tmp_path / "interrupted"
    with monkeypatch.context() as patch:
        kill_before_recording(patch, cycle=2)
        with pytest.raises(Killed):
            run_experiment(replace(config, out_dir=str(directory)), log=lambda _: None)
    assert len(read_jsonl(directory / "selections.jsonl")) == 3  # cycle 2's picks went in before the kill

    fits, lines = count_fits(monkeypatch), []
    result = run_experiment(replace(config, out_dir=str(directory)), log=lines.append)
    assert fits == [2, 3]  # cycles 0 and 1 are not trained again
    assert f"continuing the interrupted run in {directory} after cycle 2/4" in lines
    assert outcome(directory) == outcome(whole.directory)
    assert [r["labelled"] for r in result.records] == [10, 15, 20, 25]
    assert (directory / "cycles.csv").is_file() and (directory / "model.pt").is_file()
    continued = json.loads((directory / "config.json").read_text())["continued"]
    assert [c["after_cycle"] for c in continued] == [2] and "started" in continued[0]


@pytest.mark.parametrize(
    "change",
    [
        {"epochs": 3},  # other settings
        {"warm_start": True},  # a cycle starts from the last cycle's weights
        {"strategy": "cluster-margin"},  # the clustering of the first query is kept for the run
        {"strategy": "probcover"},  # so is the delta its first query chose
    ],
)
def test_a_run_that_cannot_go_on_starts_over(change, tmp_path, monkeypatch):
    first = replace(BASE, **{k: v for k, v in change.items() if k != "epochs"}, out_dir=str(tmp_path))
    with monkeypatch.context() as patch:
        kill_before_recording(patch, cycle=2)
        with pytest.raises(Killed):
            run_experiment(first, log=lambda _: None)
    fits = count_fits(monkeypatch)
    run_experiment(replace(first, **change), log=lambda _: None)
    assert fits == [0, 1, 2, 3]
    assert "continued" not in json.loads((tmp_path / "config.json").read_text())


def test_a_comparison_run_killed_midway_goes_on_under_resume(tmp_path, monkeypatch, capsys):
    directory = tmp_path / "comparison"
    args = ["compare", "--epochs", "2", "--initial", "10", "--budget", "5", "--cycles", "3", "--no-progress"]
    args += ["--device", "cpu", "--strategies", "margin", "--seeds", "0"]
    with monkeypatch.context() as patch:
        kill_before_recording(patch, cycle=2)
        with pytest.raises(Killed):
            main([*args, "--out", str(directory)])
    (partial,) = [p for p in (directory / "margin").iterdir() if p.is_dir()]
    assert partial.name.startswith(".partial-digits-margin-seed0-") and len(read_jsonl(partial / "cycles.jsonl")) == 2
    assert (directory / "margin" / f"{partial.name}.lock").is_file()  # what a kill leaves beside it

    fits = count_fits(monkeypatch)
    assert main([*args, "--resume", str(directory)]) == 0
    assert f"continuing the interrupted run in {partial} after cycle 2/3" in capsys.readouterr().out
    assert fits == [2]
    (final,) = (directory / "margin").iterdir()  # the lock went with the partial folder
    assert final.name == "digits-margin-seed0" and [r["labelled"] for r in read_jsonl(final / "cycles.jsonl")] == [
        10,
        15,
        20,
    ]


def test_a_run_that_fails_after_a_cycle_keeps_it_for_the_next_attempt(tmp_path, monkeypatch, capsys):
    """A failure (out of memory at cycle 2, say) keeps the cycles before it: the retry goes on from there."""
    directory = tmp_path / "comparison"
    failures = iter([True])
    record_cycle = RunRecorder.record_cycle

    def failing_once(self, record):
        if record["cycle"] == 1 and next(failures, False):
            raise RuntimeError("out of memory")
        record_cycle(self, record)

    monkeypatch.setattr(RunRecorder, "record_cycle", failing_once)
    fits = count_fits(monkeypatch)
    args = ["compare", "--epochs", "2", "--initial", "10", "--budget", "5", "--cycles", "3", "--no-progress"]
    assert main([*args, "--device", "cpu", "--strategies", "margin", "--seeds", "0", "--out", str(directory)]) == 0
    assert "margin, seed 0 failed (RuntimeError: out of memory); trying again" in capsys.readouterr().out
    assert fits == [0, 1, 1, 2]  # the retry trains cycle 1 again, not cycle 0
    assert [p.name for p in (directory / "margin").iterdir()] == ["digits-margin-seed0"]


def test_two_processes_never_continue_one_interrupted_run(tmp_path, monkeypatch):
    """While one process continues an interrupted run (holding its lock), another given the same run starts its own."""
    config = replace(BASE, cycles=3)
    with monkeypatch.context() as patch:
        kill_before_recording(patch, cycle=1)
        with pytest.raises(Killed):
            run_in_folder(config, tmp_path, log=lambda _: None)
    (interrupted,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    with claimed_folder(tmp_path, config) as first, claimed_folder(tmp_path, config) as second:
        assert first == interrupted and second != interrupted and not second.exists()  # a new one
    with claimed_folder(tmp_path, config) as again:  # released: the next claim gets it
        assert again == interrupted


def test_a_run_killed_in_its_first_cycle_is_cleared_by_the_next_claim(tmp_path, monkeypatch):
    """A kill in cycle 0 that skips every clean-up (SIGKILL, a session's end) leaves a .partial- folder with no
    completed cycle: nothing to continue. The next claim of the run removes it, and never one a process holds."""
    config = replace(BASE, cycles=2)
    leftover = tmp_path / f".partial-{config.run_name()}-dead0001"
    with monkeypatch.context() as patch:
        kill_before_recording(patch, cycle=0)
        with pytest.raises(Killed):  # straight into the folder, as a SIGKILL leaves it: no run_in_folder clean-up
            run_experiment(replace(config, out_dir=str(leftover)), log=lambda _: None)
    (tmp_path / f"{leftover.name}.lock").touch()
    assert (leftover / "config.json").is_file() and not read_jsonl(leftover / "cycles.jsonl")
    busy = tmp_path / f".partial-{config.run_name()}-busy0002"  # another process's run, in its first cycle
    busy.mkdir()
    holder = try_lock(busy)
    run_in_folder(config, tmp_path, log=lambda _: None)
    holder.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted([config.run_name(), busy.name, f"{busy.name}.lock"])
