"""The AL cycle: train -> evaluate -> query -> label -> repeat, with a simulated oracle.

`cycles` counts training rounds: round 0 trains on the initial labelled set, and each later round
follows one query of `budget` images, so a run evaluates at initial, initial + budget, ... labels.
The oracle reveals labels from the data set only for the images the strategy picked; the trainer
reads labels from the Pool. One seed drives everything; each cycle's stages get their own derived
seeds (see `dalkit.engine`) so the same seed gives the same selections on the same device.

`validation` images (drawn once, at random, from the images not in the initial set) are held out of the pool for
early stopping: never queried, never trained on, not counted as labels (`Pool.set_validation`; both Bayesian AL
references take their validation set out of the pool this way).
"""

from __future__ import annotations

import json
import resource
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from dalkit.data import AugmentSpec, DataSplits, Pool, dataset_label, load_dataset
from dalkit.data.augment import Normalizer
from dalkit.engine import Engine, EngineSpec, objectives_for
from dalkit.errors import DalkitError
from dalkit.metrics import balanced_accuracy, shot_accuracies
from dalkit.models import Classifier, model_entry
from dalkit.models.saved import save_classifier
from dalkit.objectives import OBJECTIVES
from dalkit.report import format_table, plot_learning_curves
from dalkit.results import (
    RunRecorder,
    check_run_directory,
    environment,
    read_jsonl,
    read_pool,
    unfinished_run,
    unique_directory,
)
from dalkit.runtime import broadcast, distributed
from dalkit.seeding import derive_seed, resolve_device
from dalkit.strategies.registry import STRATEGIES
from dalkit.train import OPTIMIZERS, SCHEDULES, TrainConfig

INITIAL_MODES = ("random", "balanced")
VALIDATION_SEED = 5  # the validation images' stream: (seed, 0, 5)
RUNS = Path("runs")  # where a run without out_dir gets a new directory


@dataclass
class ExperimentConfig:
    """Everything that defines an AL experiment; training fields left None take the model's defaults."""

    method: str | None = None
    dataset: str = "digits"
    data_root: str = "data"
    download: bool = False
    dataset_options: dict = field(default_factory=dict)
    model: str = "small-cnn"
    model_options: dict = field(default_factory=dict)
    strategy: str = "margin"
    strategy_options: dict = field(default_factory=dict)
    objectives: tuple[str, ...] = ("ce",)
    objective_options: dict = field(default_factory=dict)
    initial: int | None = 20  # None: every training image (a plain supervised run, `dalkit train`)
    initial_mode: str = "random"
    initial_from: str | None = None  # a run directory whose labelled set (and labels) this run starts from
    budget: int = 20
    cycles: int = 6
    candidates: int | None = None
    epochs: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    milestones: tuple[int, ...] | None = None
    weight_decay: float | None = None
    schedule: str | None = None
    nesterov: bool | None = None
    optimizer: str | None = None  # "sgd" or "adam"; None: the model's
    weight_decay_per_label: bool | None = None  # weight decay / labelled images (Gal et al. 2017); None: the model's
    epoch_samples: int | None = None  # at least this many images per epoch, the labelled set repeated (BatchBALD)
    patience: int | None = None  # early stopping on the validation images' accuracy; needs `validation`
    validation: int = 0  # images held out of the pool as the validation set
    augment: bool = True  # False: no batch augmentation, whatever the data set's (both Bayesian AL papers)
    warm_start: bool = False
    take_remaining: bool = True
    seed: int = 0
    device: str = "auto"
    out_dir: str | None = None  # the run directory (`--out`); None: a new one under runs/, see run_name()
    name: str | None = None  # that new directory's name; default DATASET-STRATEGY-seedN
    row: str | None = None  # the row of a comparison this run is in, when not its strategy's (`compare --methods`)
    progress: bool = True

    def __post_init__(self) -> None:
        """A strategy that needs a trained head (learning-loss, mobyv2al) brings the objective that trains it
        (`dalkit.engine.objectives_for`), so `dalkit compare --strategies random,learning-loss` trains the loss
        module for that strategy only, and each run's config.json says what it trained with."""
        self.objectives = objectives_for(self.strategy, self.objectives)

    @classmethod
    def from_method(cls, method: str, **fields) -> ExperimentConfig:
        """A paper's preset (see `dalkit.presets`), with `fields` overriding any part of it."""
        from dalkit.presets import method_fields

        return cls(method=method, **{**method_fields(method), **fields})

    def run_name(self) -> str:
        """The name of a new run directory: `name`, or DATASET-STRATEGY-seedN (numbered -2, -3... if taken)."""
        return self.name or f"{dataset_label(self.dataset)}-{self.strategy}-seed{self.seed}"

    def validate(self) -> None:
        """Check option values once, at the boundary, with a one-sentence message."""
        checks = [
            (self.initial is None or self.initial >= 0, f"--initial must be 0 or more (got {self.initial})"),
            (self.budget >= 1, f"--budget must be at least 1 (got {self.budget})"),
            (self.cycles >= 1, f"--cycles must be at least 1 (got {self.cycles})"),
            (self.initial_mode in INITIAL_MODES, f"--initial-mode must be one of {', '.join(INITIAL_MODES)}"),
            (
                self.candidates is None or self.candidates >= self.budget,
                f"--candidates ({self.candidates}) must be at least --budget ({self.budget})",
            ),
            (self.epochs is None or self.epochs >= 1, f"--epochs must be at least 1 (got {self.epochs})"),
            (
                self.schedule is None or self.schedule in SCHEDULES,
                f"--schedule must be one of {', '.join(SCHEDULES)} (got {self.schedule!r})",
            ),
            (
                self.optimizer is None or self.optimizer in OPTIMIZERS,
                f"--optimizer must be one of {', '.join(OPTIMIZERS)} (got {self.optimizer!r})",
            ),
            (self.validation >= 0, f"--validation must be 0 or more (got {self.validation})"),
            (self.patience is None or self.patience >= 1, f"--patience must be at least 1 (got {self.patience})"),
            (
                self.patience is None or self.validation > 0,
                f"--patience {self.patience} stops on validation accuracy and needs a validation set; add "
                "--validation N (e.g. --validation 1024)",
            ),
            (
                self.epoch_samples is None or self.epoch_samples >= 1,
                f"--epoch-samples must be at least 1 (got {self.epoch_samples})",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise DalkitError(message + ".")
        STRATEGIES.check_prefixes(self.strategy_options)
        OBJECTIVES.check_prefixes(self.objective_options)

    def train_config(self) -> TrainConfig:
        return TrainConfig.from_defaults(
            model_entry(self.model).train_defaults,
            epochs=self.epochs,
            lr=self.lr,
            batch_size=self.batch_size,
            milestones=self.milestones,
            weight_decay=self.weight_decay,
            schedule=self.schedule,
            nesterov=self.nesterov,
            optimizer=self.optimizer,
            weight_decay_per_label=self.weight_decay_per_label,
            epoch_samples=self.epoch_samples,
            patience=self.patience,
        )


# Fields that do not change a run's results, so a run may be reused or continued across them.
NOT_SETTINGS = ("data_root", "download", "device", "out_dir", "progress")


def run_settings(experiment: dict, leave_out: tuple[str, ...] = NOT_SETTINGS) -> dict:
    """The settings of a run whose config.json holds `experiment`, as JSON values, without the fields `leave_out`
    names; a field the record lacks (recorded before the option existed) counts as its default."""

    def settings(fields: dict) -> dict:
        plain = json.loads(json.dumps(fields, default=str))
        return {key: value for key, value in plain.items() if key not in leave_out}

    return {**settings(asdict(ExperimentConfig())), **settings(experiment)}


def same_settings(config: ExperimentConfig, experiment: dict) -> bool:
    """Whether a run whose config.json holds `experiment` has the settings of `config`."""
    return run_settings(experiment) == run_settings(asdict(config))


@dataclass
class ExperimentResult:
    config: ExperimentConfig
    records: list[dict]
    directory: Path

    @property
    def labelled(self) -> list[int]:
        return [r["labelled"] for r in self.records if r["accuracy"] is not None]

    @property
    def accuracy(self) -> list[float]:
        return [r["accuracy"] for r in self.records if r["accuracy"] is not None]

    def selections(self) -> list[list[int]]:
        return [entry["indices"] for entry in read_jsonl(self.directory / "selections.jsonl")]


def initial_indices(labels: np.ndarray, size: int, mode: str, rng: np.random.Generator) -> np.ndarray:
    """`size` pool indices chosen at random, or class-balanced (as equal per class as possible)."""
    if size > len(labels):
        raise DalkitError(f"--initial ({size}) is larger than the pool of {len(labels)} images; lower it.")
    if mode == "random":
        return rng.choice(len(labels), size=size, replace=False)
    classes = np.unique(labels)
    per_class = np.full(len(classes), size // len(classes))
    per_class[rng.choice(len(classes), size % len(classes), replace=False)] += 1
    picked = []
    for cls, count in zip(classes, per_class):
        members = np.flatnonzero(labels == cls)
        if count > len(members):
            raise DalkitError(f"class {cls} has only {len(members)} images, fewer than a balanced --initial needs.")
        picked.append(rng.choice(members, size=count, replace=False))
    return np.concatenate(picked)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class NoRecord:
    """The recorder of ranks other than 0 under --distributed: records nothing (rank 0 writes the run)."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


class Experiment:
    """One AL run: owns the data, the pool and the engine, and the order of the steps."""

    def __init__(self, config: ExperimentConfig, log: Callable[[str], None] = print) -> None:
        config.validate()
        if config.out_dir is not None:
            check_run_directory(Path(config.out_dir))  # before the data set loads; RunRecorder checks again
        self.rank, self.world = distributed()  # under `dalkit run --distributed`: rank 0 selects, logs and writes
        if self.world > 1 and tuple(config.objectives) != ("ce",):
            raise DalkitError(
                f"--distributed trains with the ce objective only (got {', '.join(config.objectives)}); "
                "drop --objectives or run without --distributed."
            )
        self.config = config
        self.log = log if self.rank == 0 else lambda _: None
        self.train_config = config.train_config()
        self.device = resolve_device(config.device)
        self.data: DataSplits = load_dataset(
            config.dataset, config.data_root, config.download, **config.dataset_options
        )
        self.augment = self.data.augment if config.augment else AugmentSpec()
        self.engine = Engine(
            EngineSpec(
                num_classes=self.data.num_classes,
                image_shape=self.data.train.image_shape,
                normalizer=Normalizer(*self.data.channel_stats()),
                augment=self.augment,
                train=self.train_config,
                model=config.model,
                model_options=config.model_options,
                strategy=config.strategy,
                strategy_options=config.strategy_options,
                objectives=config.objectives,
                objective_options=config.objective_options,
                seed=config.seed,
                device=self.device,
                progress=config.progress and self.rank == 0,
            )
        )
        self.train_images = self.engine.inputs(self.data.train.images.to(self.device))
        self.test_images = self.engine.inputs(self.data.test.images)
        self.pool = Pool(len(self.data.train))
        self.model: Classifier | None = None
        self.selection_info: dict = {}  # what the last query's strategy reports about it (e.g. which features)

    def train_and_evaluate(self, cycle: int) -> dict:
        cfg = self.config
        if self.model is None or not cfg.warm_start:
            self.model = self.engine.new_model(cycle)
        labelled = self.pool.labelled_indices()
        record: dict = {"cycle": cycle, "labelled": len(labelled), "accuracy": None}
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        if len(labelled):
            stats = self.engine.fit(self.model, self.train_images, self.pool, cycle, self.candidate_subset(cycle))
            if stats.epochs is not None:
                record["epochs_trained"] = stats.epochs
            if stats.validation_accuracy is not None:
                record.update(validation_accuracy=stats.validation_accuracy, best_epoch=stats.best_epoch)
            start = time.perf_counter()
            evaluation = self.engine.trainer.evaluate(self.model, self.test_images, self.data.test.labels)
            fitted = self.engine.trainer.evaluate(
                self.model, self.train_images[torch.from_numpy(labelled)], torch.from_numpy(self.pool.labels[labelled])
            )
            record.update(
                accuracy=evaluation.accuracy,
                balanced_accuracy=balanced_accuracy(evaluation.per_class_accuracy),
                **shot_accuracies(evaluation.per_class_accuracy, self.data.train.class_counts()),
                per_class_accuracy=evaluation.per_class_accuracy,
                train_accuracy=fitted.accuracy,
                train_loss=stats.final_loss,
                epoch_losses=list(stats.epoch_losses),
                train_seconds=stats.seconds,
                images_per_second=stats.images_per_second,
                eval_seconds=time.perf_counter() - start,
            )
            if stats.objective_losses:  # each term of a loss of several objectives, per epoch
                record["objective_losses"] = {name: list(curve) for name, curve in stats.objective_losses.items()}
        record["class_counts"] = np.bincount(self.pool.labels[labelled], minlength=self.data.num_classes).tolist()
        return record

    def save_model(self, path: Path) -> None:
        """The last cycle's model, with what is needed to rebuild it and normalise its inputs."""
        assert self.model is not None
        cfg, train = self.config, self.data.train
        save_classifier(
            path, self.model, cfg.model, cfg.model_options, train.image_shape, train.classes, self.engine.normalizer
        )

    def label_initial(self) -> None:
        """Cycle 0's labels: another run's labelled set, every image, or `initial` chosen at random/balanced; and
        the validation set, drawn from the rest (with `initial` None, every image but the validation set)."""
        cfg, truth = self.config, self.data.train.labels.numpy()
        if cfg.initial is None and cfg.initial_from is None:
            self.hold_out_validation()
            first = self.pool.unlabelled_indices()
            self.pool.label(first, truth[first], cycle=0)
            return
        self.label_first()
        self.hold_out_validation()

    def hold_out_validation(self) -> None:
        """`validation` images drawn at random (stream (seed, 0, 5)) from the unlabelled pool, held out of it."""
        size = self.config.validation
        if not size:
            return
        unlabelled = self.pool.unlabelled_indices()
        if size > len(unlabelled):
            raise DalkitError(
                f"--validation {size} is larger than the {len(unlabelled)} images left after the initial labelled "
                "set; lower --validation or --initial."
            )
        rng = np.random.default_rng(derive_seed(self.config.seed, 0, VALIDATION_SEED))
        held_out = np.sort(rng.choice(unlabelled, size=size, replace=False))
        self.pool.set_validation(held_out, self.data.train.labels.numpy()[held_out])

    def label_first(self) -> None:
        cfg, truth = self.config, self.data.train.labels.numpy()
        if cfg.initial_from is not None:
            earlier = read_pool(cfg.initial_from)
            if len(earlier) != len(self.pool):
                raise DalkitError(
                    f"the run at {cfg.initial_from} has a pool of {len(earlier)} images and this data set "
                    f"{len(self.pool)}; start from a run on the same data set and options."
                )
            first = earlier.labelled_indices()
            self.pool.label(first, earlier.labels[first], cycle=0)
            return
        rng = np.random.default_rng(derive_seed(cfg.seed, 0))
        first = initial_indices(truth, cfg.initial, cfg.initial_mode, rng)
        self.pool.label(first, truth[first], cycle=0)

    def check_budget(self) -> None:
        """A budget larger than the whole unlabelled pool at the start is refused; a last cycle may find fewer."""
        unlabelled, budget = len(self.pool.unlabelled_indices()), self.config.budget
        if self.config.cycles > 1 and budget > unlabelled:
            raise DalkitError(
                f"--budget {budget} is larger than the {unlabelled} unlabelled images of the pool ({len(self.pool):,} "
                f"images, {self.pool.num_labelled:,} labelled at the start); lower --budget or --initial."
            )

    def candidate_subset(self, cycle: int) -> np.ndarray:
        return self.engine.candidate_subset(self.pool, cycle, self.config.candidates)

    def query(self, cycle: int) -> tuple[np.ndarray, np.ndarray | None, float]:
        cfg = self.config
        unlabelled = self.pool.unlabelled_indices()
        budget = cfg.budget
        if budget > len(unlabelled):
            if not cfg.take_remaining:
                raise DalkitError(
                    f"only {len(unlabelled)} unlabelled images remain for a budget of {budget}; "
                    "lower --budget or --cycles, or drop --no-take-remaining."
                )
            self.log(f"only {len(unlabelled)} unlabelled images remain for a budget of {budget}: taking them all")
            budget = len(unlabelled)
        assert self.model is not None
        picked = None
        if self.rank == 0:  # once, broadcast to the other ranks
            start = time.perf_counter()
            selection, ctx = self.engine.query(
                self.model, self.train_images, self.pool, self.candidate_subset(cycle), budget, cycle
            )
            picked = (selection.indices, selection.scores, time.perf_counter() - start, selection.info)
        indices, scores, seconds, self.selection_info = broadcast(picked)
        return indices, scores, seconds

    @property
    def continuable(self) -> bool:
        """Whether an interrupted run of these settings can go on from its last completed cycle: yes unless a cycle
        depends on more than the pool and its seed (a warm start, a strategy or objective that carries state)."""
        engine = self.engine
        stateful = engine.strategy.carries_state or any(o.carries_state for o in engine.objectives)
        return not self.config.warm_start and not stateful

    def continue_interrupted(self, directory: Path) -> list[dict]:
        """The completed cycles of an interrupted run of these settings in `directory`, whose pool this run takes up
        as it was after them; none (the run starts over) if there is no such run or it cannot continue.

        Every cycle draws its seeds from (seed, cycle) and trains a new model, so the cycles that follow are those
        the run would have made without the interruption."""
        run = unfinished_run(directory)
        if run is None or not run[1] or not same_settings(self.config, run[0]) or not self.continuable:
            return []
        records = run[1]
        try:
            pool = read_pool(directory)
        except DalkitError:
            return []
        if len(pool) != len(self.pool):
            return []
        pool.forget_after(len(records))
        self.pool = pool
        return records

    def recorder(self, directory: Path, completed: list[dict]) -> RunRecorder | NoRecord:
        """The run's recorder; a new run writes its config.json and initial set, a continued one notes when it went
        on and with which code."""
        if self.rank:
            return NoRecord()
        if completed:
            self.log(f"continuing the interrupted run in {directory} after cycle {len(completed)}/{self.config.cycles}")
            recorder = RunRecorder(directory, completed=len(completed))
            recorder.note_continued(len(completed), environment(self.device))
            return recorder
        recorder = RunRecorder(directory)
        cfg = self.config
        recorder.write_config(
            {
                "experiment": asdict(cfg),
                "training": asdict(self.train_config),
                "engine": {"objectives": list(self.engine.objective_names), "heads": self.engine.heads},
                "data": {
                    "train": len(self.data.train),
                    "test": len(self.data.test),
                    "classes": self.data.train.classes,
                    "augment": asdict(self.augment),
                    "validation": len(self.pool.validation_indices()),
                },
                "environment": {**environment(self.device), "world_size": self.world},
            }
        )
        recorder.record_labelled(0, self.pool.labelled_indices())
        recorder.save_pool(self.pool)
        return recorder

    def run(self) -> ExperimentResult:
        """Label the initial set and run the cycles, recording each; an interrupted run of the same settings in
        `out_dir` goes on from its last completed cycle (`continue_interrupted`)."""
        cfg = self.config
        self.label_initial()
        self.check_budget()
        directory, records = None, []
        if self.rank == 0:
            directory = Path(cfg.out_dir) if cfg.out_dir is not None else unique_directory(RUNS, cfg.run_name())
            records = self.continue_interrupted(directory)
        directory, records = broadcast((directory, records))
        if records and self.world > 1:
            self.pool = Pool.from_state_dict(broadcast(self.pool.state_dict()))
        recorder = self.recorder(directory, records)
        ended = bool(records) and "selected" not in records[-1]  # the last cycle, or every image labelled
        for cycle in range(cfg.cycles if ended else len(records), cfg.cycles):
            record = self.train_and_evaluate(cycle)
            exhausted = not len(self.pool.unlabelled_indices())
            if cycle + 1 < cfg.cycles and not exhausted:
                picked, scores, seconds = self.query(cycle)
                self.pool.label(picked, self.data.train.labels.numpy()[picked], cycle=cycle + 1)
                recorder.record_selection(cycle + 1, picked, scores, self.selection_info)
                recorder.save_pool(self.pool)
                record.update(query_seconds=seconds, selected=len(picked))
                if self.selection_info:
                    record["selection_info"] = self.selection_info
            record["peak_memory_mb"] = peak_memory_mb(self.device)
            recorder.record_cycle(record)
            records.append(record)
            self.log(cycle_line(record, cfg.cycles))
            if exhausted and cycle + 1 < cfg.cycles:
                self.log("every pool image is labelled: stopping early")
                break
        recorder.write_csv(records, CSV_COLUMNS)
        result = ExperimentResult(cfg, records, directory)
        if self.rank:
            return result
        self.save_model(directory / "model.pt")
        plot_learning_curves(
            {cfg.strategy: (result.labelled, result.accuracy, None)},
            directory / "curve.png",
            f"{cfg.dataset} / {cfg.model} / {cfg.strategy} (seed {cfg.seed})",
        )
        return result


# Every scalar of a cycle's record, in a fixed order; the lists (per-class accuracy, class counts) and the
# strategy's selection_info stay in cycles.jsonl.
CSV_COLUMNS = [
    "cycle",
    "labelled",
    "accuracy",
    "balanced_accuracy",
    "many_shot_accuracy",
    "medium_shot_accuracy",
    "few_shot_accuracy",
    "train_accuracy",
    "train_loss",
    "epochs_trained",
    "best_epoch",
    "validation_accuracy",
    "train_seconds",
    "images_per_second",
    "eval_seconds",
    "query_seconds",
    "selected",
    "peak_memory_mb",
]


def cycle_line(record: dict, cycles: int) -> str:
    parts = [f"cycle {record['cycle'] + 1}/{cycles}", f"{record['labelled']} labelled"]
    if record["accuracy"] is not None:
        parts.append(f"accuracy {100 * record['accuracy']:.1f}%")
        parts.append(f"train {record['train_seconds']:.1f} s ({record['images_per_second']:,.0f} img/s)")
    if record.get("validation_accuracy") is not None:
        kept = f", kept epoch {record['best_epoch']} of {record['epochs_trained']}" if record.get("best_epoch") else ""
        parts.append(f"validation {100 * record['validation_accuracy']:.1f}%{kept}")
    if "query_seconds" in record:
        parts.append(f"query {record['query_seconds']:.2f} s")
    return " | ".join(parts)


def results_table(records: list[dict]) -> str:
    """Per-cycle table: labelled images, accuracy, class counts of the labelled set, timings."""
    rows = []
    for r in records:
        accuracy = "-" if r["accuracy"] is None else f"{100 * r['accuracy']:.2f}"
        train = f"{r['train_seconds']:.1f}" if "train_seconds" in r else "-"
        query = f"{r['query_seconds']:.2f}" if "query_seconds" in r else "-"
        counts = " ".join(str(c) for c in r["class_counts"])
        rows.append([r["cycle"], r["labelled"], accuracy, train, query, counts])
    return format_table(["cycle", "labelled", "accuracy %", "train s", "query s", "labelled per class"], rows)


def run_experiment(config: ExperimentConfig, log: Callable[[str], None] = print) -> ExperimentResult:
    """Run one AL experiment end to end and write its directory (see `dalkit.results`)."""
    return Experiment(config, log).run()
