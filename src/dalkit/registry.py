"""Name -> factory registries (timm style): one per kind of component (models, strategies, data sets).

A component is registered with a decorator next to its definition; everything else finds it by name,
so adding one is one file plus one import line, and tests parametrised over a registry cover it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from dalkit.errors import DalkitError

T = TypeVar("T")


def call_with_options(factory: Callable[..., T], description: str, flag: str, **options) -> T:
    """`factory(**options)`, turning an unknown or missing option into a one-sentence user error."""
    try:
        return factory(**options)
    except TypeError as error:
        raise DalkitError(f"{description} does not take these options ({error}); check {flag}.") from None


def options_for(name: str, options: dict) -> dict:
    """The options meant for component `name`: plain keys, and `name.key` keys with the prefix removed."""
    chosen = {k: v for k, v in options.items() if "." not in k}
    chosen.update({k.split(".", 1)[1]: v for k, v in options.items() if k.startswith(name + ".")})
    return chosen


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
        """Refuse a `name.key` option whose name is not registered here (see `options_for`): a typo in it
        would otherwise send the option nowhere, silently."""
        for key in options:
            name = key.split(".", 1)[0]
            if "." in key and name not in self._items:
                raise DalkitError(
                    f"option {key!r} is meant for {self.kind} {name!r}, which does not exist; check {self.option_flag} "
                    f"(choose one of: {', '.join(self.names())})."
                )

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items
