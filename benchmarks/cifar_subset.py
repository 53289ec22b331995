"""A random part of CIFAR-10's training set with the whole test set, in the official on-disk format.

    python benchmarks/cifar_subset.py SRC_ROOT DEST_ROOT [--train 3000] [--seed 0]

For a device machine that cannot fetch data and takes at most 64 MiB of files (../.library/device/README.md): the
whole of CIFAR-10 is 176 MB, this is 31 MB of test images plus 3 KB a training image. DEST_ROOT/cifar-10-batches-py
gets five data_batch files holding `--train` training images drawn at random (seed `--seed`, classes as they
fall), the official test_batch and batches.meta, so `--data-root DEST_ROOT` reads it as CIFAR-10. A first cycle
of random labels drawn from it is a random draw from the whole training set; later cycles choose from this part
only, so use it for one-cycle runs (`--cycles 1`), as benchmarks/gpu_pang_round.sh does.
"""

from __future__ import annotations

import argparse
import pickle
import shutil
from pathlib import Path

import numpy as np

from dalkit.data import load_dataset

FOLDER = "cifar-10-batches-py"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", type=Path, help="a --data-root holding the whole CIFAR-10")
    parser.add_argument("dest", type=Path)
    parser.add_argument("--train", type=int, default=3000, help="training images to keep (default 3000)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    splits = load_dataset("cifar10", args.src)
    if not 0 < args.train <= len(splits.train.labels):
        raise SystemExit(f"--train must be between 1 and {len(splits.train.labels)}; got {args.train}.")
    keep = np.sort(np.random.default_rng(args.seed).choice(len(splits.train.labels), args.train, replace=False))
    images = splits.train.images.numpy().reshape(len(splits.train.labels), -1)[keep]
    labels = splits.train.labels.numpy()[keep]
    out = args.dest / FOLDER
    out.mkdir(parents=True, exist_ok=True)
    for number, part in enumerate(np.array_split(np.arange(args.train), 5), start=1):
        write_batch(out / f"data_batch_{number}", images[part], labels[part], f"training batch {number} of 5")
    for name in ("test_batch", "batches.meta"):
        shutil.copyfile(args.src / FOLDER / name, out / name)
    print(f"{out}: {args.train} training images (seed {args.seed}) and the 10,000 test images")


def write_batch(path: Path, data: np.ndarray, labels: np.ndarray, title: str) -> None:
    """A batch as the official files hold it: protocol 2, bytes keys, uint8 (N, 3072) R, G, B planes."""
    batch = {b"batch_label": title.encode(), b"labels": labels.tolist(), b"data": np.ascontiguousarray(data)}
    with path.open("wb") as f:
        pickle.dump(batch, f, protocol=2)


if __name__ == "__main__":
    main()
