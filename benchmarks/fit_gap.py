"""Train/test gap and training-loss curves of finished runs: does a training objective curb overfitting?

    python benchmarks/fit_gap.py DIR [DIR ...] [--sizes 500,1000,2500] [--plot losses.png] [--unfinished]

Reads every finished run in the comparison or run directories given (as `dalkit report` does), and with
`--unfinished` the completed cycles of runs still under way or stopped too, and groups them in the rows of
`dalkit report` (strategy, or method for `compare --methods` rows; runs that differ in a setting are two rows, so
`random` trained with CE and with CE + CS-KD come out as `random [objectives=ce]` and
`random [objectives=ce+cskd]`). For each labelled-set size it prints, as mean +- std over the runs:
test accuracy, accuracy on the labelled images themselves (eval mode, no augmentation) and their gap, and the
last epoch's training loss, with each objective's term when there are several (CE + MoBY, CE + CS-KD). `--plot`
draws each row's mean training loss per epoch, one panel per size, its terms dashed, to show whether each cycle's
training converged.
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

import numpy as np

from dalkit.collect import FoundRun, find_runs, find_unfinished, row_names
from dalkit.errors import DalkitError
from dalkit.report import markdown_table


def cell(values: list[float], scale: float = 100.0) -> str:
    return f"{scale * np.mean(values):.2f} +- {scale * np.std(values):.2f}" if values else "-"


def terms(records: list[dict]) -> str:
    """The last epoch's mean of each term of a loss of several objectives ("-" for one objective)."""
    names = records[0].get("objective_losses", {}) if records else {}
    means = {name: np.mean([r["objective_losses"][name][-1] for r in records]) for name in names}
    return " + ".join(f"{name} {value:.3f}" for name, value in means.items()) or "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dirs", nargs="+")
    parser.add_argument("--sizes", default="500,1000,2500", help="labelled-set sizes to tabulate")
    parser.add_argument("--plot", help="PNG of the mean training loss per epoch, per row and size")
    parser.add_argument("--unfinished", action="store_true", help="also the completed cycles of unfinished runs")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    runs = read_runs(args.dirs, args.unfinished)
    groups: dict[str, dict[int, list[dict]]] = {}
    for run, name in zip(runs, row_names(runs)):
        by_size = groups.setdefault(name, {})
        for record in run.records:
            if record.get("accuracy") is not None and record.get("train_accuracy") is not None:
                by_size.setdefault(record["labelled"], []).append(record)
    rows = []
    for name, by_size in groups.items():
        for size in sizes:
            records = by_size.get(size, [])
            test = [r["accuracy"] for r in records]
            train = [r["train_accuracy"] for r in records]
            gap = [a - b for a, b in zip(train, test)]
            loss = [r["train_loss"] for r in records]
            rows.append([name, size, len(records), cell(test), cell(train), cell(gap), cell(loss, 1.0), terms(records)])
    headers = ["row", "labelled", "runs", "test %", "labelled-set %", "gap (points)"]
    headers += ["final loss", "its terms"]
    print(markdown_table(headers, rows))
    if args.plot:
        plot_losses(groups, sizes, Path(args.plot))
        print(f"\nloss curves: {args.plot}")


def read_runs(dirs: list[str], unfinished: bool) -> list[FoundRun]:
    """The finished runs in `dirs`; with `unfinished`, also the completed cycles of the runs not finished yet."""
    if not unfinished:
        return find_runs(dirs)
    runs = []
    for directory in dirs:
        if not Path(directory).is_dir():
            raise SystemExit(f"{directory} is not a folder; give run or comparison directories.")
        with contextlib.suppress(DalkitError):  # only unfinished runs there
            runs += find_runs([directory])
        runs += find_unfinished(Path(directory))
    return runs


def plot_losses(groups: dict[str, dict[int, list[dict]]], sizes: list[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(sizes), figsize=(5 * len(sizes), 4), squeeze=False)
    for axis, size in zip(axes[0], sizes):
        for name, by_size in groups.items():
            records = by_size.get(size, [])
            line = plot_mean(axis, [r.get("epoch_losses") for r in records], name)
            if line is None:
                continue
            for term in records[0].get("objective_losses", {}):
                curves = [r["objective_losses"].get(term) for r in records]
                plot_mean(axis, curves, f"{name}: {term}", color=line.get_color(), linestyle="--", linewidth=0.8)
        axis.set(title=f"{size} labels", xlabel="epoch", ylabel="mean training loss")
        axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_mean(axis, curves: list[list[float] | None], label: str, **style):
    """Plot the mean of the runs' per-epoch curves (cut to the shortest); the line, or None without curves."""
    curves = [c for c in curves if c]
    if not curves:
        return None
    length = min(len(c) for c in curves)
    return axis.plot(range(1, length + 1), np.mean([c[:length] for c in curves], axis=0), label=label, **style)[0]


if __name__ == "__main__":
    main()
