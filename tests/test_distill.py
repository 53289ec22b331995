"""Knowledge distillation: the three teachers' targets and losses, loading a teacher, `train` and `distill`."""

from __future__ import annotations

import inspect
import json

import pytest
import torch
from torch.nn import functional as F

from dalkit.cli import main
from dalkit.data.augment import Normalizer
from dalkit.errors import DalkitError
from dalkit.models import create_model
from dalkit.models.base import model_input
from dalkit.models.saved import load_classifier, save_classifier
from dalkit.objectives import OBJECTIVES, create_objective, list_objectives
from dalkit.objectives.distill import distillation_loss, patch_votes, random_patches
from dalkit.presets import list_methods, method_fields
from dalkit.runtime import isolated_rng
from dalkit.seeding import make_generator

FAST = ["--epochs", "2", "--no-progress", "--device", "cpu"]


def test_kd_term_is_zero_when_student_equals_teacher_and_positive_otherwise():
    logits = torch.randn(16, 10)
    labels = logits.argmax(dim=1)
    target = F.softmax(logits / 4, dim=1)
    assert distillation_loss(logits, labels, target, 4.0, weight=1.0).abs() < 1e-6
    assert distillation_loss(torch.randn(16, 10), labels, target, 4.0, weight=1.0) > 1e-3
    # weight 0 is plain cross-entropy
    expected = F.cross_entropy(logits, labels)
    assert torch.allclose(distillation_loss(logits, labels, target, 4.0, weight=0.0), expected)


def test_one_hot_targets_give_a_finite_loss_that_is_the_cross_entropy_at_t1():
    logits, teacher_labels = torch.randn(8, 5), torch.randint(5, (8,))
    onehot = F.one_hot(teacher_labels, 5).float()
    loss = distillation_loss(logits, teacher_labels, onehot, 1.0, weight=1.0)
    assert torch.allclose(loss, F.cross_entropy(logits, teacher_labels), atol=1e-6)


def test_patch_votes_are_a_distribution_and_one_hot_when_all_patches_agree():
    votes = patch_votes(torch.tensor([[2, 2, 2, 2], [0, 1, 1, 3]]), 4)
    assert torch.allclose(votes.sum(dim=1), torch.ones(2))
    assert votes[0].tolist() == [0, 0, 1, 0]
    assert votes[1].tolist() == [0.25, 0.5, 0, 0.25]


def test_random_patches_crop_inside_the_image_and_full_size_is_the_identity():
    columns = torch.arange(16.0).expand(2, 1, 16, 16)  # pixel value = column index
    g = torch.Generator().manual_seed(0)
    assert torch.allclose(random_patches(columns, 3, 1.0, g), columns.repeat_interleave(3, dim=0), atol=1e-4)
    crops = random_patches(columns, 20, 0.5, g)
    assert crops.shape == (40, 1, 16, 16)
    span = crops.amax(dim=(1, 2, 3)) - crops.amin(dim=(1, 2, 3))
    assert torch.all((span > 6) & (span < 8.5))  # half the width, resized: a range of about 7.5 columns
    assert crops.min() >= 0 and crops.max() <= 15
    assert len({round(float(c.mean()), 3) for c in crops}) > 10  # positions vary


@pytest.fixture
def teacher_dir(tmp_path):
    """A tiny saved model with its own normalisation, as a run directory holds it."""
    torch.manual_seed(0)
    model = create_model("small-cnn", 3, in_channels=1, image_size=8, width=4).eval()
    directory = tmp_path / "teacher"
    directory.mkdir()
    normalizer = Normalizer(torch.tensor([0.3]), torch.tensor([0.2]))
    save_classifier(directory / "model.pt", model, "small-cnn", {"width": 4}, (1, 8, 8), ["a", "b", "c"], normalizer)
    return directory, model, normalizer


def test_teacher_sees_images_in_its_own_normalisation(teacher_dir):
    directory, model, teacher_norm = teacher_dir
    images = torch.randint(0, 256, (6, 1, 8, 8), dtype=torch.uint8)
    with torch.no_grad():
        expected = model(model_input(teacher_norm(images))).logits
    objective = create_objective("kd", teacher=str(directory))
    student = create_model("small-cnn", 3, in_channels=1, image_size=8, width=2)
    objective.prepare(student, images, torch.zeros(6, dtype=torch.long), make_generator(0))
    student_norm = Normalizer(torch.tensor([0.6]), torch.tensor([0.5]))  # a different normalisation
    got = objective.teacher_logits(student_norm.pixels(student_norm(images)))
    assert torch.allclose(got, expected, atol=1e-4)


def test_a_teacher_for_another_label_set_is_refused(teacher_dir):
    directory, _, _ = teacher_dir
    objective = create_objective("onehot-kd", teacher=str(directory))
    student = create_model("small-cnn", 5, in_channels=1, image_size=8, width=2)
    with pytest.raises(DalkitError, match="same data set"):
        objective.prepare(student, torch.zeros(0), torch.zeros(0), make_generator(0))


def test_corrupt_model_file_is_one_sentence(tmp_path):
    (tmp_path / "model.pt").write_bytes(b"not a model")
    with pytest.raises(DalkitError, match="not a model saved by dalkit"):
        load_classifier(tmp_path, torch.device("cpu"))


@pytest.mark.parametrize(
    "name, options, message",
    [
        ("kd", {}, "needs a teacher"),
        ("kd", {"teacher": "x", "temperature": 0}, "temperature"),
        ("onehot-kd", {"teacher": "x", "weight": 2}, "weight"),
        ("patch-kd", {"teacher": "x", "patches": 0}, "patches"),
        ("patch-kd", {"teacher": "x", "patch_size": 1.5}, "patch_size"),
    ],
)
def test_bad_options_are_one_sentence(name, options, message):
    with pytest.raises(DalkitError, match=message):
        create_objective(name, **options)


def test_train_then_distill_with_each_teacher_kind(tmp_path, capsys):
    teacher = tmp_path / "teacher"
    assert main(["train", *FAST, "--model-option", "width=8", "--out", str(teacher)]) == 0
    printed = capsys.readouterr().out
    assert "balanced %" in printed and "few-shot %" in printed
    record = json.loads((teacher / "cycles.jsonl").read_text())
    pool = json.loads((teacher / "pool.json").read_text())
    assert record["labelled"] == pool["size"] == len(pool["indices"])  # every training image
    for objective in ("kd", "onehot-kd", "patch-kd"):
        args = ["distill", *FAST, "--teacher", str(teacher), "--student", "small-cnn", "--model-option", "width=4"]
        assert main([*args, "--objectives", objective, "--out", str(tmp_path / f"distill-{objective}")]) == 0
        table = capsys.readouterr().out
        assert "teacher" in table and "student" in table and "parameters" in table
    students = sorted(d for d in tmp_path.iterdir() if "distill" in d.name)
    assert len(students) == 3 and all((d / "model.pt").is_file() for d in students)
    config = json.loads((students[0] / "config.json").read_text())["experiment"]
    assert config["initial_from"] == str(teacher) and config["objective_options"]["kd.teacher"] == str(teacher)


@pytest.mark.parametrize(
    "args, words",
    [
        (["--teacher", "/nonexistent"], "no trained model"),
        (["--objectives", "ce"], "no distillation objective"),
    ],
)
def test_distill_user_errors(args, words, tmp_path, capsys, teacher_dir):
    directory, _, _ = teacher_dir
    base = ["distill", "--student", "small-cnn", "--teacher", str(directory), *FAST, "--out", str(tmp_path)]
    assert main([*base, *args]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1


# The methods of MNIST models (gal-cnn, batchbald-cnn: 28x28 images) teach on MNIST in tests/test_bayesian_protocols.py.
@pytest.mark.parametrize(
    "method", [m for m in list_methods() if method_fields(m).get("model") not in ("gal-cnn", "batchbald-cnn")]
)
def test_every_method_run_serves_as_a_teacher(method, tmp_path, capsys):
    """A run's model.pt loads back whatever heads its objectives trained (loss prediction, MoBY), so every
    method's run can teach: the reproduction of a learning-loss run that `distill` could not load."""
    tiny_ssl = [f"typiclust.ssl_{k}={v}" for k, v in (("epochs", 1), ("backbone", "small-cnn"), ("width", 4))]
    run = ["run", "--method", method, "--dataset", "digits", "--initial", "30", "--budget", "10", "--cycles", "1"]
    run += ["--model-option", "width=8", "--candidates", "100", *FAST, "--out", str(tmp_path / "run")]
    assert main([*run, *(arg for option in tiny_ssl for arg in ("--strategy-option", option))]) == 0
    (teacher,) = {path.parent for path in (tmp_path / "run").rglob("model.pt")}
    student = ["distill", *FAST, "--teacher", str(teacher), "--student", "small-cnn", "--model-option", "width=4"]
    assert main([*student, "--out", str(tmp_path / "student")]) == 0
    assert "teacher" in capsys.readouterr().out
    assert load_classifier(teacher, torch.device("cpu")).model.num_classes == 10


@pytest.mark.parametrize("objective", list_objectives())
def test_every_objective_run_serves_as_a_teacher(objective, tmp_path, capsys):
    """Whatever heads an objective trains, the run's model.pt loads back and teaches."""
    options = {"hybrid-mixup": ["epochs=1", "min_steps=1", "width=8"]}.get(objective, [])
    if "teacher" in inspect.signature(OBJECTIVES.get(objective)).parameters:  # a digits teacher to learn from
        with isolated_rng(0):
            model = create_model("small-cnn", 10, in_channels=1, image_size=8, width=4)
        normalizer = Normalizer(torch.tensor([0.3]), torch.tensor([0.2]))
        save_classifier(
            tmp_path / "model.pt", model, "small-cnn", {"width": 4}, (1, 8, 8), list("0123456789"), normalizer
        )
        options = [f"teacher={tmp_path}"]
    train = ["train", "--dataset", "digits", *FAST, "--model-option", "width=8", "--objectives", objective]
    train += [arg for option in options for arg in ("--objective-option", f"{objective}.{option}")]
    assert main([*train, "--out", str(tmp_path / "run")]) == 0
    student = ["distill", *FAST, "--teacher", str(tmp_path / "run"), "--student", "small-cnn"]
    assert main([*student, "--model-option", "width=4", "--out", str(tmp_path / "student")]) == 0
    assert "teacher" in capsys.readouterr().out
