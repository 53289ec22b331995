"""Grid wall time: the same 4 runs (2 strategies x 2 seeds) with `--executor ray` (2 workers: a local Ray of
2 CPUs, one CPU per run) and `--executor local` (one after another), alternated (a benchmark, not a test).

    python benchmarks/ray_grid.py [--dataset mnist --data-root /work/data] [--strategies random,margin]
        [--seeds 0,1] [--repeats 2] [--epochs 5] [--initial 20] [--budget 20] [--cycles 4]

Run it on an idle machine of at least 2 cores. Each repeat times `ray` then `local` (then the next repeat
`local` then `ray`, so warm caches favour neither), every run in a fresh comparison directory. The Ray time
includes starting and stopping the local Ray, as `dalkit compare --executor ray` pays it. Each worker and the
local run use one torch thread, so the ratio measures running 2 runs at once, not thread counts. It prints
both mean wall times and the ratio local / ray (above 1: Ray is faster), and appends them to benchmarks/results.jsonl.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # read by torch at import, here and in Ray's workers

import torch  # noqa: E402
from records import save  # noqa: E402

from dalkit.compare import run_comparison  # noqa: E402
from dalkit.executors import Resources  # noqa: E402
from dalkit.loop import ExperimentConfig  # noqa: E402
from dalkit.ray_executor import start_local_ray  # noqa: E402


def timed(base: ExperimentConfig, executor: str, strategies: list[str], seeds: list[int], root: Path) -> float:
    out = Path(tempfile.mkdtemp(prefix=f"{executor}-", dir=root))
    start = time.perf_counter()
    if executor == "ray":
        start_local_ray(num_cpus=2)  # 2 workers whatever the machine's cores (the command would take them all)
    try:
        run_comparison(
            replace(base, out_dir=str(out)), strategies, seeds, log=lambda _: None, executor=executor,
            resources=Resources(cpus_per_run=1),
        )  # fmt: skip
    finally:
        if executor == "ray":
            import ray

            ray.shutdown()
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--data-root", default="/work/data")
    p.add_argument("--strategies", default="random,margin")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--initial", type=int, default=20)
    p.add_argument("--budget", type=int, default=20)
    p.add_argument("--cycles", type=int, default=4)
    args = p.parse_args()
    torch.set_num_threads(1)
    strategies = args.strategies.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    base = ExperimentConfig(
        dataset=args.dataset, data_root=args.data_root, epochs=args.epochs, initial=args.initial,
        budget=args.budget, cycles=args.cycles, device="cpu", progress=False,
    )  # fmt: skip
    times: dict[str, list[float]] = {"ray": [], "local": []}
    with tempfile.TemporaryDirectory(prefix="ray-grid-") as root:
        for k in range(args.repeats):
            for executor in ("ray", "local") if k % 2 == 0 else ("local", "ray"):
                times[executor].append(timed(base, executor, strategies, seeds, Path(root)))
                print(f"repeat {k + 1}: {executor:5s} {times[executor][-1]:8.1f} s", flush=True)
    ray, local = (sum(times[e]) / len(times[e]) for e in ("ray", "local"))
    runs = len(strategies) * len(seeds)
    print(f"{runs} runs on {args.dataset}: ray (2 workers) {ray:.1f} s, local {local:.1f} s, ratio {local / ray:.2f}")
    save(
        {"benchmark": "ray_grid", "dataset": args.dataset, "runs": runs, "cycles": args.cycles, "epochs": args.epochs,
         "ray_s": times["ray"], "local_s": times["local"], "ratio_local_over_ray": local / ray, "cpus": os.cpu_count()}
    )  # fmt: skip


if __name__ == "__main__":
    main()
