"""CS-KD: same-class, different-image pairs; a KL term that vanishes on equal logits and sends no
gradient into the paired branch; trainable through the one trainer."""

from __future__ import annotations

import pytest
import torch

from dalkit.data.augment import Normalizer
from dalkit.data.base import AugmentSpec
from dalkit.models import create_model
from dalkit.models.base import ModelOutput, prepare_model
from dalkit.objectives import create_objective
from dalkit.objectives.base import Step
from dalkit.objectives.cskd import class_pairs, distillation_kl
from dalkit.seeding import make_generator
from dalkit.train import TrainConfig, Trainer


def test_pairs_are_same_class_and_a_different_image():
    labels = torch.tensor([0, 1, 0, 2, 1, 0, 2, 2, 1, 0, 3])
    positions = torch.arange(len(labels))
    generator = make_generator(0)
    seen = set()
    for _ in range(200):
        pairs = class_pairs(labels, positions, generator)
        assert torch.equal(labels[pairs], labels)
        alone = labels == 3
        assert (pairs[~alone] != positions[~alone]).all()
        assert torch.equal(pairs[alone], positions[alone])  # a class of one pairs with itself
        seen.update(zip(positions.tolist(), pairs.tolist()))
    # every same-class partner is drawn: 4 images of class 0 -> 3 partners each, etc.
    expected = {(i, j) for i in range(len(labels)) for j in range(len(labels)) if labels[i] == labels[j] and i != j}
    assert expected <= seen


def test_kl_term_is_zero_for_equal_logits_and_positive_otherwise():
    z = torch.randn(6, 5)
    assert distillation_kl(z, z.clone(), 4.0).abs() < 1e-6
    assert distillation_kl(z, torch.randn(6, 5), 4.0) > 0


def test_kl_term_scales_with_t_squared_as_in_the_paper():
    student, teacher = torch.randn(4, 3), torch.randn(4, 3)
    t = 4.0
    p = torch.softmax(teacher / t, 1)
    manual = (p * (p.log() - torch.log_softmax(student / t, 1))).sum(1).mean() * t * t
    torch.testing.assert_close(distillation_kl(student, teacher, t), manual)


def test_no_gradient_reaches_the_paired_branch():
    torch.manual_seed(0)
    model = create_model("small-cnn", num_classes=3, in_channels=1, image_size=8, width=8)
    images = torch.randn(6, 1, 8, 8)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    paired_inputs = []

    def inputs_for(idx):
        x = images[idx].clone().requires_grad_(True)
        paired_inputs.append(x)
        return x

    idx = torch.arange(6)
    out = model(images)
    step = Step(model, images, labels, out, idx, labels, 0, make_generator(0), inputs_for)
    loss = create_objective("cskd").loss(step)
    loss.backward()
    assert paired_inputs[0].grad is None  # the pair ran under no_grad
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_cskd_loss_is_zero_when_the_pair_gives_the_same_logits():
    logits = torch.randn(4, 3)

    class Fixed(torch.nn.Module):
        def forward(self, x):
            return ModelOutput(logits, torch.zeros(4, 2))

    labels = torch.tensor([0, 0, 1, 1])
    step = Step(
        Fixed(),
        torch.zeros(4),
        labels,
        ModelOutput(logits, None),
        torch.arange(4),
        labels,
        0,
        make_generator(0),
        lambda idx: torch.zeros(4),
    )
    assert create_objective("cskd").loss(step).abs() < 1e-6


def test_trainer_fits_with_ce_plus_cskd():
    torch.manual_seed(0)
    model = prepare_model(create_model("small-cnn", num_classes=2, in_channels=1, image_size=8, width=8), "cpu")
    x = torch.zeros(40, 1, 8, 8, dtype=torch.uint8)
    x[20:, :, :, :4] = 255
    y = torch.tensor([0] * 20 + [1] * 20)
    trainer = Trainer(
        TrainConfig(epochs=30, lr=0.05, batch_size=8),
        AugmentSpec(),
        Normalizer(torch.tensor([0.5]), torch.tensor([0.5])),
        torch.device("cpu"),
        progress=False,
        objectives=[create_objective("ce"), create_objective("cskd")],
        names=["ce", "cskd"],
    )
    stats = trainer.fit(model, x, y, make_generator(0))
    assert stats.final_loss < 0.5
    ce, cskd = stats.objective_losses["ce"], stats.objective_losses["cskd"]
    assert len(ce) == len(cskd) == 30 and [a + b for a, b in zip(ce, cskd)] == pytest.approx(stats.epoch_losses)
    assert ce[-1] < ce[0] and cskd[0] > 0  # the CE term falls; the KL term is there from the first epoch
    assert trainer.evaluate(model, x, y).accuracy == 1.0
