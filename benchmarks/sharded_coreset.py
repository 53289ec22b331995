"""Core-Set k-center greedy on a sharded float16 pool store bigger than memory: time and peak memory.

    python benchmarks/sharded_coreset.py DIR [--rows 10000000] [--dim 512] [--picks 1000] [--data clustered]

Builds a store of rows x dim float16 embeddings in DIR/pool (written shard by shard, never held whole in RAM;
reused when DIR/pool is already a complete store), then runs `--picks` cold-start picks with a progress line
(rate, ETA). Prints the seconds and peak memory: ru_maxrss (peak resident set, which counts the mapped file
pages read as well) and, from /proc/self/status at the end, VmRSS split into RssAnon (the process's own memory,
what the 2 GB target is about) and RssFile (mapped pages of the store, file-backed, reclaimable page cache).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import torch

from dalkit.features.pool_store import build_store, open_store, shard_slice
from dalkit.seeding import make_generator
from dalkit.strategies.sharded import store_k_center


def memory_status() -> dict[str, str]:
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
            fields[key] = value.strip()
    return fields


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir")
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--shard-rows", type=int, default=262_144)
    parser.add_argument("--picks", type=int, default=1000)
    parser.add_argument("--data", choices=["random", "clustered"], default="clustered")
    parser.add_argument("--chunk-size", type=int, default=8192)
    args = parser.parse_args()
    root = Path(args.dir) / "pool"
    means = 4 * torch.randn(1000, args.dim, generator=torch.Generator().manual_seed(0))

    def compute_shard(i: int) -> dict:
        g = torch.Generator().manual_seed(i + 1)
        part = shard_slice(args.rows, args.shard_rows, i)
        x = torch.randn(part.stop - part.start, args.dim, generator=g)
        if args.data == "clustered":
            x += means[torch.randint(len(means), (len(x),), generator=g)]
        return {"embeddings": x.half().numpy()}

    start = time.perf_counter()
    store = (
        open_store(root)
        if (root / "manifest.json").exists()
        else build_store(root, args.rows, args.shard_rows, compute_shard)
    )
    print(
        f"store: {store.rows:,} x {args.dim} float16 in {store.num_shards} shards ({time.perf_counter() - start:.1f} s)"
    )
    start = time.perf_counter()

    def progress(done: int) -> None:
        rate = done / (time.perf_counter() - start)
        print(
            f"\r{done}/{args.picks} picks, {rate:.2f}/s, ETA {(args.picks - done) / rate:.0f} s",
            end="",
            file=sys.stderr,
        )

    store_k_center(store, torch.empty(0, args.dim), args.picks, make_generator(0), args.chunk_size, progress)
    seconds = time.perf_counter() - start
    print(file=sys.stderr)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{args.picks} picks in {seconds:.1f} s; peak RSS (ru_maxrss, mapped pages included) {peak:.0f} MB")
    print("at the end: " + ", ".join(f"{k} {v}" for k, v in memory_status().items()))


if __name__ == "__main__":
    main()
