"""The one place `component.key=value` options are parsed, routed and validated.

- `parse_options` turns the command line's KEY=VALUE pairs into a dict of Python values;
- `options_for` routes them: plain keys go to every component, `NAME.key` keys to component NAME only
  (a preset may hold options for several strategies, `dalkit compare` runs several);
- `check_prefixes` refuses a `NAME.key` whose NAME is not registered (a typo would send it nowhere);
- `call_with_options` builds a component, validating the options against the parameters its constructor
  declares: unknown names, and values whose type does not match the parameter's default (a string for a number,
  a fraction for a whole number, anything but true/false for a flag), end in one sentence naming the component,
  the option and the flag. `require` is the one message style for the range checks a constructor adds.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from dalkit.errors import DalkitError

T = TypeVar("T")


def parse_options(pairs: Sequence[str] | None, flag: str) -> dict:
    """KEY=VALUE pairs -> dict; values are Python literals where they parse, else strings.

    Dashes in a key become underscores, but not in a `NAME.` prefix: component names keep theirs
    (`learning-loss.stop-epoch=5` -> `learning-loss.stop_epoch`).
    """
    options = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise DalkitError(f"{flag} expects KEY=VALUE, got {pair!r}; for example {flag} dropout=0.3.")
        prefix, dot, name = key.rpartition(".")
        key = prefix + dot + name.replace("-", "_")
        try:
            options[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            options[key] = value
    return options


def options_for(name: str, options: dict) -> dict:
    """The options meant for component `name`: plain keys, and `name.key` keys with the prefix removed."""
    chosen = {k: v for k, v in options.items() if "." not in k}
    chosen.update({k.split(".", 1)[1]: v for k, v in options.items() if k.startswith(name + ".")})
    return chosen


def check_prefixes(options: dict, names: Iterable[str], kind: str, flag: str) -> None:
    """Refuse a `name.key` option whose name is not one of `names`."""
    names = sorted(names)
    for key in options:
        name = key.split(".", 1)[0]
        if "." in key and name not in names:
            raise DalkitError(
                f"option {key!r} is meant for {kind} {name!r}, which does not exist; check {flag} "
                f"(choose one of: {', '.join(names)})."
            )


def require(ok: bool, owner: str, option: str, value: object, rule: str, example: str) -> None:
    """The one style of a range check: 'the OWNER option OPTION must RULE (got VALUE); pass e.g. EXAMPLE.'"""
    if not ok:
        raise DalkitError(f"the {owner} option {option} must {rule} (got {value!r}); pass e.g. {example}.")


_KINDS = {
    "bool": (lambda v: isinstance(v, bool), "true or false (True/False)"),
    "int": (lambda v: isinstance(v, int) and not isinstance(v, bool), "a whole number"),
    "float": (lambda v: isinstance(v, int | float) and not isinstance(v, bool), "a number"),
    "str": (lambda v: isinstance(v, str), "a name (text)"),
}


def _type_problem(value: object, parameter: inspect.Parameter) -> str | None:
    """Why `value` cannot stand for `parameter` (None: it can, or there is nothing to check).

    The kinds come from the annotation (`int | None`, `float`, ...) or, without one, from the default's type.
    """
    annotation = parameter.annotation
    if annotation is inspect.Parameter.empty:
        default = parameter.default
        if default is inspect.Parameter.empty or default is None:
            return None
        annotation = type(default).__name__
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    words = set(text.replace("|", " ").replace(",", " ").split())
    if value is None and "None" in words:
        return None
    kinds = [_KINDS[w] for w in ("bool", "int", "float", "str") if w in words]
    if not kinds or words - set(_KINDS) - {"None"}:
        return None  # another type (a tuple, a path, a class): the component checks it
    if any(accepts(value) for accepts, _ in kinds):
        return None
    return " or ".join(description for _, description in kinds)


def validate_options(factory: Callable, description: str, flag: str, options: dict, prefix: str = "") -> None:
    """Check `options` against the parameters `factory` declares (names, and types of those with defaults);
    messages name each option as the user wrote it, `prefix` + name."""
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # a builtin or C callable: nothing to read
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return  # forwards its options (checked where they land)
    declared = [n for n, p in parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    for name, value in options.items():
        if name not in declared:
            known = ", ".join(prefix + n for n in declared) if declared else "none"
            raise DalkitError(
                f"{description} does not take the option {prefix}{name} (its options: {known}); check {flag}."
            )
        problem = _type_problem(value, parameters[name])
        if problem:
            default = parameters[name].default
            example = (
                ""
                if default is inspect.Parameter.empty or default is None
                else f"; pass e.g. {prefix}{name}={default!r}"
            )
            raise DalkitError(f"the {description} option {prefix}{name} must be {problem} (got {value!r}){example}.")


def call_with_options(
    factory: Callable[..., T], description: str, flag: str, *, option_prefix: str = "", **options
) -> T:
    """`factory(**options)` after `validate_options`; a missing required option is a one-sentence user error too."""
    validate_options(factory, description, flag, options, option_prefix)
    try:
        return factory(**options)
    except TypeError as error:
        raise DalkitError(f"{description} does not take these options ({error}); check {flag}.") from None
