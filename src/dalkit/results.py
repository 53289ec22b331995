"""A run's record on disk, written as the run goes so nothing is lost if it stops early.

RUN_DIR/config.json       the resolved configuration, versions, device, code commit
RUN_DIR/cycles.jsonl      one record per cycle (appended after each cycle); cycles.csv, its scalars, at the end
RUN_DIR/selections.jsonl  the pool indices (and scores) selected each cycle, and what the strategy reports
                          about the query (`info`, e.g. which features TypiClust clustered)
RUN_DIR/selected.csv      cycle,index: one row per labelled pool index, the initial set as cycle 0
RUN_DIR/pool.json         the labelled state after the last completed step (Pool.state_dict)
RUN_DIR/curve.png         the learning curve

A run is finished once cycles.csv is written; a directory holding a finished run, or files that are not a run,
is never written into.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import json
import platform
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

import dalkit
from dalkit.data.pool import Pool
from dalkit.errors import DalkitError


def environment(device: torch.device) -> dict[str, str]:
    """Versions and hardware, so a result can be traced to the code and machine that made it."""
    info = {
        "dalkit": dalkit.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    with contextlib.suppress(OSError, subprocess.SubprocessError):  # not a git checkout, or no git
        commit = subprocess.run(
            ["git", "-C", str(Path(dalkit.__file__).parent), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        )
        if commit.returncode == 0:
            info["code_commit"] = commit.stdout.strip()
    return info


def unique_directory(parent: Path, name: str) -> Path:
    """parent/name, or parent/name-2, -3, ... if taken: an earlier run is never overwritten."""
    candidate, k = parent / name, 2
    while candidate.exists():
        candidate, k = parent / f"{name}-{k}", k + 1
    candidate.mkdir(parents=True)
    return candidate


def is_finished(directory: Path) -> bool:
    """Whether `directory` holds a run that finished (one that wrote cycles.csv)."""
    return (directory / "cycles.csv").is_file()


def check_run_directory(directory: Path) -> None:
    """A run may write into a new or empty folder, or one holding an interrupted run (which starts over, or goes
    on from its last completed cycle: `dalkit.loop.Experiment.continue_interrupted`)."""
    if directory.exists() and not directory.is_dir():
        raise DalkitError(f"--out {directory} is a file; give a folder for the run.")
    if is_finished(directory):
        raise DalkitError(f"{directory} already holds a finished run; pick another --out or remove that folder first.")
    if directory.is_dir() and any(directory.iterdir()) and not (directory / "config.json").is_file():
        raise DalkitError(
            f"{directory} holds files that are not a dalkit run; pick another --out (a new or empty one)."
        )


class RunRecorder:
    """Writes a run's files into `directory`. The record of an interrupted run found there starts over, or, with
    `completed` > 0, goes on after its first `completed` cycles: what it wrote of a later cycle is dropped."""

    def __init__(self, directory: Path, completed: int = 0) -> None:
        check_run_directory(directory)
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        cycles, selections, rows = [], [], []
        if completed:
            cycles = complete_records(directory / "cycles.jsonl")[:completed]
            selections = [e for e in complete_records(directory / "selections.jsonl") if e["cycle"] <= completed]
            rows = [(c, i) for c, i in read_selected(directory / "selected.csv") if c <= completed]
        self._write("cycles.jsonl", "".join(_line(r) for r in cycles))
        self._write("selections.jsonl", "".join(_line(e) for e in selections))
        self._write("selected.csv", "cycle,index\n" + "".join(f"{c},{i}\n" for c, i in rows))

    def _write(self, filename: str, text: str) -> None:
        (self.directory / filename).write_text(text)

    def write_config(self, config: dict) -> None:
        (self.directory / "config.json").write_text(json.dumps(config, indent=2, default=str) + "\n")

    def note_continued(self, completed: int, environment: dict) -> None:
        """Add to config.json that the run went on after `completed` cycles, when, and with which code."""
        path = self.directory / "config.json"
        config = json.loads(path.read_text())
        config.setdefault("continued", []).append({"after_cycle": completed, **environment})
        self.write_config(config)

    def _append(self, filename: str, record: dict) -> None:
        with open(self.directory / filename, "a") as f:
            f.write(_line(record))

    def record_cycle(self, record: dict) -> None:
        self._append("cycles.jsonl", record)

    def record_labelled(self, cycle: int, indices: np.ndarray) -> None:
        """Append `indices`, labelled in `cycle`, to selected.csv."""
        with open(self.directory / "selected.csv", "a", newline="") as f:
            csv.writer(f).writerows([cycle, int(i)] for i in indices)

    def record_selection(
        self, cycle: int, indices: np.ndarray, scores: np.ndarray | None, info: dict | None = None
    ) -> None:
        self.record_labelled(cycle, indices)
        entry = {"cycle": cycle, "indices": indices.tolist()}
        if scores is not None:
            values = np.round(np.asarray(scores, dtype=float), 6)
            entry["scores"] = [float(v) if np.isfinite(v) else None for v in values]  # JSON has no inf
        if info:
            entry["info"] = info
        self._append("selections.jsonl", entry)

    def save_pool(self, pool: Pool) -> None:
        path = self.directory / "pool.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(pool.state_dict()))
        tmp.replace(path)

    def write_csv(self, records: list[dict], columns: list[str]) -> None:
        with open(self.directory / "cycles.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(records)


def read_pool(run_dir: str | Path) -> Pool:
    """The labelled state a run left in RUN_DIR/pool.json; a clear error when it is missing or broken."""
    path = Path(run_dir) / "pool.json"
    try:
        return Pool.from_state_dict(json.loads(path.read_text()))
    except FileNotFoundError:
        raise DalkitError(f"{path} does not exist; give the directory of a dalkit run.") from None
    except (ValueError, KeyError, TypeError, IndexError) as error:
        raise DalkitError(f"{path} is not a pool saved by dalkit ({error}); give a dalkit run directory.") from None


def read_jsonl(path: Path) -> list[dict]:
    """The records of a .jsonl file written by a run (empty if the file is absent)."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def unfinished_run(directory: Path) -> tuple[dict, list[dict]] | None:
    """The `experiment` settings (config.json) and completed cycle records of a run in `directory` that started and
    has not finished; None for a finished run or a folder without a readable config.json."""
    if is_finished(directory):
        return None
    try:
        experiment = json.loads((directory / "config.json").read_text())["experiment"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return experiment, complete_records(directory / "cycles.jsonl")


def complete_records(path: Path) -> list[dict]:
    """The records of a .jsonl file up to the first that is not whole (a run killed while writing it)."""
    records = []
    with contextlib.suppress(FileNotFoundError):
        for line in Path(path).read_text().splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                break
    return records


def read_selected(path: Path) -> list[tuple[int, int]]:
    """The (cycle, index) rows of a run's selected.csv, up to the first that is not whole."""
    rows = []
    with contextlib.suppress(FileNotFoundError), open(path, newline="") as f:
        for row in itertools.islice(csv.reader(f), 1, None):
            try:
                rows.append((int(row[0]), int(row[1])))
            except (ValueError, IndexError):
                break
    return rows


def _line(record: dict) -> str:
    return json.dumps(record, default=_plain) + "\n"


def _plain(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
