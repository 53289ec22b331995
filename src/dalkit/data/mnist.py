"""MNIST and Fashion-MNIST from the official IDX files, in torchvision's layout.

root/MNIST/raw/ and root/FashionMNIST/raw/ hold train-images-idx3-ubyte, train-labels-idx1-ubyte,
t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte, uncompressed or as the published `.gz` files. An IDX file is
a big-endian int32 magic number (2049 for a 1-d label file, 2051 for a 3-d image file: 0x08 = unsigned bytes,
then the number of dimensions), one big-endian int32 size per dimension, then the bytes themselves.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dalkit.data.base import AugmentSpec, DataSplits, ImageDataset, images_from_nhwc
from dalkit.data.download import (
    Remote,
    checked_labels,
    checked_pixels,
    ensure_present,
    read_bytes,
    reject_options,
    unreadable_file,
)
from dalkit.data.registry import register_dataset

LABELS_MAGIC = 2049
IMAGES_MAGIC = 2051
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@dataclass(frozen=True)
class IdxLayout:
    name: str
    title: str
    folder: str
    base_url: str
    md5: tuple[str, ...]  # of the .gz files, in the order of FILES
    classes: tuple[str, ...]
    augment: AugmentSpec

    def remotes(self) -> list[Remote]:
        return [
            Remote(f"{self.base_url}{name}.gz", md5, f"{self.folder}/raw/{name}.gz")
            for name, md5 in zip(FILES, self.md5)
        ]


MNIST = IdxLayout(
    name="mnist",
    title="MNIST",
    folder="MNIST",
    base_url="https://ossci-datasets.s3.amazonaws.com/mnist/",
    md5=(
        "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "d53e105ee54ea40749a09fcbcd1e9432",
        "9fb629c4189551a2d022fa330f9573f3",
        "ec29112dd5afa0611ce80d1b7f02629c",
    ),
    classes=tuple(str(digit) for digit in range(10)),
    augment=AugmentSpec(crop_padding=2, flip=False),
)
FASHION_MNIST = IdxLayout(
    name="fashionmnist",
    title="Fashion-MNIST",
    folder="FashionMNIST",
    base_url="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    md5=(
        "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "25c81989df183df01b3e8a0aad5dffbe",
        "bef4ecab320f06d8554ea6380940ec79",
        "bb300cfdad3c16e7a12a480ee83cd310",
    ),
    classes=(
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    augment=AugmentSpec(crop_padding=2, flip=True),
)


@register_dataset("mnist")
def load_mnist(root: Path, download: bool = False, **options) -> DataSplits:
    """MNIST: 60,000 train / 10,000 test 28x28 grey handwritten digits; never flipped when augmented."""
    reject_options("mnist", options)
    return load_idx_dataset(MNIST, Path(root), download)


@register_dataset("fashionmnist")
def load_fashion_mnist(root: Path, download: bool = False, **options) -> DataSplits:
    """Fashion-MNIST: 60,000 train / 10,000 test 28x28 grey images of 10 kinds of clothing."""
    reject_options("fashionmnist", options)
    return load_idx_dataset(FASHION_MNIST, Path(root), download)


def load_idx_dataset(layout: IdxLayout, root: Path, download: bool) -> DataSplits:
    files = [(f"{layout.folder}/raw/{name}", f"{layout.folder}/raw/{name}.gz") for name in FILES]
    train_images, train_labels, test_images, test_labels = ensure_present(
        layout.title, root, files, download, layout.remotes()
    )
    train = read_split(train_images, train_labels, layout)
    test = read_split(test_images, test_labels, layout)
    return DataSplits(layout.name, train, test, layout.augment)


def read_split(images_path: Path, labels_path: Path, layout: IdxLayout) -> ImageDataset:
    pixels = checked_pixels(read_idx(images_path, IMAGES_MAGIC, layout.title), images_path, layout.title)
    raw_labels = read_idx(labels_path, LABELS_MAGIC, layout.title)
    labels = checked_labels(raw_labels, len(pixels), len(layout.classes), labels_path, layout.title)
    return ImageDataset(images_from_nhwc(pixels), labels, list(layout.classes))


def read_idx(path: Path, magic: int, title: str) -> np.ndarray:
    """An unsigned-byte IDX file (optionally gzipped) as a read-only uint8 array, after checking its header."""
    raw = read_bytes(path, title)
    ndim = magic & 0xFF
    header = 4 * (1 + ndim)
    if len(raw) < header:
        raise unreadable_file(path, title, f"{len(raw)} bytes is too short for an IDX header")
    found, *shape = struct.unpack(f">i{ndim}I", raw[:header])
    if found != magic:
        raise unreadable_file(path, title, f"IDX magic number {found}, expected {magic}")
    expected = header + int(np.prod(shape, dtype=np.int64))
    if len(raw) != expected:
        raise unreadable_file(path, title, f"{len(raw)} bytes where an IDX file of shape {tuple(shape)} has {expected}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)
