"""In-memory image data: one uint8 tensor (N, C, H, W) and int64 labels, plus how to augment it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from dalkit.errors import DalkitError


@dataclass(frozen=True)
class AugmentSpec:
    """Batch augmentation that suits a data set: random crop after zero padding, horizontal flip."""

    crop_padding: int = 0
    flip: bool = False


@dataclass
class ImageDataset:
    """A whole split held as one uint8 tensor; `images` is (N, C, H, W), `labels` is (N,)."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError("images must be a uint8 tensor of shape (N, C, H, W)")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError("labels must have one entry per image")
        self.labels = self.labels.long()

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def subset(self, indices: np.ndarray | torch.Tensor) -> ImageDataset:
        index = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        return ImageDataset(self.images[index], self.labels[index], list(self.classes))

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.labels.numpy(), minlength=self.num_classes)


@dataclass
class DataSplits:
    """Train and test splits of one data set, with its augmentation and normalisation statistics."""

    name: str
    train: ImageDataset
    test: ImageDataset
    augment: AugmentSpec = field(default_factory=AugmentSpec)

    def __post_init__(self) -> None:
        if self.train.image_shape != self.test.image_shape:
            raise ValueError("train and test images must have the same shape")
        if len(self.train) == 0:
            raise DalkitError(f"data set {self.name!r} has no training image; check the files.")

    @property
    def num_classes(self) -> int:
        return self.train.num_classes

    def channel_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel mean and std of the training images, in [0, 1] units."""
        return channel_stats(self.train.images)


def channel_stats(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of uint8 (N, C, H, W) images, in [0, 1] units."""
    x = images.float().div_(255)
    return x.mean(dim=(0, 2, 3)), x.std(dim=(0, 2, 3)).clamp_min(1e-3)


def labels_from_array(values: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(values, dtype=np.int64))


def images_from_nhwc(array: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, C) or (N, H, W) array -> contiguous uint8 (N, C, H, W) tensor."""
    array = np.asarray(array, dtype=np.uint8)
    if array.ndim == 3:
        array = array[:, :, :, None]
    return torch.from_numpy(np.ascontiguousarray(array.transpose(0, 3, 1, 2)))
