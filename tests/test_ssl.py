"""Self-supervised features for TypiClust/ProbCover: SimCLR's loss, what training buys, the cache, the options."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

import dalkit.features.simclr as ssl
from dalkit.data.augment import Normalizer
from dalkit.engine import provide_representation
from dalkit.errors import DalkitError
from dalkit.features.simclr import SimCLRConfig, build_encoder, encode, nt_xent, pool_features, train_simclr
from dalkit.runtime import isolated_rng
from dalkit.strategies import checked_select, create_strategy

CPU = torch.device("cpu")
RGB = Normalizer(torch.full((3,), 0.5), torch.full((3,), 0.25))
TINY = {"ssl_backbone": "small-cnn", "ssl_width": 4, "ssl_epochs": 2, "ssl_batch_size": 16}


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """No test reads another's features from memory or writes to the user's cache folder."""
    monkeypatch.setenv("DALKIT_CACHE", str(tmp_path / "default-cache"))
    ssl._MEMORY.clear()
    yield
    ssl._MEMORY.clear()


def brute_nt_xent(z: torch.Tensor, temperature: float) -> float:
    z = F.normalize(z.double(), dim=1)
    n = len(z) // 2
    total = 0.0
    for i in range(2 * n):
        positive = (i + n) % (2 * n)
        others = [k for k in range(2 * n) if k != i]
        denominator = sum(math.exp(float(z[i] @ z[k]) / temperature) for k in others)
        total -= math.log(math.exp(float(z[i] @ z[positive]) / temperature) / denominator)
    return total / (2 * n)


@pytest.mark.parametrize("n, temperature", [(1, 0.1), (5, 0.1), (6, 0.5)])
def test_nt_xent_is_simclrs_loss_with_both_views_as_anchors(n, temperature):
    z = torch.randn(2 * n, 7, generator=torch.Generator().manual_seed(n))
    assert float(nt_xent(z, temperature)) == pytest.approx(brute_nt_xent(z, temperature), rel=1e-5, abs=1e-6)


def stripes(per_pattern: int = 16, size: int = 16) -> tuple[torch.Tensor, np.ndarray]:
    """Four planted clusters: horizontal, vertical, checkered and diagonal stripes (2-pixel bands), each image in
    its own random foreground and background colours and shifted at random. Colour says nothing about the cluster,
    so an encoder has to learn to ignore it, which is what SimCLR's colour jitter and grayscale teach."""
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    masks = [(yy // 2) % 2 == 0, (xx // 2) % 2 == 0, (yy // 2 + xx // 2) % 2 == 0, ((yy + xx) // 2) % 2 == 0]
    images, clusters = [], []
    for c, mask in enumerate(masks):
        for _ in range(per_pattern):
            fg, bg = torch.randint(0, 256, (2, 3, 1, 1), generator=g)
            shift = torch.randint(0, 4, (2,), generator=g).tolist()
            images.append(torch.roll(torch.where(mask, fg, bg), shift, dims=(1, 2)).to(torch.uint8))
            clusters.append(c)
    return torch.stack(images), np.array(clusters)


def separation(features: torch.Tensor, clusters: np.ndarray) -> float:
    """Mean cosine similarity within planted clusters minus that between them."""
    f = F.normalize(features, dim=1)
    similarity = (f @ f.T).numpy()
    same = clusters[:, None] == clusters[None, :]
    np.fill_diagonal(same, False)
    other = clusters[:, None] != clusters[None, :]
    return float(similarity[same].mean() - similarity[other].mean())


def test_simclr_training_separates_planted_clusters_that_the_same_network_untrained_does_not():
    images, clusters = stripes()
    config = SimCLRConfig(backbone="small-cnn", width=8, epochs=60, batch_size=64, lr=0.1, temperature=0.2, seed=0)
    with isolated_rng(config.seed):  # as train_simclr builds the encoder: the same initial weights
        untrained = encode(build_encoder(config, (3, 16, 16), CPU), images, RGB, CPU)
    encoder, losses = train_simclr(images, RGB, config, CPU, progress=False)
    trained = encode(encoder, images, RGB, CPU)
    before, after = separation(untrained, clusters), separation(trained, clusters)
    assert losses[-1] < losses[0] - 0.5
    assert after > 0.08 and after > 3 * max(before, 0.0), (before, after)


def small_pool(n: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


TINY_CONFIG = SimCLRConfig(backbone="small-cnn", width=4, epochs=1, batch_size=8)


def test_features_are_trained_once_then_read_from_memory_then_from_disk(tmp_path):
    images = small_pool()
    first, info = pool_features(images, RGB, TINY_CONFIG, CPU, tmp_path, progress=False)
    assert info["cache"] == "trained" and info["features"] == "ssl" and info["method"] == "simclr"
    assert first.shape == (16, 16) and info["config"]["epochs"] == 1
    again, info = pool_features(images, RGB, TINY_CONFIG, CPU, tmp_path, progress=False)
    assert info["cache"] == "memory" and again is first
    ssl._MEMORY.clear()
    loaded, info = pool_features(images, RGB, TINY_CONFIG, CPU, tmp_path, progress=False)
    assert info["cache"] == "disk"
    torch.testing.assert_close(loaded, first)
    saved = torch.load(info["cache_file"], weights_only=True)
    assert set(saved) == {"features", "info", "losses", "state_dict"} and len(saved["losses"]) == 1


def test_the_key_follows_the_images_the_normalisation_and_the_settings():
    images = small_pool()
    key = ssl.pool_key(images, RGB, TINY_CONFIG)
    assert key == ssl.pool_key(images.clone(), RGB, TINY_CONFIG)
    changed = images.clone()
    changed[3, 0, 0, 0] ^= 1
    other_norm = Normalizer(torch.full((3,), 0.4), torch.full((3,), 0.25))
    other_config = SimCLRConfig(backbone="small-cnn", width=4, epochs=2, batch_size=8)
    others = {ssl.pool_key(changed, RGB, TINY_CONFIG), ssl.pool_key(images, other_norm, TINY_CONFIG)}
    others.add(ssl.pool_key(images, RGB, other_config))
    assert key not in others and len(others) == 3


def test_an_unreadable_cache_file_is_retrained_with_a_warning(tmp_path):
    images = small_pool()
    path = ssl.cache_path(tmp_path, ssl.pool_key(images, RGB, TINY_CONFIG))
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a torch file")
    with pytest.warns(UserWarning, match="unreadable SSL feature cache"):
        _, info = pool_features(images, RGB, TINY_CONFIG, CPU, tmp_path, progress=False)
    assert info["cache"] == "trained"
    ssl._MEMORY.clear()
    assert pool_features(images, RGB, TINY_CONFIG, CPU, tmp_path, progress=False)[1]["cache"] == "disk"


def test_memory_only_cache_writes_no_file(tmp_path):
    _, info = pool_features(small_pool(), RGB, TINY_CONFIG, CPU, "none", progress=False)
    assert info["cache_file"] is None
    assert not (tmp_path / "default-cache").exists()


@pytest.mark.parametrize("name", ["typiclust", "probcover"])
def test_strategies_on_ssl_features_keep_the_contract_and_say_so(name, context_factory, tmp_path):
    options = {"features": "ssl", **TINY, "ssl_cache_dir": str(tmp_path)}

    def select(ctx, budget):  # as the engine runs it: the representation first, then the strategy
        strategy = create_strategy(name, **options)
        return checked_select(strategy, provide_representation(strategy, ctx, progress=False), budget)

    first = select(context_factory(seed=3), 6)
    assert len(set(first.indices.tolist())) == 6
    assert first.info["features"] == "ssl" and first.info["cache"] == "trained"
    assert first.info["config"]["backbone"] == "small-cnn" and first.info["images"] == 37
    second = select(context_factory(seed=3), 6)
    np.testing.assert_array_equal(first.indices, second.indices)
    assert second.info["cache"] == "memory"
    cold = select(context_factory(labelled=0), 4)
    assert len(set(cold.indices.tolist())) == 4 and cold.info["cache"] == "memory"  # the pool, not the labels


@pytest.mark.parametrize("name", ["typiclust", "probcover"])
def test_backbone_features_are_the_default_and_are_named(name, context_factory):
    selection = checked_select(create_strategy(name), context_factory(), 3)
    assert selection.info["features"] == "backbone"


def test_ssl_features_are_the_pool_images_features_in_pool_order(context_factory, tmp_path):
    """The points handed to the strategy are the cached features' rows for labelled, then candidates."""
    strategy = create_strategy("typiclust", features="ssl", **TINY, ssl_cache_dir=str(tmp_path))
    ctx = provide_representation(strategy, context_factory(labelled=5), progress=False)
    points, info = strategy.source.points(ctx)
    features, _ = pool_features(ctx.images, ctx.normalizer, strategy.representation.config, CPU, tmp_path)
    order = np.concatenate([ctx.labelled, ctx.candidates])
    torch.testing.assert_close(points, F.normalize(features[order], dim=1))


@pytest.mark.parametrize(
    "options, match",
    [
        ({"features": "simclr"}, "features must be one of backbone, ssl"),
        ({"ssl_epochs": 3}, "apply only to self-supervised features"),
        ({"features": "ssl", "ssl_epoch": 3}, "does not take the option ssl_epoch"),
        ({"features": "ssl", "ssl_epochs": 0}, "ssl_epochs=0 is out of range"),
        ({"features": "ssl", "ssl_temperature": -1}, "ssl_temperature=-1 is out of range"),
        ({"features": "ssl", "ssl_backbone": "vgg"}, "ssl_backbone='vgg' is not a model"),
    ],
)
@pytest.mark.parametrize("name", ["typiclust", "probcover"])
def test_bad_feature_options_are_refused_naming_the_option(name, options, match):
    with pytest.raises(DalkitError, match=match):
        create_strategy(name, **options)
