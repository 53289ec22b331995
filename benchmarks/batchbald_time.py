"""BatchBALD selection time (a benchmark, not a test).

    python benchmarks/batchbald_time.py [--device cpu|cuda] [--candidates 10000] [--samples 100] [--classes 10]
        [--budgets 10,100] [--num-configurations 10000,1000] [--images 10000] [--exhaustive] [--no-save]

Two parts, timed apart:
- acquisition: `greedy_batchbald` on synthetic MC probabilities (candidates, samples, classes). They come from
  an MC-dropout linear head on clustered features (--clusters groups of near-duplicate points, dropout 0.5,
  one mask per sample shared by all points), so candidates are redundant as in a real pool and the lazy
  greedy has real work to do. Each budget is timed with the strategy's defaults (lazy greedy), and with
  --exhaustive also scoring every candidate at every step (lazy=false, the paper's code). The table gives
  the picks scored with the exact joint entropy and the candidates scored in all.
- MC forward passes: `mc_dropout.mc_probabilities` (the strategy's gathering) of an untrained mnist-cnn over --images
  random 28x28 images with --samples consistent dropout masks.

Every row is printed in a table and appended as JSON to benchmarks/results.jsonl (unless --no-save).
"""

from __future__ import annotations

import argparse
import itertools
import time

import torch
from records import device_name, save

from dalkit.data.augment import Normalizer
from dalkit.data.pool import Pool
from dalkit.models import create_model
from dalkit.report import format_table
from dalkit.runtime import inference_batch_size, isolated_rng
from dalkit.seeding import make_generator, resolve_device
from dalkit.strategies import QueryContext
from dalkit.strategies.batchbald import greedy_batchbald
from dalkit.strategies.mc_dropout import mc_probabilities


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def synthetic_probs(n: int, samples: int, classes: int, clusters: int, device: torch.device) -> torch.Tensor:
    """(n, samples, classes) softmax outputs of a linear head with dropout 0.5 on clustered 64-d features."""
    g = torch.Generator().manual_seed(0)
    dim = 64
    centres = torch.randn(clusters, dim, generator=g)
    features = (centres[torch.randint(clusters, (n,), generator=g)] + 0.5 * torch.randn(n, dim, generator=g)).relu()
    weight = torch.randn(dim, classes, generator=g) / dim**0.5 * 3
    masks = (torch.rand(samples, dim, generator=g) >= 0.5).float() * 2
    probs = torch.empty(n, samples, classes)
    for s in range(samples):
        probs[:, s] = ((features * masks[s]) @ weight).softmax(dim=1)
    return probs.to(device)


def acquisition(args: argparse.Namespace, device: torch.device) -> list[dict]:
    probs = synthetic_probs(args.candidates, args.samples, args.classes, args.clusters, device)
    records = []
    for budget, num, lazy in itertools.product(
        args.budgets, args.num_configurations, [True, False] if args.exhaustive else [True]
    ):
        synchronize(device)
        start = time.perf_counter()
        batch = greedy_batchbald(probs, budget, make_generator(0), num, lazy=lazy)
        synchronize(device)
        seconds = time.perf_counter() - start
        records.append(
            {
                "bench": "batchbald-acquisition",
                "device": device_name(device),
                "candidates": args.candidates,
                "samples": args.samples,
                "classes": args.classes,
                "clusters": args.clusters,
                "budget": budget,
                "num_configurations": num,
                "lazy": lazy,
                "seconds": seconds,
                "exact_picks": sum(batch.exact),
                "evaluated": sum(batch.evaluated),
                "score": batch.scores[-1],
            }
        )
    return records


def forward_passes(args: argparse.Namespace, device: torch.device) -> dict:
    images = torch.randint(0, 256, (args.images, 1, 28, 28), generator=make_generator(1), dtype=torch.uint8)
    with isolated_rng(0):
        model = create_model("mnist-cnn", num_classes=10, in_channels=1, image_size=28).to(device)
    pool = Pool(args.images)
    ctx = QueryContext(
        model=model,
        images=images,
        normalizer=Normalizer(torch.tensor([0.1307]), torch.tensor([0.3081])),
        pool=pool,
        candidates=pool.unlabelled_indices(),
        generator=make_generator(0),
        device=device,
        batch_size=inference_batch_size(device),
        progress=False,
    )
    synchronize(device)
    start = time.perf_counter()
    probs = mc_probabilities(ctx, args.samples)
    synchronize(device)
    seconds = time.perf_counter() - start
    assert probs.shape == (args.images, args.samples, 10)
    return {
        "bench": "batchbald-mc-forward",
        "device": device_name(device),
        "model": "mnist-cnn",
        "images": args.images,
        "samples": args.samples,
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--candidates", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--clusters", type=int, default=50)
    parser.add_argument("--budgets", default="10,100")
    parser.add_argument("--num-configurations", default="10000", help="comma-separated; one row each")
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--exhaustive", action="store_true", help="also time lazy=false (every candidate, every step)")
    parser.add_argument("--no-save", action="store_true", help="print only; append nothing to results.jsonl")
    args = parser.parse_args()
    args.budgets = [int(b) for b in args.budgets.split(",")]
    args.num_configurations = [int(m) for m in args.num_configurations.split(",")]
    device = resolve_device(args.device)

    records = acquisition(args, device)
    forward = forward_passes(args, device)
    rows = [
        [
            "acquisition" + ("" if r["lazy"] else " (exhaustive)"),
            f"{r['candidates']:,} x {r['samples']} x {r['classes']}",
            r["budget"],
            f"{r['num_configurations']:,}",
            f"{r['exact_picks']} exact, {r['budget'] - r['exact_picks']} sampled",
            f"{r['evaluated']:,}",
            f"{r['seconds']:.2f}",
        ]
        for r in records
    ]
    rows.append(
        [
            "MC forward passes (mnist-cnn)",
            f"{forward['images']:,} images x {forward['samples']}",
            "",
            "",
            "",
            "",
            f"{forward['seconds']:.2f}",
        ]
    )
    headers = ["part", "candidates x samples x classes", "budget", "configurations", "picks", "scored", "seconds"]
    print(f"BatchBALD on {device_name(device)}")
    print(format_table(headers, rows))
    if not args.no_save:
        for record in [*records, forward]:
            save(record)


if __name__ == "__main__":
    main()
