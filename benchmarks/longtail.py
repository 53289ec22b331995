"""Long-tail benchmark (not a test): training objectives on a long-tailed set, then distillation of a teacher.

Part 1 trains one model per objective (default ce, mixup, hybrid-mixup) on the long-tailed training split and
reports overall, balanced and many/medium/few-shot test accuracy. Part 2 trains a teacher (plain CE), then a
smaller student alone (CE) and with each distillation objective (default kd, onehot-kd, patch-kd), and reports
the student's accuracy. Mean +- std over seeds; everything goes through `dalkit train` / `dalkit distill`'s code.

    python benchmarks/longtail.py                                   # digits-lt, IF 10, embedded (no download)
    python benchmarks/longtail.py --dataset cifar10-lt --imbalance 100 --data-root DIR \\
        --model resnet32 --teacher resnet32x4 --student resnet8x4 --epochs 200

The tables are printed and appended as JSON lines to benchmarks/results.jsonl.
"""

from __future__ import annotations

import argparse
import ast
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from records import save

from dalkit.loop import ExperimentConfig
from dalkit.report import format_table
from dalkit.results import unique_directory
from dalkit.supervised import distill, train_supervised

METRICS = ["accuracy", "balanced_accuracy", "many_shot_accuracy", "medium_shot_accuracy", "few_shot_accuracy"]
HEADERS = ["accuracy %", "balanced %", "many-shot %", "medium-shot %", "few-shot %"]


def model_spec(text: str) -> tuple[str, dict]:
    """ "small-cnn:width=8" -> ("small-cnn", {"width": 8})."""
    name, _, options = text.partition(":")
    pairs = (part.split("=", 1) for part in options.split(",") if part)
    return name, {key: ast.literal_eval(value) for key, value in pairs}


def mean_std(records: list[dict], metric: str) -> str:
    values = [r[metric] for r in records if r.get(metric) is not None]
    if not values:
        return "no class"
    return f"{100 * np.mean(values):.2f} +- {100 * np.std(values):.2f}"


def summary_rows(results: dict[str, list[dict]]) -> list[list[str]]:
    return [[name, *(mean_std(records, m) for m in METRICS)] for name, records in results.items()]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="digits-lt")
    p.add_argument("--imbalance", type=float, default=10.0)
    p.add_argument("--data-root", default="data")
    p.add_argument("--model", default="small-cnn", help="model of part 1, NAME[:KEY=VALUE,...]")
    p.add_argument("--teacher", default="small-cnn:width=64", help="teacher of part 2")
    p.add_argument("--student", default="small-cnn:width=8", help="student of part 2")
    p.add_argument("--objectives", default="ce,mixup,hybrid-mixup")
    p.add_argument("--distillation", default="kd,onehot-kd,patch-kd")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="runs/longtail-benchmark")
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    base = ExperimentConfig(
        dataset=args.dataset,
        data_root=args.data_root,
        dataset_options={"imbalance": args.imbalance},
        epochs=args.epochs,
        device=args.device,
        progress=sys.stderr.isatty(),
    )

    def at(config: ExperimentConfig, name: str) -> ExperimentConfig:
        """`config`, run in a new directory args.out/NAME (numbered if taken)."""
        return replace(config, out_dir=str(unique_directory(Path(args.out), name)))

    quiet = lambda line: None  # noqa: E731  (the tables are the output)
    start = time.perf_counter()

    training: dict[str, list[dict]] = {}
    model, model_options = model_spec(args.model)
    for objective in args.objectives.split(","):
        for seed in seeds:
            config = replace(base, model=model, model_options=model_options, objectives=(objective,), seed=seed)
            training.setdefault(objective, []).append(
                train_supervised(at(config, f"{objective}-seed{seed}"), quiet).records[-1]
            )
            print(f"trained {objective} seed {seed}", file=sys.stderr)

    students: dict[str, list[dict]] = {}
    teacher, teacher_options = model_spec(args.teacher)
    student, student_options = model_spec(args.student)
    for seed in seeds:
        config = replace(base, model=teacher, model_options=teacher_options, seed=seed)
        taught = train_supervised(at(config, f"teacher-seed{seed}"), quiet)
        students.setdefault(f"teacher ({args.teacher})", []).append(taught.records[-1])
        alone = replace(base, model=student, model_options=student_options, seed=seed)
        students.setdefault("student alone (ce)", []).append(
            train_supervised(at(alone, f"student-seed{seed}"), quiet).records[-1]
        )
        for objective in args.distillation.split(","):
            student_run = at(replace(alone, objectives=(objective,)), f"student-{objective}-seed{seed}")
            distilled = distill(taught.directory, student_run, quiet)
            students.setdefault(f"student, {objective}", []).append(distilled.result.records[-1])
        print(f"distilled seed {seed}", file=sys.stderr)

    setting = f"{args.dataset} IF {args.imbalance:g}, {args.epochs} epochs, seeds {args.seeds}"
    print(f"\ntest accuracy, {args.model}, {setting}, mean +- std over seeds:")
    print(format_table(["objective", *HEADERS], summary_rows(training)))
    print(f"\ndistillation into {args.student}, teacher {args.teacher}, {setting}:")
    print(format_table(["model", *HEADERS], summary_rows(students)))
    print(f"\n{time.perf_counter() - start:.0f} s; run directories under {args.out}")
    record = {
        "bench": "longtail",
        "args": vars(args),
        "training": {k: [{m: r.get(m) for m in METRICS} for r in v] for k, v in training.items()},
        "distillation": {k: [{m: r.get(m) for m in METRICS} for r in v] for k, v in students.items()},
    }
    save(record)


if __name__ == "__main__":
    main()
