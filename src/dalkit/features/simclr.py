"""Self-supervised features of the pool, for the strategies that select on a representation (TypiClust, ProbCover).

TypiClust and ProbCover cluster and cover a representation of the images. Their papers use a self-supervised one,
trained once, without labels, on the whole training set, rather than the classifier's embedding (which, at a budget
of a few labels per class, is trained on almost nothing). `pool_features` trains such an encoder on the pool images,
once per pool, and caches its features: the images do not change between cycles, so every later cycle, every other
strategy with the same settings and every later run on the same images read the cache.

Method: SimCLR (Chen et al. 2020) as the TypiClust and ProbCover authors ran it on CIFAR, through SCAN's pretext
stage (github.com/avihu111/TypiClust, scan/configs/pretext/simclr_cifar10.yml, scan/losses/losses.py,
scan/utils/common_config.py):
- encoder: CIFAR ResNet-18 (`backbone`), its 512-d pooled trunk output; projection head Linear(512, 512) - ReLU -
  Linear(512, 128), L2-normalised (SCAN's "mlp" head, features_dim 128);
- two views of every image: RandomResizedCrop(scale 0.2-1) -> horizontal flip -> ColorJitter(0.4, 0.4, 0.4, 0.1)
  with p 0.8 -> grayscale with p 0.2 (`dalkit.data.ssl_augment.strong_view` with saturation 0.4, no blur, no
  solarize), then the data set's normalisation;
- NT-Xent at temperature 0.1 over the 2B views of a batch, both views forwarded together (batch norm sees them
  together, as SCAN concatenates them);
- SGD lr 0.4, momentum 0.9, weight decay 1e-4, no Nesterov, batch 512, 500 epochs, cosine decay per epoch from lr
  to lr * 0.1^3 (SCAN's cosine with lr_decay_rate 0.1);
- features: the encoder's trunk output on the images as they are (no augmentation), in eval mode; the strategies
  L2-normalise them (SCAN saves these pre-head "pre_lasts"; the TypiClust code normalises them on loading).

Departures: (1) both views serve as anchors (SimCLR's symmetric NT-Xent); SCAN's SimCLRLoss anchors on the first
view only (same positives and negatives, half the terms). (2) Augmentations run in batches on the device, with
ssl_augment's approximations (hue turned in YIQ, crops by bilinear grid_sample). (3) The last partial batch is
kept unless it holds one image (batch norm); SCAN drops every last partial batch.

Why SimCLR rather than the MoBY loss dalkit already has (objective `moby`): it is the representation both papers'
numbers rest on, and it is one network and one loss. dalkit's MoBY pieces are built for MoBYv2AL's protocol (a weak
and a strong view, a momentum key encoder and two key queues trained jointly with the classifier); used alone
they would need a strong/strong variant, a momentum schedule and a guard against the batch-norm shortcut that
queue-based methods have on one device (MoCo's shuffled BN), none of which the papers ran. SimCLR's in-batch
negatives share one forward pass, so that shortcut does not arise. A run trained with `--objectives ce,moby`
already gives TypiClust/ProbCover MoBY-trained features through `features=backbone`.

Cache: the key hashes the pool images (bytes and shape), the normalisation and every training setting; the seed
is the config's own (`seed`, default 0), not the run's, so all cycles, strategies and seeds of a comparison read
one encoder, as the papers ran all their experiments on one SimCLR checkpoint per data set. Kept in memory for
the last two pools of the process, and on disk under `cache_dir` (default $DALKIT_CACHE or ~/.cache/dalkit):
`ssl/<key>.pt` with the features, the encoder's weights, the configuration and the loss of every epoch.

Cost: every epoch is 2 x (forward + backward) of the whole pool. The paper's 500 epochs of ResNet-18 on CIFAR-10's
50,000 images are about 85 PFLOP: hours on one GPU (bf16 autocast and channels_last are used there). On a CPU
they are out of reach: measured on one core of the development machine, ResNet-18 trains on ~5 images/s (both
views; ~3 hours an epoch of 50,000 images, two months for 500 epochs), small-cnn width 32 on ~55 images/s
(~15 minutes an epoch). On a CPU, pass e.g. `ssl_backbone=small-cnn ssl_width=32 ssl_epochs=20`, or train once
on a GPU and let the disk cache serve the later runs.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from dalkit.data.augment import Normalizer
from dalkit.data.ssl_augment import strong_view
from dalkit.errors import DalkitError
from dalkit.features.base import register_feature_source
from dalkit.models import MODELS, create_model
from dalkit.models.base import Classifier, model_input, prepare_model
from dalkit.runtime import autocast, batch_slices, fit_loop, isolated_rng
from dalkit.seeding import make_generator

#: ColorJitter(brightness, contrast, saturation, hue) of SCAN's SimCLR CIFAR pipeline
SIMCLR_JITTER = (0.4, 0.4, 0.4, 0.1)
#: bump when the training code changes what a given configuration produces (invalidates the caches)
CODE_VERSION = 1
MEMORY_ENTRIES = 2


@dataclass(frozen=True)
class SimCLRConfig:
    """SimCLR's settings; the defaults are the TypiClust/ProbCover CIFAR ones (see the module docstring)."""

    backbone: str = "resnet18"
    width: int | None = None
    epochs: int = 500
    batch_size: int = 512
    lr: float = 0.4
    momentum: float = 0.9
    weight_decay: float = 1e-4
    temperature: float = 0.1
    projection_dim: int = 128
    final_lr_ratio: float = 1e-3
    seed: int = 0

    def check(self, owner: str) -> None:
        """Refuse a bad value with one sentence naming the `owner` strategy's option (ssl_<field>)."""
        if self.backbone not in MODELS:
            raise DalkitError(
                f"the {owner} option ssl_backbone={self.backbone!r} is not a model; choose one of: "
                f"{', '.join(MODELS.names())}."
            )
        checks = [
            ("epochs", self.epochs >= 1, 500),
            ("batch_size", self.batch_size >= 2, 512),
            ("projection_dim", self.projection_dim >= 1, 128),
            ("width", self.width is None or self.width >= 1, 64),
            ("lr", self.lr > 0, 0.4),
            ("temperature", self.temperature > 0, 0.1),
            ("momentum", 0 <= self.momentum < 1, 0.9),
            ("weight_decay", self.weight_decay >= 0, 1e-4),
            ("final_lr_ratio", 0 <= self.final_lr_ratio <= 1, 1e-3),
        ]
        for name, ok, example in checks:
            if not ok:
                raise DalkitError(
                    f"the {owner} option ssl_{name}={getattr(self, name)!r} is out of range; pass e.g. "
                    f"ssl_{name}={example}."
                )

    def model_options(self) -> dict:
        return {} if self.width is None else {"width": self.width}

    def lr_at(self, epoch: int) -> float:
        """SCAN's cosine: from lr at epoch 0 towards lr * final_lr_ratio at the end."""
        floor = self.lr * self.final_lr_ratio
        return floor + (self.lr - floor) * (1 + math.cos(math.pi * epoch / self.epochs)) / 2


class ProjectionHead(nn.Sequential):
    """SCAN's "mlp" head: Linear(d, d) - ReLU - Linear(d, out)."""

    def __init__(self, dim: int, out: int) -> None:
        super().__init__(nn.Linear(dim, dim), nn.ReLU(inplace=True), nn.Linear(dim, out))


def simclr_view(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One SimCLR view of a uint8 batch (as uint8): crop, flip, colour jitter (p 0.8), grayscale (p 0.2)."""
    return strong_view(images, generator, jitter=SIMCLR_JITTER, blur_p=0.0, solarize_p=0.0)


def nt_xent(z: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's NT-Xent, both views as anchors: z (2n, d) holds view one of images 0..n-1, then view two.

    Row i's positive is the other view of its image; its negatives are the other 2n - 2 rows; cosine
    similarities divided by `temperature`, cross-entropy averaged over the 2n rows.
    """
    z = F.normalize(z.float(), dim=1)
    n = len(z) // 2
    logits = (z @ z.T) / temperature
    logits = logits.masked_fill(torch.eye(len(z), dtype=torch.bool, device=z.device), float("-inf"))
    return F.cross_entropy(logits, torch.arange(2 * n, device=z.device).roll(n))


def build_encoder(config: SimCLRConfig, image_shape: tuple[int, int, int], device: torch.device) -> Classifier:
    """A fresh model of `config.backbone` for (C, H, W) images; only its trunk is used."""
    channels, height, _ = image_shape
    model = create_model(config.backbone, 2, in_channels=channels, image_size=height, **config.model_options())
    return prepare_model(model, device)


def train_simclr(
    images: torch.Tensor, normalizer: Normalizer, config: SimCLRConfig, device: torch.device, progress: bool = True
) -> tuple[Classifier, list[float]]:
    """SimCLR on uint8 `images` (N, C, H, W); returns the encoder and the mean loss of every epoch.

    Weights (under `isolated_rng`), batch order and augmentations are all drawn from `config.seed`; the global RNG
    is left untouched.
    """
    images = images.to(device)
    normalizer = normalizer.to(device)
    with isolated_rng(config.seed):
        encoder = build_encoder(config, tuple(images.shape[1:]), device)
        head = ProjectionHead(encoder.embedding_dim, config.projection_dim).to(device)
    generator = make_generator(config.seed, device)
    # the encoder's classifier layer never gets a gradient, so SGD leaves it alone
    parameters = [*encoder.parameters(), *head.parameters()]
    optimizer = torch.optim.SGD(parameters, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    slices = batch_slices(len(images), config.batch_size)
    encoder.train()
    head.train()

    def epoch_steps(epoch: int) -> Iterator[tuple[torch.Tensor, int]]:
        for group in optimizer.param_groups:
            group["lr"] = config.lr_at(epoch)
        order = torch.randperm(len(images), device=device, generator=generator)
        for part in slices:
            raw = images[order[part]]
            views = torch.cat([simclr_view(raw, generator), simclr_view(raw, generator)])
            with autocast(device):
                z = head(encoder.trunk(model_input(normalizer(views))))
            loss = nt_xent(z, config.temperature)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            yield loss, part.stop - part.start

    seen = sum(s.stop - s.start for s in slices)
    losses = fit_loop(config.epochs, seen, epoch_steps, progress=progress, description="SimCLR")
    return encoder, losses.tolist()


@torch.inference_mode()
def encode(
    encoder: Classifier, images: torch.Tensor, normalizer: Normalizer, device: torch.device, batch_size: int = 256
) -> torch.Tensor:
    """The encoder's trunk output (N, d) on the images as they are, in eval mode; float32 on the CPU."""
    encoder.eval()
    normalizer = normalizer.to(device)
    out = []
    for start in range(0, len(images), batch_size):
        x = model_input(normalizer(images[start : start + batch_size].to(device)))
        with autocast(device):
            out.append(encoder.trunk(x).float().cpu())
    return torch.cat(out) if out else torch.empty(0, encoder.embedding_dim)


def pool_key(images: torch.Tensor, normalizer: Normalizer, config: SimCLRConfig) -> str:
    """A digest of what determines the features: the images, their normalisation, the settings, the code version."""
    digest = hashlib.blake2b(digest_size=16)
    array = images.detach().cpu().contiguous().numpy()
    digest.update(repr((tuple(array.shape), str(array.dtype))).encode())
    digest.update(array)
    for stat in (normalizer.mean, normalizer.std):
        digest.update(stat.detach().float().cpu().numpy().tobytes())
    digest.update(json.dumps({"simclr": asdict(config), "code": CODE_VERSION}, sort_keys=True).encode())
    return digest.hexdigest()


def default_cache_dir() -> Path:
    return Path(os.environ.get("DALKIT_CACHE", Path.home() / ".cache" / "dalkit"))


def cache_path(cache_dir: str | Path | None, key: str) -> Path | None:
    """<cache_dir>/ssl/<key>.pt; the default folder for None; no file (memory only) for "none" or ""."""
    if cache_dir is not None and str(cache_dir) in ("", "none"):
        return None
    return (default_cache_dir() if cache_dir is None else Path(cache_dir)) / "ssl" / f"{key}.pt"


_MEMORY: OrderedDict[str, tuple[torch.Tensor, dict]] = OrderedDict()


def _remember(key: str, features: torch.Tensor, info: dict) -> None:
    _MEMORY[key] = (features, info)
    _MEMORY.move_to_end(key)
    while len(_MEMORY) > MEMORY_ENTRIES:
        _MEMORY.popitem(last=False)


def _load(path: Path) -> tuple[torch.Tensor, dict] | None:
    """A cache file's features and info, or None (with a warning) when it cannot be read."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        return saved["features"].float(), saved["info"]
    except Exception as error:  # a truncated or foreign file: retrain and overwrite it
        warnings.warn(f"ignoring the unreadable SSL feature cache {path} ({error}); training again", stacklevel=3)
        return None


@register_feature_source("ssl")
def pool_features(
    images: torch.Tensor,
    normalizer: Normalizer,
    config: SimCLRConfig,
    device: torch.device,
    cache_dir: str | Path | None = None,
    batch_size: int = 256,
    progress: bool = True,
) -> tuple[torch.Tensor, dict]:
    """SimCLR features (N, d) of all `images` (float32, CPU, in their order) and a record of where they came from.

    Read from memory or from `cache_dir`/ssl/<key>.pt when present (cache_dir None: the default folder; "none" or
    "": memory only); otherwise trained (see `train_simclr`) and saved. The info dict says: features "ssl", the
    method and its settings, the key, the training time and last epoch's loss, and `cache` = trained, memory or disk.
    """
    key = pool_key(images, normalizer, config)
    if key in _MEMORY:
        _MEMORY.move_to_end(key)
        features, info = _MEMORY[key]
        return features, {**info, "cache": "memory"}
    path = cache_path(cache_dir, key)
    if path is not None and path.exists() and (loaded := _load(path)) is not None:
        _remember(key, *loaded)
        return loaded[0], {**loaded[1], "cache": "disk"}
    start = time.perf_counter()
    encoder, losses = train_simclr(images, normalizer, config, device, progress)
    features = encode(encoder, images, normalizer, device, batch_size)
    info = {
        "features": "ssl",
        "method": "simclr",
        "config": asdict(config),
        "key": key,
        "images": len(images),
        "feature_dim": int(features.shape[1]),
        "train_seconds": round(time.perf_counter() - start, 3),
        "final_loss": round(losses[-1], 6) if losses else None,
        "cache_file": str(path) if path is not None else None,
    }
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu() for k, v in encoder.state_dict().items()}
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        torch.save({"features": features, "info": info, "losses": losses, "state_dict": state}, tmp)
        tmp.replace(path)
    _remember(key, features, info)
    return features, {**info, "cache": "trained"}
