"""Seconds of `dalkit project status` and `export` on a 10,000-image project (issue 15: status under a second).

    PYTHONPATH=src python benchmarks/labelling_status.py [--images 10000] [--labelled 2000] [--repeats 5]

Builds a project of generated 8x8 images (labelling.py), records `--labelled` labels and two asked rounds, then
runs each command `--repeats` times as a new process (what a user waits for, Python's start included) and prints
the median and worst seconds. Nothing is left behind.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from labelling import dalkit, make_project, opened, round_images, truth


def timed(*args: str) -> float:
    start = time.perf_counter()
    process = dalkit(*args, stdout=subprocess.DEVNULL)
    if process.wait() != 0:
        raise SystemExit(f"`dalkit {' '.join(args)}` failed")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--labelled", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        project = make_project(Path(tmp), args.images, budget=args.labelled // 2)
        with opened(project) as opened_project:
            first = round_images(project)
            opened_project.record_labels([(path, truth(path)) for path in first], source="benchmark")
            opened_project.ask(log=lambda _: None, progress=False)
            second = round_images(project, 2)
            opened_project.record_labels([(path, truth(path)) for path in second], source="benchmark")
            labelled = len(opened_project.labels())
        print(f"project: {args.images:,} images, {labelled:,} labelled, 2 rounds asked")
        for command in (["status", str(project)], ["export", str(project), "--out", f"{tmp}/labels.csv"]):
            seconds = [timed("project", *command) for _ in range(args.repeats)]
            print(
                f"dalkit project {command[0]}: median {statistics.median(seconds):.2f} s, worst {max(seconds):.2f} s "
                f"over {args.repeats} runs"
            )


if __name__ == "__main__":
    main()
