"""Label Studio interchange: tasks to label (with the model's guess and dalkit's score), and its export read back.

Written from Label Studio's documented JSON formats (the task format with `data` and `predictions`, and the
JSON export with `annotations`); no code of Label Studio is used. A task's `data.image` is a local-files URL
(`/data/local-files/?d=PATH`, PATH relative to Label Studio's `LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT`), and
its `data` also carries `dalkit_image` (the image's path in the project, which the import matches first),
`dalkit_score` (the strategy's latest score; sort by it in the Data Manager), `dalkit_round` and `dalkit_label`.
The model's guess is a `predictions` entry: a `choices` result with the class probability as its score.

The labelling configuration the tasks expect (written beside them as `label-studio-config.xml`) has an
`Image` named `image` and single `Choices` named `label` with one choice per class.

Importing reads Label Studio's JSON export (a list of tasks with `annotations`): the latest annotation of a
task that is not cancelled gives its label (the one choice of its `choices` result); the image is matched by
`dalkit_image`, else by file name. Everything is checked before anything is recorded, and a label given after
the file was saved wins over it, as with a CSV.
"""

from __future__ import annotations

import json
import re
from html import escape
from pathlib import Path, PurePosixPath
from urllib.parse import parse_qs, quote, unquote, urlparse

from dalkit.errors import DalkitError
from dalkit.files import atomic_file

FROM_NAME, TO_NAME = "label", "image"
CONFIG_FILE = "label-studio-config.xml"
MAX_EXPORT_BYTES = 256 * 2**20
UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-(.+)$")  # Label Studio renames an uploaded file "1a2b3c4d-name.png"


def local_files_url(file: Path, document_root: Path) -> str:
    """The address Label Studio serves a local file at, relative to its local-files document root."""
    try:
        relative = file.resolve().relative_to(document_root.resolve())
    except ValueError:
        raise DalkitError(
            f"image {file} is not inside the document root {document_root}; pass --document-root with the folder "
            "set as LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT."
        ) from None
    return "/data/local-files/?d=" + quote(relative.as_posix())


def tasks(project, document_root: Path) -> list[dict]:
    """One Label Studio task per image of the project, in the project's order."""
    root = Path(project.settings.images)
    found = []
    for image, label, guess, probability, score, number in project.export_rows():
        data = {
            "image": local_files_url(root / image, document_root),
            "dalkit_image": image,
            "dalkit_score": score,
            "dalkit_round": number,
            "dalkit_label": label or None,
        }
        task: dict = {"data": data}
        if guess:
            result = {"from_name": FROM_NAME, "to_name": TO_NAME, "type": "choices", "value": {"choices": [guess]}}
            task["predictions"] = [
                {"model_version": f"dalkit round {number or ''}".strip(), "score": probability, "result": [result]}
            ]
        found.append(task)
    return found


def labelling_config(classes: list[str]) -> str:
    choices = "".join(f'    <Choice value="{escape(name)}"/>\n' for name in classes)
    return (
        f'<View>\n  <Image name="{TO_NAME}" value="$image"/>\n'
        f'  <Choices name="{FROM_NAME}" toName="{TO_NAME}" choice="single" showInLine="true">\n{choices}'
        "  </Choices>\n</View>\n"
    )


def export(project, path: Path, document_root: Path | None = None) -> Path:
    """Write the project's tasks to `path` (JSON) and the labelling configuration beside it."""
    document_root = Path(document_root) if document_root is not None else Path(project.settings.images)
    write_text(path, json.dumps(tasks(project, document_root), indent=1, ensure_ascii=False))
    write_text(path.with_name(CONFIG_FILE), labelling_config(project.settings.classes))
    return path


def write_text(path: Path, text: str) -> None:
    """Write `text` to `path` whole or not at all."""
    with atomic_file(path, encoding="utf-8") as handle:
        handle.write(text)


def read_export(path: Path, images: list[str]) -> list[tuple[str, str]]:
    """(project image path, label) of each annotated task of Label Studio's JSON export at `path`; `images` are
    the project's image paths. Cancelled (skipped) annotations and tasks without one are left out."""
    try:
        size = path.stat().st_size
    except OSError as error:
        raise DalkitError(f"{path} could not be read ({error.strerror}); give Label Studio's JSON export.") from None
    if size > MAX_EXPORT_BYTES:
        raise DalkitError(f"{path} is larger than {MAX_EXPORT_BYTES // 2**20} MB; export fewer tasks at a time.")
    try:
        found = json.loads(path.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise DalkitError(f"{path} is not a readable JSON file ({error}); export the project as JSON again.") from None
    if not isinstance(found, list) or not all(isinstance(task, dict) for task in found):
        raise DalkitError(
            f"{path} is not Label Studio's JSON export (a list of tasks, each with data and annotations); choose "
            "the JSON format (not JSON-MIN or CSV) when you export."
        )
    by_name: dict[str, list[str]] = {}
    for image in images:
        by_name.setdefault(PurePosixPath(image).name, []).append(image)
    known = set(images)
    pairs: dict[str, str] = {}
    for number, task in enumerate(found, 1):
        label = task_label(task, number, path)
        if label is None:
            continue
        image = task_image(task, number, path, known, by_name)
        if pairs.get(image, label) != label:
            raise DalkitError(f"task {number} of {path} labels {image} {label!r} but an earlier task {pairs[image]!r}.")
        pairs[image] = label
    return list(pairs.items())


def task_label(task: dict, number: int, path: Path) -> str | None:
    """The class the latest annotation of a task that was not cancelled chose, or None if there is none."""
    annotations = task.get("annotations") or []
    if not isinstance(annotations, list):
        raise DalkitError(f"task {number} of {path} has annotations that are not a list; export it again as JSON.")
    kept = [a for a in annotations if isinstance(a, dict) and not a.get("was_cancelled")]
    if not kept:
        return None
    latest = max(kept, key=lambda a: (str(a.get("updated_at") or a.get("created_at") or ""),))
    chosen = [
        result.get("value", {}).get("choices")
        for result in latest.get("result") or []
        if isinstance(result, dict) and result.get("type") == "choices" and isinstance(result.get("value"), dict)
    ]
    chosen = [names for names in chosen if names]
    if not chosen:
        return None
    if len(chosen) > 1 or not isinstance(chosen[0], list) or len(chosen[0]) != 1 or not isinstance(chosen[0][0], str):
        raise DalkitError(
            f"task {number} of {path} chose {chosen} where one class is expected; use single Choices in Label Studio."
        )
    return chosen[0][0]


def task_image(task: dict, number: int, path: Path, known: set[str], by_name: dict[str, list[str]]) -> str:
    """The project image a task is about: its `dalkit_image`, else the one project image with its file name."""
    data = task.get("data")
    if not isinstance(data, dict):
        raise DalkitError(f"task {number} of {path} has no data; export it again as JSON.")
    own = data.get("dalkit_image")
    if isinstance(own, str) and own in known:
        return own
    address = data.get("image")
    if not isinstance(address, str) or not address:
        raise DalkitError(f"task {number} of {path} has no data.image; export the tasks dalkit wrote.")
    parsed = urlparse(address)
    name = parse_qs(parsed.query).get("d", [parsed.path])[0]
    name = PurePosixPath(unquote(name)).name
    candidates = by_name.get(name) or []
    if not candidates and UPLOAD_PREFIX.match(name):
        candidates = by_name.get(UPLOAD_PREFIX.match(name).group(1)) or []
    if len(candidates) > 1:
        raise DalkitError(
            f"task {number} of {path} names {name}, and {len(candidates)} project images have that name "
            f"({', '.join(candidates[:3])}); import tasks that dalkit exported (they carry dalkit_image)."
        )
    if not candidates:
        raise DalkitError(
            f"image {name} (task {number} of {path}) is not in this project; export this project's tasks."
        )
    return candidates[0]
