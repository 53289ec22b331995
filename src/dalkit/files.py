"""Files written whole or not at all (no torch here: the labelling project's light commands use it)."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "x", **open_options) -> Iterator[IO]:
    """Write a file whole or not at all: the block writes a temporary file beside `path` (opened with `mode`, "x"
    text or "xb" binary, and `open_options`), which is synced and renamed onto `path` when the block ends; on an
    error the temporary file goes and `path` keeps what it held, so a crash never leaves a half-written file."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with temporary.open(mode, **open_options) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
