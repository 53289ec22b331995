"""Repeated MNIST read from tiny IDX files: the copies, their noise (scale, independence, reproducibility, clipping)
and the plain test set."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from dalkit.data import load_dataset
from dalkit.data.mnist import FILES
from dalkit.data.repeated_mnist import MNIST_STD
from dalkit.errors import DalkitError

N_TRAIN, N_TEST = 8, 4
SIGMA = 255 * MNIST_STD * 0.1  # the reference's std 0.1 after Normalize((0.1307,), (0.3081,)), in grey levels


def idx(array: np.ndarray) -> bytes:
    return struct.pack(f">i{array.ndim}i", 2048 + array.ndim, *array.shape) + array.astype(np.uint8).tobytes()


def write_mnist(root: Path, train: np.ndarray) -> dict[str, np.ndarray]:
    """MNIST/raw/ with `train` as the training images (uint8, n x 28 x 28) and a few random test images."""
    rng = np.random.default_rng(7)
    arrays = {
        FILES[0]: train,
        FILES[1]: np.arange(len(train)) % 10,
        FILES[2]: rng.integers(0, 256, (N_TEST, 28, 28)),
        FILES[3]: rng.integers(0, 10, N_TEST),
    }
    folder = root / "MNIST" / "raw"
    folder.mkdir(parents=True)
    for name, array in arrays.items():
        (folder / name).write_bytes(idx(np.asarray(array)))
    return arrays


@pytest.fixture
def mid_grey(tmp_path):
    """Training images of mid-range pixels (60..195), so no noise is clipped."""
    train = np.random.default_rng(3).integers(60, 196, (N_TRAIN, 28, 28)).astype(np.uint8)
    return tmp_path, write_mnist(tmp_path, train)


def test_three_noisy_copies_of_the_training_set_and_the_plain_test_set(mid_grey):
    root, arrays = mid_grey
    data = load_dataset("repeated-mnist", root)
    original = torch.from_numpy(arrays[FILES[0]]).float()
    assert len(data.train) == 3 * N_TRAIN and data.train.images.dtype == torch.uint8
    assert data.train.labels.tolist() == (np.arange(N_TRAIN) % 10).tolist() * 3  # copy k, image i at k * n + i
    noise = [data.train.images[k * N_TRAIN : (k + 1) * N_TRAIN, 0].float() - original for k in range(3)]
    for part in noise:  # every copy is noisy, the first too, with the reference's scale (7.86 grey levels)
        assert abs(part.mean()) < 0.5 and part.std() == pytest.approx(SIGMA, rel=0.05)
    assert abs(np.corrcoef(noise[0].flatten(), noise[1].flatten())[0, 1]) < 0.05  # each copy its own noise
    assert np.array_equal(data.test.images[:, 0].numpy(), arrays[FILES[2]])  # the test split is plain MNIST's
    assert data.test.labels.tolist() == arrays[FILES[3]].tolist()


def test_the_noise_is_fixed_by_its_seed(mid_grey):
    root, _ = mid_grey
    first, again = load_dataset("repeated-mnist", root), load_dataset("repeated-mnist", root)
    assert torch.equal(first.train.images, again.train.images)
    other = load_dataset("repeated-mnist", root, seed=1)
    assert not torch.equal(first.train.images, other.train.images)
    # copy k draws from the stream (seed, k): two copies of a 5-copy set are the same as in a 3-copy one
    five = load_dataset("repeated-mnist", root, copies=5)
    assert len(five.train) == 5 * N_TRAIN and torch.equal(five.train.images[: 3 * N_TRAIN], first.train.images)


def test_no_noise_gives_exact_copies(mid_grey):
    root, arrays = mid_grey
    data = load_dataset("repeated-mnist", root, copies=2, noise=0.0)
    assert np.array_equal(data.train.images[:, 0].numpy(), np.concatenate([arrays[FILES[0]]] * 2))


def test_black_pixels_keep_only_positive_noise(tmp_path):
    """uint8 clips: a background pixel (0) becomes max(0, round(noise)), mean sigma / sqrt(2 pi) (3.1 levels)."""
    write_mnist(tmp_path, np.zeros((N_TRAIN, 28, 28), dtype=np.uint8))
    pixels = load_dataset("repeated-mnist", tmp_path).train.images.float()
    below_half_a_level = 0.5 * (1 + math.erf(0.5 / SIGMA / math.sqrt(2)))  # rounds to 0: P(noise < 0.5)
    assert pixels.min() == 0 and (pixels == 0).float().mean() == pytest.approx(below_half_a_level, abs=0.015)
    assert pixels.mean() == pytest.approx(SIGMA / np.sqrt(2 * np.pi), rel=0.05)


@pytest.mark.parametrize(
    ("option", "value"), [("copies", 0), ("copies", 1.5), ("noise", -0.1), ("seed", -1), ("colour", 1)]
)
def test_a_bad_option_is_one_sentence(mid_grey, option, value):
    root, _ = mid_grey
    with pytest.raises(DalkitError) as error:
        load_dataset("repeated-mnist", root, **{option: value})
    text = str(error.value)
    assert option in text and text.endswith(".") and "\n" not in text
