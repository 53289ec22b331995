"""Your own images: a folder with one sub-folder per class (torchvision's ImageFolder layout).

`--dataset folder:PATH` reads the folder PATH (as does `--dataset folder --data-root PATH`).

Either root/train/<class>/... and root/test/<class>/... (the published split; every test class must also be a
train class), or root/<class>/... alone, in which case a stratified `test_fraction` of each class is held out
with a fixed seed, so the split is the same on every run. Sub-folders of a class folder are searched too;
hidden files and other extensions are skipped. Every image is turned as its EXIF orientation says, converted to
RGB (or grey; 16-bit images are scaled to 8 bits, CMYK goes through RGB) and resized to `image_size` x
`image_size` (bilinear). Nothing is downloaded.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from dalkit.data.base import AugmentSpec, DataSplits, ImageDataset, images_from_nhwc
from dalkit.data.registry import register_dataset
from dalkit.errors import DalkitError
from dalkit.runtime import progress_bar

EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
PIL_MODES = {1: "L", 3: "RGB"}
SPLIT_SEED = 0
PROGRESS_MIN_FILES = 200
MAX_WORKERS = 8


@register_dataset("folder")
def load_folder(
    root: Path,
    download: bool = False,
    image_size: int = 32,
    channels: int = 3,
    test_fraction: float = 0.2,
    **unknown,
) -> DataSplits:
    """Your images, one sub-folder per class (`--dataset folder:PATH`); `download` is ignored."""
    check_options(image_size, channels, test_fraction, unknown)
    root = Path(root)
    if not root.is_dir():
        raise DalkitError(
            f"image folder {root} was not found; give a folder with one sub-folder per class, e.g. "
            "--dataset folder:PATH."
        )
    augment = AugmentSpec(crop_padding=image_size // 8, flip=True)
    train_dir, test_dir = root / "train", root / "test"
    if train_dir.is_dir() != test_dir.is_dir():
        raise DalkitError(
            f"{root} has only one of train/ and test/; add the other, or rename it so that its class "
            "sub-folders sit directly in the folder and a test split is held out."
        )
    if train_dir.is_dir():
        classes, train_files, train_labels = list_images(train_dir)
        test_files, test_labels = list_test_images(test_dir, train_dir, classes)
        train = read_dataset(train_files, train_labels, classes, image_size, channels)
        test = read_dataset(test_files, test_labels, classes, image_size, channels)
        return DataSplits("folder", train, test, augment)
    classes, files, labels = list_images(root)
    whole = read_dataset(files, labels, classes, image_size, channels)
    train_idx, test_idx = stratified_split(whole.labels.numpy(), test_fraction, SPLIT_SEED)
    return DataSplits("folder", whole.subset(train_idx), whole.subset(test_idx), augment)


def check_options(image_size: object, channels: object, test_fraction: object, unknown: dict) -> None:
    if unknown:
        raise DalkitError(
            f"data set 'folder' has no option {', '.join(unknown)}; its options are image_size, channels and "
            "test_fraction."
        )
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise DalkitError(f"image_size must be a positive whole number of pixels, got {image_size!r}; e.g. 32.")
    if channels not in PIL_MODES or isinstance(channels, bool):
        raise DalkitError(f"channels must be 3 (colour) or 1 (grey), got {channels!r}; e.g. channels=1.")
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) or not 0 < test_fraction < 1:
        raise DalkitError(f"test_fraction must be between 0 and 1, got {test_fraction!r}; e.g. 0.2.")


def class_folders(folder: Path) -> list[Path]:
    return sorted(entry for entry in folder.iterdir() if entry.is_dir() and not entry.name.startswith("."))


def image_files(folder: Path) -> list[Path]:
    """Image files under `folder` (following links, skipping hidden entries), in a fixed order."""
    found = []
    for parent, dirs, names in os.walk(folder, followlinks=True):
        dirs[:] = [name for name in dirs if not name.startswith(".")]
        found += [
            Path(parent) / name
            for name in names
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in EXTENSIONS
        ]
    return sorted(found)


def list_images(folder: Path) -> tuple[list[str], list[Path], list[int]]:
    """Class names (the sub-folder names, sorted), image paths and labels; every class needs an image."""
    folders = class_folders(folder)
    if not folders:
        raise DalkitError(
            f"{folder} has no class sub-folders; put the images in one sub-folder per class, e.g. {folder}/cat/1.png."
        )
    files, labels = [], []
    for label, class_dir in enumerate(folders):
        found = image_files(class_dir)
        if not found:
            raise DalkitError(
                f"class folder {class_dir} has no image ({', '.join(sorted(EXTENSIONS))}); add images or remove it."
            )
        files += found
        labels += [label] * len(found)
    return [entry.name for entry in folders], files, labels


def list_test_images(test_dir: Path, train_dir: Path, classes: list[str]) -> tuple[list[Path], list[int]]:
    """Images under test/, labelled with the train classes' numbers; empty test class folders are allowed."""
    folders = class_folders(test_dir)
    unknown = [entry.name for entry in folders if entry.name not in classes]
    if unknown:
        raise DalkitError(
            f"test class folder(s) {', '.join(unknown)} in {test_dir} have no match in {train_dir}; "
            "add them to train/ or remove them from test/."
        )
    files, labels = [], []
    for class_dir in folders:
        found = image_files(class_dir)
        files += found
        labels += [classes.index(class_dir.name)] * len(found)
    return files, labels


def read_dataset(files: list[Path], labels: list[int], classes: list[str], size: int, channels: int) -> ImageDataset:
    pixels = np.empty((len(files), size, size, channels), dtype=np.uint8)
    workers = min(MAX_WORKERS, os.cpu_count() or 1)
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        loaded = pool.map(lambda path: read_image(path, size, PIL_MODES[channels]), files)
        shown = len(files) >= PROGRESS_MIN_FILES
        bar = progress_bar(loaded, progress=shown, total=len(files), desc="reading images", unit="img")
        for i, image in enumerate(bar):
            pixels[i] = image.reshape(size, size, channels)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return ImageDataset(images_from_nhwc(pixels), torch.tensor(labels, dtype=torch.long), list(classes))


def read_image(path: Path, size: int, mode: str) -> np.ndarray:
    """One image as uint8 (size, size[, channels]): turned upright as its EXIF orientation says, converted to
    `mode` (16-bit and 32-bit integer images scaled from 0-65535, CMYK through RGB) and resized bilinearly."""
    try:
        with Image.open(path) as image:
            converted = convert(ImageOps.exif_transpose(image), mode)
        if converted.size != (size, size):
            converted = converted.resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(converted, dtype=np.uint8)
    except Exception as error:  # Pillow raises many kinds (OSError, ValueError, SyntaxError, ...) on damaged files
        raise DalkitError(f"image {path} could not be read ({error}); remove or replace that file.") from None


def convert(image: Image.Image, mode: str) -> Image.Image:
    """`image` in `mode` ('L' or 'RGB'). Pillow's own conversion clips 16-bit grey ('I;16', or 'I' as some
    readers give it) at 255, which leaves a two-valued image: scale 0-65535 to 0-255 instead."""
    if image.mode.startswith("I;16") or image.mode == "I":
        wide = np.asarray(image, dtype=np.float64)
        image = Image.fromarray(np.clip(np.rint(wide / 257.0), 0, 255).astype(np.uint8))
    elif image.mode == "CMYK":
        image = image.convert("RGB")
    return image if image.mode == mode else image.convert(mode)


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Hold out round(test_fraction * n) random images of each class (keeping at least one for training)."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_test = min(int(round(test_fraction * len(members))), len(members) - 1)
        test.append(members[:n_test])
        train.append(members[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))
