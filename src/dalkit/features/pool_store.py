"""A pool's per-image arrays (embeddings, probabilities) on disk in float16 shards, for pools beyond memory.

Layout of a store directory: one raw file per array and shard (`NAME-00003.f16`, rows x columns, row-major) and
`manifest.json` (rows, shard_rows, each array's columns). A store is built in `DIR.partial-XXXX` beside its
final name, shard by shard (each shard file is written to a temporary name and renamed), and the directory is
renamed to DIR only after the manifest is written, so a store that `open_store` accepts is always complete.

`compute_shard(i) -> {name: array}` is pure given the shard index, so shards can be computed in any order or
on other machines; `build_store` calls it for each shard in turn. Reading a shard maps its file: the pages read
are the page cache's, not the process's own memory.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dalkit.data.augment import Normalizer
from dalkit.errors import DalkitError
from dalkit.features.classifier import image_batches, predict
from dalkit.files import atomic_file
from dalkit.models.base import Classifier

MANIFEST = "manifest.json"
DTYPE = np.float16


def shard_slice(rows: int, shard_rows: int, i: int) -> slice:
    """Rows of shard i (the last may be short)."""
    return slice(i * shard_rows, min(rows, (i + 1) * shard_rows))


def num_shards(rows: int, shard_rows: int) -> int:
    return -(-rows // shard_rows)


@dataclass(frozen=True)
class PoolStore:
    """A complete store: `rows` images in shards of `shard_rows`, arrays name -> columns."""

    root: Path
    rows: int
    shard_rows: int
    columns: dict[str, int]

    @property
    def num_shards(self) -> int:
        return num_shards(self.rows, self.shard_rows)

    def shard(self, name: str, i: int) -> torch.Tensor:
        """Shard i of array `name`, memory-mapped (float16, copy-on-write so torch may wrap it; never written)."""
        part = shard_slice(self.rows, self.shard_rows, i)
        shape = (part.stop - part.start, self.columns[name])
        return torch.from_numpy(np.memmap(self.root / shard_file(name, i), DTYPE, mode="c", shape=shape))

    def shards(self, name: str) -> list[torch.Tensor]:
        return [self.shard(name, i) for i in range(self.num_shards)]


def shard_file(name: str, i: int) -> str:
    return f"{name}-{i:05d}.f16"


def build_store(
    root: str | Path, rows: int, shard_rows: int, compute_shard: Callable[[int], dict[str, np.ndarray]]
) -> PoolStore:
    """Write a store of `rows` rows at `root` (which must not exist) from `compute_shard(i)` for every shard."""
    root = Path(root)
    if root.exists():
        raise DalkitError(f"the pool store {root} already exists; remove it or name a new directory.")
    if rows < 1 or shard_rows < 1:
        raise DalkitError(f"a pool store needs at least one row and one row a shard (got {rows} and {shard_rows}).")
    root.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f"{root.name}.partial-", dir=root.parent))
    try:
        columns: dict[str, int] = {}
        for i in range(num_shards(rows, shard_rows)):
            part = shard_slice(rows, shard_rows, i)
            for name, array in compute_shard(i).items():
                array = np.ascontiguousarray(array, dtype=DTYPE)
                shape = (part.stop - part.start, columns.get(name, array.shape[-1]))
                if array.shape != shape:
                    raise ValueError(f"shard {i} of {name!r} has shape {array.shape}, not {shape}")
                columns[name] = array.shape[1]
                with atomic_file(partial / shard_file(name, i), "xb") as handle:
                    array.tofile(handle)
        manifest = {"rows": rows, "shard_rows": shard_rows, "columns": columns, "dtype": "float16"}
        with atomic_file(partial / MANIFEST) as handle:
            json.dump(manifest, handle)
        os.replace(partial, root)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return open_store(root)


def open_store(root: str | Path) -> PoolStore:
    """The complete store at `root`; one sentence if it is missing or was never finished."""
    root = Path(root)
    try:
        manifest = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        raise DalkitError(f"{root} is not a complete pool store (no readable {MANIFEST}); build it again.") from None
    store = PoolStore(root, int(manifest["rows"]), int(manifest["shard_rows"]), dict(manifest["columns"]))
    for name in store.columns:
        for i in range(store.num_shards):
            part = shard_slice(store.rows, store.shard_rows, i)
            expected = (part.stop - part.start) * store.columns[name] * np.dtype(DTYPE).itemsize
            path = root / shard_file(name, i)
            if not path.is_file() or path.stat().st_size != expected:
                raise DalkitError(f"the pool store {root} lacks a whole {path.name}; build it again.")
    return store


def classifier_shards(
    model: Classifier,
    images: torch.Tensor,
    normalizer: Normalizer,
    indices: np.ndarray,
    shard_rows: int,
    device: torch.device,
    batch_size: int,
) -> Callable[[int], dict[str, np.ndarray]]:
    """`compute_shard(i)`: the classifier's embeddings and probabilities of pool images `indices[shard i]`."""

    def compute_shard(i: int) -> dict[str, np.ndarray]:
        part = indices[shard_slice(len(indices), shard_rows, i)]
        outputs = predict(model, image_batches(images, normalizer, part, batch_size, device), device)
        return {"embeddings": outputs.embeddings.cpu().numpy(), "probs": outputs.probs.cpu().numpy()}

    return compute_shard
