"""Every registered model and objective, tested for free (as timm tests its models): a new one is covered by
adding its registry line.

- model: the forward gives logits and embedding of the right shapes, with every head it can carry, and a save /
  load round trip gives back the same function;
- objective: one step on a tiny batch gives a finite loss whose gradient reaches the classifier.
"""

from __future__ import annotations

import inspect

import pytest
import torch

from dalkit.data.augment import Normalizer
from dalkit.errors import DalkitError
from dalkit.models import create_model, list_models
from dalkit.models.base import model_input
from dalkit.models.heads import HEADS
from dalkit.models.saved import load_classifier, save_classifier
from dalkit.objectives import OBJECTIVES, create_objective, list_objectives
from dalkit.objectives.base import Step
from dalkit.runtime import isolated_rng
from dalkit.seeding import make_generator
from dalkit.strategies import create_strategy

CPU = torch.device("cpu")
NORMALIZER = Normalizer(torch.full((3,), 0.5), torch.full((3,), 0.25))
#: options that keep each objective's test tiny (a teacher is written by the test)
TINY_OPTIONS = {"hybrid-mixup": {"epochs": 1, "min_steps": 1, "width": 8}}


def model_with_heads(name: str, num_classes: int = 5):
    """`name` with every registered head it can carry (loss prediction needs stage features)."""
    heads = {head: {} for head in HEADS.names()}
    with isolated_rng(0):
        plain = create_model(name, num_classes)
        if not hasattr(plain, "stage_channels"):
            heads.pop("loss-prediction")
        return create_model(name, num_classes, heads=heads)


@pytest.mark.parametrize("name", list_models())
def test_every_model_gives_logits_and_embedding_and_loads_back_the_same(name, tmp_path):
    model = model_with_heads(name).eval()
    x = model_input(torch.randn(2, 3, 32, 32, generator=make_generator(1)))
    with torch.no_grad():
        out = model(x)
    assert out.logits.shape == (2, 5) and out.embedding.shape == (2, model.embedding_dim)
    assert torch.isfinite(out.logits).all()
    save_classifier(tmp_path / "model.pt", model, name, {}, (3, 32, 32), list("abcde"), NORMALIZER)
    loaded = load_classifier(tmp_path, CPU)
    assert set(loaded.model.heads) == set(model.heads)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x).logits, out.logits)


def tiny_batch(num_classes: int = 3, n: int = 8, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = make_generator(0)
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
    return images, torch.arange(n) % num_classes


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    """A saved small-cnn, the teacher the distillation objectives read."""
    directory = tmp_path_factory.mktemp("teacher")
    with isolated_rng(2):
        teacher = create_model("small-cnn", 3, image_size=16, width=8)
    save_classifier(directory / "model.pt", teacher, "small-cnn", {"width": 8}, (3, 16, 16), list("abc"), NORMALIZER)
    return directory


@pytest.mark.parametrize("name", list_objectives())
def test_every_objective_gives_a_finite_loss_with_a_gradient(name, teacher_dir):
    options = dict(TINY_OPTIONS.get(name, {}))
    if "teacher" in inspect.signature(OBJECTIVES.get(name)).parameters:
        options["teacher"] = str(teacher_dir)
    objective = create_objective(name, **options)
    images, labels = tiny_batch()
    with isolated_rng(0):
        model = create_model("small-cnn", 3, image_size=16, width=8, heads=objective.heads())
    generator = make_generator(3)
    objective.prepare(model, images, labels, generator, progress=False)
    normalize = NORMALIZER.__call__

    def inputs_for(indices: torch.Tensor) -> torch.Tensor:
        return model_input(normalize(images[indices]))

    indices = torch.arange(len(images))
    x = inputs_for(indices)
    step = Step(
        model,
        x,
        labels,
        model(x),
        indices,
        labels,
        0,
        generator,
        inputs_for,
        progress=0.5,
        epochs=2,
        normalize=lambda raw: model_input(normalize(raw)),
        unlabelled_batch=lambda count: images[torch.randint(len(images), (count,), generator=generator)],
        raw=images,
        pixels=NORMALIZER.pixels,
    )
    loss = objective.loss(step)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads), "no gradient reached the model"


@pytest.mark.parametrize(
    "create, name, option, value",
    [
        ("strategy", "bald", "samples", 1),
        ("strategy", "coreset", "max_points", 0),
        ("strategy", "typiclust", "min_cluster_size", 0),
        ("objective", "ce", "label_smoothing", 1.5),
        ("objective", "cskd", "temperature", 0),
        ("objective", "learning-loss", "stop_epoch", -1),
        ("objective", "mixup", "alpha", -1),
    ],
)
def test_an_out_of_range_option_is_one_sentence_naming_it_and_an_example(create, name, option, value):
    factory = create_strategy if create == "strategy" else create_objective
    with pytest.raises(
        DalkitError, match=rf"^the {name} option {option} must .* \(got {value}\); pass e\.g\. {option}="
    ):
        factory(name, **{option: value})
