"""Query strategies: one small module each, registered by name."""

from __future__ import annotations

from dalkit.strategies import badge, bald, coreset, random, uncertainty  # noqa: F401  (register the strategies)
from dalkit.strategies.base import QueryContext, Selection, Strategy, checked_select
from dalkit.strategies.registry import STRATEGIES


def create_strategy(name: str, **options) -> Strategy:
    """Build a registered strategy; `options` are its own parameters."""
    from dalkit.errors import DalkitError

    try:
        return STRATEGIES.create(name, **options)
    except TypeError as error:
        raise DalkitError(
            f"strategy {name!r} does not take these options ({error}); check --strategy-option."
        ) from None


def list_strategies() -> list[str]:
    return STRATEGIES.names()


__all__ = ["QueryContext", "Selection", "Strategy", "checked_select", "create_strategy", "list_strategies"]
