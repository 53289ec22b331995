"""`dalkit compare --targets`: labels each seed needed to first reach a test accuracy, from hand-made run records."""

from __future__ import annotations

import json

import pytest

from dalkit.cli import main
from dalkit.compare import Comparison, budgets_above, check_targets, paired_aulc, summarise, write_comparison
from dalkit.errors import DalkitError
from dalkit.loop import ExperimentConfig, ExperimentResult
from dalkit.report import labels_to_reach


def run(seed: int, accuracies: list[float], start: int = 20, step: int = 10) -> ExperimentResult:
    records = [
        {"cycle": c, "labelled": start + step * c, "accuracy": a, "class_counts": []} for c, a in enumerate(accuracies)
    ]
    return ExperimentResult(ExperimentConfig(seed=seed), records, None)


def test_the_first_evaluation_at_or_above_the_target_counts():
    labelled, accuracy = [20, 30, 40, 50], [0.85, 0.90, 0.89, 0.96]
    assert labels_to_reach(labelled, accuracy, 90) == 30  # exactly 90% reaches 90%; a later dip does not matter
    assert labels_to_reach(labelled, accuracy, 95) == 50
    assert labels_to_reach(labelled, accuracy, 97) is None
    assert labels_to_reach([0, 10], [None, 0.29], 29) == 10  # 0.29 * 100 is 28.999...: still reached; None skipped


def comparison(tmp_path) -> Comparison:
    targets = (90.0, 95.0)
    summaries = [
        summarise("batchbald", [run(0, [0.8, 0.9, 0.95, 0.97]), run(1, [0.85, 0.88, 0.91, 0.96])], targets),
        summarise("bald", [run(0, [0.7, 0.8, 0.9, 0.93]), run(1, [0.7, 0.75, 0.85, 0.88])], targets),
        summarise("random", [run(0, [0.6, 0.9, 0.92, 0.94]), run(1, [0.6, 0.7, 0.9, 0.94])], targets),
    ]
    return Comparison(summaries, tmp_path, targets)


def test_mean_and_std_over_the_seeds_that_reached_it_and_how_many_did(tmp_path):
    table = comparison(tmp_path).targets_table()
    rows = {line.split()[0]: line for line in table.splitlines()[2:5]}
    # batchbald: 90% at 30 and 40 labels, 95% at 40 and 50
    assert "35.0 +- 5.0" in rows["batchbald"] and "45.0 +- 5.0" in rows["batchbald"]
    # bald: 90% at 40 for seed 0 only; 95% never within 50 labels
    assert "40.0 +- 0.0 (1/2)" in rows["bald"] and "> 50 (0/2)" in rows["bald"]
    assert "35.0 +- 5.0" in rows["random"] and "> 50 (0/2)" in rows["random"]
    assert table.splitlines()[0].split() == ["strategy", "90%", "95%"] and "(k/n)" in table


def test_summary_files_hold_the_targets(tmp_path):
    result = comparison(tmp_path)
    write_comparison(result, ExperimentConfig())
    markdown = (tmp_path / "summary.md").read_text()
    assert "| strategy | 90% | 95% |" in markdown
    assert "| batchbald | **35.0 +- 5.0** | **45.0 +- 5.0** |" in markdown  # ties broken by none: both 35.0 bold
    assert "| random | **35.0 +- 5.0** | > 50 (0/2) |" in markdown
    assert "| bald | 40.0 +- 0.0 (1/2) | > 50 (0/2) |" in markdown  # a mean over fewer seeds is never best
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["bald"]["labels_to_reach"]["90"] == {
        "labels": [40, None],
        "reached": 1,
        "seeds": 2,
        "mean": 40.0,
        "std": 0.0,
        "max_labels": 50,
    }
    assert "labels to reach a test accuracy" in (tmp_path / "summary.txt").read_text()


def test_without_targets_the_summaries_are_unchanged(tmp_path):
    result = Comparison([summarise("random", [run(0, [0.5, 0.6])])], tmp_path)
    write_comparison(result, ExperimentConfig())
    assert "labels_to_reach" not in json.loads((tmp_path / "summary.json").read_text())["random"]
    assert "Labels to reach" not in (tmp_path / "summary.md").read_text()


def test_targets_are_percentages():
    assert check_targets([90, 95]) == (90.0, 95.0)
    with pytest.raises(DalkitError, match="between 0 and 100"):
        check_targets([0])
    with pytest.raises(DalkitError, match="between 0 and 100"):
        check_targets([150])


def test_compare_prints_the_labels_to_reach_each_target(tmp_path, capsys):
    fast = ["--epochs", "1", "--initial", "10", "--budget", "5", "--cycles", "2", "--no-progress", "--device", "cpu"]
    args = ["compare", *fast, "--strategies", "random", "--seeds", "0", "--targets", "1,100", "--out", str(tmp_path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "labels needed to first reach each test accuracy" in out
    row = next(line for line in out.splitlines() if line.startswith("random") and "(0/1)" in line)
    assert row.split()[1:] == ["10.0", "+-", "0.0", ">", "15", "(0/1)"]  # 1% at the first evaluation, 100% never


def test_above_random_counts_the_budgets_after_the_first_where_the_mean_beats_randoms(tmp_path):
    table = comparison(tmp_path).table(markdown=True)
    assert "| above random |" in table.splitlines()[0]
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ")[-2] for line in table.splitlines()[2:5]}
    # means at 30, 40, 50 labels: batchbald .89/.93/.965, bald .775/.875/.905, random .80/.91/.94
    assert rows == {"batchbald": "3/3", "bald": "0/3", "random": "-"}
    later = summarise("late", [run(0, [0.5, 0.99], start=40)])  # 40 and 50 labels: 50 is the one shared later budget
    assert budgets_above(later, comparison(tmp_path).summaries[2]) == ["1/1"]
    assert "above random" not in Comparison(comparison(tmp_path).summaries[:2], tmp_path).table()


def test_above_random_sets_a_row_against_randoms_runs_of_its_own_seeds():
    """A row that ran only the hard seed 1, a point above random there, is above random at every budget, though its
    mean is below random's mean over the easy seed 0 and the hard seed 1."""
    random = summarise("random", [run(0, [0.6, 0.8, 0.9]), run(1, [0.4, 0.6, 0.7])])
    hard_seed_only = summarise("one-seed", [run(1, [0.4, 0.61, 0.71])])
    assert all(hard_seed_only.mean[1:] < random.mean[1:])
    assert budgets_above(hard_seed_only, random) == ["2/2"]
    assert budgets_above(summarise("other-seed", [run(2, [0.4, 0.9, 0.95])]), random) == ["-"]


def test_aulc_against_random_is_paired_by_seed(tmp_path):
    """Seed 0 is easy and seed 1 hard for every row: a row 1 point above random on each seed has a paired gain of
    +1.00 +- 0.00, though its mean +- std overlaps random's; seeds random lacks are left out and counted."""
    random = summarise("random", [run(0, [0.6, 0.8]), run(1, [0.4, 0.6])])
    better = summarise("better", [run(0, [0.61, 0.81]), run(1, [0.41, 0.61])])
    assert better.aulc_std > 0.09 and better.aulc_mean - random.aulc_mean < 0.011
    assert paired_aulc(better, random) == ["+1.00 +- 0.00"]
    assert paired_aulc(random, random) == ["-"] and paired_aulc(better, None) == []
    extra = summarise("extra", [run(0, [0.62, 0.82]), run(2, [0.9, 0.9])])
    assert paired_aulc(extra, random) == ["+2.00 +- 0.00 (1 seeds)"]
    assert paired_aulc(summarise("other", [run(5, [0.6, 0.8])]), random) == ["-"]
    assert "| better | " in (table := Comparison([random, better], tmp_path).table(markdown=True))
    assert table.splitlines()[0].endswith("| above random | AULC - random, same seeds |")
    assert table.splitlines()[3].endswith("| 1/1 | +1.00 +- 0.00 |")
