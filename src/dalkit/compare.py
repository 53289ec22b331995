"""Many strategies x seeds on one configuration: mean +- std accuracy per budget and the area under
the learning curve, as a table and one plot of all curves; with `targets`, how many labels each strategy needed to
first reach each test accuracy (the Bayesian AL papers' tables: Gal et al. 2017 Table 1 counts the images acquired
to reach 10% and 5% test error on MNIST, BatchBALD 2019 Table 1 the labels to reach 90% and 95% accuracy)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from dalkit.data import dataset_label
from dalkit.errors import DalkitError
from dalkit.executors import PARTIAL, FailedRun, Resources, Runner, Task, Tracker, run_in_processes, run_locally
from dalkit.loop import RUNS, ExperimentConfig, ExperimentResult, same_settings
from dalkit.options import options_for
from dalkit.presets import method_parts
from dalkit.ray_executor import run_on_ray
from dalkit.report import area_under_curve, format_table, labels_to_reach, markdown_table, plot_learning_curves
from dalkit.results import is_finished, read_jsonl, unique_directory
from dalkit.strategies import create_strategy


@dataclass
class TargetSummary:
    """Labels each seed needed to first reach `target` % test accuracy (None: it never did within its run)."""

    target: float
    labels: list[int | None]
    max_labels: int  # the largest labelled set any seed was evaluated with

    @property
    def reached(self) -> list[int]:
        return [n for n in self.labels if n is not None]

    @property
    def mean(self) -> float | None:
        return float(np.mean(self.reached)) if self.reached else None

    @property
    def std(self) -> float | None:
        return float(np.std(self.reached)) if self.reached else None

    def cell(self) -> str:
        """'mean +- std' over the seeds that reached it, '(k/n)' when only k of n did, '> N (0/n)' when none did."""
        seeds, reached = len(self.labels), len(self.reached)
        if not reached:
            return f"> {self.max_labels} (0/{seeds})"
        text = f"{self.mean:.1f} +- {self.std:.1f}"
        return text if reached == seeds else f"{text} ({reached}/{seeds})"

    def as_dict(self) -> dict:
        return {
            "labels": self.labels,
            "reached": len(self.reached),
            "seeds": len(self.labels),
            "mean": self.mean,
            "std": self.std,
            "max_labels": self.max_labels,
        }


TARGETS_NOTE = (
    "labels (initial set included) at the first evaluation at or above each test accuracy: mean +- std over the "
    "seeds that reached it; (k/n): only k of n seeds did; > N (0/n): none did within N labels."
)


@dataclass
class StrategySummary:
    strategy: str
    labelled: list[int]
    mean: np.ndarray
    std: np.ndarray
    aulc_mean: float
    aulc_std: float
    runs: list[ExperimentResult]
    targets: list[TargetSummary] = field(default_factory=list)
    dataset: str = ""


#: the row every other row is measured against, and the columns that measure it
BASELINE = "random"
AGAINST = ("above random", "AULC - random, same seeds")


def baseline_of(summaries: list[StrategySummary]) -> StrategySummary | None:
    """The random row, when there are other rows to count against it."""
    found = next((s for s in summaries if s.strategy == BASELINE), None)
    return found if len(summaries) > 1 else None


def seed_pairs(summary: StrategySummary, baseline: StrategySummary) -> list[tuple[ExperimentResult, ExperimentResult]]:
    """The row's runs beside the baseline's run of the same seed: a seed draws the same initial labels for every
    row, so a pair differs by the row's selection and training, not the draw."""
    base = {run.config.seed: run for run in baseline.runs}
    return [(run, base[run.config.seed]) for run in summary.runs if run.config.seed in base]


def budgets_above(summary: StrategySummary, baseline: StrategySummary | None) -> list[str]:
    """The "above random" cell: ["k/n"], at k of the n budgets after the first (the initial set, shared by the
    seeds) that the baseline was also evaluated at on a seed of the row (`seed_pairs`), the row's accuracy minus
    the baseline's on the same seeds is above 0 on average; ["-"] for the baseline itself or with no such budget;
    no cell without a baseline. With the same seeds this is the row's mean against the baseline's; a row with fewer
    seeds is not set against seeds it did not run."""
    if baseline is None:
        return []
    if summary is baseline:
        return ["-"]
    gains: dict[int, list[float]] = {}
    for run, other in seed_pairs(summary, baseline):
        base = dict(zip(other.labelled, other.accuracy))
        for size, accuracy in list(zip(run.labelled, run.accuracy))[1:]:
            if size in base:
                gains.setdefault(size, []).append(accuracy - base[size])
    return [f"{sum(np.mean(g) > 0 for g in gains.values())}/{len(gains)}" if gains else "-"]


def paired_aulc(summary: StrategySummary, baseline: StrategySummary | None) -> list[str]:
    """The "AULC - random" cell: the row's AULC minus random's on each seed both ran (`seed_pairs`) at the same
    labelled-set sizes, mean +- std in points, with the number of seeds when fewer than the row's runs; ["-"] for
    random itself or with no such seed; no cell without a baseline. Paired, it tells a gain from the seed-to-seed
    spread that the means' stds both carry."""
    if baseline is None:
        return []
    pairs = [(run, other) for run, other in seed_pairs(summary, baseline) if run.labelled == other.labelled]
    if summary is baseline or not pairs:
        return ["-"]
    gains = [area_under_curve(r.labelled, r.accuracy) - area_under_curve(b.labelled, b.accuracy) for r, b in pairs]
    cell = f"{100 * np.mean(gains):+.2f} +- {100 * np.std(gains):.2f}"
    return [cell + (f" ({len(pairs)} seeds)" if len(pairs) < len(summary.runs) else "")]


def against_baseline(summary: StrategySummary, baseline: StrategySummary | None) -> list[str]:
    """The AGAINST cells of a row: `budgets_above` and `paired_aulc` (none without a baseline)."""
    return [*budgets_above(summary, baseline), *paired_aulc(summary, baseline)]


def accuracy_table(summaries: list[StrategySummary], markdown: bool = False) -> str:
    """Mean +- std test accuracy (%) per labelled-set size, the normalised AULC and, with a random row, at how many
    budgets each row is above random and its AULC against random's on the same seeds; in Markdown, the best mean
    of each column is in bold."""
    budgets = summaries[0].labelled
    baseline = baseline_of(summaries)
    headers = ["strategy", *[str(b) for b in budgets], "AULC", *(AGAINST if baseline else ())]
    means = np.array([[*s.mean, s.aulc_mean] for s in summaries])
    stds = np.array([[*s.std, s.aulc_std] for s in summaries])
    best = means.max(0)
    rows = []
    for s, mean, std in zip(summaries, means, stds):
        cells = [f"{100 * m:.2f} +- {100 * d:.2f}" for m, d in zip(mean, std)]
        if markdown:
            cells = [f"**{c}**" if m == top else c for c, m, top in zip(cells, mean, best)]
        rows.append([s.strategy, *cells, *against_baseline(s, baseline)])
    return markdown_table(headers, rows) if markdown else format_table(headers, rows)


def targets_table(summaries: list[StrategySummary], targets: tuple[float, ...], markdown: bool = False) -> str:
    """Per strategy and target accuracy, the labels needed to first reach it (see `TargetSummary.cell`); in
    Markdown, the fewest labels of each column (every seed reaching it) in bold."""
    headers = ["strategy", *[f"{t:g}%" for t in targets]]
    best = []
    for k in range(len(targets)):
        complete = [s.targets[k].mean for s in summaries if len(s.targets[k].reached) == len(s.runs)]
        best.append(min(complete) if complete else None)
    rows = []
    for s in summaries:
        cells = [t.cell() for t in s.targets]
        if markdown:
            cells = [
                f"**{c}**" if top is not None and len(t.reached) == len(t.labels) and t.mean == top else c
                for c, t, top in zip(cells, s.targets, best)
            ]
        rows.append([s.strategy, *cells])
    return markdown_table(headers, rows) if markdown else format_table(headers, rows)


@dataclass
class Comparison:
    summaries: list[StrategySummary]
    directory: Path
    targets: tuple[float, ...] = ()
    failed: list[FailedRun] = field(default_factory=list)
    others: int = 0  # finished runs in `directory` outside this comparison's grid (earlier pieces of it)

    def by_dataset(self) -> dict[str, list[StrategySummary]]:
        """The summaries of each data set, in grid order."""
        groups: dict[str, list[StrategySummary]] = {}
        for s in self.summaries:
            groups.setdefault(s.dataset, []).append(s)
        return groups

    def per_dataset(self, render: Callable[[list[StrategySummary]], str]) -> str:
        """`render` of the summaries; with several data sets, one titled block per data set."""
        groups = self.by_dataset()
        if len(groups) == 1:
            return render(self.summaries)
        return "\n\n".join(f"{dataset_label(name)}:\n\n{render(group)}" for name, group in groups.items())

    def failures(self) -> str:
        """One line per run that failed after its retries (empty when none did)."""
        several = len({f.dataset for f in self.failed} | set(self.by_dataset())) > 1
        return "\n".join(
            (f"{dataset_label(f.dataset)} / " if several else "")
            + f"{f.strategy}, seed {f.seed}: failed after {f.attempts} attempt(s): {f.error}"
            for f in self.failed
        )

    def others_note(self) -> str:
        """What the summary leaves out: the finished runs in its directory from other commands (empty if none)."""
        if not self.others:
            return ""
        covered = sum(len(s.runs) for s in self.summaries)
        return (
            f"This summary covers the {covered} run(s) of this command; {self.directory} holds {self.others} more "
            f"finished run(s) (other rows, seeds or settings): `dalkit report {self.directory}` tables them all."
        )

    def targets_table(self, markdown: bool = False) -> str:
        """`targets_table` per data set, with the note that says how to read it."""
        return self.per_dataset(lambda group: targets_table(group, self.targets, markdown)) + f"\n\n{TARGETS_NOTE}"

    def table(self, markdown: bool = False) -> str:
        """`accuracy_table` per data set."""
        return self.per_dataset(lambda group: accuracy_table(group, markdown))


def summarise(
    strategy: str, runs: list[ExperimentResult], targets: Sequence[float] = (), dataset: str = ""
) -> StrategySummary:
    lengths = {len(r.accuracy) for r in runs}
    if len(lengths) != 1:
        raise RuntimeError(f"runs of {strategy} evaluated at different budgets")
    accuracy = np.array([r.accuracy for r in runs])
    aulc = np.array([area_under_curve(r.labelled, r.accuracy) for r in runs])
    most = max((max(r.labelled) for r in runs if r.labelled), default=0)
    reach = [TargetSummary(t, [labels_to_reach(r.labelled, r.accuracy, t) for r in runs], most) for t in targets]
    return StrategySummary(
        strategy,
        runs[0].labelled,
        accuracy.mean(0),
        accuracy.std(0),
        float(aulc.mean()),
        float(aulc.std()),
        runs,
        reach,
        dataset,
    )


def check_targets(targets: Sequence[float]) -> tuple[float, ...]:
    """Target accuracies are percentages in (0, 100]."""
    for target in targets:
        if not 0 < target <= 100:
            raise DalkitError(
                f"--targets are test accuracies in % between 0 and 100 (got {target:g}); pass e.g. --targets 90,95."
            )
    return tuple(float(t) for t in targets)


EXECUTORS = {"local": run_locally, "processes": run_in_processes, "ray": run_on_ray}


def run_comparison(
    base: ExperimentConfig,
    strategies: Sequence[str],
    seeds: Sequence[int],
    log: Callable[[str], None] = print,
    resume: str | Path | None = None,
    targets: Sequence[float] | None = None,
    executor: str = "local",
    jobs: int = 1,
    retries: int = 2,
    runner: Runner | None = None,
    datasets: Sequence[str] | None = None,
    resources: Resources | None = None,
    methods: Sequence[str] = (),
) -> Comparison:
    """Run every strategy with every seed (same seed -> same initial set) on every data set and summarise.

    The comparison's directory is `base.out_dir` (or a new runs/compare-DATASET-MODEL/), and each run is in
    its STRATEGY/ folder, written under a .partial- name and renamed when it finished (`run_in_folder`).
    `methods` add rows that are papers' methods (`dalkit.presets`): each brings what the method is (its model,
    objectives and strategy, `method_parts`) into this comparison's protocol, so a method and its ablations sit
    beside plain strategies in one table, each row named by the method.
    `datasets` (default: `base.dataset` alone) makes the grid data sets x strategies x seeds; runs are named
    DATASET-STRATEGY-seedN, and the summaries come one table per data set.
    `base.strategy_options` may name a strategy: {"bald.samples": 10} goes to bald only, while a plain key goes
    to every strategy. `resume`, an earlier comparison's directory, continues it there: each run that finished in
    it with the same settings is read back instead of run again (see `finished_run`), so an interrupted benchmark
    loses only its unfinished runs and a strategy can be added to a finished one. `targets` (test accuracies in
    %) add, per strategy, the labels each seed needed to first reach each (`Comparison.targets_table`, and in
    summary.md / summary.json).

    `executor` (see `dalkit.executors`): "local" runs one run after another in this process; "processes" runs
    each run in its own spawned worker process, at most `jobs` at once; "ray" makes each run a Ray task asking
    for `resources.cpus_per_run` CPUs and `resources.gpus_per_run` GPUs (`dalkit.ray_executor`). The last two
    print one line per finished run and a bar over the grid. A run that raises is tried again up to `retries`
    times; one that still fails is left out of the means and listed in `Comparison.failed` (and summary.txt,
    summary.md, failed.json); every run failing is a DalkitError. `runner` replaces `run_experiment` (tests;
    with "processes" and "ray" it must be importable by name).
    """
    base.validate()
    targets = check_targets(targets or ())
    if executor not in EXECUTORS:
        raise DalkitError(f"--executor {executor} is not one of {', '.join(EXECUTORS)}; pick one of them.")
    resources = replace(resources or Resources(), jobs=jobs)
    if jobs < 1 or retries < 0:
        raise DalkitError(f"--jobs must be 1 or more and --retries 0 or more (got {jobs} and {retries}).")
    if resources.cpus_per_run <= 0 or resources.gpus_per_run < 0:
        raise DalkitError(
            f"--cpus-per-run must be above 0 and --gpus-per-run 0 or more (got {resources.cpus_per_run:g} and "
            f"{resources.gpus_per_run:g})."
        )
    datasets = list(datasets or [base.dataset])
    rows = [*strategies, *methods]
    if len(set(datasets)) != len(datasets) or len(set(rows)) != len(rows) or len(set(seeds)) != len(seeds):
        raise DalkitError(
            "--datasets, --strategies, --methods and --seeds must each name every entry once (a row's name is its "
            "strategy's or its method's); drop the repeats."
        )
    arms = {
        name: {"strategy": name, "strategy_options": options_for(name, base.strategy_options)} for name in strategies
    }
    arms.update({name: method_arm(name, base) for name in methods})
    for arm in arms.values():  # fail on a bad name or option before any training
        create_strategy(arm["strategy"], **arm["strategy_options"])
    directory = comparison_directory(base) if resume is None else resumed_directory(base, Path(resume))
    done: dict[tuple[str, str, int], ExperimentResult] = {}
    todo: list[Task] = []
    for dataset in datasets:
        for name, arm in arms.items():
            for seed in seeds:
                config = replace(base, **arm, dataset=dataset, seed=seed, out_dir=None)
                label = f"{name}, seed {seed}" if len(datasets) == 1 else f"{dataset} / {name}, seed {seed}"
                run = finished_run(config, directory / name)
                if run is not None:
                    log(f"== {label}: finished earlier, read from {run.directory}")
                    done[(dataset, name, seed)] = run
                else:
                    todo.append(Task(dataset, name, seed, config, directory / name, label))
    tracker = Tracker(todo, done, log, retries, bar=base.progress and executor != "local")
    EXECUTORS[executor](todo, tracker, runner, resources)
    failed = tracker.close()
    order = [(d, s, n) for d in datasets for s in rows for n in seeds]
    failed.sort(key=lambda f: order.index((f.dataset, f.strategy, f.seed)))  # grid order, not finishing order
    summaries = []
    for dataset in datasets:
        for name in rows:
            runs = [done[(dataset, name, seed)] for seed in seeds if (dataset, name, seed) in done]
            if runs:
                summaries.append(summarise(name, runs, targets, dataset=dataset))
    if not summaries:
        first = failed[0]
        raise DalkitError(
            f"every run failed (e.g. {first.strategy}, seed {first.seed}: {first.error}); see the messages above."
        )
    covered = {run.directory.resolve() for s in summaries for run in s.runs}
    others = [d for d in finished_runs(directory) if d.resolve() not in covered]
    comparison = Comparison(summaries, directory, targets, failed, len(others))
    write_comparison(comparison, base)
    return comparison


def method_arm(name: str, base: ExperimentConfig) -> dict:
    """The fields of a `--methods` row: the method's model, objectives and strategy, and their options under the
    comparison's own (an option given to the comparison wins); the protocol stays the comparison's."""
    parts = method_parts(name)
    arm = {"method": name, "row": name, **parts}
    for key in ("model_options", "objective_options", "strategy_options"):
        arm[key] = {**parts.get(key, {}), **getattr(base, key)}
    arm["strategy_options"] = options_for(arm["strategy"], arm["strategy_options"])
    return arm


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


def finished_run(config: ExperimentConfig, folder: Path) -> ExperimentResult | None:
    """A run in `folder` that finished (renamed from .partial-, wrote cycles.csv) with the settings of `config`.

    A field that a run's config.json lacks (recorded before the option existed) counts as its default.
    """
    for directory in finished_runs(folder, "*"):
        try:
            experiment = json.loads((directory / "config.json").read_text())["experiment"]
        except (ValueError, KeyError, TypeError):
            continue
        if same_settings(config, experiment):
            return ExperimentResult(config, read_jsonl(directory / "cycles.jsonl"), directory)
    return None


def finished_runs(directory: Path, pattern: str = "*/*") -> list[Path]:
    """The finished runs in `directory` at `pattern` (a comparison's ROW/RUN folders; "*" for one row's folder)."""
    runs = (config.parent for config in sorted(directory.glob(f"{pattern}/config.json")))
    return [run for run in runs if not run.name.startswith(PARTIAL) and is_finished(run)]


def write_comparison(comparison: Comparison, base: ExperimentConfig) -> None:
    directory = comparison.directory
    text, markdown = comparison.table(), comparison.table(markdown=True)
    if comparison.targets:
        text += "\n\nlabels to reach a test accuracy:\n" + comparison.targets_table()
        markdown += "\n\nLabels to reach a test accuracy:\n\n" + comparison.targets_table(markdown=True)
    if comparison.failed:
        text += "\n\nfailed runs (left out of the means):\n" + comparison.failures()
        markdown += "\n\nFailed runs (left out of the means):\n\n" + "\n".join(
            f"- {line}" for line in comparison.failures().splitlines()
        )
    if comparison.others:
        text += f"\n\n{comparison.others_note()}"
        markdown += f"\n\n{comparison.others_note()}"
    (directory / "summary.txt").write_text(text + "\n")
    (directory / "summary.md").write_text(markdown + "\n")
    groups = comparison.by_dataset()
    summaries = {dataset_label(name): {s.strategy: summary_entry(s) for s in group} for name, group in groups.items()}
    # one data set: {strategy: ...} as ever; several: {data set's label: {strategy: ...}}
    summary = next(iter(summaries.values())) if len(groups) == 1 else summaries
    (directory / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    failed = directory / "failed.json"
    if comparison.failed:
        failed.write_text(json.dumps([asdict(f) for f in comparison.failed], indent=2) + "\n")
    else:
        failed.unlink(missing_ok=True)
    for name, group in groups.items():
        seeds = len(group[0].runs)
        plot_learning_curves(
            {s.strategy: (s.labelled, s.mean, s.std) for s in group},
            directory / ("curves.png" if len(groups) == 1 else f"curves-{dataset_label(name)}.png"),
            f"{dataset_label(name)} / {base.model}: mean +- std over {seeds} seed(s)",
        )


def summary_entry(s: StrategySummary) -> dict:
    """One strategy's entry in summary.json."""
    return {
        "labelled": s.labelled,
        "mean": s.mean.tolist(),
        "std": s.std.tolist(),
        "aulc_mean": s.aulc_mean,
        "aulc_std": s.aulc_std,
        "seeds": [r.config.seed for r in s.runs],
        **({"labels_to_reach": {f"{t.target:g}": t.as_dict() for t in s.targets}} if s.targets else {}),
    }
