"""Long-tailed training subsets with an exponential profile (Cui et al., CVPR 2019; Cao et al., NeurIPS 2019).

Class i of C keeps n_i = int(n_max * (1 / IF) ** (i / (C - 1))) training images, so the head class (label 0)
keeps n_max and the tail class (label C - 1) n_max / IF; the test split is left balanced. The counts follow
`get_img_num_per_cls` of the reference code (kaidic/LDAM-DRW `imbalance_cifar.py`, richardaecn/class-balanced-loss
`data_utils.py`) to the float: the same expression, truncated with int().

Which images stay: both references shuffle each class's images and keep the first n_i (LDAM-DRW: `np.random.seed(
rand_number)`, then `np.random.shuffle` of each class's indices in label order, rand_number = 0). `selection="random"`
(the default) does exactly that with `np.random.RandomState(seed)`, so seed 0 keeps the very images of LDAM-DRW's
CIFAR-10-LT / CIFAR-100-LT; `selection="first"` keeps the first n_i images of each class in file order instead. The
kept images stay in their original order.

Where it is available: the registered data sets "cifar10-lt" and "cifar100-lt" (options imbalance=100,
selection="random", seed=0, e.g. `--dataset cifar10-lt --dataset-option imbalance=50`), and NAME-lt for any other
registered NAME (`--dataset svhn-lt`, `--dataset digits-lt`; `load_dataset` resolves it through
`load_long_tailed(name, root, ...)`, which also takes NAME's own options); `long_tail(splits, ...)` applies to
splits already loaded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dalkit.data.base import DataSplits
from dalkit.data.registry import DATASETS, register_dataset
from dalkit.errors import DalkitError
from dalkit.options import call_with_options

SELECTIONS = ("random", "first")
DEFAULT_IMBALANCE = 100.0


def long_tailed_counts(n_max: int, num_classes: int, imbalance: float) -> list[int]:
    """Images kept per class: int(n_max * (1 / imbalance) ** (i / (C - 1))) for i = 0..C-1, as in LDAM-DRW."""
    check_imbalance(imbalance)
    if num_classes == 1:
        return [int(n_max)]
    factor = 1.0 / imbalance  # the references pass imb_factor = 1 / IF (0.01 for IF = 100)
    return [int(n_max * factor ** (i / (num_classes - 1.0))) for i in range(num_classes)]


def long_tail(
    splits: DataSplits, imbalance: float = DEFAULT_IMBALANCE, selection: str = "random", seed: int = 0
) -> DataSplits:
    """`splits` with a long-tailed training split (n_max = the largest class); the test split is unchanged.

    A class with fewer images than its n_i keeps all of them.
    """
    counts = splits.train.class_counts()
    wanted = long_tailed_counts(int(counts.max()), splits.num_classes, imbalance)
    keep = kept_indices(splits.train.labels.numpy(), wanted, selection, seed)
    return DataSplits(f"{splits.name}-lt", splits.train.subset(keep), splits.test, splits.augment)


def kept_indices(labels: np.ndarray, counts: list[int], selection: str, seed: int) -> np.ndarray:
    """Sorted indices of the images kept: per class in label order, the first counts[c] (after a shuffle)."""
    if selection not in SELECTIONS:
        raise DalkitError(f"unknown long-tail selection {selection!r}; choose one of: {', '.join(SELECTIONS)}.")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise DalkitError(f"the long-tail seed must be a whole number in [0, 2**32), got {seed!r}; e.g. seed=0.")
    rng = np.random.RandomState(seed)  # the legacy stream of np.random.seed(seed), as in LDAM-DRW
    kept = []
    for cls, count in enumerate(counts):
        members = np.flatnonzero(labels == cls)
        if selection == "random":
            rng.shuffle(members)
        kept.append(members[:count])
    return np.sort(np.concatenate(kept))


def check_imbalance(imbalance: float) -> None:
    if isinstance(imbalance, bool) or not isinstance(imbalance, (int, float)) or not imbalance >= 1:
        raise DalkitError(f"the imbalance factor must be a number >= 1, got {imbalance!r}; e.g. imbalance=100.")


def load_long_tailed(
    name: str,
    root: Path,
    download: bool = False,
    imbalance: float = DEFAULT_IMBALANCE,
    selection: str = "random",
    seed: int = 0,
    **options,
) -> DataSplits:
    """Any registered data set, loaded with its own `options`, then made long-tailed."""
    load = DATASETS.get(name)
    splits = call_with_options(
        load,
        f"the long-tailed {name} (options imbalance, selection and seed, then those of {name})",
        "--dataset-option",
        root=Path(root),
        download=download,
        **options,
    )
    return long_tail(splits, imbalance, selection, seed)


def register_long_tailed(name: str, base: str, summary: str) -> None:
    """Register `name`: the registered data set `base`, long-tailed (options imbalance, selection, seed)."""

    def load(root: Path, download: bool = False, **options) -> DataSplits:
        unknown = set(options) - {"imbalance", "selection", "seed"}
        if unknown:
            raise DalkitError(
                f"data set {name!r} has no option {', '.join(sorted(unknown))}; its options are imbalance, selection "
                "and seed."
            )
        return load_long_tailed(base, root, download, **options)

    load.__doc__ = summary
    register_dataset(name)(load)


register_long_tailed(
    "cifar10-lt", "cifar10", "CIFAR-10-LT: 5,000 images of class 0 down to 5,000 / IF of class 9 (12,406 at IF 100)."
)
register_long_tailed(
    "cifar100-lt", "cifar100", "CIFAR-100-LT: 500 images of class 0 down to 500 / IF of class 99 (10,847 at IF 100)."
)
