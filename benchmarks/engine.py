"""Engine benchmarks (not tests): training speed, Core-Set selection cost, one BALD cycle on MNIST.

    python benchmarks/engine.py train-speed [--device cpu|cuda]
    python benchmarks/engine.py coreset [--device cpu|cuda] [--sizes 50000,1000000]
    python benchmarks/engine.py bald-mnist --data-root DIR      # DIR from ../shared/data/fetch DIR

Every figure is printed as a table and appended as JSON lines to benchmarks/results.jsonl.
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

from dalkit.data.augment import Normalizer
from dalkit.data.base import AugmentSpec
from dalkit.models import create_model
from dalkit.models.base import prepare_model
from dalkit.report import format_table
from dalkit.seeding import make_generator, resolve_device
from dalkit.train import TrainConfig, Trainer


def train_speed(device: torch.device, images: int, epochs: int) -> None:
    """ResNet-18 training images/s on CIFAR-sized data (batch 128, crop + flip on the device)."""
    torch.manual_seed(0)
    x = torch.randint(0, 256, (images, 3, 32, 32), dtype=torch.uint8)
    y = torch.randint(0, 10, (images,))
    model = prepare_model(create_model("resnet18", 10), device)
    normalizer = Normalizer(torch.full((3,), 0.5), torch.full((3,), 0.25))
    trainer = Trainer(TrainConfig(epochs=1, lr=0.1), AugmentSpec(4, True), normalizer, device, progress=False)
    trainer.fit(model, x[:256], y[:256], make_generator(0, device))  # warm-up
    trainer.config = TrainConfig(epochs=epochs, lr=0.1)
    stats = trainer.fit(model, x, y, make_generator(0, device))
    record = {
        "bench": "train-speed",
        "model": "resnet18",
        "device": device_name(device),
        "img_per_s": stats.images_per_second,
    }
    save(record)
    print(
        format_table(
            ["model", "device", "images/s"], [["resnet18", record["device"], f"{stats.images_per_second:,.0f}"]]
        )
    )


def coreset_case(n: int, labelled: int, budget: int, dim: int, device: torch.device) -> dict:
    """One k-center greedy selection over n random points; peak memory measured in this process."""
    from dalkit.strategies.coreset import k_center_greedy

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    g = torch.Generator().manual_seed(0)
    points = torch.randn(n, dim, generator=g).to(device)
    centers = torch.randn(labelled, dim, generator=g).to(device)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated() if device.type == "cuda" else 0
    start = time.perf_counter()
    picked, _ = k_center_greedy(points, centers, budget, make_generator(0), chunk_size=8192)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    if device.type == "cuda":
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - rss_before - (n + labelled) * dim * 4 / 2**20
    return {"seconds": seconds, "peak_extra_mb": peak, "picked": len(picked)}


def coreset(device: torch.device, sizes: list[int], labelled: int, budget: int, dim: int) -> None:
    """Core-Set selection time and peak memory beyond the embeddings, each size in a fresh process."""
    rows = []
    for n in sizes:
        command = [sys.executable, __file__, "coreset-case", str(n), str(labelled), str(budget), str(dim), str(device)]
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        case = json.loads(out)
        record = {
            "bench": "coreset",
            "n": n,
            "labelled": labelled,
            "budget": budget,
            "dim": dim,
            "device": device_name(device),
            **case,
        }
        save(record)
        rows.append(
            [
                f"{n:,}",
                labelled,
                budget,
                dim,
                record["device"],
                f"{case['seconds']:.2f}",
                f"{case['peak_extra_mb']:,.0f}",
            ]
        )
    print(format_table(["pool", "labelled", "budget", "dim", "device", "seconds", "peak MB beyond embeddings"], rows))


def bald_mnist(data_root: str, device: str) -> None:
    """One BALD cycle on real MNIST: 100 labelled, 59,900 scored, 20 MC samples, 10 epochs, mnist-cnn."""
    from dalkit.loop import Experiment, ExperimentConfig

    config = ExperimentConfig(
        dataset="mnist",
        data_root=data_root,
        model="mnist-cnn",
        strategy="bald",
        initial=100,
        budget=10,
        cycles=2,
        epochs=10,
        device=device,
        progress=False,
    )
    start = time.perf_counter()
    experiment = Experiment(config, log=lambda _: None)
    load = time.perf_counter() - start
    rng = np.random.default_rng(0)
    first = rng.choice(len(experiment.pool), 100, replace=False)
    experiment.pool.label(first, experiment.data.train.labels.numpy()[first], cycle=0)
    record = experiment.train_and_evaluate(0)
    picked, _, query_seconds = experiment.query(0)
    total = time.perf_counter() - start
    unlabelled = len(experiment.pool) - 100
    result = {
        "bench": "bald-mnist",
        "device": device_name(experiment.device),
        "scored": unlabelled,
        "load_s": load,
        "train_s": record["train_seconds"],
        "eval_s": record["eval_seconds"],
        "score_s": query_seconds,
        "total_s": total,
        "accuracy": record["accuracy"],
    }
    save(result)
    print(
        format_table(
            ["device", "pooled", "load s", "train s", "eval s", "BALD scoring s", "total s", "accuracy"],
            [
                [
                    result["device"],
                    f"{unlabelled:,}",
                    f"{load:.1f}",
                    f"{result['train_s']:.1f}",
                    f"{result['eval_s']:.1f}",
                    f"{query_seconds:.1f}",
                    f"{total:.1f}",
                    f"{100 * record['accuracy']:.1f}%",
                ]
            ],
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="bench", required=True)
    p = sub.add_parser("train-speed")
    p.add_argument("--device", default="auto")
    p.add_argument("--images", type=int, default=2048)
    p.add_argument("--epochs", type=int, default=1)
    p = sub.add_parser("coreset")
    p.add_argument("--device", default="auto")
    p.add_argument("--sizes", default="50000,1000000")
    p.add_argument("--labelled", type=int, default=1000)
    p.add_argument("--budget", type=int, default=1000)
    p.add_argument("--dim", type=int, default=512)
    p = sub.add_parser("coreset-case")
    for name in ("n", "labelled", "budget", "dim"):
        p.add_argument(name, type=int)
    p.add_argument("device")
    p = sub.add_parser("bald-mnist")
    p.add_argument("--data-root", required=True)
    p.add_argument("--device", default="auto")
    args = parser.parse_args()
    if args.bench == "train-speed":
        train_speed(resolve_device(args.device), args.images, args.epochs)
    elif args.bench == "coreset":
        coreset(
            resolve_device(args.device), [int(s) for s in args.sizes.split(",")], args.labelled, args.budget, args.dim
        )
    elif args.bench == "coreset-case":
        print(json.dumps(coreset_case(args.n, args.labelled, args.budget, args.dim, torch.device(args.device))))
    else:
        bald_mnist(args.data_root, args.device)


if __name__ == "__main__":
    main()
