"""The strategy registry: `create_strategy(name, **options)` and `list_strategies()`."""

from __future__ import annotations

from collections.abc import Callable

from dalkit.registry import Registry
from dalkit.strategies.base import Strategy

STRATEGIES: Registry[Strategy] = Registry("strategy", "--strategy-option")


def register_strategy(name: str) -> Callable:
    """Register a strategy class under `name`; the class's `name` becomes that name (its messages use it)."""

    def decorate(factory: Callable) -> Callable:
        if isinstance(factory, type):
            factory.name = name
        return STRATEGIES.register(name)(factory)

    return decorate
