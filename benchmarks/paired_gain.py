"""Each row's test accuracy minus a baseline row's on the same seed: is a gain larger than the seed-to-seed spread?

    python benchmarks/paired_gain.py DIR [DIR ...] [--baseline random] [--sizes 500,1000,2500]

Reads the finished runs in the directories given and groups them in the rows of `dalkit report`. A seed draws the
same initial labels for every row (and random selection the same images at every cycle), so a row's run and the
baseline's run of one seed differ by the selection or the training alone: the per-seed difference removes the
spread that the seeds share. For each row and labelled-set size (and the AULC) it prints the differences seed by
seed (points), their mean +- std (n - 1), how many are above zero, and a paired t-test's two-sided p.
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy import stats

from dalkit.collect import find_runs, row_names
from dalkit.errors import DalkitError
from dalkit.report import area_under_curve, markdown_table


def points(records: list[dict]) -> dict:
    """Test accuracy (%) by labelled-set size, and the AULC (%) under the key "AULC"."""
    evaluated = [r for r in records if r.get("accuracy") is not None]
    curve = {r["labelled"]: 100 * r["accuracy"] for r in evaluated}
    curve["AULC"] = 100 * area_under_curve([r["labelled"] for r in evaluated], [r["accuracy"] for r in evaluated])
    return curve


def gain_row(name: str, key, gains: list[float]) -> list:
    """One table row: the per-seed gains, their mean +- std, the count above zero and the t-test's p."""
    spread = f" +- {np.std(gains, ddof=1):.2f}" if len(gains) > 1 else ""
    p = f"{stats.ttest_1samp(gains, 0.0).pvalue:.3f}" if len(gains) > 1 and np.ptp(gains) > 0 else "-"
    label = f"{key:,}" if isinstance(key, int) else key
    cells = ", ".join(f"{g:+.2f}" for g in gains)
    return [name, label, cells, f"{np.mean(gains):+.2f}{spread}", f"{sum(g > 0 for g in gains)}/{len(gains)}", p]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dirs", nargs="+")
    parser.add_argument("--baseline", default="random", help="the row every other row is set against")
    parser.add_argument("--sizes", help="labelled-set sizes to tabulate (default: every size the rows share)")
    args = parser.parse_args()
    runs = find_runs(args.dirs)
    rows: dict[str, dict[int, dict]] = {}
    for run, name in zip(runs, row_names(runs)):
        rows.setdefault(name, {})[run.experiment.get("seed")] = points(run.records)
    if args.baseline not in rows:
        raise DalkitError(f"no row is named {args.baseline!r} (rows: {', '.join(rows)}); pass one with --baseline.")
    baseline = rows.pop(args.baseline)
    table = []
    for name, by_seed in rows.items():
        seeds = sorted(set(by_seed) & set(baseline))
        if not seeds:
            continue
        shared = set.intersection(*(set(by_seed[s]) & set(baseline[s]) for s in seeds))
        sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else sorted(k for k in shared if k != "AULC")
        label = f"{name} (seeds {', '.join(map(str, seeds))})"
        for key in [*(s for s in sizes if s in shared), "AULC"]:
            table.append(gain_row(label, key, [by_seed[s][key] - baseline[s][key] for s in seeds]))
            label = ""
    headers = ["row", "labelled", f"minus {args.baseline}, per seed", "mean +- std", "above 0", "paired t-test p"]
    print(markdown_table(headers, table))


if __name__ == "__main__":
    try:
        main()
    except DalkitError as error:
        raise SystemExit(f"paired_gain.py: {error}") from None
