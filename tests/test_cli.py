"""The command line: the main job, comparisons, listings, and user errors without tracebacks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dalkit.cli import main
from dalkit.presets import list_methods, method_fields

FAST = ["--epochs", "2", "--initial", "10", "--budget", "5", "--cycles", "2", "--no-progress", "--device", "cpu"]


def test_run_prints_a_table_and_writes_a_plot(tmp_path, capsys):
    assert main(["run", *FAST, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "accuracy %" in out and "labelled per class" in out
    run_dir = tmp_path
    assert (run_dir / "curve.png").stat().st_size > 1000


def test_out_is_the_run_directory_and_a_finished_run_is_never_overwritten(tmp_path, capsys):
    run_dir = tmp_path / "my-run"
    assert main(["run", *FAST, "--out", str(run_dir)]) == 0
    assert f"run directory: {run_dir} " in capsys.readouterr().out
    assert (run_dir / "cycles.csv").is_file() and (run_dir / "model.pt").is_file()
    before = (run_dir / "cycles.jsonl").read_text()
    assert main(["run", *FAST, "--out", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{run_dir} already holds a finished run" in err and "--out" in err and len(err.splitlines()) == 1
    assert (run_dir / "cycles.jsonl").read_text() == before


def test_an_interrupted_run_in_out_starts_over_and_other_files_are_left_alone(tmp_path, capsys):
    run_dir = tmp_path / "my-run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text("{}")
    (run_dir / "cycles.jsonl").write_text('{"cycle": 0, "labelled": 3}\n')  # left by a run that was stopped
    (run_dir / "selections.jsonl").write_text('{"cycle": 1, "indices": [1, 2]}\n')
    assert main(["run", *FAST, "--out", str(run_dir)]) == 0
    records = [json.loads(line) for line in (run_dir / "cycles.jsonl").read_text().splitlines()]
    assert [r["labelled"] for r in records] == [10, 15]
    assert len((run_dir / "selections.jsonl").read_text().splitlines()) == 1
    other = tmp_path / "photos"
    other.mkdir()
    (other / "model.pt").write_text("not ours")
    assert main(["run", *FAST, "--out", str(other)]) == 2
    assert "not a dalkit run" in capsys.readouterr().err
    assert sorted(p.name for p in other.iterdir()) == ["model.pt"]
    assert main(["run", *FAST, "--out", str(other / "model.pt")]) == 2
    assert "is a file" in capsys.readouterr().err


def test_without_out_each_run_gets_a_new_directory_under_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        assert main(["run", *FAST, "--cycles", "1"]) == 0
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["digits-margin-seed0", "digits-margin-seed0-2"]
    assert "run directory: runs/digits-margin-seed0-2 " in capsys.readouterr().out


def test_dataset_folder_colon_path_runs_and_names_the_run_after_the_folder(shapes, tmp_path, monkeypatch, capsys):
    images = shapes
    monkeypatch.chdir(tmp_path)
    small = ["--epochs", "1", "--initial", "4", "--budget", "2", "--cycles", "2", "--no-progress", "--device", "cpu"]
    assert main(["run", "--dataset", f"folder:{images}", "--dataset-option", "image_size=8", *small]) == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert run_dir.name == "folder-shapes-margin-seed0"
    records = [json.loads(line) for line in (run_dir / "cycles.jsonl").read_text().splitlines()]
    assert [r["labelled"] for r in records] == [4, 6] and len(records[0]["class_counts"]) == 2
    same = ["run", "--dataset", "folder", "--data-root", str(images), "--dataset-option", "image_size=8", *small]
    assert main([*same, "--out", str(tmp_path / "other")]) == 0  # the other spelling still works
    assert main(["run", "--dataset", f"folder:{tmp_path / 'nowhere'}", *small]) == 2
    err = capsys.readouterr().err.strip()
    assert "nowhere was not found" in err and len(err.splitlines()) == 1


def test_compare_prints_mean_and_std_per_budget(tmp_path, capsys):
    directory = tmp_path / "comparison"
    args = ["compare", *FAST, "--strategies", "random,margin", "--seeds", "0,1", "--out", str(directory)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "+-" in out and "AULC" in out and "margin" in out
    assert f"comparison directory: {directory}" in out
    summary = json.loads((directory / "summary.json").read_text())
    assert summary["random"]["labelled"] == [10, 15] and summary["margin"]["seeds"] == [0, 1]
    assert (directory / "curves.png").is_file()
    markdown = (directory / "summary.md").read_text().splitlines()
    header = "| strategy | 10 | 15 | AULC | above random | AULC - random, same seeds |"
    assert markdown[0] == header and markdown[1] == "| --- |" + " --- |" * 5
    columns = list(zip(*(line.strip("| ").split(" | ") for line in markdown[2:])))
    above = summary["margin"]["mean"][1] > summary["random"]["mean"][1]
    assert columns[-2] == ("-", f"{int(above)}/1")  # margin against random at 15 labels
    assert columns[-1][0] == "-" and columns[-1][1].startswith(("+", "-0.00"))
    columns = columns[:-2]
    assert all(cell.startswith("**") for cell in columns[1])  # the same initial set: a tie, both bold
    assert all(any(cell.startswith("**") for cell in column) for column in columns[1:])


def test_compare_resume_reuses_finished_runs_and_reruns_the_rest(tmp_path, capsys):
    directory = tmp_path / "comparison"
    base = ["compare", *FAST, "--seeds", "0", "--out", str(directory)]
    assert main([*base, "--strategies", "random"]) == 0
    (first,) = (directory / "random").iterdir()
    before = (first / "cycles.jsonl").read_text()
    interrupted = directory / "margin" / "digits-margin-seed0"
    interrupted.mkdir(parents=True)
    (interrupted / "config.json").write_text("{}")  # an unfinished run: no cycles.csv
    capsys.readouterr()

    assert main([*base, "--strategies", "random,margin", "--resume", str(directory)]) == 0
    out = capsys.readouterr().out
    assert f"finished earlier, read from {first}" in out
    assert [p.name for p in (directory / "random").iterdir()] == [first.name]
    assert (first / "cycles.jsonl").read_text() == before
    assert len(list((directory / "margin").iterdir())) == 2 and interrupted.is_dir()
    assert set(json.loads((directory / "summary.json").read_text())) == {"random", "margin"}

    # other settings (here --epochs) make a new run rather than reuse one
    assert main([*base, "--strategies", "random", "--epochs", "1", "--resume", str(directory)]) == 0
    assert len(list((directory / "random").iterdir())) == 2
    assert "finished earlier" not in capsys.readouterr().out


def test_a_comparison_resumed_in_pieces_says_what_its_summary_leaves_out(tmp_path, capsys):
    directory = tmp_path / "comparison"
    base = ["compare", *FAST, "--cycles", "1", "--strategies", "random", "--out", str(directory)]
    assert main([*base, "--seeds", "0"]) == 0
    assert "more finished run" not in capsys.readouterr().out
    assert main([*base, "--seeds", "1", "--resume", str(directory)]) == 0
    note = f"{directory} holds 1 more finished run(s) (other rows, seeds or settings): `dalkit report {directory}`"
    assert note in capsys.readouterr().out
    assert note in (directory / "summary.md").read_text() and note in (directory / "summary.txt").read_text()
    assert main([*base, "--seeds", "0,1", "--resume", str(directory)]) == 0  # the whole grid: nothing left out
    assert "more finished run" not in capsys.readouterr().out + (directory / "summary.md").read_text()


def test_compare_refuses_to_overwrite_a_finished_comparison(tmp_path, capsys):
    args = ["compare", *FAST, "--cycles", "1", "--strategies", "random", "--seeds", "0", "--out", str(tmp_path)]
    assert main(args) == 0
    before = (tmp_path / "summary.json").read_text()
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "already holds a finished comparison" in err and "--resume" in err and len(err.splitlines()) == 1
    assert (tmp_path / "summary.json").read_text() == before and len(list((tmp_path / "random").iterdir())) == 1
    assert main([*args, "--resume", str(tmp_path / "elsewhere")]) == 2
    assert "differs from --resume" in capsys.readouterr().err


def test_compare_resume_needs_a_comparison_directory(tmp_path, capsys):
    assert main(["compare", *FAST, "--resume", str(tmp_path / "nothing")]) == 2
    assert "holds no dalkit comparison" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["strategies", "models", "objectives", "datasets"])
def test_listings(kind, capsys):
    assert main([kind]) == 0
    assert len(capsys.readouterr().out.splitlines()) > 2


@pytest.mark.parametrize(
    "args, words",
    [
        (["run", "--strategy", "nope"], "unknown strategy"),
        (["run", "--dataset", "cifar10", "--data-root", "/nonexistent"], "--download"),
        (["run", "--model-option", "width"], "KEY=VALUE"),
        (["run", "--model-option", "depth=3", "--epochs", "1", "--cycles", "1", "--no-progress"], "does not take"),
        (["run", "--strategy-option", "bal.samples=5"], "strategy 'bal', which does not exist"),
        (["compare", "--objective-option", "ckd.temperature=4"], "objective 'ckd', which does not exist"),
        (["run", "--initial", "1290", "--budget", "8"], "--budget 8 is larger than the 7 unlabelled images"),
    ],
)
def test_user_errors_are_one_line(args, words, tmp_path, capsys):
    assert main([*args, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and err.startswith("dalkit: error:") and len(err.splitlines()) == 1


def test_compare_routes_named_strategy_options():
    from dalkit.options import options_for

    options = {"bald.samples": 5, "coreset.robust": True, "chunk": 3}
    assert options_for("bald", options) == {"samples": 5, "chunk": 3}
    assert options_for("random", options) == {"chunk": 3}


def test_option_keys_keep_dashes_in_component_names():
    from dalkit.options import options_for, parse_options

    options = parse_options(["hybrid-mixup.generator=cvae", "learning-loss.stop-epoch=5", "min-steps=3"], "--flag")
    assert options == {"hybrid-mixup.generator": "cvae", "learning-loss.stop_epoch": 5, "min_steps": 3}
    assert options_for("hybrid-mixup", options) == {"generator": "cvae", "min_steps": 3}


def test_method_preset_runs_and_explicit_options_override_it(tmp_path):
    from dalkit.cli import build_config, make_parser

    args = make_parser().parse_args(["run", "--method", "cskd-sa", "--strategy", "coreset"])
    config = build_config(args, seed=0)
    assert (config.model, config.objectives, config.strategy) == (
        "resnet18-sa",
        ("ce", "cskd", "learning-loss"),
        "coreset",
    )
    small = ["--model-option", "width=8", "--epochs", "1", "--cycles", "2", "--initial", "10", "--budget", "5"]
    assert main(["run", "--method", "cskd-sa", *small, "--no-progress", "--device", "cpu", "--out", str(tmp_path)]) == 0
    run_dir = tmp_path
    saved = json.loads((run_dir / "config.json").read_text())["experiment"]
    assert saved["method"] == "cskd-sa" and saved["strategy"] == "learning-loss"


# Methods that name their own data set (typiclust-lowbudget: CIFAR-10; the Bayesian AL ones: MNIST) run end to end
# in their own tests, on tiny files of that data set's format (tests/test_presets.py, tests/test_bayesian_protocols.py).
@pytest.mark.parametrize(
    "method",
    [m for m in list_methods() if m not in ("cskd-sa", "typiclust-lowbudget") and "dataset" not in method_fields(m)],
)
def test_every_other_method_runs_end_to_end(method, tmp_path):
    small = ["--model-option", "width=8", "--epochs", "1", "--cycles", "2", "--initial", "10", "--budget", "5"]
    args = ["run", "--method", method, *small, "--candidates", "50", "--no-progress", "--device", "cpu"]
    assert main([*args, "--out", str(tmp_path)]) == 0
    run_dir = tmp_path
    records = [json.loads(line) for line in (run_dir / "cycles.jsonl").read_text().splitlines()]
    assert [r["labelled"] for r in records] == [10, 15]


def test_a_compare_run_that_fails_midway_never_looks_finished_and_resume_reruns_it(tmp_path, monkeypatch, capsys):
    from dalkit.loop import Experiment

    directory = tmp_path / "comparison"
    args = ["compare", *FAST, "--strategies", "random", "--seeds", "0", "--out", str(directory)]
    query = Experiment.query

    def broken(self, cycle):
        assert (Path(self.config.out_dir) / "config.json").is_file()  # mid-way: the run has started writing
        raise RuntimeError("the machine went away")

    monkeypatch.setattr(Experiment, "query", broken)
    assert main(args) == 2  # tried 3 times (--retries 2), then: every run failed, in one sentence
    assert "every run failed (e.g. random, seed 0: RuntimeError: the machine went away)" in capsys.readouterr().err
    assert list((directory / "random").iterdir()) == []  # no final-named (nor partial) directory is left
    partial = directory / "random" / ".partial-digits-random-seed0-killed"  # what a killed run leaves
    partial.mkdir()
    (partial / "config.json").write_text("{}")
    (partial / "cycles.csv").write_text("cycle\n")

    monkeypatch.setattr(Experiment, "query", query)
    capsys.readouterr()
    assert main([*args[:-2], "--resume", str(directory)]) == 0
    assert "finished earlier" not in capsys.readouterr().out
    finals = [p for p in (directory / "random").iterdir() if not p.name.startswith(".")]
    assert [p.name for p in finals] == ["digits-random-seed0"] and (finals[0] / "cycles.csv").is_file()
    recorded = json.loads((finals[0] / "config.json").read_text())["experiment"]["out_dir"]
    assert recorded == str(finals[0])
