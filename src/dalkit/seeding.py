"""One seed drives everything: every random draw comes from a generator derived from the run's seed.

NumPy and torch's global RNGs are never seeded or read; what can only draw from torch's (weight initialisation,
dropout) runs under `dalkit.runtime.isolated_rng`.
"""

from __future__ import annotations

import numpy as np
import torch


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch generator on `device`, seeded; strategies and samplers draw only from these."""
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator


def draw_seed(generator: torch.Generator) -> int:
    """A seed drawn from `generator`, for a stage that needs its own generator or `isolated_rng`."""
    return int(torch.randint(2**62, (1,), generator=generator, device=generator.device))


def derive_seed(seed: int, *parts: int) -> int:
    """A stable sub-seed for (seed, cycle, ...) so each stage's randomness is independent yet fixed."""
    return int(np.random.SeedSequence([seed, *parts]).generate_state(1)[0])


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA when present, else CPU; an unavailable device is a user error."""
    from dalkit.errors import DalkitError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DalkitError(f"device {name!r} was asked for but CUDA is not available; use --device cpu.")
    return device
