"""The trainer's lr schedules: step decay at milestones, or pycls's per-epoch cosine to 0; Nesterov on request."""

from __future__ import annotations

import math

import pytest
import torch

from dalkit.train import TrainConfig, lr_schedule


def lrs(config: TrainConfig) -> list[float]:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=config.lr, momentum=0.9)
    schedule = lr_schedule(optimizer, config)
    values = []
    for _ in range(config.epochs):
        values.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    return values


def test_cosine_is_half_a_cosine_per_epoch_from_lr_to_zero():
    config = TrainConfig(epochs=8, lr=0.025, schedule="cosine")
    want = [0.025 * (1 + math.cos(math.pi * e / 8)) / 2 for e in range(8)]
    assert lrs(config) == pytest.approx(want, rel=1e-9)


def test_step_decay_is_the_default():
    assert lrs(TrainConfig(epochs=4, lr=0.1, milestones=(2,))) == pytest.approx([0.1, 0.1, 0.01, 0.01])


def test_nesterov_reaches_the_optimizer(monkeypatch):
    from dalkit.data.augment import Normalizer
    from dalkit.data.base import AugmentSpec
    from dalkit.models import create_model
    from dalkit.seeding import make_generator
    from dalkit.train import Trainer

    seen = {}
    original = torch.optim.SGD.__init__

    def spy(self, params, **kwargs):
        seen.update(kwargs)
        original(self, params, **kwargs)

    monkeypatch.setattr(torch.optim.SGD, "__init__", spy)
    config = TrainConfig(epochs=1, lr=0.01, batch_size=4, schedule="cosine", nesterov=True)
    normalizer = Normalizer(torch.tensor([0.5]), torch.tensor([0.25]))
    trainer = Trainer(config, AugmentSpec(0), normalizer, torch.device("cpu"), progress=False)
    model = create_model("small-cnn", 2, in_channels=1, image_size=8, width=4)
    images = torch.randint(0, 256, (8, 1, 8, 8), dtype=torch.uint8)
    trainer.fit(model, images, torch.arange(8) % 2, make_generator(0))
    assert seen["nesterov"] is True


def test_shorter_runs_keep_the_default_milestones_in_place():
    from dalkit.models.base import TrainDefaults

    defaults = TrainDefaults(epochs=200, lr=0.1, milestones=(160,))
    assert TrainConfig.from_defaults(defaults, epochs=50).milestones == (40,)
    assert TrainConfig.from_defaults(defaults, epochs=50, milestones=(10, 20)).milestones == (10, 20)
    assert TrainConfig.from_defaults(defaults).milestones == (160,)
