"""Presets: every method resolves to a valid configuration; the TypiClust low-budget one is the paper's setting."""

from __future__ import annotations

import json

import pytest

import dalkit.features.simclr as ssl
from dalkit.cli import build_config, main, make_parser
from dalkit.data import DATASETS
from dalkit.features.simclr import SimCLRConfig
from dalkit.loop import ExperimentConfig
from dalkit.models import MODELS
from dalkit.objectives import OBJECTIVES
from dalkit.options import options_for
from dalkit.presets import list_methods
from dalkit.strategies import create_strategy


@pytest.mark.parametrize("method", list_methods())
def test_every_method_resolves_to_a_valid_configuration(method):
    config = ExperimentConfig.from_method(method)
    config.validate()
    config.train_config()
    assert config.model in MODELS and config.dataset in DATASETS
    assert all(name in OBJECTIVES for name in config.objectives)
    create_strategy(config.strategy, **options_for(config.strategy, config.strategy_options))


def test_typiclust_lowbudget_is_the_reference_setting():
    config = ExperimentConfig.from_method("typiclust-lowbudget")
    assert (config.dataset, config.model, config.strategy) == ("cifar10", "resnet18", "typiclust")
    assert (config.initial, config.budget, config.cycles) == (0, 100, 7)  # evaluated at 100, 200, ..., 600 labels
    train = config.train_config()
    assert (train.epochs, train.lr, train.batch_size, train.weight_decay) == (200, 0.025, 100, 3e-4)
    assert (train.schedule, train.nesterov, train.momentum, train.milestones) == ("cosine", True, 0.9, ())
    for name in ("typiclust", "probcover"):  # the features follow the strategy when --strategy swaps it
        strategy = create_strategy(name, **options_for(name, config.strategy_options))
        assert strategy.source.features == "ssl"
        assert strategy.representation.config == SimCLRConfig()
    assert SimCLRConfig().epochs == 500 and SimCLRConfig().backbone == "resnet18"


def test_command_line_options_override_the_preset_key_by_key():
    args = make_parser().parse_args(
        ["run", "--method", "typiclust-lowbudget", "--budget", "10", "--strategy-option", "ssl_epochs=20"]
    )
    config = build_config(args, seed=0)
    assert (config.dataset, config.budget, config.initial_mode) == ("cifar10", 10, "random")
    assert config.strategy_options == {"typiclust.features": "ssl", "probcover.features": "ssl", "ssl_epochs": 20}
    args = make_parser().parse_args(
        ["run", "--method", "typiclust-lowbudget", "--dataset", "digits", "--schedule", "step", "--no-nesterov"]
    )
    config = build_config(args, seed=0)
    assert (config.dataset, config.schedule, config.nesterov) == ("digits", "step", False)


def test_a_method_with_options_for_another_strategy_compares_cleanly():
    config = ExperimentConfig.from_method("typiclust-lowbudget")
    assert options_for("random", config.strategy_options) == {}
    assert options_for("probcover", config.strategy_options) == {"features": "ssl"}


def test_typiclust_lowbudget_runs_cold_start_and_records_its_features(tmp_path, monkeypatch):
    """The preset end to end, shrunk to the digits: cold start, SSL features trained once, named in the records."""
    monkeypatch.setenv("DALKIT_CACHE", str(tmp_path / "cache"))
    ssl._MEMORY.clear()
    small = ["--dataset", "digits", "--model", "small-cnn", "--model-option", "width=8", "--epochs", "1"]
    tiny_ssl = ["ssl_backbone=small-cnn", "ssl_width=4", "ssl_epochs=1", "ssl_batch_size=256"]
    options = [arg for option in tiny_ssl for arg in ("--strategy-option", option)]
    out = tmp_path / "runs"
    args = ["run", "--method", "typiclust-lowbudget", *small, "--budget", "10", "--cycles", "3", *options]
    assert main([*args, "--no-progress", "--device", "cpu", "--out", str(out)]) == 0
    run_dir = out
    records = [json.loads(line) for line in (run_dir / "cycles.jsonl").read_text().splitlines()]
    assert [r["labelled"] for r in records] == [0, 10, 20]
    assert records[0]["accuracy"] is None and records[1]["accuracy"] is not None
    selections = [json.loads(line) for line in (run_dir / "selections.jsonl").read_text().splitlines()]
    assert [s["info"]["features"] for s in selections] == ["ssl", "ssl"]
    assert [s["info"]["cache"] for s in selections] == ["trained", "memory"]  # trained once per run
    assert records[0]["selection_info"]["config"]["epochs"] == 1
    assert (tmp_path / "cache" / "ssl").is_dir()
    config = json.loads((run_dir / "config.json").read_text())
    assert config["training"]["schedule"] == "cosine" and config["training"]["nesterov"] is True
    ssl._MEMORY.clear()


def test_cifar10_cpu_is_the_papers_protocol_cut_for_a_cpu():
    paper, cpu = (ExperimentConfig.from_method(name) for name in ("cifar10-paper", "cifar10-cpu"))
    same = ("dataset", "model", "candidates", "lr", "batch_size", "weight_decay")
    assert [getattr(cpu, key) for key in same] == [getattr(paper, key) for key in same]
    assert [paper.initial + paper.budget * c for c in range(paper.cycles)] == list(range(1000, 10001, 1000))
    assert [cpu.initial + cpu.budget * c for c in range(cpu.cycles)] == [500, 1000, 1500, 2000, 2500]
    train = cpu.train_config()
    assert (train.epochs, train.epoch_samples, train.milestones) == (100, 1000, (80,))  # the decay at 80%, as 160/200
    assert paper.train_config().milestones == (160,) and cpu.model_options == {"width": 16}
