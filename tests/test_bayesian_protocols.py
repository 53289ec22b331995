"""The Bayesian AL papers' MNIST models and protocols: gal-cnn and batchbald-cnn as the papers describe them, and the
presets gal2017-mnist, batchbald-mnist and batchbald-repeated-mnist, end to end on tiny MNIST IDX files."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from dalkit.cli import main
from dalkit.data.mnist import FILES
from dalkit.loop import Experiment, ExperimentConfig
from dalkit.models import create_model
from dalkit.models.base import model_input
from dalkit.runtime import isolated_rng
from dalkit.seeding import make_generator

PER_CLASS, N_TEST = 12, 20


def write_mnist(root: Path) -> None:
    """MNIST/raw/ in the IDX format: 12 training images per digit, 20 test images."""
    rng = np.random.default_rng(0)
    arrays = [
        rng.integers(0, 256, (10 * PER_CLASS, 28, 28)),
        np.arange(10 * PER_CLASS) % 10,
        rng.integers(0, 256, (N_TEST, 28, 28)),
        np.arange(N_TEST) % 10,
    ]
    folder = root / "MNIST" / "raw"
    folder.mkdir(parents=True)
    for name, array in zip(FILES, arrays):
        array = np.asarray(array, dtype=np.uint8)
        (folder / name).write_bytes(struct.pack(f">i{array.ndim}i", 2048 + array.ndim, *array.shape) + array.tobytes())


def layers(model: nn.Module, kind: type) -> list[nn.Module]:
    return [m for m in model.modules() if type(m) is kind]


def test_gal_cnn_is_the_papers_network():
    model = create_model("gal-cnn", 10, in_channels=1, image_size=28)
    convs = layers(model, nn.Conv2d)
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [(1, 32, (4, 4)), (32, 32, (4, 4))]
    assert model.fc1.in_features == 32 * 11 * 11 and model.fc1.out_features == 128 and model.fc2.out_features == 10
    assert [d.p for d in layers(model, nn.Dropout)] == [0.25, 0.5]
    # the authors' Keras scripts: 3x3 kernels, 5x5 pooling: 28 -> 26 -> 24 -> 4
    scripts = create_model("gal-cnn", 10, in_channels=1, image_size=28, kernel=3, pool=5)
    assert scripts.fc1.in_features == 32 * 4 * 4
    assert model.no_weight_decay() == {name for name, _ in model.named_parameters()} - {"fc1.weight"}


def test_batchbald_cnn_is_the_references_network():
    model = create_model("batchbald-cnn", 10, in_channels=1, image_size=28)
    convs = layers(model, nn.Conv2d)
    assert [(c.out_channels, c.kernel_size) for c in convs] == [(32, (5, 5)), (64, (5, 5))]
    assert model.fc1.in_features == 1024 and model.fc1.out_features == 128  # mnist_model.BayesianNet's view(-1, 1024)
    assert [d.p for d in layers(model, nn.Dropout2d)] == [0.5, 0.5] and [d.p for d in layers(model, nn.Dropout)] == [
        0.5
    ]


@pytest.mark.parametrize("name", ["gal-cnn", "batchbald-cnn"])
def test_every_dropout_is_in_the_head(name):
    """MC dropout repeats only the head: the trunk is deterministic in train mode, the head is not."""
    with isolated_rng(0):
        model = create_model(name, 10, in_channels=1, image_size=28).train()
    x = model_input(torch.randn(4, 1, 28, 28, generator=make_generator(0)))
    assert torch.equal(model.trunk(x), model.trunk(x))
    z = model.trunk(x)
    assert not torch.equal(model.head(z).logits, model.head(z).logits)
    model.eval()
    assert torch.equal(model(x).logits, model.head(model.trunk(x)).logits)


def test_the_presets_are_the_papers_settings():
    gal = ExperimentConfig.from_method("gal2017-mnist")
    assert (gal.dataset, gal.model, gal.strategy, gal.strategy_options) == (
        "mnist",
        "gal-cnn",
        "bald",
        {f"{name}.samples": 100 for name in ("bald", "variation-ratios", "mean-std", "entropy")},
    )
    assert (gal.initial, gal.initial_mode, gal.budget, gal.cycles, gal.candidates) == (20, "balanced", 10, 101, 2000)
    assert (gal.validation, gal.patience, gal.augment) == (0, None, False)
    train = gal.train_config()
    assert (train.optimizer, train.lr, train.batch_size, train.epochs) == ("adam", 1e-3, 128, 50)
    assert (train.weight_decay, train.weight_decay_per_label, train.milestones) == (7.0, True, ())

    for method, samples, validation, epochs, dataset in [
        ("batchbald-mnist", 100, 1024, 30, "mnist"),
        ("batchbald-repeated-mnist", 10, 3072, 40, "repeated-mnist"),
    ]:
        config = ExperimentConfig.from_method(method)
        assert (config.dataset, config.model, config.strategy, config.strategy_options) == (
            dataset,
            "batchbald-cnn",
            "batchbald",
            {"batchbald.samples": samples, "bald.samples": samples},
        )
        assert (config.initial, config.initial_mode, config.budget, config.cycles) == (20, "balanced", 10, 31)
        assert (config.candidates, config.validation, config.augment) == (None, validation, False)
        train = config.train_config()
        assert (train.optimizer, train.lr, train.weight_decay, train.batch_size) == ("adam", 1e-3, 0.0, 64)
        assert (train.epochs, train.patience, train.epoch_samples, train.weight_decay_per_label) == (
            epochs,
            3,
            5056,
            False,
        )


QUIET = ["--no-progress", "--device", "cpu"]


def run_method(tmp_path: Path, method: str, *extra: str) -> tuple[list[dict], dict]:
    write_mnist(tmp_path / "data")
    out = tmp_path / "run"
    args = ["run", "--method", method, "--data-root", str(tmp_path / "data"), "--cycles", "2", *extra]
    assert main([*args, "--strategy-option", "bald.samples=3", *QUIET, "--out", str(out)]) == 0
    records = [json.loads(line) for line in (out / "cycles.jsonl").read_text().splitlines()]
    return records, json.loads((out / "config.json").read_text())


def test_gal2017_mnist_runs_end_to_end_and_teaches(tmp_path):
    records, config = run_method(tmp_path, "gal2017-mnist", "--epochs", "2", "--candidates", "30")
    assert [r["labelled"] for r in records] == [20, 30]
    assert records[0]["class_counts"] == [2] * 10  # 20 balanced
    assert config["training"]["optimizer"] == "adam" and config["training"]["weight_decay_per_label"] is True
    assert config["data"]["augment"] == {"crop_padding": 0, "flip": False}  # no augmentation, as the paper
    assert all(r["epochs_trained"] == 2 and "validation_accuracy" not in r for r in records)
    student = ["distill", "--teacher", str(tmp_path / "run"), "--student", "small-cnn", "--model-option", "width=4"]
    assert main([*student, "--epochs", "1", *QUIET, "--out", str(tmp_path / "student")]) == 0


def test_batchbald_mnist_runs_end_to_end_with_early_stopping(tmp_path):
    records, config = run_method(
        tmp_path, "batchbald-mnist", "--epochs", "3", "--epoch-samples", "64", "--validation", "20"
    )
    assert [r["labelled"] for r in records] == [20, 30] and records[0]["class_counts"] == [2] * 10
    assert config["data"]["validation"] == 20 and config["training"]["patience"] == 3
    for record in records:
        assert 1 <= record["best_epoch"] <= record["epochs_trained"] <= 3 and record["validation_accuracy"] is not None


def test_batchbald_repeated_mnist_reads_three_noisy_copies(tmp_path):
    write_mnist(tmp_path / "data")
    config = ExperimentConfig.from_method("batchbald-repeated-mnist", data_root=str(tmp_path / "data"), validation=30)
    experiment = Experiment(config, log=print)
    experiment.label_initial()
    assert len(experiment.pool) == 3 * 10 * PER_CLASS and len(experiment.data.test) == N_TEST
    assert len(experiment.pool.unlabelled_indices()) == 3 * 10 * PER_CLASS - 20 - 30
