"""Repeated MNIST (Kirsch, van Amersfoort & Gal, "BatchBALD", NeurIPS 2019, arXiv 1906.08158): the MNIST training
set repeated `copies` times, each copy with its own isotropic Gaussian noise; the test split is the plain MNIST test
set.

The paper built it to show what top-k acquisition does with redundant data: BALD scores the copies of an image
alike and picks them together, so a batch of 10 holds few distinct images and BALD falls below random selection;
BatchBALD does not.

Where each number comes from (the authors' code, github.com/BlackHC/BatchBALD `src/dataset_enum.py`, and the
re-implementation github.com/BlackHC/batchbald_redux `repeated_mnist.py`, `create_repeated_MNIST_dataset`):

- 3 copies (`num_repetitions = 3`; the paper's ablations repeat 2 and 5 times: `--dataset-option copies=5`);
- noise drawn once per training image of every copy, the first included (a tensor of `len(train) * copies`
  images filled with `normal_(0.0, 0.1)`), fixed for the whole run;
- the noise is added *after* `transforms.Normalize((0.1307,), (0.3081,))`, so its standard deviation 0.1 is in
  normalised units: 0.1 x 0.3081 = 0.0308 in [0, 1] pixel units, 7.86 grey levels of 255 (not 25.5);
- the test set is `datasets.MNIST(train=False)`, without noise.

dalkit keeps images as uint8 (`dalkit.data.base`), so each noisy copy is stored as
`clip(round(pixel + 255 * 0.3081 * noise * z), 0, 255)` with z ~ N(0, 1). What that changes from the reference's
float images: rounding adds an error of at most half a grey level (standard deviation 0.29 levels, against the
noise's 7.86); clipping matters where the digit is black or white: a background pixel (0, about 80% of MNIST's)
keeps only positive noise, so there the noise has mean +3.1 and standard deviation 4.6 grey levels instead of
0 and 7.86. The copies stay distinct images, which is what the experiment needs.

The noise is reproducible: copy k draws from `numpy.random.default_rng([seed, k])` (option `seed`, default 0), in
fixed chunks, so the same files and options give the same bytes on any machine. Index i of copy k is training
image k * 60,000 + i (the copies in order, as the reference's `ConcatDataset`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dalkit.data.base import DataSplits, ImageDataset
from dalkit.data.mnist import MNIST, load_idx_dataset
from dalkit.data.registry import register_dataset
from dalkit.errors import DalkitError
from dalkit.options import require

#: std of MNIST's [0, 1] pixels, the unit the reference's noise is in (its `Normalize((0.1307,), (0.3081,))`)
MNIST_STD = 0.3081
DEFAULT_COPIES = 3
DEFAULT_NOISE = 0.1
CHUNK = 4096  # images per draw: bounds the float buffer at 4096 x 784 x 4 bytes


def noisy_copy(images: torch.Tensor, noise: float, rng: np.random.Generator) -> torch.Tensor:
    """uint8 `images` plus N(0, (255 * MNIST_STD * noise)^2) per pixel, rounded and clipped to [0, 255]."""
    sigma = 255.0 * MNIST_STD * noise
    out = np.empty(tuple(images.shape), dtype=np.uint8)
    pixels = images.numpy()
    for start in range(0, len(pixels), CHUNK):
        block = pixels[start : start + CHUNK].astype(np.float32)
        block += sigma * rng.standard_normal(block.shape, dtype=np.float32)
        out[start : start + CHUNK] = np.clip(np.rint(block), 0, 255)
    return torch.from_numpy(out)


def repeat_with_noise(train: ImageDataset, copies: int, noise: float, seed: int) -> ImageDataset:
    """`copies` noisy copies of `train`, concatenated in order; copy k's noise comes from the stream (seed, k)."""
    parts = [noisy_copy(train.images, noise, np.random.default_rng([seed, k])) for k in range(copies)]
    return ImageDataset(torch.cat(parts), train.labels.repeat(copies), list(train.classes))


@register_dataset("repeated-mnist")
def load_repeated_mnist(
    root: Path,
    download: bool = False,
    copies: int = DEFAULT_COPIES,
    noise: float = DEFAULT_NOISE,
    seed: int = 0,
    **options,
) -> DataSplits:
    """Repeated MNIST (BatchBALD 2019): MNIST's training set x `copies` (3), Gaussian noise on each; plain test set."""
    if options:
        raise DalkitError(
            f"data set 'repeated-mnist' has no option {', '.join(sorted(options))}; its options are copies, noise "
            "and seed (e.g. --dataset-option copies=5)."
        )
    require(
        isinstance(copies, int) and not isinstance(copies, bool) and copies >= 1,
        "repeated-mnist",
        "copies",
        copies,
        "be a whole number of at least 1",
        "copies=3",
    )
    require(
        isinstance(noise, int | float) and not isinstance(noise, bool) and noise >= 0,
        "repeated-mnist",
        "noise",
        noise,
        "be a number of at least 0 (the noise's standard deviation in normalised MNIST units)",
        "noise=0.1",
    )
    require(
        isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0,
        "repeated-mnist",
        "seed",
        seed,
        "be a whole number of at least 0",
        "seed=0",
    )
    mnist = load_idx_dataset(MNIST, Path(root), download)
    return DataSplits("repeated-mnist", repeat_with_noise(mnist.train, copies, noise, seed), mnist.test, mnist.augment)
