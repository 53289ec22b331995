"""Labels to reach target accuracies, and accuracy at set budgets, from every run of comparisons, stopped ones too.

A comparison cut short (a time limit, a machine given back) leaves each unfinished run in a `.partial-` folder whose
cycles.jsonl holds every cycle it evaluated. The first time a run reaches a target is final once it has happened, so
those cycles already give that figure for every run that got there; a run that stopped first counts as `> N` (N: its
last labelled-set size), never as reached, and a budget is averaged over the runs that got to it (their count shown).
The largest-class share is the mean, over a run's acquisitions, of the most frequent class's share of the batch
(from the class counts of consecutive cycles): 10% for a class-balanced batch on a 10-class data set; the labelled
set's fewest-most images of a class are those of each run's last cycle, averaged over the runs.

    python benchmarks/stopped_runs.py COMPARISON_DIR [...] --targets 90,95 --budgets 100,200,300 [--markdown]
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np

from dalkit.report import format_table, labels_to_reach, markdown_table
from dalkit.results import complete_records


def runs_by_strategy(folders: list[Path]) -> dict[str, list[list[dict]]]:
    """Each strategy folder's runs (finished or stopped), as their cycle records."""
    runs = defaultdict(list)
    for folder in folders:
        for cycles in sorted(folder.glob("*/*/cycles.jsonl")):
            records = complete_records(cycles)  # up to a line cut off by a kill
            if records:
                runs[cycles.parent.parent.name].append(records)
    return dict(runs)


def mean_std(values: list[float], digits: int) -> str:
    return f"{np.mean(values):.{digits}f} +- {np.std(values):.{digits}f}"


def reach(runs: list[list[dict]], target: float) -> str:
    found = [labels_to_reach([r["labelled"] for r in run], [r["accuracy"] for r in run], target) for run in runs]
    reached = [n for n in found if n is not None]
    if not reached:
        return f"> {min(run[-1]['labelled'] for run in runs)} (0/{len(runs)})"
    text = mean_std(reached, 1)
    return text if len(reached) == len(runs) else f"{text} ({len(reached)}/{len(runs)})"


def at_budget(runs: list[list[dict]], budget: int) -> str:
    values = [100 * r["accuracy"] for run in runs for r in run if r["labelled"] == budget]
    return f"{mean_std(values, 2)} [{len(values)}]" if values else "-"


def largest_class_share(runs: list[list[dict]]) -> str:
    shares = []
    for run in runs:
        counts = np.array([r["class_counts"] for r in run])
        batches = np.diff(counts, axis=0)
        batches = batches[batches.sum(axis=1) > 0]
        shares.extend(batches.max(axis=1) / batches.sum(axis=1))
    return f"{100 * np.mean(shares):.0f}%" if shares else "-"


def class_range(runs: list[list[dict]]) -> str:
    counts = [np.array(run[-1]["class_counts"]) for run in runs if run[-1]["class_counts"]]
    return f"{np.mean([c.min() for c in counts]):.0f}-{np.mean([c.max() for c in counts]):.0f}" if counts else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path, help="comparison directories (STRATEGY/RUN/cycles.jsonl)")
    parser.add_argument("--targets", default="90,95", help="test accuracies in %%")
    parser.add_argument("--budgets", default="", help="labelled-set sizes to show the accuracy at")
    parser.add_argument("--order", default="", help="strategies in this order (default: alphabetical)")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    targets = [float(t) for t in args.targets.split(",") if t]
    budgets = [int(b) for b in args.budgets.split(",") if b]
    runs = runs_by_strategy(args.folders)
    order = [s for s in args.order.split(",") if s in runs] or sorted(runs)
    headers = ["strategy", "runs", "labels reached", *(f"labels to {t:g}%" for t in targets)]
    headers += [f"acc @ {b} [runs]" for b in budgets] + ["largest class / batch", "labelled per class at the end"]
    rows = []
    for name in order:
        last = [run[-1]["labelled"] for run in runs[name]]
        row = [name, len(runs[name]), f"{min(last)}-{max(last)}" if min(last) != max(last) else str(last[0])]
        row += [reach(runs[name], t) for t in targets] + [at_budget(runs[name], b) for b in budgets]
        rows.append(row + [largest_class_share(runs[name]), class_range(runs[name])])
    print((markdown_table if args.markdown else format_table)(headers, rows))


if __name__ == "__main__":
    main()
