"""Many strategies x seeds on one configuration: mean +- std accuracy per budget and the area under
the learning curve, as a table and one plot of all curves."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from dalkit.data import dataset_label
from dalkit.errors import DalkitError
from dalkit.loop import RUNS, ExperimentConfig, ExperimentResult, run_experiment
from dalkit.options import options_for
from dalkit.report import area_under_curve, format_table, markdown_table, plot_learning_curves
from dalkit.results import is_finished, read_jsonl, unique_directory
from dalkit.strategies import create_strategy


@dataclass
class StrategySummary:
    strategy: str
    labelled: list[int]
    mean: np.ndarray
    std: np.ndarray
    aulc_mean: float
    aulc_std: float
    runs: list[ExperimentResult]


@dataclass
class Comparison:
    summaries: list[StrategySummary]
    directory: Path

    def table(self, markdown: bool = False) -> str:
        """Mean +- std test accuracy (%) per labelled-set size, and the normalised AULC; in Markdown, the best
        mean of each column is in bold."""
        budgets = self.summaries[0].labelled
        headers = ["strategy", *[str(b) for b in budgets], "AULC"]
        means = np.array([[*s.mean, s.aulc_mean] for s in self.summaries])
        stds = np.array([[*s.std, s.aulc_std] for s in self.summaries])
        best = means.max(0)
        rows = []
        for s, mean, std in zip(self.summaries, means, stds):
            cells = [f"{100 * m:.2f} +- {100 * d:.2f}" for m, d in zip(mean, std)]
            if markdown:
                cells = [f"**{c}**" if m == top else c for c, m, top in zip(cells, mean, best)]
            rows.append([s.strategy, *cells])
        return markdown_table(headers, rows) if markdown else format_table(headers, rows)


def summarise(strategy: str, runs: list[ExperimentResult]) -> StrategySummary:
    lengths = {len(r.accuracy) for r in runs}
    if len(lengths) != 1:
        raise RuntimeError(f"runs of {strategy} evaluated at different budgets")
    accuracy = np.array([r.accuracy for r in runs])
    aulc = np.array([area_under_curve(r.labelled, r.accuracy) for r in runs])
    return StrategySummary(
        strategy, runs[0].labelled, accuracy.mean(0), accuracy.std(0), float(aulc.mean()), float(aulc.std()), runs
    )


def run_comparison(
    base: ExperimentConfig,
    strategies: Sequence[str],
    seeds: Sequence[int],
    log: Callable[[str], None] = print,
    resume: str | Path | None = None,
) -> Comparison:
    """Run every strategy with every seed (same seed -> same initial set) and summarise.

    The comparison's directory is `base.out_dir` (or a new runs/compare-DATASET-MODEL/), and each run is in
    its STRATEGY/ folder. `base.strategy_options` may name a strategy: {"bald.samples": 10} goes to bald only,
    while a plain key goes to every strategy. `resume`, an earlier comparison's directory, continues it there:
    each run that finished in it with the same settings is read back instead of run again (see
    `finished_run`), so an interrupted benchmark loses only its unfinished runs and a strategy can be added to
    a finished one.
    """
    base.validate()
    options = {name: options_for(name, base.strategy_options) for name in strategies}
    for name in strategies:  # fail on a bad name or option before any training
        create_strategy(name, **options[name])
    directory = comparison_directory(base) if resume is None else resumed_directory(base, Path(resume))
    summaries = []
    for name in strategies:
        runs = []
        for seed in seeds:
            config = replace(base, strategy=name, strategy_options=options[name], seed=seed, out_dir=None)
            run = finished_run(config, directory / name)
            log(f"== {name}, seed {seed}" + (f": finished earlier, read from {run.directory}" if run else ""))
            if run is None:
                run_dir = unique_directory(directory / name, config.run_name())
                run = run_experiment(replace(config, out_dir=str(run_dir)), log)
            runs.append(run)
        summaries.append(summarise(name, runs))
    comparison = Comparison(summaries, directory)
    write_comparison(comparison, base)
    return comparison


def comparison_directory(base: ExperimentConfig) -> Path:
    """`base.out_dir`, created (refused if it holds a finished comparison), or a new runs/compare-DATASET-MODEL/."""
    if base.out_dir is None:
        return unique_directory(RUNS, f"compare-{dataset_label(base.dataset)}-{base.model}")
    directory = Path(base.out_dir)
    if (directory / "summary.json").exists():
        raise DalkitError(
            f"{directory} already holds a finished comparison; pick another --out, remove that folder, or add "
            f"--resume {directory} to reuse its runs."
        )
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def resumed_directory(base: ExperimentConfig, directory: Path) -> Path:
    """The earlier comparison that `--resume` names (and `--out`, if given, names too)."""
    if base.out_dir is not None and Path(base.out_dir) != directory:
        raise DalkitError(f"--out {base.out_dir} differs from --resume {directory}; give only --resume.")
    if not (directory / "summary.json").exists() and not any(directory.glob("*/*/config.json")):
        raise DalkitError(f"{directory} holds no dalkit comparison; give the directory `dalkit compare` printed.")
    return directory


# Settings that do not change a run's results, so a finished run may be reused across them.
NOT_SETTINGS = ("data_root", "download", "device", "out_dir", "progress")


def settings(experiment: dict) -> dict:
    """The experiment fields that define a run's results, as they read back from its config.json."""
    plain = json.loads(json.dumps(experiment, default=str))
    return {key: value for key, value in plain.items() if key not in NOT_SETTINGS}


def finished_run(config: ExperimentConfig, folder: Path) -> ExperimentResult | None:
    """A run in `folder` that finished (wrote cycles.csv) with the settings of `config`, if any.

    A field that a run's config.json lacks (recorded before the option existed) counts as its default.
    """
    wanted = settings(asdict(config))
    defaults = settings(asdict(ExperimentConfig()))
    for config_path in sorted(folder.glob("*/config.json")):
        directory = config_path.parent
        if not is_finished(directory):
            continue
        try:
            experiment = json.loads(config_path.read_text())["experiment"]
        except (ValueError, KeyError, TypeError):
            continue
        if {**defaults, **settings(experiment)} == wanted:
            return ExperimentResult(config, read_jsonl(directory / "cycles.jsonl"), directory)
    return None


def write_comparison(comparison: Comparison, base: ExperimentConfig) -> None:
    directory = comparison.directory
    (directory / "summary.txt").write_text(comparison.table() + "\n")
    (directory / "summary.md").write_text(comparison.table(markdown=True) + "\n")
    summary = {
        s.strategy: {
            "labelled": s.labelled,
            "mean": s.mean.tolist(),
            "std": s.std.tolist(),
            "aulc_mean": s.aulc_mean,
            "aulc_std": s.aulc_std,
            "seeds": [r.config.seed for r in s.runs],
        }
        for s in comparison.summaries
    }
    (directory / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    seeds = len(comparison.summaries[0].runs)
    plot_learning_curves(
        {s.strategy: (s.labelled, s.mean, s.std) for s in comparison.summaries},
        directory / "curves.png",
        f"{base.dataset} / {base.model}: mean +- std over {seeds} seed(s)",
    )
