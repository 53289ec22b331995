"""What every benchmark script shares: where its records go and how the device is named in them."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).with_name("results.jsonl")


def save(record: dict) -> None:
    """Append `record`, stamped with the time, to benchmarks/results.jsonl (local, not tracked)."""
    record["time"] = time.strftime("%Y-%m-%d %H:%M:%S")
    with open(RESULTS, "a") as f:
        f.write(json.dumps(record, default=str) + "\n")


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU x{torch.get_num_threads()} threads"
