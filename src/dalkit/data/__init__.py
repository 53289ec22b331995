"""Data sets (each read from its own on-disk format), the Pool, and batch augmentation."""

from __future__ import annotations

from pathlib import Path

from dalkit.data import (  # noqa: F401  (registers the data sets)
    cifar,
    digits,
    folder,
    longtail,
    mnist,
    repeated_mnist,
    svhn,
)
from dalkit.data.base import AugmentSpec, DataSplits, ImageDataset
from dalkit.data.longtail import load_long_tailed
from dalkit.data.pool import Pool
from dalkit.data.registry import DATASETS

DEFAULT_DATA_ROOT = Path("data")
FOLDER_PREFIX = "folder:"


def load_dataset(name: str, root: str | Path = DEFAULT_DATA_ROOT, download: bool = False, **options) -> DataSplits:
    """Load a registered data set by name from `root` (torchvision's layout); see `list_datasets()`.

    NAME-lt is the long-tailed version of any registered NAME (options imbalance, selection, seed, then NAME's own;
    see `dalkit.data.longtail`), unless NAME-lt is registered itself (cifar10-lt, cifar100-lt). folder:PATH is
    the image folder at PATH (`root` is not used; see `dalkit.data.folder`).
    """
    if name.startswith(FOLDER_PREFIX):
        name, root = "folder", folder_path(name)
    base = name.removesuffix("-lt")
    if name not in DATASETS.names() and base != name and base in DATASETS.names():
        return load_long_tailed(base, Path(root), download, **options)
    return DATASETS.get(name)(root=Path(root), download=download, **options)


def folder_path(name: str) -> Path:
    return Path(name.removeprefix(FOLDER_PREFIX)).expanduser()


def dataset_label(name: str) -> str:
    """`name` as a run directory's name reads it: folder:PATH is folder-BASENAME."""
    return f"folder-{folder_path(name).resolve().name}" if name.startswith(FOLDER_PREFIX) else name


def list_datasets() -> list[str]:
    return DATASETS.names()


__all__ = ["AugmentSpec", "DataSplits", "ImageDataset", "Pool", "dataset_label", "list_datasets", "load_dataset"]
