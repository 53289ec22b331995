"""The strategy registry: `create_strategy(name, **options)` and `list_strategies()`."""

from __future__ import annotations

from collections.abc import Callable

from dalkit.registry import Registry
from dalkit.strategies.base import Strategy

STRATEGIES: Registry[Strategy] = Registry("strategy", "--strategy-option")
register_strategy: Callable = STRATEGIES.register
