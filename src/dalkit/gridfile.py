"""`dalkit compare --grid FILE`: a TOML file of compare's options, turned into the flags they stand for.

Keys are compare's long options without the dashes (`epochs = 2`, `datasets = ["digits", "mnist"]`,
`strategies = ["random", "margin"]`, `seeds = [0, 1]`, `dataset-option = ["imbalance=100"]`, or a table
`[strategy-option]` of `"bald.samples" = 10`); `_` and `-` are the same. The file's flags go before the command
line's, so a flag given on the command line wins (and repeatable options such as --strategy-option add to it).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dalkit.errors import DalkitError


def read_toml(path: Path) -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        raise DalkitError(f"--grid {path} needs Python 3.11 or later (tomllib); pass the options as flags.") from None
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise DalkitError(f"--grid {path} does not exist; give a TOML file of compare's options.") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DalkitError(f"--grid {path} cannot be read ({error}); give a TOML text file.") from None
    except tomllib.TOMLDecodeError as error:
        raise DalkitError(f"--grid {path} is not valid TOML ({error}); fix that line.") from None


def flag_tokens(action: argparse.Action, flag: str, value) -> list[str]:
    """The command-line tokens that give `value` to `action`."""
    if isinstance(action, argparse.BooleanOptionalAction):
        return [flag if value else f"--no-{flag[2:]}"]
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        return [flag] if value else []
    if isinstance(action, argparse._AppendAction):
        items = [f"{k}={v}" for k, v in value.items()] if isinstance(value, dict) else value
        items = items if isinstance(items, list) else [items]
        return [token for item in items for token in (flag, str(item))]
    return [flag, ",".join(map(str, value)) if isinstance(value, list) else str(value)]


def grid_arguments(path: str | Path, parser: argparse.ArgumentParser) -> list[str]:
    """The flags that the grid file at `path` stands for, checked against `parser`'s options."""
    path = Path(path)
    actions = {flag: action for action in parser._actions for flag in action.option_strings if flag.startswith("--")}
    tokens = []
    for key, value in read_toml(path).items():
        flag = "--" + key.replace("_", "-")
        action = actions.get(flag)
        if action is None or flag in ("--grid", "--help"):
            raise DalkitError(
                f"--grid {path}: {key!r} is not an option of dalkit compare; use its long option names "
                "(e.g. datasets, strategies, seeds, epochs, cycles, budget, strategy-option)."
            )
        if isinstance(value, dict) and not isinstance(action, argparse._AppendAction):
            raise DalkitError(f"--grid {path}: {key!r} takes one value or a list, not a table; fix that key.")
        tokens += flag_tokens(action, flag, value)
    return tokens
