"""The Bayesian AL papers' training protocol: a validation set held out of the pool, early stopping that keeps the
best epoch's weights (BatchBALD's RestoringScoreGuard), epochs of a fixed number of images (BatchBALD's
RandomFixedLengthSampler), Adam, and weight decay per label on chosen parameters (Gal et al.'s c / N)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dalkit.cli import main
from dalkit.data.augment import Normalizer
from dalkit.data.base import AugmentSpec
from dalkit.data.pool import Pool
from dalkit.errors import DalkitError
from dalkit.loop import Experiment, ExperimentConfig
from dalkit.models import create_model
from dalkit.objectives import CrossEntropy
from dalkit.results import read_jsonl, read_pool
from dalkit.runtime import isolated_rng
from dalkit.seeding import make_generator
from dalkit.train import Evaluation, TrainConfig, Trainer

CPU = torch.device("cpu")
NORMALIZER = Normalizer(torch.tensor([0.5]), torch.tensor([0.25]))


def tiny_model(name: str = "small-cnn", **options):
    with isolated_rng(0):
        return create_model(name, 2, in_channels=1, image_size=8, **options)


def images_and_labels(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.randint(0, 256, (n, 1, 8, 8), dtype=torch.uint8, generator=make_generator(0))
    return images, torch.arange(n) % 2


class ScriptedValidation:
    """Stands in for `Trainer.evaluate` on the validation images: returns the scripted accuracies in turn and keeps
    a copy of the weights it was shown each epoch."""

    def __init__(self, accuracies: list[float]) -> None:
        self.accuracies = list(accuracies)
        self.weights: list[dict[str, torch.Tensor]] = []

    def __call__(self, model, images, labels) -> Evaluation:
        self.weights.append({k: v.clone() for k, v in model.state_dict().items()})
        return Evaluation(self.accuracies[len(self.weights) - 1], [], np.empty(0))


def fit_with_script(monkeypatch, accuracies: list[float], epochs: int, patience: int | None = 3):
    script = ScriptedValidation(accuracies)
    config = TrainConfig(epochs=epochs, lr=0.05, batch_size=4, patience=patience)
    trainer = Trainer(config, AugmentSpec(), NORMALIZER, CPU, progress=False)
    monkeypatch.setattr(trainer, "evaluate", script)
    model = tiny_model(width=4)
    images, labels = images_and_labels()
    stats = trainer.fit(model, images, labels, make_generator(0), validation=images_and_labels(4))
    return stats, model, script


def same_weights(model, weights) -> bool:
    return all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())


def test_training_stops_after_patience_epochs_without_a_strict_rise_and_keeps_the_best_weights(monkeypatch):
    # epoch 1: 0.5 best; 2: 0.7 best; 3: 0.7 (a tie is no rise), 4: 0.6, 5: 0.65 -> 3 epochs without a rise: stop
    stats, model, script = fit_with_script(monkeypatch, [0.5, 0.7, 0.7, 0.6, 0.65, 0.9, 0.9], epochs=7)
    assert stats.epochs == 5 and len(script.weights) == 5
    assert stats.best_epoch == 2 and stats.validation_accuracy == 0.7
    assert same_weights(model, script.weights[1]) and not same_weights(model, script.weights[4])


def test_the_best_weights_come_back_when_the_epochs_run_out_first(monkeypatch):
    stats, model, script = fit_with_script(monkeypatch, [0.2, 0.6, 0.5, 0.4], epochs=4)
    assert stats.epochs == 4 and stats.best_epoch == 2
    assert same_weights(model, script.weights[1])


def test_a_rise_resets_the_patience(monkeypatch):
    stats, _, _ = fit_with_script(monkeypatch, [0.5, 0.4, 0.6, 0.5, 0.55, 0.6, 0.9], epochs=7, patience=3)
    assert stats.epochs == 6 and stats.best_epoch == 3


def test_without_patience_every_epoch_runs_and_the_validation_set_is_read_once(monkeypatch):
    stats, model, script = fit_with_script(monkeypatch, [0.1, 0.2, 0.3], epochs=3, patience=None)
    assert stats.epochs == 3 and stats.best_epoch is None and stats.validation_accuracy == 0.1
    assert len(script.weights) == 1 and same_weights(model, script.weights[0])  # the last epoch's weights


class Spy(CrossEntropy):
    """Cross-entropy that records which images each step trained on."""

    def __init__(self) -> None:
        super().__init__()
        self.steps: list[torch.Tensor] = []

    def loss(self, step):
        self.steps.append(step.indices.clone())
        return super().loss(step)


def test_an_epoch_draws_epoch_samples_images_each_labelled_image_equally_often():
    spy = Spy()
    config = TrainConfig(epochs=2, lr=0.01, batch_size=16, epoch_samples=64)
    trainer = Trainer(config, AugmentSpec(), NORMALIZER, CPU, progress=False, objectives=[spy])
    images, labels = images_and_labels(5)
    stats = trainer.fit(tiny_model(width=4), images, labels, make_generator(0))
    assert len(spy.steps) == 2 * 4 and stats.epochs == 2  # 64 images an epoch, 4 batches of 16
    for epoch in range(2):
        counts = torch.bincount(torch.cat(spy.steps[4 * epoch : 4 * epoch + 4]), minlength=5)
        assert sorted(counts.tolist()) == [12, 13, 13, 13, 13]  # 64 = 5 x 12 + 4: floor or ceil of 64 / 5
    # more labelled images than epoch_samples: one pass, as without it
    spy.steps.clear()
    images, labels = images_and_labels(80)
    trainer.fit(tiny_model(width=4), images, labels, make_generator(0))
    assert len(spy.steps) == 2 * 5 and sorted(torch.cat(spy.steps[:5]).tolist()) == list(range(80))


def optimizer_spy(monkeypatch, cls) -> dict:
    seen = {}
    original = cls.__init__

    def spy(self, params, **kwargs):
        seen.update(kwargs, groups=[dict(g) for g in params] if isinstance(params[0], dict) else None)
        original(self, params, **kwargs)

    monkeypatch.setattr(cls, "__init__", spy)
    return seen


def test_gal_cnn_decays_only_its_dense_layer_by_c_over_the_labelled_images(monkeypatch):
    seen = optimizer_spy(monkeypatch, torch.optim.Adam)
    config = TrainConfig(
        epochs=1, lr=1e-3, batch_size=4, optimizer="adam", weight_decay=7.0, weight_decay_per_label=True
    )
    model = create_model("gal-cnn", 2, in_channels=1, image_size=8, kernel=2)
    images, labels = images_and_labels(10)
    Trainer(config, AugmentSpec(), NORMALIZER, CPU, progress=False).fit(model, images, labels, make_generator(0))
    assert seen["lr"] == 1e-3 and seen["weight_decay"] == pytest.approx(0.7)  # 7 / 10 labelled images
    decayed, plain = seen["groups"]
    assert [p.shape for p in decayed["params"]] == [model.fc1.weight.shape] and plain["weight_decay"] == 0.0
    assert len(plain["params"]) == len(list(model.parameters())) - 1


def test_sgd_with_one_group_and_fixed_decay_is_still_the_default(monkeypatch):
    seen = optimizer_spy(monkeypatch, torch.optim.SGD)
    images, labels = images_and_labels(10)
    trainer = Trainer(TrainConfig(epochs=1, lr=0.1, batch_size=4), AugmentSpec(), NORMALIZER, CPU, progress=False)
    trainer.fit(tiny_model(width=4), images, labels, make_generator(0))
    assert seen["weight_decay"] == 5e-4 and seen["momentum"] == 0.9 and seen["groups"] is None


# --- the validation set in the AL loop -------------------------------------------------------------------------


def test_validation_images_are_out_of_the_pool():
    pool = Pool(10)
    pool.label(np.array([0, 1]), np.array([0, 1]), cycle=0)
    pool.set_validation(np.array([2, 3]), np.array([1, 0]))
    assert pool.unlabelled_indices().tolist() == [4, 5, 6, 7, 8, 9] and pool.num_labelled == 2
    with pytest.raises(ValueError, match="validation image"):
        pool.label(np.array([3]), np.array([0]), cycle=1)
    with pytest.raises(ValueError, match="labelled"):
        pool.set_validation(np.array([1]), np.array([0]))
    back = Pool.from_state_dict(pool.state_dict())
    assert back.validation_indices().tolist() == [2, 3] and back.validation_labels[[2, 3]].tolist() == [1, 0]
    assert "validation" not in Pool(3).state_dict()  # the format of a pool without one is unchanged


FAST = dict(dataset="digits", model_options={"width": 4}, epochs=3, budget=10, progress=False, device="cpu")


def test_a_run_holds_out_its_validation_set_and_stops_early_on_it(tmp_path):
    config = ExperimentConfig(**FAST, initial=20, cycles=2, validation=100, patience=1, out_dir=str(tmp_path / "run"))
    result = Experiment(config, log=lambda _: None).run()
    pool = read_pool(result.directory)
    held_out = set(pool.validation_indices().tolist())
    assert len(held_out) == 100 and not held_out & set(pool.labelled_indices().tolist())
    picked = {i for entry in read_jsonl(result.directory / "selections.jsonl") for i in entry["indices"]}
    assert picked and not picked & held_out  # never a candidate
    assert [r["labelled"] for r in result.records] == [20, 30]  # validation images are not counted as labels
    for record in result.records:
        assert 1 <= record["best_epoch"] <= record["epochs_trained"] <= 3 and 0 <= record["validation_accuracy"] <= 1
    # the initial set does not depend on the validation set, so runs with and without one start alike
    plain = Experiment(ExperimentConfig(**FAST, initial=20, cycles=1, out_dir=str(tmp_path / "plain")), log=print)
    plain.label_initial()
    labelled = pool.labelled_indices()
    assert plain.pool.labelled_indices().tolist() == labelled[pool.cycle[labelled] == 0].tolist()


def test_supervised_training_keeps_the_validation_images_out_of_training(tmp_path):
    config = ExperimentConfig(**FAST, initial=None, cycles=1, validation=200, out_dir=str(tmp_path))
    experiment = Experiment(config, log=lambda _: None)
    experiment.label_initial()
    assert experiment.pool.num_labelled == len(experiment.pool) - 200 and not len(experiment.pool.unlabelled_indices())


def test_patience_without_validation_and_too_large_a_validation_set_are_one_sentence(tmp_path, capsys):
    args = ["run", "--patience", "3", "--no-progress", "--device", "cpu", "--out", str(tmp_path / "a")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "--validation" in err and len(err.splitlines()) == 1
    with pytest.raises(DalkitError, match="--validation 5000 is larger than the"):
        Experiment(ExperimentConfig(**FAST, validation=5000, out_dir=str(tmp_path / "b")), log=print).label_initial()
