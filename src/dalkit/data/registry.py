"""The data set registry. A loader is `loader(root: Path, download: bool, **options) -> DataSplits`."""

from __future__ import annotations

from collections.abc import Callable

from dalkit.data.base import DataSplits
from dalkit.registry import Registry

DATASETS: Registry[DataSplits] = Registry("data set", "--dataset-option")
register_dataset: Callable = DATASETS.register
