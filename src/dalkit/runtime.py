"""Device helpers everything may use: batch sizes, autocast, one fit loop, and the global RNG kept isolated."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence

import torch
from tqdm.auto import tqdm

#: one epoch's steps: yields, per step, its loss (a scalar, or a vector of named losses) and how many items it saw
EpochSteps = Callable[[int], Iterable[tuple[torch.Tensor, int]]]


#: seconds between two lines of a bar written to a log (stderr not a terminal), and before its first
LOG_INTERVAL = 60.0


class LogLines:
    """Where a bar writes when stderr is a log file (a run in the background): each refresh is one plain line,
    with no carriage return, so `tail` shows the progress, rate and ETA of a long step as it goes."""

    def __init__(self, stream) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        line = text.replace("\r", "").strip()
        if line:
            self.stream.write(line + "\n")

    def flush(self) -> None:
        self.stream.flush()


def progress_bar(iterable: Iterable | None = None, *, progress: bool = True, **options) -> tqdm:
    """A tqdm bar (rate and ETA) over `iterable` or a `total`: redrawn in place on a terminal; in a log, a line a
    minute once the step has run a minute (`LOG_INTERVAL`); none without `progress`."""
    if not progress:
        return tqdm(iterable, disable=True, **options)
    if sys.stderr.isatty():
        return tqdm(iterable, **options)
    # miniters=1: no dynamic miniters, so tqdm's monitor thread never forces a second line beside update()'s
    interval = {"mininterval": LOG_INTERVAL, "maxinterval": LOG_INTERVAL, "delay": LOG_INTERVAL, "miniters": 1}
    return tqdm(iterable, file=LogLines(sys.stderr), **interval, **options)


def batch_slices(n: int, batch_size: int) -> list[slice]:
    """Batch boundaries over n items; a last batch of one image is dropped (batch norm needs two)."""
    slices = [slice(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]
    if n > 1 and slices[-1].stop - slices[-1].start == 1:
        slices.pop()
    return slices


def inference_batch_size(device: torch.device) -> int:
    """Large batches on a GPU; on a CPU, smaller ones keep activations in cache (measured faster)."""
    return 1024 if device.type == "cuda" else 256


def autocast(device: torch.device) -> torch.autocast:
    """bf16 autocast on CUDA; a no-op elsewhere."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


@contextlib.contextmanager
def isolated_rng(seed: int) -> Iterator[None]:
    """Run the block with torch's global RNG (CPU and every CUDA device) seeded with `seed`, restored after.

    The one way dalkit lets code draw from the global RNG, for what can draw from nothing else: the weight
    initialisation of a module built in place (the classifier, VAAL's networks, the GCN) and nn.Dropout. Everything
    else draws from a torch.Generator; a strategy passes `seeding.draw_seed(ctx.generator)`.
    """
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def fit_loop(
    epochs: int,
    epoch_size: int,
    run_epoch: EpochSteps,
    *,
    progress: bool,
    description: str,
    unit: str = "img",
    names: Sequence[str] = ("loss",),
    stop: Callable[[int, torch.Tensor], bool] | None = None,
) -> torch.Tensor:
    """Run `run_epoch(epoch)` for every epoch under one progress bar; return each epoch's mean loss.

    `run_epoch` does one epoch's optimizer steps and yields, after each, the step's loss and the number of items
    it saw (`epoch_size` in an epoch, which the bar counts in `unit`s, with rate and ETA). The bar (`progress_bar`) is
    hidden when `progress` is False, and a line a minute in a log; it shows the last epoch's mean
    losses, labelled with `names`. Losses are summed where they live and read once per epoch, so nothing waits
    for the device inside an epoch. `stop(epoch, mean_loss)`, called after each epoch, ends the loop early when it
    returns True (early stopping). Returns the item-weighted means of the epochs run, (epochs run, *loss shape),
    float64 on the CPU.
    """
    records = []
    bar = progress_bar(
        progress=progress, total=epochs * epoch_size, desc=description, unit=unit, unit_scale=True, leave=False
    )
    with bar:
        for epoch in range(epochs):
            total, count = 0.0, 0
            for loss, n in run_epoch(epoch):
                total = total + loss.detach().float() * n
                count += n
                bar.update(n)
            mean = torch.as_tensor(total, dtype=torch.float64, device="cpu") / count  # nan for an epoch of no steps
            records.append(mean)
            bar.set_postfix(
                {name: f"{value:.3f}" for name, value in zip(names, mean.reshape(-1).tolist())}, refresh=False
            )
            if stop is not None and stop(epoch, mean):
                break
    return torch.stack(records) if records else torch.empty(0, dtype=torch.float64)


def distributed() -> tuple[int, int]:
    """(rank, world size) of this process in torch.distributed; (0, 1) outside a process group."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def broadcast(value):
    """`value` as rank 0 has it, on every rank (pickled); `value` itself outside a process group."""
    if distributed()[1] == 1:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@contextlib.contextmanager
def process_group(device: str) -> Iterator[str]:
    """Join the process group torchrun set up (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR in the environment):
    NCCL on CUDA, one GPU per local rank; gloo on the CPU. Yields the device this rank trains on."""
    import os

    import torch.distributed as dist

    from dalkit.errors import DalkitError

    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise DalkitError(
            "--distributed runs under torchrun (it sets RANK and WORLD_SIZE); start it as "
            "`torchrun --nproc-per-node N -m dalkit.cli run ... --distributed`."
        )
    cuda = device != "cpu" and torch.cuda.is_available()
    if cuda:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if cuda else "gloo")
    try:
        yield device
    finally:
        dist.destroy_process_group()
