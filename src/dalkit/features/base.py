"""Precomputed representations of the pool: what a strategy asks for and the registry of sources that make them.

A strategy that selects on a representation other than the classifier's (TypiClust and ProbCover with
`features=ssl`) sets `Strategy.representation` to a `FeatureRequest`; the engine calls `compute_features`
before the query and hands the result to the strategy through the context (`QueryContext.features`, one row
per pool image, with `features_info` saying where they came from). Sources cache what they compute under a key
of the images and settings, so cycles, strategies and runs on the same images compute them once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from dalkit.data.augment import Normalizer
from dalkit.registry import Registry
from dalkit.runtime import inference_batch_size

#: source(images, normalizer, config, device, cache_dir, batch_size, progress) -> (features (N, d) on the CPU, info)
FeatureSource = Callable[..., tuple[torch.Tensor, dict]]
FEATURE_SOURCES: Registry[FeatureSource] = Registry("feature source")
register_feature_source: Callable = FEATURE_SOURCES.register


@dataclass(frozen=True)
class FeatureRequest:
    """Features a strategy asks the engine for: a registered source, its settings and a cache folder
    (None: the default one; "none": memory only)."""

    source: str
    config: Any
    cache_dir: str | None = None


def compute_features(
    request: FeatureRequest, images: torch.Tensor, normalizer: Normalizer, device: torch.device, progress: bool = True
) -> tuple[torch.Tensor, dict]:
    """The requested features of every image (N, d), float32 on the CPU, and a JSON-able record of their source."""
    source = FEATURE_SOURCES.get(request.source)
    return source(images, normalizer, request.config, device, request.cache_dir, inference_batch_size(device), progress)
