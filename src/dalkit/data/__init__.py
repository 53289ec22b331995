"""Data sets (each read from its own on-disk format), the Pool, and batch augmentation."""

from __future__ import annotations

from pathlib import Path

from dalkit.data import cifar, digits, folder, longtail, mnist, svhn  # noqa: F401  (registers the data sets)
from dalkit.data.base import AugmentSpec, DataSplits, ImageDataset
from dalkit.data.pool import Pool
from dalkit.data.registry import DATASETS

DEFAULT_DATA_ROOT = Path("data")


def load_dataset(name: str, root: str | Path = DEFAULT_DATA_ROOT, download: bool = False, **options) -> DataSplits:
    """Load a registered data set by name from `root` (torchvision's layout); see `list_datasets()`."""
    return DATASETS.get(name)(root=Path(root), download=download, **options)


def list_datasets() -> list[str]:
    return DATASETS.names()


__all__ = ["AugmentSpec", "DataSplits", "ImageDataset", "Pool", "list_datasets", "load_dataset"]
