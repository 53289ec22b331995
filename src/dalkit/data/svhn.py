"""SVHN (Street View House Numbers, cropped digits) from the official MATLAB files, in torchvision's layout.

root/train_32x32.mat and root/test_32x32.mat: "X" is uint8 (32, 32, 3, N) (height, width, RGB, image) and
"y" is (N, 1) with labels 1-10, where 10 stands for the digit 0. The "extra" split is not used.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io
import torch

from dalkit.data.base import AugmentSpec, DataSplits, ImageDataset
from dalkit.data.download import (
    Remote,
    checked_labels,
    checked_pixels,
    ensure_present,
    reject_options,
    unreadable_file,
)
from dalkit.data.registry import register_dataset

TITLE = "SVHN"
FILES = ("train_32x32.mat", "test_32x32.mat")
REMOTES = (
    Remote("http://ufldl.stanford.edu/housenumbers/train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373", FILES[0]),
    Remote("http://ufldl.stanford.edu/housenumbers/test_32x32.mat", "eb5a983be6a315427106f1b164d9cef3", FILES[1]),
)
CLASSES = [str(digit) for digit in range(10)]


@register_dataset("svhn")
def load_svhn(root: Path, download: bool = False, **options) -> DataSplits:
    """SVHN: 73,257 train / 26,032 test 32x32 colour digits; never flipped when augmented."""
    reject_options("svhn", options)
    train_path, test_path = ensure_present(TITLE, Path(root), FILES, download, REMOTES)
    return DataSplits("svhn", read_mat(train_path), read_mat(test_path), AugmentSpec(crop_padding=4, flip=False))


def read_mat(path: Path) -> ImageDataset:
    try:
        content = scipy.io.loadmat(path, variable_names=["X", "y"])
    except Exception as error:  # scipy raises many kinds (ValueError, MatReadError, OSError, ...) on damaged files
        raise unreadable_file(path, TITLE, f"not a readable MATLAB file: {error}") from None
    if "X" not in content or "y" not in content:
        raise unreadable_file(path, TITLE, "it lacks the 'X' or 'y' variable")
    pixels = checked_pixels(content["X"], path, TITLE)
    if pixels.ndim != 4 or pixels.shape[2] != 3:
        raise unreadable_file(path, TITLE, f"X has shape {pixels.shape}, not (32, 32, 3, N)")
    images = torch.from_numpy(np.ascontiguousarray(pixels.transpose(3, 2, 0, 1)))
    raw = np.asarray(content["y"]).reshape(-1)
    labels = checked_labels(raw, len(images), 11, path, TITLE) % 10  # label 10 is the digit 0
    return ImageDataset(images, labels, list(CLASSES))
