"""Cluster-Margin at scale (a benchmark, not a test): the pool's clustering and one selection on random data.

    python benchmarks/cluster_margin_scale.py [--sizes 1000000] [--dim 512] [--classes 10] [--budget 10000]
        [--device cpu|cuda] [--strategy-option centroids=2000 ...]

Per size N, in a fresh process (so the peak memory is this case's own): N random float32 embeddings of --dim
dimensions and N random softmax probabilities over --classes classes (the margins), then what
`cluster-margin` does with them: the clustering it computes once per run (`cluster_embeddings`: exact HAC up to
exact_max points, else k-means + size-weighted HAC of the centroids) and one selection of --budget picks
(margins, the k_m = km_ratio x budget lowest, round-robin over their clusters), with the strategy's default
options unless --strategy-option says otherwise. Printed: seconds of each part, and the peak memory beyond
the embeddings and probabilities (CPU: peak RSS minus the RSS before they were made, minus their size; GPU:
the peak CUDA allocation above them). Each row is appended as JSON to benchmarks/results.jsonl.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np
import torch
from records import device_name, save

from dalkit.options import options_for, parse_options
from dalkit.report import format_table
from dalkit.seeding import make_generator, resolve_device
from dalkit.strategies import create_strategy
from dalkit.strategies.cluster_margin import ClusterMargin, cluster_embeddings, cluster_margin, km_size, margin_scores


def peak_mb(device: torch.device, rss_before: float, inputs_mb: float, cuda_base: int) -> float:
    if device.type == "cuda":
        return (torch.cuda.max_memory_allocated() - cuda_base) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - rss_before - inputs_mb


def case(n: int, dim: int, classes: int, budget: int, device: torch.device, options: dict) -> dict:
    """One clustering and one selection over n random points, in this process."""
    strategy = create_strategy("cluster-margin", **options)
    assert isinstance(strategy, ClusterMargin)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    g = torch.Generator().manual_seed(0)
    embeddings = torch.randn(n, dim, generator=g).to(device)
    probs = torch.randn(n, classes, generator=g).softmax(dim=1).to(device)
    inputs_mb = (embeddings.numel() + probs.numel()) * 4 / 2**20
    cuda_base = 0
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        cuda_base = torch.cuda.memory_allocated()
    generator = make_generator(0)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    start = time.perf_counter()
    clusters = cluster_embeddings(
        embeddings,
        generator,
        clusters=strategy.clusters,
        threshold=strategy.threshold,
        exact_max=strategy.exact_max,
        centroids=strategy.centroids,
        kmeans_iterations=strategy.kmeans_iterations,
    )
    sync()
    cluster_seconds = time.perf_counter() - start
    start = time.perf_counter()
    km = min(n, km_size(strategy.km_ratio, budget))
    picks, margin_set = cluster_margin(margin_scores(probs), clusters.labels, budget, km, generator)
    sync()
    select_seconds = time.perf_counter() - start
    assert len(np.unique(picks)) == budget
    return {
        "cluster_s": cluster_seconds,
        "select_s": select_seconds,
        "peak_extra_mb": peak_mb(device, rss_before, inputs_mb, cuda_base),
        "method": clusters.method,
        "clusters": clusters.num_clusters,
        "centroids": clusters.centroids,
        "km": km,
        "km_clusters": int(len(np.unique(clusters.labels[margin_set]))),
    }


def run(sizes: list[int], dim: int, classes: int, budget: int, device: str, option_text: list[str]) -> None:
    """Each size in a fresh process; a table and one JSON line per size."""
    rows = []
    for n in sizes:
        command = [sys.executable, __file__, "--case", str(n), "--dim", str(dim), "--classes", str(classes)]
        command += ["--budget", str(budget), "--device", device]
        for option in option_text:
            command += ["--strategy-option", option]
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        result = json.loads(out)
        record = {"bench": "cluster-margin-scale", "n": n, "dim": dim, "classes": classes, "budget": budget}
        record.update({"device": device_name(torch.device(device)), "options": option_text, **result})
        save(record)
        rows.append(
            [
                f"{n:,}",
                dim,
                budget,
                record["device"],
                result["method"],
                result["clusters"],
                f"{result['cluster_s']:.1f}",
                f"{result['select_s']:.2f}",
                f"{result['peak_extra_mb']:,.0f}",
            ]
        )
    headers = ["pool", "dim", "budget", "device", "clustering", "clusters", "cluster s", "select s"]
    print(format_table([*headers, "peak MB beyond embeddings + probs"], rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000000", help="comma-separated pool sizes")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--budget", type=int, default=10_000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--strategy-option", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--case", type=int, help=argparse.SUPPRESS)  # one size, in this process
    args = parser.parse_args()
    device = str(resolve_device(args.device))
    if args.case is not None:
        options = options_for("cluster-margin", parse_options(args.strategy_option, "--strategy-option"))
        result = case(args.case, args.dim, args.classes, args.budget, torch.device(device), options)
        print(json.dumps(result))
    else:
        sizes = [int(s) for s in args.sizes.split(",")]
        run(sizes, args.dim, args.classes, args.budget, device, args.strategy_option)


if __name__ == "__main__":
    main()
