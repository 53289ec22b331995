"""Frozen pretrained-encoder features of a data set, computed once and cached on disk by content.

The key hashes the images (bytes and shape), the encoder's weights (`weights_id`), its input resolution and the
extraction precision, so every cycle, strategy, seed and run on the same images and encoder reads one file:
`<cache_dir>/pretrained/<key>.pt` (cache_dir: $DALKIT_CACHE or ~/.cache/dalkit; "none": memory only), float16.

Extraction runs in eval mode under inference mode, in batches of `batch_size`, with the encoder and its input in
channels_last (`channels_last=False` for the plain layout) and, with `precision="bf16"`, under bfloat16 autocast;
a progress bar shows images/s and the ETA.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from pathlib import Path

import torch

from dalkit.errors import DalkitError
from dalkit.features.simclr import default_cache_dir
from dalkit.models.pretrained import PretrainedClassifier, weights_id
from dalkit.runtime import progress_bar

PRECISIONS = ("fp32", "bf16")
CODE_VERSION = 1
MEMORY_ENTRIES = 4
_MEMORY: OrderedDict[str, torch.Tensor] = OrderedDict()


def feature_key(images: torch.Tensor, model: PretrainedClassifier, precision: str) -> str:
    digest = hashlib.blake2b(digest_size=16)
    array = images.detach().cpu().contiguous().numpy()
    digest.update(repr((tuple(array.shape), str(array.dtype))).encode())
    digest.update(array)
    settings = {"weights": weights_id(model.encoder), "resolution": model.inputs.resolution, "precision": precision}
    digest.update(json.dumps({**settings, "code": CODE_VERSION}, sort_keys=True).encode())
    return digest.hexdigest()


def feature_file(cache_dir: str | Path | None, key: str) -> Path | None:
    if cache_dir is not None and str(cache_dir) in ("", "none"):
        return None
    return (default_cache_dir() if cache_dir is None else Path(cache_dir)) / "pretrained" / f"{key}.pt"


@torch.inference_mode()
def extract(
    model: PretrainedClassifier,
    images: torch.Tensor,
    device: torch.device,
    batch_size: int = 256,
    precision: str = "fp32",
    channels_last: bool = True,
    progress: bool = True,
) -> torch.Tensor:
    """The encoder's pooled features (N, d) of uint8 images, float16 on the CPU, computed now."""
    if precision not in PRECISIONS:
        raise DalkitError(f"precision must be one of {PRECISIONS}, not {precision!r}.")
    layout = torch.channels_last if channels_last else torch.contiguous_format
    was_training = model.training
    model.eval().to(memory_format=layout)
    out = torch.empty(len(images), model.feature_dim, dtype=torch.float16)
    with progress_bar(progress=progress, total=len(images), desc="features", unit="img", leave=False) as bar:
        for start in range(0, len(images), batch_size):
            x = images[start : start + batch_size].to(device).float().div(255).contiguous(memory_format=layout)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                out[start : start + len(x)] = model.encode(x).float().cpu()
            bar.update(len(x))
    model.train(was_training)
    return out


def cached_features(
    model: PretrainedClassifier,
    images: torch.Tensor,
    device: torch.device,
    cache_dir: str | Path | None = None,
    batch_size: int = 256,
    precision: str = "fp32",
    channels_last: bool = True,
    progress: bool = True,
) -> torch.Tensor:
    """`extract`'s features of `images`, from memory, from the disk cache, or computed now and cached."""
    key = feature_key(images, model, precision)
    if key in _MEMORY:
        _MEMORY.move_to_end(key)
        return _MEMORY[key]
    path = feature_file(cache_dir, key)
    if path is not None and path.exists():
        features = torch.load(path, map_location="cpu", weights_only=True)
    else:
        features = extract(model, images, device, batch_size, precision, channels_last, progress)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            torch.save(features, tmp)
            tmp.replace(path)
    _MEMORY[key] = features
    while len(_MEMORY) > MEMORY_ENTRIES:
        _MEMORY.popitem(last=False)
    return features


def feature_view(features: torch.Tensor) -> torch.Tensor:
    """Features (N, d) as the (N, d, 1, 1) batch a `PretrainedClassifier` takes in place of images."""
    return features[:, :, None, None]
