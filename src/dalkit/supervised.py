"""Plain supervised training (`dalkit train`) and distilling a run's model into a student (`dalkit distill`).

Both are one-cycle runs of the AL engine, so they write the same run directory (config, record with overall,
balanced, per-class and many/medium/few-shot accuracy, model.pt): `train` labels every training image;
`distill` starts from the teacher run's labelled set (the labels that exist) and its data set, and trains the
student with a distillation objective (`kd`, `onehot-kd` or `patch-kd`, see `dalkit.objectives.distill`) whose
teacher is that run's final model.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from dalkit.data import dataset_label
from dalkit.errors import DalkitError
from dalkit.loop import ExperimentConfig, ExperimentResult, run_experiment
from dalkit.models.saved import load_classifier, model_file, parameter_count, size_megabytes
from dalkit.report import format_table
from dalkit.results import read_jsonl

DISTILLATION_OBJECTIVES = ("kd", "onehot-kd", "patch-kd")


def train_supervised(config: ExperimentConfig, log: Callable[[str], None] = print) -> ExperimentResult:
    """Train `config.model` on the whole training split (one cycle, no query) and evaluate it."""
    name = config.name or f"{dataset_label(config.dataset)}-{config.model}-train-seed{config.seed}"
    return run_experiment(replace(config, initial=None, initial_from=None, cycles=1, name=name), log)


def teacher_data(teacher_dir: str | Path) -> dict:
    """The data set fields of the run whose model is the teacher (from its config.json)."""
    path = Path(teacher_dir) / "config.json"
    try:
        experiment = json.loads(path.read_text())["experiment"]
        return {key: experiment[key] for key in ("dataset", "data_root", "dataset_options")}
    except FileNotFoundError:
        raise DalkitError(f"{path} does not exist; --teacher must be the directory of a finished dalkit run.") from None
    except (ValueError, KeyError, TypeError) as error:
        raise DalkitError(f"{path} is not a dalkit run configuration ({error}); check --teacher.") from None


@dataclass
class Distilled:
    result: ExperimentResult
    table: str


def distill(teacher_dir: str | Path, config: ExperimentConfig, log: Callable[[str], None] = print) -> Distilled:
    """Train `config.model` as a student of the model in `teacher_dir`, on that run's data and labels."""
    model_file(teacher_dir)  # fail before any training when the teacher has no model
    objectives = config.objectives
    if not set(objectives) & set(DISTILLATION_OBJECTIVES):
        raise DalkitError(
            f"--objectives {','.join(objectives)} has no distillation objective; name one of "
            f"{', '.join(DISTILLATION_OBJECTIVES)}."
        )
    options = dict(config.objective_options)
    for name in set(objectives) & set(DISTILLATION_OBJECTIVES):
        options.setdefault(f"{name}.teacher", str(teacher_dir))
    data = teacher_data(teacher_dir)
    student = replace(
        config,
        **data,
        objective_options=options,
        initial_from=str(teacher_dir),
        cycles=1,
        name=config.name or f"{dataset_label(data['dataset'])}-{config.model}-distill-seed{config.seed}",
    )
    result = run_experiment(student, log)
    return Distilled(result, comparison_table(teacher_dir, result))


def comparison_table(teacher_dir: str | Path, student: ExperimentResult) -> str:
    """Teacher and student side by side: model, parameters, size, accuracy, balanced accuracy."""
    teacher = load_classifier(teacher_dir, torch.device("cpu"))
    evaluated = [r for r in read_jsonl(Path(teacher_dir) / "cycles.jsonl") if r.get("accuracy") is not None]
    teacher_record = evaluated[-1] if evaluated else {}
    student_model = load_classifier(student.directory, torch.device("cpu"))
    rows = []
    for role, saved, record in (("teacher", teacher, teacher_record), ("student", student_model, student.records[-1])):
        rows.append(
            [
                role,
                saved.name,
                f"{parameter_count(saved.model):,}",
                f"{size_megabytes(saved.model):.2f}",
                percent(record.get("accuracy")),
                percent(record.get("balanced_accuracy")),
            ]
        )
    return format_table(["", "model", "parameters", "MB", "accuracy %", "balanced %"], rows)


def metrics_table(record: dict) -> str:
    """One evaluation's accuracy figures; a shot group with no class reads "no class", not 0."""
    names = ["accuracy", "balanced_accuracy", "many_shot_accuracy", "medium_shot_accuracy", "few_shot_accuracy"]
    headers = ["accuracy %", "balanced %", "many-shot %", "medium-shot %", "few-shot %"]
    cells = [percent(record[n]) if record.get(n) is not None else "no class" for n in names]
    return format_table(headers, [cells])


def percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"
