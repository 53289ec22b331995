"""The embedded default data set: scikit-learn's 8x8 handwritten digits (1,797 images, no download).

The digits come without a published split, so a fixed stratified split is used (seed 0, 500 test
images) and is the same on every machine. Pixel values 0-16 are scaled to 0-255.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from dalkit.data.base import (
    AugmentSpec,
    DataSplits,
    ImageDataset,
    images_from_nhwc,
    labels_from_array,
)
from dalkit.data.registry import register_dataset

TEST_SIZE = 500


@register_dataset("digits")
def load_digits_splits(root: Path | None = None, download: bool = False) -> DataSplits:
    """scikit-learn's 8x8 digits, embedded (no download): 1,297 train / 500 test images."""
    bunch = load_digits()
    images = np.rint(bunch.images * (255 / 16)).astype(np.uint8)
    train_idx, test_idx = train_test_split(
        np.arange(len(images)), test_size=TEST_SIZE, stratify=bunch.target, random_state=0
    )
    classes = [str(c) for c in range(10)]

    def split(idx: np.ndarray) -> ImageDataset:
        return ImageDataset(images_from_nhwc(images[idx]), labels_from_array(bunch.target[idx]), classes)

    # Never flip digits; one pixel of translation suits 8x8 images.
    return DataSplits("digits", split(train_idx), split(test_idx), AugmentSpec(crop_padding=1))
