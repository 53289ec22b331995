"""mixup: the mix itself, Beta(alpha, alpha) draws from the step's generator, and the loss of the reference."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import kstest
from torch.nn import functional as F

from dalkit.data.augment import Normalizer
from dalkit.data.base import AugmentSpec
from dalkit.errors import DalkitError
from dalkit.models import create_model
from dalkit.models.base import prepare_model
from dalkit.objectives import create_objective
from dalkit.objectives.base import Step
from dalkit.objectives.mixup import mix, sample_beta
from dalkit.seeding import make_generator
from dalkit.train import TrainConfig, Trainer


def batch(n: int = 6, num_classes: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    generator = make_generator(11)
    return torch.randn(n, 1, 8, 8, generator=generator), torch.arange(n) % num_classes


def small_model(num_classes: int = 3) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("small-cnn", num_classes=num_classes, in_channels=1, image_size=8, width=8).eval()


def make_step(model, x, y, seed: int) -> Step:
    return Step(model, x, y, model(x), torch.arange(len(x)), y, 0, make_generator(seed), lambda idx: x[idx])


def test_mix_with_lam_one_returns_the_inputs_exactly():
    x, y = batch()
    onehot = F.one_hot(y, 3).float()
    perm = torch.randperm(len(x), generator=make_generator(0))
    mixed_x, mixed_y = mix(x, onehot, 1.0, perm)
    assert torch.equal(mixed_x, x) and torch.equal(mixed_y, onehot)
    mixed_x, mixed_y = mix(x, onehot, torch.tensor(0.0), perm)
    assert torch.equal(mixed_x, x[perm]) and torch.equal(mixed_y, onehot[perm])


def test_mixed_labels_are_the_convex_combination_and_sum_to_one():
    x, y = batch()
    onehot = F.one_hot(y, 3).float()
    perm = torch.randperm(len(x), generator=make_generator(1))
    mixed_x, mixed_y = mix(x, onehot, 0.3, perm)
    torch.testing.assert_close(mixed_y.sum(dim=1), torch.ones(len(x)))
    torch.testing.assert_close(mixed_x, 0.3 * x + 0.7 * x[perm])


@pytest.mark.parametrize("alpha", [0.4, 1.0, 2.0])
def test_lambda_follows_beta_alpha_alpha(alpha):
    generator = make_generator(int(alpha * 10))
    draws = torch.stack([sample_beta(alpha, generator) for _ in range(1500)]).double().numpy()
    assert ((draws >= 0) & (draws <= 1)).all()
    assert kstest(draws, "beta", args=(alpha, alpha)).pvalue > 1e-3


def test_a_vanishing_alpha_gives_lambda_zero_or_one_and_alpha_zero_gives_one():
    generator = make_generator(2)
    draws = torch.stack([sample_beta(1e-8, generator) for _ in range(200)])
    assert torch.all(torch.minimum(draws, 1 - draws) < 1e-6)
    assert 0 < (draws > 0.5).sum() < 200  # both ends occur
    assert sample_beta(0.0, generator).item() == 1.0


def test_a_vanishing_alpha_reproduces_the_inputs():
    """With lam in {0, 1} the mixed batch is the batch or its permutation: the loss is plain cross-entropy on it."""
    model, (x, y) = small_model(), batch()
    for seed in range(5):
        step = make_step(model, x, y, seed)
        loss = create_objective("mixup", alpha=1e-8).loss(step)
        replay = make_generator(seed)
        lam = sample_beta(1e-8, replay)
        perm = torch.randperm(len(x), generator=replay)
        source = torch.arange(len(x)) if lam > 0.5 else perm
        torch.testing.assert_close(loss, F.cross_entropy(model(x[source]).logits, y[source]))


@pytest.mark.parametrize("alpha", [1.0, 0.2])
def test_loss_is_the_reference_formula(alpha):
    model, (x, y) = small_model(), batch()
    loss = create_objective("mixup", alpha=alpha).loss(make_step(model, x, y, seed=4))
    replay = make_generator(4)  # the same draws, in the same order: lam, then the permutation
    lam = sample_beta(alpha, replay)
    perm = torch.randperm(len(x), generator=replay)
    logits = model(lam * x + (1 - lam) * x[perm]).logits
    expected = lam * F.cross_entropy(logits, y) + (1 - lam) * F.cross_entropy(logits, y[perm])
    torch.testing.assert_close(loss, expected)


def test_the_same_generator_gives_the_same_loss():
    model, (x, y) = small_model(), batch()
    objective = create_objective("mixup")
    first = objective.loss(make_step(model, x, y, seed=9))
    assert torch.equal(first, objective.loss(make_step(model, x, y, seed=9)))
    assert not torch.equal(first, objective.loss(make_step(model, x, y, seed=10)))


@pytest.mark.parametrize("alpha", [-1.0, "one", True])
def test_a_bad_alpha_is_a_user_error(alpha):
    with pytest.raises(DalkitError, match="alpha"):
        create_objective("mixup", alpha=alpha)


def grey_trainer(epochs: int, objectives: list) -> Trainer:
    """A CPU trainer for 1-channel 8x8 images in batches of 8, without augmentation."""
    normalizer = Normalizer(torch.tensor([0.5]), torch.tensor([0.5]))
    config = TrainConfig(epochs=epochs, lr=0.05, batch_size=8)
    return Trainer(config, AugmentSpec(), normalizer, torch.device("cpu"), progress=False, objectives=objectives)


def test_trainer_fits_with_mixup_alone():
    torch.manual_seed(0)
    model = prepare_model(create_model("small-cnn", num_classes=2, in_channels=1, image_size=8, width=8), "cpu")
    x = torch.zeros(32, 1, 8, 8, dtype=torch.uint8)
    x[16:, :, :, :4] = 255
    y = torch.tensor([0] * 16 + [1] * 16)
    trainer = grey_trainer(15, [create_objective("mixup", alpha=0.2)])
    stats = trainer.fit(model, x, y, make_generator(0))
    assert torch.isfinite(torch.tensor(stats.final_loss))
    assert trainer.evaluate(model, x, y).accuracy == 1.0


@pytest.mark.parametrize("objectives, passes_per_batch", [(["mixup"], 1), (["ce", "mixup"], 2)])
def test_mixup_alone_skips_the_clean_forward_pass(objectives, passes_per_batch):
    """As in the reference, with mixup alone the model sees only the mixed batch: one forward pass per batch."""
    model = prepare_model(create_model("small-cnn", num_classes=2, in_channels=1, image_size=8, width=8), "cpu")
    batches = []
    model.register_forward_hook(lambda module, inputs, output: batches.append(len(inputs[0])))
    trainer = grey_trainer(2, [create_objective(name) for name in objectives])
    trainer.fit(model, torch.zeros(32, 1, 8, 8, dtype=torch.uint8), torch.arange(32) % 2, make_generator(0))
    assert len(batches) == 2 * 4 * passes_per_batch
