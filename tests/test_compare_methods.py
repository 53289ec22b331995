"""`dalkit compare --methods`: papers' methods (and their ablations) as rows of one comparison, in its protocol."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dalkit.cli import main
from dalkit.compare import run_comparison
from dalkit.errors import DalkitError
from dalkit.loop import ExperimentConfig, ExperimentResult
from dalkit.presets import method_fields, method_parts
from dalkit.results import read_jsonl


def recording_runner(seen: list[ExperimentConfig]):
    """A stand-in for run_experiment that keeps each run's config and writes a finished run."""

    def run(config: ExperimentConfig, log) -> ExperimentResult:
        seen.append(config)
        out = Path(config.out_dir)
        out.mkdir(parents=True)
        (out / "cycles.csv").write_text("cycle\n")
        records = [{"cycle": c, "labelled": 10 + 5 * c, "accuracy": 0.5 + 0.1 * c} for c in range(2)]
        return ExperimentResult(config, records, out)

    return run


def test_a_method_row_brings_its_model_objectives_and_strategy_into_the_comparisons_protocol(tmp_path):
    base = ExperimentConfig(
        dataset="digits",
        model="small-cnn",
        model_options={"dropout": 0.3},
        epochs=3,
        initial=10,
        budget=5,
        cycles=2,
        out_dir=str(tmp_path),
        progress=False,
        device="cpu",
    )
    seen: list[ExperimentConfig] = []
    comparison = run_comparison(
        base, ["random"], [0], log=lambda _: None, methods=["cskd-sa", "cskd-sa-no-sa"], runner=recording_runner(seen)
    )
    by_row = {config.method or config.strategy: config for config in seen}
    assert set(by_row) == {"random", "cskd-sa", "cskd-sa-no-sa"}
    cskd_sa = by_row["cskd-sa"]
    assert (cskd_sa.model, cskd_sa.strategy, cskd_sa.objectives) == (
        "resnet18-sa",
        "learning-loss",
        ("ce", "cskd", "learning-loss"),
    )
    assert (by_row["cskd-sa-no-sa"].model, by_row["random"].model) == ("resnet18", "small-cnn")
    for config in seen:  # the protocol is the comparison's, not the methods' (200 epochs)
        assert (config.epochs, config.initial, config.budget, config.dataset) == (3, 10, 5, "digits")
        assert config.model_options == {"dropout": 0.3}
    assert [s.strategy for s in comparison.summaries] == ["random", "cskd-sa", "cskd-sa-no-sa"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["cskd-sa", "cskd-sa-no-sa", "random"]
    assert set(json.loads((tmp_path / "summary.json").read_text())) == {"random", "cskd-sa", "cskd-sa-no-sa"}


def test_the_cskd_sa_ablations_are_the_two_by_two_with_one_strategy():
    rows = {name: method_parts(name) for name in ("cskd-sa", "cskd-sa-no-sa", "cskd-sa-no-cskd", "learning-loss")}
    cells = {("cskd" in parts["objectives"], parts["model"] == "resnet18-sa") for parts in rows.values()}
    assert cells == {(True, True), (True, False), (False, True), (False, False)}
    assert {parts["strategy"] for parts in rows.values()} == {"learning-loss"}
    assert all("learning-loss" in parts["objectives"] for parts in rows.values())


def test_a_protocol_given_as_a_method_row_or_a_repeated_row_is_one_sentence(tmp_path):
    base = ExperimentConfig(out_dir=str(tmp_path), progress=False, device="cpu")
    assert "strategy" not in method_fields("cifar10-cpu")
    with pytest.raises(DalkitError, match="is a protocol, not a method.*--method"):
        run_comparison(base, [], [0], methods=["cifar10-cpu"], runner=recording_runner([]))
    with pytest.raises(DalkitError, match="every entry once"):
        run_comparison(base, ["learning-loss"], [0], methods=["learning-loss"], runner=recording_runner([]))


def test_compare_with_methods_alone_runs_no_default_strategies_and_report_keeps_the_rows(tmp_path, capsys):
    fast = ["--epochs", "1", "--initial", "10", "--budget", "5", "--cycles", "2", "--no-progress", "--device", "cpu"]
    out = tmp_path / "cmp"
    rows = "cskd-sa-no-cskd,learning-loss"  # both select with the learning-loss strategy
    command = ["compare", *fast, "--model-option", "width=8", "--methods", rows, "--seeds", "0"]
    assert main([*command, "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["cskd-sa-no-cskd", "learning-loss"]
    config = json.loads(next((out / "cskd-sa-no-cskd").glob("*/config.json")).read_text())["experiment"]
    assert (config["model"], config["method"], config["epochs"]) == ("resnet18-sa", "cskd-sa-no-cskd", 1)
    records = read_jsonl(next((out / "cskd-sa-no-cskd").glob("*/cycles.jsonl")))
    # each term of the joint loss has its own curve, and the terms add up to the recorded total
    assert all(set(r["objective_losses"]) == {"ce", "learning-loss"} for r in records)
    for r in records:
        total = [sum(terms) for terms in zip(*r["objective_losses"].values())]
        assert total == pytest.approx(r["epoch_losses"])
    main(["report", str(out), "--out", str(tmp_path / "report")])
    report = (tmp_path / "report" / "report.md").read_text()
    assert "| cskd-sa-no-cskd |" in report and "| learning-loss |" in report
