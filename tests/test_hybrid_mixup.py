"""Hybrid Mixup: latent mixup through a pluggable generator, mixed with image mixup; the built-in CVAE."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from dalkit.data.augment import Normalizer
from dalkit.data.base import AugmentSpec
from dalkit.errors import DalkitError
from dalkit.generators import LatentGenerator, create_generator, register_generator
from dalkit.models import create_model
from dalkit.models.base import model_input, prepare_model
from dalkit.objectives import create_objective
from dalkit.objectives.base import Step
from dalkit.objectives.hybrid_mixup import latent_count, latent_mixup
from dalkit.objectives.mixup import sample_beta
from dalkit.seeding import make_generator
from dalkit.train import TrainConfig, Trainer

NORMALIZER = Normalizer(torch.tensor([0.5]), torch.tensor([0.25]))
TINY_CVAE = dict(width=8, latent_dim=8, embed_dim=4, epochs=1, batch_size=16, lr=3e-3)


@register_generator("test-linear")
class LinearGenerator(LatentGenerator):
    """w = [onehot(class), two uniform draws]; images = w @ a fixed basis (linear, so mixing commutes with it)."""

    def __init__(self, num_classes: int = 3, shape: tuple[int, ...] = (1, 8, 8)) -> None:
        self.num_classes, self.shape = num_classes, tuple(shape)
        self.basis = torch.rand(num_classes + 2, math.prod(self.shape), generator=make_generator(99)) * 85
        self.fit_seeds: list[int] = []
        self.latent_calls = 0

    def fit(self, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator, progress: bool) -> None:
        self.fit_seeds.append(generator.initial_seed())

    def class_latents(self, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        self.latent_calls += 1
        noise = torch.rand(len(labels), 2, generator=generator, device=generator.device)
        return torch.cat([F.one_hot(labels, self.num_classes).float(), noise], dim=1)

    def synthesize(self, w: torch.Tensor) -> torch.Tensor:
        return (w @ self.basis).view(-1, *self.shape)


def small_model(num_classes: int = 3) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("small-cnn", num_classes=num_classes, in_channels=1, image_size=8, width=8).eval()


def batch(n: int = 8, num_classes: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.randint(0, 256, (n, 1, 8, 8), generator=make_generator(11), dtype=torch.uint8)
    return images, torch.arange(n) % num_classes


def make_step(model, images: torch.Tensor, labels: torch.Tensor, seed: int) -> Step:
    x = model_input(NORMALIZER(images))
    return Step(
        model,
        x,
        labels,
        model(x),
        torch.arange(len(x)),
        labels,
        0,
        make_generator(seed),
        lambda idx: x[idx],
        normalize=lambda images: model_input(NORMALIZER(images)),
    )


def planted(n: int = 32, channels: int = 1, size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes: bright left half (class 0) or bright right half (class 1), plus noise."""
    labels = torch.arange(n) % 2
    x = torch.full((n, channels, size, size), 30.0)
    x[labels == 0, :, :, : size // 2] = 220
    x[labels == 1, :, :, size // 2 :] = 220
    x += 15 * torch.randn(x.shape, generator=make_generator(5))
    return x.clamp(0, 255).to(torch.uint8), labels


@pytest.fixture(scope="module")
def planted_cvae() -> tuple[LatentGenerator, torch.Tensor, torch.Tensor]:
    images, labels = planted()
    cvae = create_generator("cvae", **{**TINY_CVAE, "min_steps": 150})
    cvae.fit(images, labels, make_generator(1))
    return cvae, images, labels


def test_latent_mixup_at_lambda_one_gives_the_class_a_sample(planted_cvae):
    cvae, _, _ = planted_cvae
    w = cvae.class_latents(torch.tensor([0, 0, 0, 1, 1, 1]), make_generator(3))
    w_a, w_b = w[:3], w[3:]
    with torch.no_grad():
        assert torch.equal(latent_mixup(cvae, w_a, w_b, 1.0), cvae.synthesize(w_a))
        assert torch.equal(latent_mixup(cvae, w_a, w_b, torch.tensor(0.0)), cvae.synthesize(w_b))
        assert not torch.equal(latent_mixup(cvae, w_a, w_b, 0.5), cvae.synthesize(w_a))


def test_at_lambda_one_the_objective_feeds_the_class_a_samples():
    """alpha = 0 means lam = 1: with ratio = 1 the model sees exactly synthesize(class_latents(y))."""
    generator = LinearGenerator()
    model, (images, labels) = small_model(), batch()
    step = make_step(model, images, labels, seed=4)
    inputs, targets = create_objective("hybrid-mixup", alpha=0, ratio=1, generator=generator).mixed_batch(step)
    replay = make_generator(4)
    perm = torch.randperm(len(labels), generator=replay)
    w = generator.class_latents(torch.cat([labels, labels[perm]]), replay)
    assert torch.equal(inputs, step.normalize(generator.synthesize(w[: len(labels)])))
    assert torch.equal(targets, F.one_hot(labels, 3).float())


@pytest.mark.parametrize("share_lambda", [True, False])
def test_generated_images_and_targets_follow_the_same_interpolation(share_lambda):
    generator = LinearGenerator()
    model, (images, labels) = small_model(), batch(n=5)
    step = make_step(model, images, labels, seed=6)
    objective = create_objective("hybrid-mixup", ratio=0.5, generator=generator, share_lambda=share_lambda)
    inputs, targets = objective.mixed_batch(step)
    replay = make_generator(6)  # lam, perm, [second lam], then the latents
    lam = sample_beta(1.0, replay)
    perm = torch.randperm(5, generator=replay)
    latent_lam = lam if share_lambda else sample_beta(1.0, replay)
    k = 3  # round(0.5 * 5) half up
    w = generator.class_latents(torch.cat([labels[:k], labels[perm[:k]]]), replay)
    expected = torch.cat(
        [
            step.normalize(generator.synthesize(latent_lam * w[:k] + (1 - latent_lam) * w[k:])),
            lam * step.inputs[k:] + (1 - lam) * step.inputs[perm[k:]],
        ]
    )
    torch.testing.assert_close(inputs, expected)
    torch.testing.assert_close(targets.sum(dim=1), torch.ones(5))
    for i in range(5):
        own = latent_lam if i < k else lam
        expect = own * F.one_hot(labels[i], 3) + (1 - own) * F.one_hot(labels[perm[i]], 3)
        torch.testing.assert_close(targets[i], expect.float())
        if labels[i] != labels[perm[i]]:
            assert torch.isclose(targets[i, labels[i]], own) and torch.isclose(targets[i, labels[perm[i]]], 1 - own)
    if not share_lambda:
        assert not torch.isclose(lam, latent_lam)


def test_the_latent_share_is_rounded_half_up():
    assert [latent_count(0.5, 5), latent_count(0.3, 8), latent_count(0.25, 6), latent_count(1.0, 7)] == [3, 2, 2, 7]
    assert latent_count(0.0, 7) == 0


def test_ratio_zero_is_exactly_mixup_and_never_generates():
    generator = LinearGenerator()
    model, (images, labels) = small_model(), batch()
    for seed in (0, 1, 2):
        hybrid = create_objective("hybrid-mixup", alpha=0.4, ratio=0, generator=generator)
        expected = create_objective("mixup", alpha=0.4).loss(make_step(model, images, labels, seed))
        assert torch.equal(hybrid.loss(make_step(model, images, labels, seed)), expected)
    assert generator.latent_calls == 0


def test_ratio_one_uses_only_generated_images():
    objective = create_objective("hybrid-mixup", ratio=1.0, generator=LinearGenerator())
    model, (images, labels) = small_model(), batch()
    loss = objective.loss(make_step(model, images, labels, seed=8))
    noise = torch.randint(0, 256, images.shape, generator=make_generator(0), dtype=torch.uint8)
    assert torch.equal(loss, objective.loss(make_step(model, noise, labels, seed=8)))
    half = create_objective("hybrid-mixup", ratio=0.5, generator=LinearGenerator())
    real, fake = (half.loss(make_step(model, x, labels, seed=8)) for x in (images, noise))
    assert not torch.equal(real, fake)


def test_the_cvae_trained_on_planted_classes_generates_each_class(planted_cvae):
    cvae, images, labels = planted_cvae
    wanted = torch.tensor([0] * 16 + [1] * 16)
    with torch.no_grad():
        samples = cvae.synthesize(cvae.class_latents(wanted, make_generator(7)))
    means = torch.stack([images[labels == c].float().mean(0) for c in (0, 1)])
    distance = (samples[:, None] - means[None]).square().flatten(2).mean(2)  # (sample, class)
    assert torch.equal(distance.argmin(dim=1), wanted)
    assert samples.dtype == torch.float32 and samples.min() >= 0 and samples.max() <= 255


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32), (3, 12, 20), (1, 7, 7)])
def test_the_cvae_makes_images_of_the_data_shape(shape):
    images = torch.randint(0, 256, (4, *shape), generator=make_generator(0), dtype=torch.uint8)
    cvae = create_generator("cvae", **{**TINY_CVAE, "min_steps": 1})
    cvae.fit(images, torch.tensor([0, 1, 2, 0]), make_generator(0))
    with torch.no_grad():
        out = cvae.synthesize(cvae.class_latents(torch.tensor([0, 1, 2]), make_generator(1)))
    assert out.shape == (3, *shape) and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 255


def test_the_cvae_is_determined_by_its_generators_and_leaves_the_global_rng_alone():
    images, labels = planted(n=16)
    state = torch.get_rng_state()

    def samples(fit_seed: int, sample_seed: int) -> torch.Tensor:
        cvae = create_generator("cvae", **{**TINY_CVAE, "min_steps": 3})
        cvae.fit(images, labels, make_generator(fit_seed))
        with torch.no_grad():
            return cvae.synthesize(cvae.class_latents(labels, make_generator(sample_seed)))

    first = samples(0, 0)
    assert torch.equal(first, samples(0, 0))
    assert not torch.equal(first, samples(1, 0)) and not torch.equal(first, samples(0, 1))
    assert torch.equal(state, torch.get_rng_state())


def test_the_fit_seed_comes_from_the_seed_option_and_changes_per_fit():
    images, labels = batch()
    first, second = LinearGenerator(), LinearGenerator()
    for generator in (first, second):
        objective = create_objective("hybrid-mixup", generator=generator, seed=5)
        objective.prepare(small_model(), images, labels, make_generator(0))
        objective.prepare(small_model(), images, labels, make_generator(0))
    assert first.fit_seeds == second.fit_seeds and first.fit_seeds[0] != first.fit_seeds[1]


def test_user_generators_load_by_registered_name_and_by_import_path():
    by_name = create_objective("hybrid-mixup", generator="test-linear", num_classes=4)
    by_path = create_objective("hybrid-mixup", generator=f"{__name__}:LinearGenerator", num_classes=4)
    for objective in (by_name, by_path):
        assert isinstance(objective.latent_generator, LinearGenerator)
        assert objective.latent_generator.num_classes == 4


def test_a_generator_of_the_wrong_image_size_is_a_user_error():
    objective = create_objective("hybrid-mixup", generator=LinearGenerator(shape=(1, 4, 4)))
    images, labels = batch()
    with pytest.raises(DalkitError, match=r"\(1, 4, 4\).*\(1, 8, 8\)"):
        objective.prepare(small_model(), images, labels, make_generator(0))


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"alpha": -1.0}, "alpha"),
        ({"alpha": True}, "alpha"),
        ({"ratio": 1.5}, "ratio"),
        ({"ratio": "half"}, "ratio"),
        ({"share_lambda": "yes"}, "share_lambda"),
        ({"seed": -1}, "seed"),
        ({"generator": "stylegan9"}, "stylegan9"),
        ({"generator": "no_such_module_here:Gen"}, "no_such_module_here"),
        ({"generator": f"{__name__}:small_model"}, "LatentGenerator"),
        ({"latent_dim": 0}, "latent_dim"),
        ({"epochs": 1.5}, "epochs"),
        ({"lr": 0}, "lr"),
        ({"temperature": float("nan")}, "temperature"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_bad_options_are_one_sentence_user_errors(options, named):
    with pytest.raises(DalkitError, match=named) as error:
        create_objective("hybrid-mixup", **options)
    message = str(error.value)
    assert "\n" not in message and message.endswith(".")


def test_trainer_fits_with_hybrid_mixup_on_tiny_data():
    torch.manual_seed(0)
    model = prepare_model(create_model("small-cnn", num_classes=2, in_channels=1, image_size=8, width=8), "cpu")
    images, labels = planted()
    objective = create_objective("hybrid-mixup", alpha=0.2, **{**TINY_CVAE, "min_steps": 40})
    trainer = Trainer(
        TrainConfig(epochs=6, lr=0.05, batch_size=8),
        AugmentSpec(),
        Normalizer(torch.tensor([0.5]), torch.tensor([0.5])),
        torch.device("cpu"),
        progress=False,
        objectives=[objective],
    )
    stats = trainer.fit(model, images, labels, make_generator(0))
    assert math.isfinite(stats.final_loss)
    assert objective.fits == 1 and objective.latent_generator.net is not None
