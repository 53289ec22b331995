"""`dalkit report`: tables, CSV and plot rebuilt from finished runs, with published results beside them."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from dalkit.cli import main
from dalkit.report import area_under_curve

FAST = ["--epochs", "2", "--initial", "10", "--budget", "5", "--cycles", "2", "--no-progress", "--device", "cpu"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A comparison (random, margin x seeds 0, 1), a single run, and an unfinished .partial- run inside."""
    root = tmp_path_factory.mktemp("runs")
    assert main(["compare", *FAST, "--strategies", "random,margin", "--seeds", "0,1", "--out", str(root / "cmp")]) == 0
    assert main(["run", *FAST, "--strategy", "entropy", "--seed", "3", "--out", str(root / "single")]) == 0
    partial = root / "cmp" / "random" / ".partial-digits-random-seed9-dead"
    partial.mkdir()
    (partial / "config.json").write_text("{}")
    (partial / "cycles.csv").write_text("cycle\n")
    return root


def test_report_rebuilds_table_csv_and_plot_with_published_points(finished, tmp_path, capsys):
    published = tmp_path / "published.csv"
    published.write_text(
        "method,labelled,accuracy,std,source\n"
        "Core-Set,10,40.0,1.5,Sener 2018\nCore-Set,20,55.5,,Sener 2018\nBALD,15,50,2,Gal 2017\n"
    )
    out = tmp_path / "report"
    args = ["report", str(finished / "cmp"), str(finished / "single"), "--published", str(published), "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "5 run(s)" in printed and "report.md" in printed
    lines = (out / "report.md").read_text().splitlines()
    assert (
        lines[2]
        == "| strategy | runs | 10 | 15 | 20 | AULC | above random | AULC - random, same seeds | s/cycle (max) |"
    )
    rows = {line.split(" | ")[0].strip("| "): line for line in lines[4:]}
    assert set(rows) == {"random", "margin", "entropy", "Core-Set (Sener 2018)", "BALD (Gal 2017)"}
    assert "| random | 2 |" in rows["random"] and "+-" in rows["random"] and rows["random"].endswith("|")
    assert "| 40.00 +- 1.50 | - | 55.50 | - |" in rows["Core-Set (Sener 2018)"]
    with open(out / "cycles.csv", newline="") as f:
        cycles = list(csv.DictReader(f))
    assert len(cycles) == 5 * 2 and {c["strategy"] for c in cycles} == {"random", "margin", "entropy"}
    curves = {}
    for c in cycles:
        curves.setdefault((c["strategy"], c["seed"]), []).append((int(c["labelled"]), float(c["accuracy"])))
    gains = [
        100 * (area_under_curve(*zip(*curves["margin", s])) - area_under_curve(*zip(*curves["random", s])))
        for s in "01"
    ]
    paired = {name: row.split(" | ")[-2] for name, row in rows.items()}
    assert paired["margin"] == f"{np.mean(gains):+.2f} +- {np.std(gains):.2f}"  # seed by seed, as the runs say
    assert paired["random"] == paired["entropy"] == "-"  # entropy ran seed 3 only, which random did not
    assert {c["seed"] for c in cycles if c["strategy"] == "entropy"} == {"3"} and cycles[0]["accuracy"]
    seconds = [
        sum(float(c[k] or 0) for k in ("train_seconds", "eval_seconds", "query_seconds"))
        for c in cycles
        if c["strategy"] == "random"
    ]
    assert rows["random"].endswith(f"| {sum(seconds) / len(seconds):.1f} ({max(seconds):.1f}) |")
    assert (out / "curves.png").stat().st_size > 1000


def test_report_of_one_run_directory_without_published(finished, tmp_path):
    run = next(p for p in (finished / "cmp" / "margin").iterdir())
    assert main(["report", str(run), "--out", str(tmp_path / "r")]) == 0
    assert "| margin | 1 |" in (tmp_path / "r" / "report.md").read_text()


@pytest.mark.parametrize(
    "text, words",
    [
        ("method,labelled,accuracy\nx,10,50\n", "lacks the column(s) source"),
        ("method,labelled,accuracy,source\nx,ten,50,s\n", "line 2: labelled, accuracy and std must be numbers"),
        ("method,labelled,accuracy,source\nx,10,0.5e3,s\n", "line 2: accuracy is a test accuracy in %"),
        ("", "lacks the column(s) method, labelled, accuracy, source"),
    ],
)
def test_a_bad_published_csv_is_one_sentence(finished, text, words, tmp_path, capsys):
    published = tmp_path / "bad.csv"
    published.write_text(text)
    assert main(["report", str(finished / "single"), "--published", str(published), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1


def test_report_needs_finished_runs(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "holds no finished dalkit run" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert main(["report", str(tmp_path), "--published", str(tmp_path / "none.csv")]) == 2


def test_report_lists_unfinished_runs_with_their_cycles(finished, tmp_path, capsys):
    """A comparison under way: its finished runs in the table, the others listed with the cycles they have done."""
    import shutil

    comparison = tmp_path / "cmp"
    shutil.copytree(finished / "cmp", comparison)
    run = comparison / "margin" / "digits-margin-seed1"
    stopped = run.with_name(".partial-digits-margin-seed1-0a1b2c3d")
    run.rename(stopped)
    (stopped / "cycles.csv").unlink()
    first = (stopped / "cycles.jsonl").read_text().splitlines()[0]
    (stopped / "cycles.jsonl").write_text(first + "\n")
    accuracy = json.loads(first)["accuracy"]

    assert main(["report", str(comparison), "--out", str(tmp_path / "r")]) == 0
    printed = capsys.readouterr().out
    text = (tmp_path / "r" / "report.md").read_text()
    assert "| margin | 1 |" in text and "Unfinished runs" in text and "Unfinished runs" in printed
    assert f"| {stopped} | 1 / 2 | 10 | {100 * accuracy:.2f} |" in text

    alone = tmp_path / "alone"
    alone.mkdir()
    stopped.rename(alone / stopped.name)
    assert main(["report", str(alone), "--out", str(tmp_path / "r2")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(f"holds no finished dalkit run yet; cycles done so far: {stopped.name} (1 of 2).")


def test_runs_of_one_strategy_with_other_settings_are_rows_of_their_own(finished, tmp_path, capsys):
    """Random trained 3 epochs beside random trained 2 (or with CE + CS-KD beside CE): two rows, never one mean."""
    other = tmp_path / "other"
    assert main(["compare", *FAST, "--epochs", "3", "--strategies", "random", "--seeds", "0", "--out", str(other)]) == 0
    out = tmp_path / "report"
    assert main(["report", str(finished / "cmp" / "random"), str(other), "--out", str(out)]) == 0
    rows = {line.split(" | ")[0].strip("| "): line for line in (out / "report.md").read_text().splitlines()[4:]}
    assert set(rows) == {"random [epochs=2]", "random [epochs=3]"}
    assert "| 2 |" in rows["random [epochs=2]"] and "| 1 |" in rows["random [epochs=3]"]
    with open(out / "cycles.csv", newline="") as f:
        assert {c["strategy"] for c in csv.DictReader(f)} == set(rows)
