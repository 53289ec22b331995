"""Finding, downloading and checking the files of the standard data sets (shared by every reader).

A reader names the files it needs, relative to `root` in torchvision's layout, and calls `ensure_present`:
missing files are an error unless `download` is set, in which case the official files are fetched with
urllib (to a `.part` file that is renamed once complete and MD5-checked) and `.tar.gz` archives are
unpacked into `root` with tarfile's safe "data" filter. The helpers at the end turn broken files into
a `DalkitError` that names the file, instead of a traceback.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from dalkit.data.base import labels_from_array
from dalkit.errors import DalkitError

CHUNK = 1 << 20
TIMEOUT_S = 60
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")


@dataclass(frozen=True)
class Remote:
    """One official file: its URL, its MD5 (None if unknown), and where it is saved relative to root.

    An archive (.tar.gz, .tgz, .tar) is unpacked into root after the download.
    """

    url: str
    md5: str | None
    path: str

    @property
    def is_archive(self) -> bool:
        return self.path.endswith(ARCHIVE_SUFFIXES)


FileSpec = str | Sequence[str]  # a path relative to root, or alternatives in order of preference


def ensure_present(
    title: str, root: Path, files: Sequence[FileSpec], download: bool, fetch: Sequence[Remote] = ()
) -> list[Path]:
    """The path of each needed file (the first alternative that exists), downloading them if allowed."""
    found = find_files(root, files)
    missing = [spec for spec, path in zip(files, found) if path is None]
    if not missing:
        return found  # type: ignore[return-value]
    where = describe_location(root, missing)
    if not download or not fetch:
        raise DalkitError(f"{title} was not found at {where}; put a copy there or pass --download to fetch it.")
    for remote in fetch:
        fetch_remote(title, root, remote, where)
    found = find_files(root, files)
    still_missing = [spec for spec, path in zip(files, found) if path is None]
    if still_missing:
        raise DalkitError(
            f"the download of {title} did not provide {describe_location(root, still_missing)}; "
            f"put a copy of the files at {where} yourself."
        )
    return found  # type: ignore[return-value]


def find_files(root: Path, files: Sequence[FileSpec]) -> list[Path | None]:
    return [next((root / name for name in alternatives(spec) if (root / name).is_file()), None) for spec in files]


def alternatives(spec: FileSpec) -> list[str]:
    return [spec] if isinstance(spec, str) else list(spec)


def describe_location(root: Path, missing: Sequence[FileSpec]) -> str:
    """The folder that should hold the missing files if it is absent altogether, else the files themselves."""
    paths = [root / alternatives(spec)[0] for spec in missing]
    folder = paths[0].parent
    if folder != root and not folder.exists() and all(path.parent == folder for path in paths):
        return str(folder)
    names = [str(path) for path in paths]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def fetch_remote(title: str, root: Path, remote: Remote, where: str) -> None:
    """Download `remote` unless a good copy is already there, then unpack it if it is an archive."""
    target = root / remote.path
    if not (target.is_file() and (remote.md5 is None or file_md5(target) == remote.md5)):
        download_file(title, remote.url, target, remote.md5, where)
    if remote.is_archive:
        extract_archive(target, root, where)


def download_file(title: str, url: str, target: Path, md5: str | None, where: str) -> None:
    """Stream `url` to `target` with a progress bar, via a `.part` file, checking the MD5 when known."""
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    digest = hashlib.md5(usedforsecurity=False)
    request = urllib.request.Request(url, headers={"User-Agent": "dalkit"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response, part.open("wb") as out:
            size = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=size, unit="B", unit_scale=True, unit_divisor=1024, desc=target.name, leave=False) as bar:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
    except (OSError, http.client.HTTPException, ValueError) as error:
        part.unlink(missing_ok=True)
        raise DalkitError(
            f"could not download {title} from {url} ({failure_reason(error)}); "
            f"check the network or put the files at {where} yourself."
        ) from None
    if md5 is not None and digest.hexdigest() != md5:
        part.unlink(missing_ok=True)
        raise DalkitError(
            f"the download of {title} from {url} is damaged (its MD5 checksum does not match); "
            f"pass --download again or put the files at {where} yourself."
        )
    part.replace(target)


def failure_reason(error: BaseException) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        return str(error.reason)
    return str(error) or type(error).__name__


def file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def extract_archive(archive: Path, root: Path, where: str) -> None:
    """Unpack a tar archive into a staging folder inside root, then move its files into place."""
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".dalkit-unpack-", dir=root))
    try:
        with tarfile.open(archive, "r:*") as tar:
            safe_extractall(tar, staging)
        move_tree(staging, root)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
        raise DalkitError(
            f"{archive} could not be unpacked ({error}); delete it and pass --download again, "
            f"or put the unpacked files at {where} yourself."
        ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def safe_extractall(tar: tarfile.TarFile, dest: Path) -> None:
    """Extract regular files and folders only, never outside `dest` (tarfile's "data" filter when present)."""
    if hasattr(tarfile, "data_filter"):
        tar.extractall(dest, filter="data")
        return
    for member in tar.getmembers():
        parts = Path(member.name).parts
        if not (member.isfile() or member.isdir()) or member.name.startswith("/") or ".." in parts:
            raise tarfile.TarError(f"refusing the unsafe archive member {member.name!r}")
    tar.extractall(dest)  # noqa: S202  (members checked above)


def move_tree(source: Path, dest: Path) -> None:
    """Move every file under `source` to the same relative place under `dest`, replacing what is there."""
    for folder, _, names in os.walk(source):
        relative = Path(folder).relative_to(source)
        (dest / relative).mkdir(parents=True, exist_ok=True)
        for name in names:
            os.replace(Path(folder) / name, dest / relative / name)


# --- Checking what the files hold -----------------------------------------------------------------


def unreadable_file(path: Path, title: str, reason: str) -> DalkitError:
    return DalkitError(
        f"{path} is not a valid {title} file ({reason}); delete it and pass --download to fetch it again, "
        "or replace it with a good copy."
    )


def reject_options(name: str, options: dict) -> None:
    if options:
        raise DalkitError(f"data set {name!r} takes no options (got {', '.join(options)}); remove --dataset-option.")


class NumpyUnpickler(pickle.Unpickler):
    """Unpickles plain containers and NumPy arrays only, so a data file cannot run arbitrary code."""

    ALLOWED_MODULES = frozenset(
        {"numpy", "numpy.core.multiarray", "numpy._core.multiarray", "numpy.core.numeric", "numpy._core.numeric"}
    )
    ALLOWED_NAMES = frozenset({"_reconstruct", "scalar", "_frombuffer", "ndarray", "dtype"})

    def find_class(self, module: str, name: str) -> Any:
        if (module in self.ALLOWED_MODULES and name in self.ALLOWED_NAMES) or (module, name) == ("_codecs", "encode"):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"unexpected object {module}.{name}")


def load_pickle(path: Path, title: str) -> Any:
    """A pickle written by Python 2 or 3 (`encoding="bytes"`: Python 2 strings come back as bytes)."""
    try:
        with path.open("rb") as f:
            return NumpyUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as error:
        raise unreadable_file(path, title, f"not a readable pickle: {error}") from None
    except OSError as error:
        raise unreadable_file(path, title, str(error)) from None


def read_bytes(path: Path, title: str) -> bytes:
    """The whole file, decompressed if it is a .gz."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as error:
        raise unreadable_file(path, title, str(error) or type(error).__name__) from None


def checked_pixels(array: Any, path: Path, title: str) -> np.ndarray:
    """`array` as a writable uint8 array; it must hold bytes (or integers within 0-255)."""
    array = np.asarray(array)
    if array.dtype == np.uint8:
        return array if array.flags.writeable else array.copy()
    if array.dtype.kind not in "iu" or array.size and (array.min() < 0 or array.max() > 255):
        raise unreadable_file(path, title, f"pixels are {array.dtype}, not bytes")
    return array.astype(np.uint8)


def checked_labels(values: Any, count: int, num_classes: int, path: Path, title: str) -> torch.Tensor:
    """`values` as int64 labels: one per image, each in [0, num_classes)."""
    labels = np.asarray(values).reshape(-1)
    if labels.dtype.kind not in "iu" and not (labels.size == 0 and labels.dtype.kind == "f"):
        raise unreadable_file(path, title, f"labels are {labels.dtype}, not integers")
    if len(labels) != count:
        raise unreadable_file(path, title, f"{len(labels)} labels for {count} images")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise unreadable_file(path, title, f"labels outside 0-{num_classes - 1}")
    return labels_from_array(labels)
