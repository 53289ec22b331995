"""Device helpers everything may use (placeholder until the rng-fit branch lands)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


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
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
