"""Pieces shared by dalkit's two VAEs (VAAL's, `strategies/vaal.py`, and the CVAE generator, `generators/cvae.py`)."""

from __future__ import annotations

import math

import torch


def halvings(height: int, width: int) -> int:
    """Stride-2 encoder convolutions: halve while the short side is at least 4 (32x32: 4, down to 2x2); at least 1."""
    return max(1, int(math.log2(min(height, width))) - 1)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)), summed over the batch and the latent dimensions."""
    return -0.5 * torch.sum(1 + logvar - mu.square() - logvar.exp())
