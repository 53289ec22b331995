"""Representations computed or loaded before a query: the classifier's outputs and precomputed pool features."""

from __future__ import annotations

from dalkit.features import simclr  # noqa: F401  (registers the SimCLR source)
from dalkit.features.base import FEATURE_SOURCES, FeatureRequest, compute_features
from dalkit.features.classifier import Outputs, predict

__all__ = ["FEATURE_SOURCES", "FeatureRequest", "Outputs", "compute_features", "predict"]
