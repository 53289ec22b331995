"""`dalkit report`: tables, a CSV and a plot rebuilt from finished run directories (a comparison's, single runs',
or both), optionally beside published results.

A finished run is a directory with config.json and cycles.csv whose name does not start with .partial- (see
`executors.run_in_folder`). Runs are grouped by strategy (by method for `compare --methods` rows), and by data set
and model when the runs span several.
The published CSV has the columns method, labelled, accuracy (test accuracy in %), optionally std (in %) and
source; each (method, source) becomes a curve on the plot and a row of the table.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dalkit.compare import AGAINST, against_baseline, baseline_of, summarise
from dalkit.errors import DalkitError
from dalkit.executors import PARTIAL
from dalkit.loop import CSV_COLUMNS, NOT_SETTINGS, RUNS, ExperimentConfig, ExperimentResult, run_settings
from dalkit.report import markdown_table, plot_learning_curves
from dalkit.results import is_finished, read_jsonl, unfinished_run, unique_directory


@dataclass
class FoundRun:
    directory: Path
    experiment: dict
    records: list[dict]


@dataclass
class PublishedCurve:
    label: str
    labelled: list[int]
    accuracy: list[float]  # fractions, like a run's
    std: list[float | None] | None  # per point; None where the source gives none


@dataclass
class Report:
    directory: Path
    table: str
    runs: int


#: what the runs of one row may differ in: where and how they ran, their seed, and names that do not change the run
ROW_MAY_DIFFER = (*NOT_SETTINGS, "seed", "name", "method", "row")


def find_unfinished(path: Path) -> list[FoundRun]:
    """The runs under `path` that started and have not finished (under way, or stopped): their completed cycles."""
    directories = [config.parent for config in sorted(path.rglob("config.json"))]
    return [FoundRun(d, *run) for d in directories if (run := unfinished_run(d)) is not None]


def unfinished_table(runs: list[FoundRun]) -> str:
    """One row per unfinished run: where it is, its cycles done of those planned, and its last evaluation."""
    rows = []
    for run in runs:
        last = run.records[-1] if run.records else {}
        accuracy = last.get("accuracy")
        rows.append(
            [
                str(run.directory),
                f"{len(run.records)} / {run.experiment.get('cycles', '?')}",
                last.get("labelled", "-"),
                "-" if accuracy is None else f"{100 * accuracy:.2f}",
            ]
        )
    return markdown_table(["unfinished run", "cycles done", "labelled", "accuracy %"], rows)


def find_runs(paths: list[str | Path]) -> list[FoundRun]:
    """Every finished run in `paths` (each a run directory or a folder holding runs at any depth), once each."""
    found: dict[Path, FoundRun] = {}
    for given in paths:
        path = Path(given)
        if not path.is_dir():
            raise DalkitError(f"{path} is not a folder; give run or comparison directories to `dalkit report`.")
        candidates = [path] if is_finished(path) else sorted(p.parent for p in path.rglob("cycles.csv"))
        runs = [d for d in candidates if not any(part.startswith(PARTIAL) for part in d.relative_to(path).parts)]
        runs = [d for d in runs if (d / "config.json").is_file() and is_finished(d)]
        if not runs:
            under_way = find_unfinished(path)
            if under_way:
                done = ", ".join(
                    f"{r.directory.name} ({len(r.records)} of {r.experiment.get('cycles')})" for r in under_way
                )
                raise DalkitError(f"{path} holds no finished dalkit run yet; cycles done so far: {done}.")
            raise DalkitError(f"{path} holds no finished dalkit run (none with config.json and cycles.csv).")
        for directory in runs:
            try:
                experiment = json.loads((directory / "config.json").read_text())["experiment"]
                records = read_jsonl(directory / "cycles.jsonl")
            except (ValueError, KeyError, TypeError) as error:
                raise DalkitError(f"{directory} is not a readable dalkit run ({error}); leave it out.") from None
            found.setdefault(directory.resolve(), FoundRun(directory, experiment, records))
    return list(found.values())


def read_published(path: str | Path) -> list[PublishedCurve]:
    """Curves from a CSV with columns method, labelled, accuracy (%), optional std (%), source."""
    path = Path(path)
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
            columns = set(rows[0]) if rows else set()
    except FileNotFoundError:
        raise DalkitError(f"--published {path} does not exist; give a CSV of published results.") from None
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DalkitError(f"--published {path} cannot be read as CSV ({error}); give a CSV file.") from None
    missing = [c for c in ("method", "labelled", "accuracy", "source") if c not in columns]
    if missing:
        raise DalkitError(
            f"--published {path} lacks the column(s) {', '.join(missing)}; it needs method, labelled, accuracy "
            f"(test accuracy in %), optional std, and source."
        )
    curves: dict[str, list[tuple[int, float, float | None]]] = {}
    for line, row in enumerate(rows, start=2):
        try:
            labelled = int(float(row["labelled"]))
            accuracy = float(row["accuracy"])
            std = float(row["std"]) if row.get("std") not in (None, "") else None
        except (TypeError, ValueError):
            raise DalkitError(
                f"--published {path} line {line}: labelled, accuracy and std must be numbers; fix that row."
            ) from None
        if not 0 <= accuracy <= 100 or labelled < 0:
            raise DalkitError(
                f"--published {path} line {line}: accuracy is a test accuracy in % (0 to 100) and labelled a count; "
                "fix that row."
            )
        label = f"{row['method'].strip()} ({row['source'].strip()})" if row["source"].strip() else row["method"]
        curves.setdefault(label, []).append((labelled, accuracy / 100, None if std is None else std / 100))
    result = []
    for label, points in curves.items():
        points.sort()
        stds = [p[2] for p in points]
        no_std = all(d is None for d in stds)
        result.append(PublishedCurve(label, [p[0] for p in points], [p[1] for p in points], None if no_std else stds))
    return result


def cycle_seconds(runs: list[FoundRun]) -> str:
    """Mean (and most) seconds a cycle took (training + evaluation + selection) over every cycle of `runs`."""
    parts = ("train_seconds", "eval_seconds", "query_seconds")
    seconds = [sum(r.get(p) or 0.0 for p in parts) for run in runs for r in run.records]
    return f"{np.mean(seconds):.1f} ({max(seconds):.1f})" if seconds else "-"


def row_names(runs: list[FoundRun]) -> list[str]:
    """Each run's row: its strategy, or its method for a `compare --methods` row (whose model is the method's); with
    (data set, model) added when the strategy rows span several, and the data set when the runs do. Runs of one
    name that differ in another setting than the seed (the objectives, the epochs, ...) are never averaged
    together: each such row also names those settings, e.g. `random [objectives=ce+cskd]`."""
    datasets = {r.experiment.get("dataset") for r in runs}
    settings = {(r.experiment.get("dataset"), r.experiment.get("model")) for r in runs if not r.experiment.get("row")}
    names = []
    for experiment in (r.experiment for r in runs):
        if experiment.get("row"):
            names.append(experiment["row"] + (f" ({experiment.get('dataset')})" if len(datasets) > 1 else ""))
        elif len(settings) > 1 or len(datasets) > 1:
            names.append(f"{experiment.get('strategy')} ({experiment.get('dataset')}, {experiment.get('model')})")
        else:
            names.append(str(experiment.get("strategy")))
    for name in set(names):
        members = [i for i, other in enumerate(names) if other == name]
        kept = [run_settings(runs[i].experiment, ROW_MAY_DIFFER) for i in members]
        differ = sorted({key for k in kept for key in k if len({json.dumps(s.get(key)) for s in kept}) > 1})
        for i, k in zip(members, kept):
            if differ:
                names[i] = f"{name} [{', '.join(f'{key}={setting_text(k.get(key))}' for key in differ)}]"
    return names


def setting_text(value) -> str:
    """A setting's value as a row name shows it: lists joined by +, options as key:value."""
    if isinstance(value, list):
        return "+".join(setting_text(v) for v in value)
    if isinstance(value, dict):
        return ",".join(f"{k}:{setting_text(v)}" for k, v in sorted(value.items()))
    return str(value)


def build_report(paths: list[str | Path], published: str | Path | None = None, out: str | Path | None = None) -> Report:
    """report.md (mean +- std per budget and AULC per strategy, published rows beside them), cycles.csv (every
    cycle of every run) and curves.png (mean +- std bands; published curves dashed) in `out`."""
    runs = find_runs(paths)
    curves = read_published(published) if published is not None else []
    directory = unique_directory(RUNS, "report") if out is None else Path(out)
    directory.mkdir(parents=True, exist_ok=True)
    groups: dict[str, list[FoundRun]] = {}
    for run, name in zip(runs, row_names(runs)):
        groups.setdefault(name, []).append(run)
    summaries = []
    for name, group in groups.items():
        results = [
            ExperimentResult(ExperimentConfig(seed=r.experiment.get("seed", 0)), r.records, r.directory) for r in group
        ]
        if len({tuple(r.labelled) for r in results}) != 1:
            raise DalkitError(
                f"the runs of {name} were evaluated at different labelled-set sizes "
                f"({', '.join(str(r.directory) for r in group)}); report them separately."
            )
        summaries.append(summarise(name, results))
    budgets = sorted({b for s in summaries for b in s.labelled} | {b for c in curves for b in c.labelled})
    baseline = baseline_of(summaries)
    against = list(AGAINST) if baseline else []
    rows = []
    for s in summaries:
        cells = dict(zip(s.labelled, (f"{100 * m:.2f} +- {100 * d:.2f}" for m, d in zip(s.mean, s.std))))
        seeds = sorted(r.experiment.get("seed") for r in groups[s.strategy])
        aulc = f"{100 * s.aulc_mean:.2f} +- {100 * s.aulc_std:.2f}"
        rows.append(
            [
                s.strategy,
                len(seeds),
                *[cells.get(b, "-") for b in budgets],
                aulc,
                *against_baseline(s, baseline),
                cycle_seconds(groups[s.strategy]),
            ]
        )
    for c in curves:
        stds = c.std or [None] * len(c.labelled)
        cells = {
            b: f"{100 * a:.2f}" + ("" if d is None else f" +- {100 * d:.2f}")
            for b, a, d in zip(c.labelled, c.accuracy, stds)
        }
        rows.append([c.label, "published", *[cells.get(b, "-") for b in budgets], "-", *["-"] * len(against), "-"])
    table = markdown_table(["strategy", "runs", *[str(b) for b in budgets], "AULC", *against, "s/cycle (max)"], rows)
    note = (
        "Test accuracy (%) by labelled images: mean +- std over runs; AULC: normalised area under the curve; "
        "above random: at how many budgets after the first the row beats random on the seeds both ran (the same "
        "initial labels), on average; AULC - random, same seeds: the row's AULC minus random's on each of those "
        "seeds, mean +- std in points; "
        "s/cycle: seconds of training, evaluation and selection per cycle, mean over every cycle (and the most)."
    )
    under_way = [run for path in paths for run in find_unfinished(Path(path))]
    if under_way:
        heading = "Unfinished runs, not in the table (under way, or stopped: `--resume` goes on from the last cycle):"
        table += f"\n\n{heading}\n\n{unfinished_table(under_way)}"
    (directory / "report.md").write_text(f"{note}\n\n{table}\n")
    with open(directory / "cycles.csv", "w", newline="") as f:
        writer = csv.DictWriter(
            f, fieldnames=["strategy", "seed", "dataset", "model", "run", *CSV_COLUMNS], extrasaction="ignore"
        )
        writer.writeheader()
        for name, group in groups.items():
            for run in group:
                meta = {k: run.experiment.get(k) for k in ("seed", "dataset", "model")}
                for record in run.records:
                    writer.writerow({**record, **meta, "strategy": name, "run": str(run.directory)})
    plot_learning_curves(
        {s.strategy: (s.labelled, s.mean, s.std) for s in summaries},
        directory / "curves.png",
        f"{len(runs)} run(s): mean +- std per strategy" + ("; published dashed" if curves else ""),
        published={
            c.label: (c.labelled, c.accuracy, None if c.std is None else [np.nan if d is None else d for d in c.std])
            for c in curves
        },
    )
    return Report(directory, table, len(runs))
