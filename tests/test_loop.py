"""The AL loop end to end on the embedded digits: records, determinism, budgets, cold start."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from dalkit.errors import DalkitError
from dalkit.loop import ExperimentConfig, initial_indices, run_experiment
from dalkit.models import create_model
from dalkit.results import read_jsonl


def config(tmp_path, **fields) -> ExperimentConfig:
    base = dict(epochs=2, initial=10, budget=5, cycles=3, out_dir=str(tmp_path), progress=False, device="cpu")
    base.update(fields)
    return ExperimentConfig(**base)


def quiet(_: str) -> None:
    pass


def test_run_writes_a_complete_record(tmp_path):
    result = run_experiment(config(tmp_path, strategy="margin"), quiet)
    d = result.directory
    for name in ["config.json", "cycles.jsonl", "cycles.csv", "selections.jsonl", "pool.json", "curve.png", "model.pt"]:
        assert (d / name).is_file(), name
    records = read_jsonl(d / "cycles.jsonl")
    assert [r["labelled"] for r in records] == [10, 15, 20]
    assert all(0 <= r["accuracy"] <= 1 for r in records)
    assert all(len(r["per_class_accuracy"]) == 10 and sum(r["class_counts"]) == r["labelled"] for r in records)
    assert all(r["images_per_second"] > 0 and r["peak_memory_mb"] > 0 for r in records)
    assert all(0 <= r["train_accuracy"] <= 1 and len(r["epoch_losses"]) == 2 for r in records)
    assert all(r["epoch_losses"][-1] == pytest.approx(r["train_loss"]) for r in records)
    assert all("objective_losses" not in r for r in records)  # one objective: its curve is epoch_losses
    assert all("query_seconds" in r for r in records[:-1])
    # digits has ~130 training images per class: every class is many-shot, the other groups are empty
    assert all(r["many_shot_accuracy"] == pytest.approx(r["balanced_accuracy"]) for r in records)
    assert all(r["medium_shot_accuracy"] is None and r["few_shot_accuracy"] is None for r in records)
    pool = json.loads((d / "pool.json").read_text())
    assert len(pool["indices"]) == 20 and sorted(set(pool["cycle"])) == [0, 1, 2]
    saved = torch.load(d / "model.pt")
    model = create_model(saved["model"], saved["num_classes"], saved["in_channels"], saved["image_size"])
    model.load_state_dict(saved["state_dict"])
    config_json = json.loads((d / "config.json").read_text())
    assert config_json["training"]["epochs"] == 2 and config_json["environment"]["torch"]


def test_labels_come_from_the_oracle_only_for_selected_images(tmp_path):
    from dalkit.data import load_dataset

    result = run_experiment(config(tmp_path, strategy="entropy"), quiet)
    pool = json.loads((result.directory / "pool.json").read_text())
    truth = load_dataset("digits").train.labels.numpy()
    np.testing.assert_array_equal(np.array(pool["labels"]), truth[pool["indices"]])
    selected = [i for sel in result.selections() for i in sel]
    assert len(selected) == len(set(selected)) == 10


def test_same_seed_same_selections_and_accuracy(tmp_path):
    a = run_experiment(config(tmp_path / "a", strategy="margin", seed=4), quiet)
    b = run_experiment(config(tmp_path / "b", strategy="margin", seed=4), quiet)
    c = run_experiment(config(tmp_path / "c", strategy="margin", seed=5), quiet)
    assert a.selections() == b.selections()
    assert a.accuracy == b.accuracy
    assert a.selections() != c.selections()


def test_last_cycle_takes_what_is_left_or_refuses(tmp_path):
    result = run_experiment(config(tmp_path / "a", strategy="random", initial=1290, budget=5, cycles=4), quiet)
    assert [r["labelled"] for r in result.records] == [1290, 1295, 1297]
    with pytest.raises(DalkitError, match="only 2 unlabelled images remain"):
        run_experiment(
            config(tmp_path / "b", strategy="random", initial=1290, budget=5, cycles=4, take_remaining=False), quiet
        )


def test_a_budget_larger_than_the_unlabelled_pool_is_refused_before_anything_is_written(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(DalkitError, match=r"--budget 8 is larger than the 7 unlabelled images .*1,?297.*lower"):
        run_experiment(config(out, initial=1290, budget=8, cycles=2), quiet)
    assert not out.exists()
    # a one-cycle run never queries, so its budget does not matter (as in `dalkit train`)
    assert len(run_experiment(config(out, initial=1290, budget=8, cycles=1), quiet).records) == 1


def test_selected_csv_lists_every_labelled_index_with_its_cycle(tmp_path):
    result = run_experiment(config(tmp_path, strategy="margin"), quiet)
    with open(result.directory / "selected.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["cycle", "index"]
    pool = json.loads((result.directory / "pool.json").read_text())
    assert sorted((int(r["cycle"]), int(r["index"])) for r in rows) == sorted(zip(pool["cycle"], pool["indices"]))
    assert [int(r["index"]) for r in rows if r["cycle"] != "0"] == [i for s in result.selections() for i in s]
    assert sum(r["cycle"] == "0" for r in rows) == 10


def test_cycles_csv_has_every_scalar_of_the_json_records(tmp_path):
    result = run_experiment(config(tmp_path, dataset="digits-lt", strategy="entropy"), quiet)
    with open(result.directory / "cycles.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    records = read_jsonl(result.directory / "cycles.jsonl")
    assert len(rows) == len(records) == 3
    shots = ("many_shot_accuracy", "medium_shot_accuracy", "few_shot_accuracy")
    assert all(records[0][name] is not None for name in shots)  # digits-lt has classes in every group
    for row, record in zip(rows, records):
        for key, value in record.items():
            if isinstance(value, (list, dict)):
                continue
            assert key in row, key
            assert row[key] == ("" if value is None else str(value)), key


def test_cold_start_queries_without_training(tmp_path):
    result = run_experiment(config(tmp_path, strategy="margin", initial=0, budget=10, cycles=2), quiet)
    assert result.records[0]["accuracy"] is None and result.records[0]["labelled"] == 0
    assert result.records[1]["labelled"] == 10 and result.records[1]["accuracy"] is not None


def test_warm_start_runs(tmp_path):
    result = run_experiment(config(tmp_path, strategy="least-confidence", warm_start=True), quiet)
    assert len(result.records) == 3


def test_balanced_initial_set_is_balanced():
    labels = np.repeat(np.arange(4), 25)
    picked = initial_indices(labels, 10, "balanced", np.random.default_rng(0))
    counts = np.bincount(labels[picked], minlength=4)
    assert sorted(counts.tolist()) == [2, 2, 3, 3] and len(set(picked.tolist())) == 10


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(initial=5000), "larger than the pool"),
        (dict(candidates=3, budget=5), "--candidates"),
        (dict(cycles=0), "--cycles"),
        (dict(strategy="nope"), "unknown strategy"),
        (dict(model="nope"), "unknown model"),
    ],
)
def test_bad_options_are_one_sentence_errors(tmp_path, fields, message):
    with pytest.raises(DalkitError, match=message):
        run_experiment(config(tmp_path, **fields), quiet)
