"""Classic uncertainty sampling on the softmax output (Lewis & Gale 1994; Settles 2009 survey).

- least-confidence: 1 - max_c p_c
- margin: -(p_top1 - p_top2), the smallest gap between the two most likely classes first
- entropy: -sum_c p_c log p_c
"""

from __future__ import annotations

import torch

from dalkit.strategies.base import ScoreStrategy, entropy
from dalkit.strategies.registry import register_strategy


@register_strategy("least-confidence")
class LeastConfidence(ScoreStrategy):
    """Lowest top-class probability first: 1 - max_c p_c."""

    def score(self, probs: torch.Tensor) -> torch.Tensor:
        return 1 - probs.max(dim=1).values


@register_strategy("margin")
class Margin(ScoreStrategy):
    """Smallest gap between the two most likely classes first."""

    def score(self, probs: torch.Tensor) -> torch.Tensor:
        top2 = probs.topk(2, dim=1).values
        return top2[:, 1] - top2[:, 0]


@register_strategy("entropy")
class Entropy(ScoreStrategy):
    """Highest predictive entropy first."""

    def score(self, probs: torch.Tensor) -> torch.Tensor:
        return entropy(probs)
