"""Selection over a `features.pool_store.PoolStore`, in memory bounded by a few numbers a point.

- `store_k_center`: Core-Set's k-center greedy with every shard a block of `kcenter.FarthestFirst`: each shard
  keeps its own running minimum (float32) and centre (int64) and each pick is the argmax of the per-shard maxima.
  Memory: 16 bytes a point (squared norm, minimum, centre) plus one chunk; the vectors stay in the page cache.
- `store_scores` + `base.sample_batch`: a score per point (4 bytes), computed shard by shard from the stored
  probabilities, then top-k or Gumbel-top-k sampling exactly as in memory.
- `query_store`: the classifier's embeddings and probabilities of some pool images, written shard by shard to a
  temporary store for one query (what `store=DIR` of coreset and cluster-margin uses).

Picks equal the in-memory versions' on the same float16 values: the cold start draws the same first point
(the first of one permutation from the generator); other ties go to the earliest shard and row.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from dalkit.features.pool_store import PoolStore, build_store, classifier_shards
from dalkit.strategies.base import QueryContext
from dalkit.strategies.kcenter import FarthestFirst


def store_k_center(
    store: PoolStore,
    centers: torch.Tensor,
    budget: int,
    generator: torch.Generator,
    chunk_size: int,
    progress: Callable[[int], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """k-center greedy over the store's `embeddings`: picked rows and the covering radius before each pick."""
    if not 0 <= budget <= store.rows:
        raise ValueError(f"cannot pick {budget} of {store.rows} points")
    first = int(torch.randperm(store.rows, generator=generator)[0]) if len(centers) == 0 else None
    state = FarthestFirst(store.shards("embeddings"), centers, budget, chunk_size)
    picks, sq_radii = torch.empty(budget, dtype=torch.long), torch.empty(budget)
    for t in range(budget):
        at = None if t or first is None else divmod(first, store.shard_rows)
        b, r, sq_radii[t] = state.pick(at)
        picks[t] = b * store.shard_rows + r
        if progress is not None:
            progress(t + 1)
    return picks, sq_radii.sqrt()


def store_scores(store: PoolStore, score: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """`score(probs)` of every stored row (float32), one shard at a time."""
    return torch.cat([score(shard.float()).float() for shard in store.shards("probs")])


@contextmanager
def query_store(ctx: QueryContext, indices: np.ndarray, parent: str | Path, shard_rows: int) -> Iterator[PoolStore]:
    """A store of the query model's embeddings and probabilities of pool images `indices`, built shard by shard
    in a new folder under `parent` and removed when the `with` ends."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    query_dir = Path(tempfile.mkdtemp(prefix="query-", dir=parent))
    try:
        compute_shard = classifier_shards(
            ctx.model, ctx.images, ctx.normalizer, indices, shard_rows, ctx.device, ctx.batch_size
        )
        yield build_store(query_dir / "pool", len(indices), shard_rows, compute_shard)
    finally:
        shutil.rmtree(query_dir, ignore_errors=True)
