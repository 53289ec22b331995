"""CIFAR-10 and CIFAR-100 from the official "python version" pickles, in torchvision's layout.

root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta} and root/cifar-100-python/{train, test,
meta}: each batch is a pickled dict whose "data" entry is uint8 (N, 3072), the R, G and B planes of 32x32
images one after another, with "labels" (CIFAR-10) or "fine_labels" (CIFAR-100) beside it; the meta file
holds the class names. Keys are bytes in the official Python 2 pickles and str in some rebuilt copies.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dalkit.data.base import AugmentSpec, DataSplits, ImageDataset
from dalkit.data.download import (
    Remote,
    checked_labels,
    checked_pixels,
    ensure_present,
    load_pickle,
    reject_options,
    unreadable_file,
)
from dalkit.data.registry import register_dataset

IMAGE_SHAPE = (3, 32, 32)
AUGMENT = AugmentSpec(crop_padding=4, flip=True)


@dataclass(frozen=True)
class CifarLayout:
    name: str
    title: str
    folder: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    meta: str
    label_key: str
    names_key: str
    remote: Remote


CIFAR10 = CifarLayout(
    name="cifar10",
    title="CIFAR-10",
    folder="cifar-10-batches-py",
    train=tuple(f"data_batch_{i}" for i in range(1, 6)),
    test=("test_batch",),
    meta="batches.meta",
    label_key="labels",
    names_key="label_names",
    remote=Remote(
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "c58f30108f718f92721af3b95e74349a",
        "cifar-10-python.tar.gz",
    ),
)
CIFAR100 = CifarLayout(
    name="cifar100",
    title="CIFAR-100",
    folder="cifar-100-python",
    train=("train",),
    test=("test",),
    meta="meta",
    label_key="fine_labels",
    names_key="fine_label_names",
    remote=Remote(
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "eb9058c3a382ffc7106e4002c42a8d85",
        "cifar-100-python.tar.gz",
    ),
)


@register_dataset("cifar10")
def load_cifar10(root: Path, download: bool = False, **options) -> DataSplits:
    """CIFAR-10: 50,000 train / 10,000 test 32x32 colour images in 10 classes."""
    reject_options("cifar10", options)
    return load_cifar(CIFAR10, Path(root), download)


@register_dataset("cifar100")
def load_cifar100(root: Path, download: bool = False, **options) -> DataSplits:
    """CIFAR-100 with its 100 fine labels: 50,000 train / 10,000 test 32x32 colour images."""
    reject_options("cifar100", options)
    return load_cifar(CIFAR100, Path(root), download)


def load_cifar(layout: CifarLayout, root: Path, download: bool) -> DataSplits:
    names = [f"{layout.folder}/{name}" for name in (*layout.train, *layout.test, layout.meta)]
    paths = ensure_present(layout.title, root, names, download, [layout.remote])
    n_train, n_test = len(layout.train), len(layout.test)
    classes = read_class_names(paths[-1], layout)
    train = read_batches(paths[:n_train], layout, classes)
    test = read_batches(paths[n_train : n_train + n_test], layout, classes)
    return DataSplits(layout.name, train, test, AUGMENT)


def read_class_names(path: Path, layout: CifarLayout) -> list[str]:
    names = entry(load_dict(path, layout.title), layout.names_key, path, layout.title)
    if not isinstance(names, (list, tuple)) or not names:
        raise unreadable_file(path, layout.title, f"{layout.names_key!r} is not a list of names")
    return [name.decode("utf-8") if isinstance(name, bytes) else str(name) for name in names]


def read_batches(paths: list[Path], layout: CifarLayout, classes: list[str]) -> ImageDataset:
    images, labels = zip(*(read_batch(path, layout, len(classes)) for path in paths))
    return ImageDataset(torch.cat(images), torch.cat(labels), list(classes))


def read_batch(path: Path, layout: CifarLayout, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    batch = load_dict(path, layout.title)
    data = checked_pixels(entry(batch, "data", path, layout.title), path, layout.title)
    if data.ndim != 2 or data.shape[1] != int(np.prod(IMAGE_SHAPE)):
        raise unreadable_file(path, layout.title, f"data has shape {data.shape}, not (N, 3072)")
    labels = checked_labels(
        entry(batch, layout.label_key, path, layout.title), len(data), num_classes, path, layout.title
    )
    images = torch.from_numpy(np.ascontiguousarray(data).reshape(-1, *IMAGE_SHAPE))
    return images, labels


def load_dict(path: Path, title: str) -> dict:
    content = load_pickle(path, title)
    if not isinstance(content, dict):
        raise unreadable_file(path, title, f"it holds a {type(content).__name__}, not a dict")
    return content


def entry(content: dict, key: str, path: Path, title: str) -> Any:
    """content[key] whether the pickle's keys are bytes (Python 2) or str."""
    for candidate in (key.encode("ascii"), key):
        if candidate in content:
            return content[candidate]
    raise unreadable_file(path, title, f"it has no {key!r} entry")
