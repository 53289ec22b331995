"""Selection time per cycle of every registered strategy on a 50,000-image pool (a benchmark, not a test).

    python benchmarks/selection_time.py [--data-root /work/data --dataset cifar10] [--device cpu|cuda]
        [--pool 50000] [--labelled 1000] [--budget 1000] [--strategies a,b] [--strategy-option vaal.epochs=2]
        [--train-epochs 10] [--full]

Pool: the first --pool training images of --dataset under --data-root when they are there (CIFAR-10 by
default), else --pool random uint8 32x32x3 images with random labels (said in the table's title and records).
Labelled: --labelled images drawn at random (seed 0); candidates: every other pool image; one query of
--budget images, as in one AL cycle. Model: small-cnn width 32, trained briefly (--train-epochs on the
labelled images, cross-entropy + learning-loss so the Learning Loss module is a trained one; 0: untrained).

Each strategy runs with its default options in a fresh process (so peak memory is its own), on a fresh
query context: its time includes the model's forward passes over the pool it needs (reported apart as
"inference"), as a cycle of the AL loop pays them. Peak memory: the process's peak RSS during the query (the
kernel's mark is reset when it starts) and how far it rose above the RSS at its start (CPU; the pool images
are memory-mapped, so reading them counts), or the peak CUDA allocation (GPU).

Where default settings cannot run or would run for hours on a CPU, the row says so and is measured reduced,
then extrapolated (unless --full):
- vaal: trained for --vaal-epochs instead of 100 (its iterations are epochs x labelled / batch); the training
  time is scaled by the ratio of iterations, scoring the candidates is measured in full.
- uncertaingcn, coregcn: refuse more than max_nodes = 20,000 graph nodes by default (the papers draw 10,000
  candidates); measured on --gcn-candidates candidates, their graph work (dense n x n, 200 epochs) scaled
  by (n / n_measured)^2 and their embedding pass linearly, to the papers' 10,000 candidates and to the pool.
- coreset-robust: refuses more than max_points = 5,000 candidates by default; measured at 5,000 (no
  extrapolation: the program is not meant for more).

Every row is printed in a table and appended as JSON to benchmarks/results.jsonl.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from records import device_name, save

from dalkit.data import Pool, load_dataset
from dalkit.data.augment import Normalizer
from dalkit.data.base import AugmentSpec
from dalkit.engine import Engine, EngineSpec
from dalkit.errors import DalkitError
from dalkit.models.saved import MODEL_FILE, load_classifier, save_classifier
from dalkit.options import options_for, parse_options
from dalkit.report import format_table
from dalkit.seeding import resolve_device
from dalkit.strategies import checked_select, list_strategies
from dalkit.train import TrainConfig

GCN = ("uncertaingcn", "coregcn")
PAPER_GCN_CANDIDATES = 10_000


def load_pool(args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor, str]:
    """The pool images (uint8 N, C, H, W), their labels and a name for where they came from."""
    try:
        train = load_dataset(args.dataset, args.data_root).train
        if len(train) >= args.pool:
            return (
                train.images[: args.pool].contiguous(),
                train.labels[: args.pool],
                f"{args.dataset} (first {args.pool})",
            )
    except DalkitError:
        pass
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.pool, 3, 32, 32), dtype=torch.uint8, generator=g)
    return images, torch.randint(0, 10, (args.pool,), generator=g), "synthetic random uint8 32x32x3"


def engine_for(
    strategy: str, options: dict, num_classes: int, images: torch.Tensor, normalizer: Normalizer, device, epochs: int
) -> Engine:
    """The engine an AL run would build: small-cnn (width from `options`), cross-entropy, `strategy`."""
    return Engine(
        EngineSpec(
            num_classes=num_classes,
            image_shape=tuple(images.shape[1:]),
            normalizer=normalizer,
            augment=AugmentSpec(4, True),
            train=TrainConfig(epochs=max(epochs, 1), lr=0.05, batch_size=32),
            model_options={"width": options.pop("width")},
            strategy=strategy,
            strategy_options=options,
            device=device,
            progress=False,
        )
    )


def setup(args: argparse.Namespace, directory: Path, device: torch.device) -> dict:
    """Load the pool, draw the labelled set, train the model briefly (with a trained loss-prediction head, so
    learning-loss reads a trained one); save what every case process needs."""
    images, labels, source = load_pool(args)
    rng = np.random.default_rng(0)
    labelled = np.sort(rng.choice(len(images), size=args.labelled, replace=False))
    num_classes = int(labels.max()) + 1
    normalizer = Normalizer(images.float().mean(dim=(0, 2, 3)) / 255, images.float().std(dim=(0, 2, 3)) / 255)
    options = {"width": args.width}
    engine = engine_for("learning-loss", options, num_classes, images, normalizer, device, args.train_epochs)
    pool = Pool(len(images))
    pool.label(labelled, labels.numpy()[labelled], cycle=0)
    model = engine.new_model(0)
    train_seconds = 0.0
    if args.train_epochs:
        train_seconds = engine.fit(model, images, pool, 0, pool.unlabelled_indices()).seconds
    torch.save(images, directory / "images.pt")
    torch.save({"labels": labels, "labelled": torch.from_numpy(labelled), "width": args.width}, directory / "state.pt")
    classes = [str(k) for k in range(num_classes)]
    save_classifier(
        directory / MODEL_FILE, model, "small-cnn", {"width": args.width}, images.shape[1:], classes, engine.normalizer
    )
    return {"source": source, "train_seconds": train_seconds, "num_classes": num_classes}


def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (Linux: clear_refs 5), so the peak is the query's own."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """Peak RSS since the last reset (VmHWM), else since the process started."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Timer:
    """Accumulated seconds spent in wrapped callables."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def wrap(self, name: str, function):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

        return timed


def run_case(
    directory: Path, name: str, options: dict, candidates: int | None, budget: int, device: torch.device
) -> dict:
    """One selection in this process, through the engine: seconds, inference and phase seconds, peak memory,
    the strategy's info. The seconds include computing the representation the strategy asks for, as a cycle pays."""
    images = torch.load(directory / "images.pt", mmap=True)
    state = torch.load(directory / "state.pt")
    saved = load_classifier(directory, device)
    pool = Pool(len(images))
    labelled = state["labelled"].numpy()
    pool.label(labelled, state["labels"].numpy()[labelled], cycle=0)
    num_classes = len(saved.classes)
    engine = engine_for(name, {**options, "width": state["width"]}, num_classes, images, saved.normalizer, device, 1)
    candidates = engine.candidate_subset(pool, 0, candidates)
    timer = Timer()
    for method in ("fit", "discriminate"):  # VAAL's and Sequential GCN's training, VAAL's scoring
        if hasattr(engine.strategy, method):
            setattr(engine.strategy, method, timer.wrap(method, getattr(engine.strategy, method)))
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
    rss_before = current_rss_mb()
    reset = reset_peak_rss()
    start = time.perf_counter()
    ctx = engine.context(saved.model, images, pool, candidates, 0)
    ctx.outputs = timer.wrap("inference", ctx.outputs)
    selection = checked_select(engine.strategy, ctx, budget)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = peak_rss_mb()
    return {
        "seconds": seconds,
        "phases": timer.seconds,
        "candidates": len(candidates),
        "peak_rss_mb": peak,
        "peak_above_start_mb": max(0.0, peak - rss_before),
        "peak_is_the_querys_own": reset,
        "cuda_peak_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
        "info": selection.info,
    }


def spawn(directory: Path, name: str, options: dict, candidates: int | None, budget: int, device: str) -> dict:
    command = [sys.executable, __file__, "case", str(directory), name, json.dumps(options), str(budget), device]
    if candidates is not None:
        command += ["--candidates", str(candidates)]
    done = subprocess.run(command, capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        error = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": error}
    return json.loads(lines[-1])


def plan(name: str, options: dict, args: argparse.Namespace, pool_candidates: int) -> tuple[dict, int | None, str]:
    """The options and candidate count to measure `name` with, and how the row is to be read."""
    if args.full:
        return options, None, "default settings, full pool"
    if name == "vaal" and "epochs" not in options:
        return {**options, "epochs": args.vaal_epochs}, None, f"trained {args.vaal_epochs} of 100 epochs, extrapolated"
    if name in GCN and "max_nodes" not in options and pool_candidates + args.labelled > 20_000:
        return (
            options,
            args.gcn_candidates,
            f"default refuses > 20,000 nodes; measured on {args.gcn_candidates:,} candidates",
        )
    if name == "coreset-robust" and "max_points" not in options and pool_candidates > 5000:
        return options, 5000, "default refuses > 5,000 candidates; measured at 5,000"
    return options, None, "default settings, full pool"


def extrapolate(name: str, case: dict, args: argparse.Namespace, pool_candidates: int) -> dict:
    """Estimated seconds at default settings (see the module docstring), from a reduced measurement."""
    phases = case["phases"]
    if name == "vaal" and args.vaal_epochs != 100 and not args.full:
        ratio = max(1, 100 * args.labelled // 128) / max(1, args.vaal_epochs * args.labelled // 128)
        return {"full pool": case["seconds"] + phases.get("fit", 0.0) * (ratio - 1)}
    if name in GCN and case["candidates"] < pool_candidates:
        inference = phases.get("inference", 0.0)
        graph = case["seconds"] - inference
        n = case["candidates"] + args.labelled
        out = {}
        for label, count in [
            (f"{PAPER_GCN_CANDIDATES:,} candidates", PAPER_GCN_CANDIDATES),
            ("full pool", pool_candidates),
        ]:
            out[label] = inference * count / case["candidates"] + graph * ((count + args.labelled) / n) ** 2
        return out
    return {}


def run(args: argparse.Namespace) -> None:
    device = resolve_device(args.device)
    names = [s.strip() for s in args.strategies.split(",")] if args.strategies else list_strategies()
    given = parse_options(args.strategy_option, "--strategy-option")
    with tempfile.TemporaryDirectory(prefix="dalkit-selection-time-") as tmp:
        directory = Path(tmp)
        start = time.perf_counter()
        context = setup(args, directory, device)
        print(
            f"pool: {context['source']}, {args.pool:,} images; labelled {args.labelled:,}; budget {args.budget:,}; "
            f"small-cnn width {args.width}, "
            + (
                f"trained {args.train_epochs} epochs ({context['train_seconds']:.0f} s)"
                if args.train_epochs
                else "untrained"
            )
            + f"; {device_name(device)}; setup {time.perf_counter() - start:.0f} s",
            flush=True,
        )
        pool_candidates = args.pool - args.labelled
        rows = []
        for name in names:
            options, candidates, note = plan(name, options_for(name, given), args, pool_candidates)
            case = spawn(directory, name, options, candidates, args.budget, str(device))
            record = {
                "bench": "selection-time",
                "strategy": name,
                "options": options,
                "pool": args.pool,
                "data": context["source"],
                "labelled": args.labelled,
                "budget": args.budget,
                "model": f"small-cnn width {args.width}",
                "train_epochs": args.train_epochs,
                "device": device_name(device),
                "note": note,
                **case,
            }
            if "error" not in case:
                record["extrapolated_seconds"] = extrapolate(name, case, args, pool_candidates)
            save(record)
            rows.append(table_row(record))
            print(f"  {name}: " + (case.get("error") or f"{case['seconds']:.1f} s"), flush=True)
    headers = ["strategy", "seconds", "of which inference", "peak RSS MB", "rise MB", "estimated at default", "note"]
    if device.type == "cuda":
        headers[3:5] = ["CUDA peak MB", "-"]
    print()
    print(format_table(headers, rows))


def table_row(record: dict) -> list:
    if "error" in record:
        return [record["strategy"], "failed", "-", "-", "-", "-", record["error"][:80]]
    inference = record["phases"].get("inference")
    estimates = "; ".join(f"{k}: {v / 60:,.1f} min" for k, v in record.get("extrapolated_seconds", {}).items())
    memory = record["cuda_peak_mb"] if record["cuda_peak_mb"] is not None else record["peak_rss_mb"]
    return [
        record["strategy"],
        f"{record['seconds']:,.1f}",
        "-" if inference is None else f"{inference:,.1f}",
        f"{memory:,.0f}",
        "-" if record["cuda_peak_mb"] is not None else f"{record['peak_above_start_mb']:,.0f}",
        estimates or "-",
        record["note"],
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    p = sub.add_parser("case")
    p.add_argument("directory", type=Path)
    p.add_argument("name")
    p.add_argument("options", type=json.loads)
    p.add_argument("budget", type=int)
    p.add_argument("device")
    p.add_argument("--candidates", type=int)
    parser.add_argument("--data-root", default="/work/data")
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--pool", type=int, default=50_000)
    parser.add_argument("--labelled", type=int, default=1000)
    parser.add_argument("--budget", type=int, default=1000)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--train-epochs", type=int, default=10)
    parser.add_argument("--strategies", help="comma-separated; default: every registered strategy")
    parser.add_argument("--strategy-option", action="append", metavar="NAME.KEY=VALUE")
    parser.add_argument("--vaal-epochs", type=int, default=1)
    parser.add_argument("--gcn-candidates", type=int, default=4000)
    parser.add_argument("--full", action="store_true", help="measure every strategy as it is, no reductions")
    args = parser.parse_args()
    if args.command == "case":
        device = torch.device(args.device)
        case = run_case(args.directory, args.name, args.options, args.candidates, args.budget, device)
        print(json.dumps(case, default=str))
    else:
        run(args)


if __name__ == "__main__":
    main()
