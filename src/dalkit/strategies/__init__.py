"""Query strategies: one small module each, registered by name."""

from __future__ import annotations

from dalkit.strategies import (  # noqa: F401  (register the strategies)
    badge,
    bald,
    batchbald,
    cluster_margin,
    coreset,
    gcn,
    learning_loss,
    mc_uncertainty,
    mobyv2al,
    probcover,
    random,
    typiclust,
    uncertainty,
    vaal,
)
from dalkit.strategies.base import QueryContext, Selection, Strategy, checked_select
from dalkit.strategies.registry import STRATEGIES


def create_strategy(name: str, **options) -> Strategy:
    """Build a registered strategy; `options` are its own parameters."""
    return STRATEGIES.create(name, **options)


def list_strategies() -> list[str]:
    return STRATEGIES.names()


__all__ = ["QueryContext", "Selection", "Strategy", "checked_select", "create_strategy", "list_strategies"]
