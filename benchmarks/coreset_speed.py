"""Core-Set k-center greedy before and after (float16 + triangle-inequality pruning), side by side in one run.

    python benchmarks/coreset_speed.py [--sizes 50000,1000000] [--data random,clustered] [--rounds 2]

For each size and kind of data (random: Gaussian; clustered: 1,000 Gaussian clusters), runs the exact float32
version that was replaced (copied below as the baseline) and today's `k_center_greedy`, alternating, `--rounds`
times each, 1,000 labelled centres and 1,000 picks on 512-d embeddings. Prints seconds of each, the ratio
(before / after) and how many of the picks agree, first divergence included. Run it on an idle machine.
"""

from __future__ import annotations

import argparse
import time

import torch

from dalkit.report import format_table
from dalkit.seeding import make_generator
from dalkit.strategies.coreset import k_center_greedy, min_sq_distances
from dalkit.strategies.kcenter import sq_from_dots, sq_norms


def baseline(points: torch.Tensor, centers: torch.Tensor, budget: int, generator, chunk_size: int) -> torch.Tensor:
    """The replaced version: every point's float32 vector read at every pick; ties by one random permutation."""
    order = torch.randperm(len(points), generator=generator)
    points_sq = sq_norms(points)
    min_sq = min_sq_distances(points, centers, chunk_size)
    picked = torch.zeros(len(points), dtype=torch.bool)
    picks = torch.empty(budget, dtype=torch.long)
    for t in range(budget):
        index = order[min_sq.masked_fill(picked, -1.0)[order].argmax().view(1)]
        picks[t : t + 1] = index
        picked[index] = True
        torch.minimum(min_sq, sq_from_dots(points_sq, points_sq[index], points @ points[index].T)[:, 0], out=min_sq)
    return picks


def embeddings(kind: str, n: int, dim: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if kind == "random":
        return torch.randn(n, dim, generator=g)
    means = 4 * torch.randn(1000, dim, generator=g)
    out = torch.empty(n, dim)
    for i in range(0, n, 65536):  # no n x d temporary beyond the result
        rows = min(65536, n - i)
        out[i : i + rows] = means[torch.randint(1000, (rows,), generator=g)] + torch.randn(rows, dim, generator=g)
    return out


HEADERS = ["n", "data", "before s", "after s", "ratio (before/after)", "float16 picks = before", "float32 = before"]


def agreement(a: torch.Tensor, b: torch.Tensor) -> str:
    same = (a == b).nonzero().numel()
    differ = (a != b).nonzero()
    first = "none" if len(differ) == 0 else str(int(differ[0]))
    return f"{same}/{len(a)} (first divergence: {first})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="50000,1000000")
    parser.add_argument("--data", default="random,clustered")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--labelled", type=int, default=1000)
    parser.add_argument("--budget", type=int, default=1000)
    parser.add_argument("--chunk-size", type=int, default=8192)
    args = parser.parse_args()
    rows = []
    for n in [int(s) for s in args.sizes.split(",")]:
        for kind in args.data.split(","):
            points = embeddings(kind, n + args.labelled, args.dim, seed=0)
            points, centers = points[args.labelled :], points[: args.labelled]
            times = {"before": [], "after": []}
            for _ in range(args.rounds):
                start = time.perf_counter()
                old = baseline(points, centers, args.budget, make_generator(0), args.chunk_size)
                times["before"].append(time.perf_counter() - start)
                start = time.perf_counter()
                new, _ = k_center_greedy(points, centers, args.budget, make_generator(0), args.chunk_size)
                times["after"].append(time.perf_counter() - start)
            exact, _ = k_center_greedy(points, centers, args.budget, make_generator(0), args.chunk_size, torch.float32)
            before, after = (sum(t) / len(t) for t in times.values())
            rows.append(
                [
                    f"{n:,}",
                    kind,
                    ", ".join(f"{t:.2f}" for t in times["before"]),
                    ", ".join(f"{t:.2f}" for t in times["after"]),
                    f"{before / after:.2f}",
                    agreement(old, new),
                    agreement(old, exact),
                ]
            )
            print(format_table(HEADERS, rows[-1:]), flush=True)
    print(format_table(HEADERS, rows))


if __name__ == "__main__":
    main()
