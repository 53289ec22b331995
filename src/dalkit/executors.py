"""Where a comparison's runs execute: here one after another (`local`), in worker processes (`processes`), or as
Ray tasks (`ray`, in `dalkit.ray_executor`). Every executor runs each run through `run_in_folder` (a .partial-
folder renamed when finished) and reports attempts, retries, failures and progress through one `Tracker`."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

from dalkit.loop import ExperimentConfig, ExperimentResult, run_experiment, same_settings
from dalkit.results import complete_records, unfinished_run
from dalkit.runtime import progress_bar

Runner = Callable[[ExperimentConfig, Callable[[str], None]], ExperimentResult]


@dataclass(frozen=True)
class Task:
    """One (data set, strategy, seed) run of a grid, to be written under `folder`."""

    dataset: str
    strategy: str
    seed: int
    config: ExperimentConfig
    folder: Path
    label: str  # how the driver names it: "margin, seed 0" or "cifar10 / margin, seed 0"

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.dataset, self.strategy, self.seed)


@dataclass
class FailedRun:
    """A run that failed on every attempt: its last error, in one sentence."""

    strategy: str
    seed: int
    error: str
    attempts: int
    dataset: str = ""


@dataclass(frozen=True)
class Resources:
    """What an executor may use: `jobs` worker processes; a Ray cluster's `address` (None: a local Ray for the
    command) and each Ray task's CPUs and GPUs."""

    jobs: int = 1
    address: str | None = None
    cpus_per_run: float = 1.0
    gpus_per_run: float = 0.0


def one_sentence(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


class Tracker:
    """Counts each task's attempts, decides retries, keeps the failures and the finished runs, and prints one line
    per finished run (and, with `bar`, a bar over the grid)."""

    def __init__(self, tasks: list[Task], done: dict, log: Callable[[str], None], retries: int, bar: bool) -> None:
        self.done, self.log, self.retries = done, log, retries
        self.attempts = {t.key: 0 for t in tasks}
        self.failed: list[FailedRun] = []
        self.bar = progress_bar(progress=bar and bool(tasks), total=len(tasks), desc="runs", unit="run")

    def start(self, task: Task) -> int:
        """Count one more attempt of `task`; returns its number."""
        self.attempts[task.key] += 1
        return self.attempts[task.key]

    def finished(self, task: Task, run: ExperimentResult) -> None:
        self.done[task.key] = run
        accuracy = f"{100 * run.accuracy[-1]:.2f}%" if run.accuracy else "-"
        self.log(f"== {task.label}: finished, final accuracy {accuracy}, in {run.directory}")
        self.bar.update()

    def failed_attempt(self, task: Task, error: BaseException) -> bool:
        """Record a failed attempt; True when `task` is to be tried again, False when it failed for good."""
        reason, attempts = one_sentence(error), self.attempts[task.key]
        if attempts <= self.retries:
            self.log(f"== {task.label} failed ({reason}); trying again")
            return True
        self.log(f"== {task.label} failed after {attempts} attempt(s): {reason}")
        self.failed.append(FailedRun(task.strategy, task.seed, reason, attempts, task.dataset))
        self.bar.update()
        return False

    def close(self) -> list[FailedRun]:
        self.bar.close()
        return self.failed


def run_locally(tasks: list[Task], tracker: Tracker, runner: Runner | None, resources: Resources) -> None:
    """One run after another in this process, each printing its cycles."""
    for task in tasks:
        while True:
            attempt = tracker.start(task)
            tracker.log(f"== {task.label}" + (f" (attempt {attempt})" if attempt > 1 else ""))
            try:
                run = run_in_folder(task.config, task.folder, tracker.log, runner)
            except Exception as error:  # noqa: BLE001 - a run's failure is reported, the grid goes on
                if tracker.failed_attempt(task, error):
                    continue
                break
            tracker.finished(task, run)
            break


def work(config: ExperimentConfig, folder: Path, runner: Runner | None) -> ExperimentResult:
    """What a worker (process or Ray task) runs: one run, silently (the driver prints one line when it ends)."""
    return run_in_folder(replace(config, progress=False), folder, lambda _: None, runner)


def run_in_processes(tasks: list[Task], tracker: Tracker, runner: Runner | None, resources: Resources) -> None:
    """Each run in its own spawned worker process, at most `resources.jobs` at once. A worker that dies (killed,
    out of memory) breaks the pool: its runs count one failed attempt each and a new pool takes the rest."""
    queue = list(tasks)
    while queue:
        queue = pool_round(queue, tracker, runner, resources.jobs)


def pool_round(queue: list[Task], tracker: Tracker, runner: Runner | None, jobs: int) -> list[Task]:
    """Run `queue` on one process pool; returns the tasks to try again on a new pool (the pool broke)."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    again: list[Task] = []
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(jobs, len(queue)), mp_context=context) as pool:
        pending: dict = {}

        def submit(task: Task) -> None:
            tracker.start(task)
            pending[pool.submit(work, task.config, task.folder, runner)] = task

        for task in queue:
            submit(task)
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                task = pending.pop(future)
                try:
                    run = future.result()
                except Exception as error:  # noqa: BLE001 - reported, retried or listed as failed
                    if tracker.failed_attempt(task, error):
                        (again.append if isinstance(error, BrokenProcessPool) else submit)(task)
                    continue
                tracker.finished(task, run)
    return again


PARTIAL = ".partial-"  # the prefix of a run's directory until it finishes


def run_in_folder(
    config: ExperimentConfig,
    folder: Path,
    log: Callable[[str], None] = print,
    runner: Runner | None = None,
) -> ExperimentResult:
    """Run `config` in a temporary folder/.partial-NAME-XXXX/ and rename it to folder/NAME (or NAME-2, ...) once
    it finished, so a run that fails or is killed never has a final name and `--resume` never reads it as
    finished. A run that stops before its first cycle's record leaves nothing behind (a kill that skips this
    clean-up leaves a folder the next claim removes); one stopped later (killed, or failed) leaves its .partial-
    folder, from whose last completed cycle the next attempt goes on (`claimed_folder`)."""
    folder.mkdir(parents=True, exist_ok=True)
    name = config.run_name()
    with claimed_folder(folder, config) as partial:
        try:
            result = (runner or run_experiment)(replace(config, out_dir=str(partial)), log)
        except BaseException:
            if not complete_records(partial / "cycles.jsonl"):
                shutil.rmtree(partial, ignore_errors=True)
            raise
        final, k = folder / name, 2
        while True:  # never onto an existing folder (POSIX rename replaces an empty one)
            if not final.exists():
                try:
                    os.rename(partial, final)
                    break
                except OSError:
                    if not final.exists():
                        raise
            final, k = folder / f"{name}-{k}", k + 1
    config_path = final / "config.json"
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        recorded = json.loads(config_path.read_text())
        recorded["experiment"]["out_dir"] = str(final)
        config_path.write_text(json.dumps(recorded, indent=2, default=str) + "\n")
    return replace(result, config=replace(result.config, out_dir=str(final)), directory=final)


@contextlib.contextmanager
def claimed_folder(folder: Path, config: ExperimentConfig) -> Iterator[Path]:
    """The .partial- folder this run writes in, locked (`FOLDER.lock` beside it) for as long as it does: the
    interrupted run of its settings that got furthest and that no other process is continuing
    (`interrupted_folders`), or a new one. Two comparisons resumed at once on one directory never write into one
    run. The lock goes when the run leaves the folder (finished, or failed before its first record)."""
    clear_unstarted(folder, config)
    for partial in interrupted_folders(folder, config):
        handle = try_lock(partial)
        if handle is not None:
            break
    else:
        partial = folder / f"{PARTIAL}{config.run_name()}-{uuid.uuid4().hex[:8]}"  # the run creates it
        handle = try_lock(partial)
        assert handle is not None, "a new folder's lock is free"
    try:
        yield partial
    finally:
        handle.close()
        if not partial.exists():
            lock_file(partial).unlink(missing_ok=True)


def lock_file(partial: Path) -> Path:
    return partial.with_name(partial.name + ".lock")


def try_lock(partial: Path) -> IO | None:
    """An open handle holding the exclusive lock of `partial`, or None if another process holds it."""
    handle = open(lock_file(partial), "a")  # noqa: SIM115 - held open: it holds the lock until the run ends
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def clear_unstarted(folder: Path, config: ExperimentConfig) -> None:
    """Remove this run's .partial- folders that hold no completed cycle and that no process holds: left by a kill
    in the first cycle (SIGKILL, a session's end), which skips the clean-up of `run_in_folder`. Nothing there can
    be continued, and `dalkit report` would list them as unfinished for ever."""
    for partial in folder.glob(f"{PARTIAL}{config.run_name()}-*"):
        if not partial.is_dir() or complete_records(partial / "cycles.jsonl"):
            continue
        handle = try_lock(partial)
        if handle is None:  # a run in its first cycle
            continue
        shutil.rmtree(partial, ignore_errors=True)
        handle.close()
        lock_file(partial).unlink(missing_ok=True)


def interrupted_folders(folder: Path, config: ExperimentConfig) -> list[Path]:
    """The .partial- folders in `folder` of unfinished runs with `config`'s settings that completed a cycle, those
    that got furthest (the most cycle records) first: the run there goes on from its last completed cycle
    (`Experiment.continue_interrupted`)."""
    found = []
    for partial in folder.glob(f"{PARTIAL}{config.run_name()}-*"):
        run = unfinished_run(partial)
        if run is not None and run[1] and same_settings(config, run[0]):
            found.append((len(run[1]), partial))
    return [partial for _, partial in sorted(found, reverse=True)]
