"""Long-tailed subsets: the LDAM-DRW counts to the integer, LDAM-DRW's choice of images, the test split untouched."""

from __future__ import annotations

import pickle
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from dalkit.data import load_dataset
from dalkit.data.base import AugmentSpec, DataSplits, ImageDataset
from dalkit.data.longtail import load_long_tailed, long_tail, long_tailed_counts
from dalkit.errors import DalkitError

CLASSES = [f"c{i}" for i in range(10)]


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("tests must not access the network")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def balanced_splits(per_class: int = 50, num_classes: int = 10, seed: int = 0) -> DataSplits:
    """Shuffled, balanced labels; image i holds its index i in its first two pixels, to follow it through."""
    labels = np.random.default_rng(seed).permutation(np.repeat(np.arange(num_classes), per_class))
    images = torch.zeros(len(labels), 1, 2, 2, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.arange(len(labels)) % 256
    images[:, 0, 0, 1] = torch.arange(len(labels)) // 256
    train = ImageDataset(images, torch.from_numpy(labels), CLASSES[:num_classes])
    test = ImageDataset(torch.full((7, 1, 2, 2), 9, dtype=torch.uint8), torch.arange(7) % 3, CLASSES[:num_classes])
    return DataSplits("toy", train, test, AugmentSpec(crop_padding=1, flip=True))


def image_index(data: ImageDataset) -> list[int]:
    return (data.images[:, 0, 0, 0].long() + 256 * data.images[:, 0, 0, 1].long()).tolist()


def ldam_drw_selection(labels: np.ndarray, counts: list[int], seed: int) -> set[int]:
    """What kaidic/LDAM-DRW `gen_imbalanced_data` keeps: np.random.seed, then a shuffle per class in label order."""
    np.random.seed(seed)
    kept = set()
    for cls, count in zip(np.unique(labels), counts):
        idx = np.where(labels == cls)[0]
        np.random.shuffle(idx)
        kept.update(idx[:count].tolist())
    return kept


# --- counts -------------------------------------------------------------------------------------------


def test_counts_of_the_published_cifar_lt_sets():
    cifar10 = long_tailed_counts(5000, 10, 100)
    assert cifar10 == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    cifar100 = long_tailed_counts(500, 100, 100)
    assert (sum(cifar10), sum(cifar100), cifar100[0], cifar100[-1]) == (12406, 10847, 500, 5)
    assert sum(long_tailed_counts(5000, 10, 10)) == 20431 and sum(long_tailed_counts(500, 100, 50)) == 12608


@pytest.mark.parametrize(("n_max", "num_classes", "imbalance"), [(50, 10, 10), (500, 100, 100), (37, 7, 3.5)])
def test_counts_follow_the_formula(n_max, num_classes, imbalance):
    expected = [int(n_max * (1 / imbalance) ** (i / (num_classes - 1))) for i in range(num_classes)]
    counts = long_tailed_counts(n_max, num_classes, imbalance)
    assert counts == expected and counts[0] == n_max
    assert counts == sorted(counts, reverse=True)


def test_an_imbalance_of_one_keeps_every_class_whole_and_one_class_is_allowed():
    assert long_tailed_counts(50, 10, 1) == [50] * 10
    assert long_tailed_counts(50, 1, 100) == [50]


@pytest.mark.parametrize("imbalance", [0.5, 0, -3, "100", True])
def test_a_bad_imbalance_factor_is_a_user_error(imbalance):
    with pytest.raises(DalkitError, match="imbalance"):
        long_tailed_counts(50, 10, imbalance)


# --- subsets ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("selection", ["random", "first"])
def test_class_counts_follow_the_profile_and_the_test_split_is_unchanged(selection):
    splits = balanced_splits()
    lt = long_tail(splits, imbalance=10, selection=selection, seed=3)
    assert lt.train.class_counts().tolist() == long_tailed_counts(50, 10, 10)
    assert lt.train.class_counts()[0] == 50
    assert lt.test is splits.test and lt.augment == splits.augment and lt.name == "toy-lt"
    kept = image_index(lt.train)
    assert kept == sorted(set(kept))  # distinct images, in their original order
    assert torch.equal(lt.train.labels, splits.train.labels[kept])  # each with its own label


def test_an_imbalance_of_one_keeps_the_whole_training_split():
    splits = balanced_splits()
    lt = long_tail(splits, imbalance=1, selection="random", seed=5)
    assert torch.equal(lt.train.images, splits.train.images) and torch.equal(lt.train.labels, splits.train.labels)


def test_random_selection_keeps_the_images_ldam_drw_keeps():
    splits = balanced_splits(per_class=20)
    labels = splits.train.labels.numpy()
    counts = long_tailed_counts(20, 10, 10)
    for seed in (0, 7):
        lt = long_tail(splits, imbalance=10, selection="random", seed=seed)
        assert set(image_index(lt.train)) == ldam_drw_selection(labels, counts, seed)


def test_first_selection_keeps_the_first_images_of_each_class_in_order():
    splits = balanced_splits(per_class=20)
    labels = splits.train.labels.numpy()
    counts = long_tailed_counts(20, 10, 10)
    lt = long_tail(splits, imbalance=10, selection="first", seed=123)
    expected = sorted(i for c, n in enumerate(counts) for i in np.flatnonzero(labels == c)[:n])
    assert image_index(lt.train) == expected  # kept in their original order


def test_random_selection_is_seeded():
    splits = balanced_splits(per_class=20)
    first = long_tail(splits, 10, "random", 1).train.images
    assert torch.equal(first, long_tail(splits, 10, "random", 1).train.images)
    assert not torch.equal(first, long_tail(splits, 10, "random", 2).train.images)


def test_a_class_smaller_than_its_share_keeps_all_its_images():
    splits = balanced_splits(per_class=20)
    keep = np.flatnonzero((splits.train.labels.numpy() != 9) | (np.arange(200) % 10 == 0))
    short = DataSplits("toy", splits.train.subset(keep), splits.test)
    lt = long_tail(short, imbalance=2)
    assert lt.train.class_counts().tolist() == [*long_tailed_counts(20, 10, 2)[:9], short.train.class_counts()[9]]


@pytest.mark.parametrize(("selection", "seed"), [("sorted", 0), ("random", -1), ("random", 1.5)])
def test_bad_selection_or_seed_is_a_user_error(selection, seed):
    with pytest.raises(DalkitError):
        long_tail(balanced_splits(), 10, selection, seed)


# --- through load_dataset -----------------------------------------------------------------------------


def write_pickle(path: Path, content: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(content, protocol=2))


def make_cifar10(root: Path, per_class: int = 20) -> None:
    """The official CIFAR-10 pickles in miniature: 5 train batches of balanced, shuffled labels, a test batch."""
    rng = np.random.default_rng(0)
    labels = rng.permutation(np.repeat(np.arange(10), per_class))
    folder = root / "cifar-10-batches-py"
    for i, part in enumerate(np.array_split(np.arange(len(labels)), 5), start=1):
        data = rng.integers(0, 256, (len(part), 3072), dtype=np.uint8)
        write_pickle(folder / f"data_batch_{i}", {b"labels": labels[part].tolist(), b"data": data})
    test = {b"labels": [int(v) for v in rng.integers(0, 10, 6)], b"data": rng.integers(0, 256, (6, 3072), np.uint8)}
    write_pickle(folder / "test_batch", test)
    write_pickle(folder / "batches.meta", {b"label_names": [f"class{i}".encode() for i in range(10)]})


def test_cifar10_lt_loads_through_load_dataset(tmp_path):
    make_cifar10(tmp_path)
    full = load_dataset("cifar10", tmp_path)
    lt = load_dataset("cifar10-lt", tmp_path, imbalance=10, selection="random", seed=0)
    assert lt.name == "cifar10-lt" and lt.augment == full.augment
    assert lt.train.class_counts().tolist() == long_tailed_counts(20, 10, 10)
    assert torch.equal(lt.test.images, full.test.images) and torch.equal(lt.test.labels, full.test.labels)
    expected = ldam_drw_selection(full.train.labels.numpy(), long_tailed_counts(20, 10, 10), 0)
    assert torch.equal(lt.train.images, full.train.images[sorted(expected)])
    assert load_dataset("cifar10-lt", tmp_path).train.class_counts().tolist() == long_tailed_counts(20, 10, 100)
    generic = load_long_tailed("cifar10", tmp_path, imbalance=10)
    assert torch.equal(generic.train.images, lt.train.images)


def test_cifar_lt_rejects_unknown_options(tmp_path):
    make_cifar10(tmp_path)
    with pytest.raises(DalkitError, match="imbalance, selection and seed"):
        load_dataset("cifar10-lt", tmp_path, imbalance_factor=10)


def test_any_data_set_has_a_long_tailed_version_by_name():
    from dalkit.data import load_dataset

    splits = load_dataset("digits-lt", imbalance=10)
    base = load_dataset("digits")
    available = base.train.class_counts()
    wanted = long_tailed_counts(int(available.max()), 10, 10)
    assert splits.train.class_counts().tolist() == np.minimum(wanted, available).tolist()  # class 0 has 128 < 132
    assert len(splits.test) == len(base.test)
    with pytest.raises(DalkitError, match="does not take"):
        load_dataset("digits-lt", colour=True)
