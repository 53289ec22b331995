"""`dalkit compare --executor ray`: every (data set, strategy, seed) one Ray task with its resource request, on a
local Ray started for the command or on the cluster at `--address`.

Each task writes its own run directory (`executors.run_in_folder`: a .partial- folder renamed when finished) under
the comparison's directory, so that directory must be on storage every node sees (the same path everywhere, e.g.
NFS); the driver only gets the run's records back. Shipping whole run folders (model.pt, per-cycle files) through
Ray's object store instead would hold every model in the driver's memory and lose a finished run if the driver
died before writing it; written in place, a finished run is safe as soon as it is renamed and `--resume` finds it.
"""

from __future__ import annotations

import os
import sys

from dalkit.errors import DalkitError
from dalkit.executors import Resources, Runner, Task, Tracker, work


def import_ray():
    try:
        import ray
    except ImportError:
        raise DalkitError("--executor ray needs Ray; install dalkit[ray] (pip install 'dalkit[ray]').") from None
    return ray


def start_local_ray(num_cpus: int | None = None, num_gpus: int | None = None) -> None:
    """A quiet local Ray (no dashboard, no usage report) whose workers import what this process imports."""
    ray = import_ray()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    path = os.pathsep.join(os.path.abspath(p or ".") for p in sys.path)
    ray.init(
        num_cpus=num_cpus or os.cpu_count(),
        num_gpus=num_gpus,
        include_dashboard=False,
        log_to_driver=False,
        logging_level="ERROR",
        runtime_env={"env_vars": {"PYTHONPATH": path}},
    )


def connect(resources: Resources) -> bool:
    """Use the Ray this process is already connected to, else join `resources.address`, else start a local one;
    True when this call connected (so the caller shuts it down)."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    if resources.address is None:
        start_local_ray()
    else:
        try:
            ray.init(address=resources.address, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise DalkitError(
                f"cannot join the Ray cluster at --address {resources.address} ({str(error).splitlines()[0]}); "
                "start it with `ray start --head` or give its address."
            ) from None
    return True


def check_resources(ray, resources: Resources) -> None:
    """A request no node could ever meet would wait forever: refuse it in one sentence."""
    total = ray.cluster_resources()
    for name, flag, wanted in (
        ("CPU", "--cpus-per-run", resources.cpus_per_run),
        ("GPU", "--gpus-per-run", resources.gpus_per_run),
    ):
        if wanted > total.get(name, 0):
            raise DalkitError(
                f"{flag} {wanted:g} asks for more {name}s than the Ray cluster has ({total.get(name, 0):g}); "
                f"lower {flag} or add nodes."
            )


def cause(error: BaseException) -> BaseException:
    """The task's own exception inside Ray's wrapper (RayTaskError), so the summary names it, not Ray."""
    return getattr(error, "cause", None) or error


def run_on_ray(tasks: list[Task], tracker: Tracker, runner: Runner | None, resources: Resources) -> None:
    """Submit every task at once (Ray schedules them as CPUs/GPUs free up); a failed attempt is resubmitted until
    `tracker` says it failed for good. Ray's own retries are off so every attempt is counted and printed here."""
    if not tasks:
        return
    ray = import_ray()
    started = connect(resources)
    try:
        check_resources(ray, resources)
        remote = ray.remote(work).options(
            num_cpus=resources.cpus_per_run, num_gpus=resources.gpus_per_run, max_retries=0
        )
        pending: dict = {}

        def submit(task: Task) -> None:
            tracker.start(task)
            pending[remote.remote(task.config, task.folder, runner)] = task

        for task in tasks:
            submit(task)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            task = pending.pop(ready[0])
            try:
                run = ray.get(ready[0])
            except Exception as error:  # noqa: BLE001 - reported, retried or listed as failed
                if tracker.failed_attempt(task, cause(error)):
                    submit(task)
                continue
            tracker.finished(task, run)
    finally:
        if started:
            ray.shutdown()
