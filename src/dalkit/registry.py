"""Name -> factory registries (timm style): one per kind of component (models, strategies, data sets, ...).

A component is registered with a decorator next to its definition; everything else finds it by name,
so adding one is one file plus one import line, and tests parametrised over a registry cover it. Options
are validated on the way in by `dalkit.options`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from dalkit.errors import DalkitError
from dalkit.options import call_with_options, check_prefixes

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to factories, with a helpful error for unknown names and options."""

    def __init__(self, kind: str, option_flag: str = "") -> None:
        self.kind = kind
        self.option_flag = option_flag
        self._items: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorate(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = factory
            return factory

        return decorate

    def get(self, name: str) -> Callable[..., T]:
        try:
            return self._items[name]
        except KeyError:
            choices = ", ".join(self.names())
            raise DalkitError(f"unknown {self.kind} {name!r}; choose one of: {choices}.") from None

    def create(self, name: str, **options) -> T:
        return call_with_options(self.get(name), f"{self.kind} {name!r}", self.option_flag, **options)

    def check_prefixes(self, options: dict) -> None:
        """Refuse a `name.key` option whose name is not registered here (see `dalkit.options.options_for`)."""
        check_prefixes(options, self._items, self.kind, self.option_flag)

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items
