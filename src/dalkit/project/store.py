"""A labelling project's records in one SQLite file: images, every label a person gave, every question asked.

Why SQLite: each label is committed the moment it is given (one transaction, write-ahead log), so a crash,
a closed browser or a killed process never loses a label already given; two writers (the web page and an
import) cannot corrupt the file; and the records stay readable with any SQLite tool.

Tables:
- `meta(key, value)`: the project's settings and classes, as JSON.
- `images(id, path)`: the project's images, by path relative to the image folder; ids never change.
- `labels(id, image_id, label, source, given_at)`: append-only. An image's label is its latest row;
  a correction adds a row, so the history of every image is kept.
- `questions(round, image_id, rank, score, guess, asked_at)`: what dalkit asked in each round, with the
  model's guess, so a later label can be compared with the guess made before it was known.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path

from dalkit.errors import DalkitError

# A project folder's files.
DATABASE = "project.sqlite"
QUESTIONS_CSV = "to_label.csv"
MODEL_FILE = "model.pt"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS labels (
    id INTEGER PRIMARY KEY,
    image_id INTEGER NOT NULL REFERENCES images(id),
    label TEXT NOT NULL,
    source TEXT NOT NULL,
    given_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS questions (
    round INTEGER NOT NULL,
    image_id INTEGER NOT NULL REFERENCES images(id),
    rank INTEGER NOT NULL,
    score REAL,
    guess TEXT,
    asked_at TEXT NOT NULL,
    PRIMARY KEY (round, image_id)
);
CREATE INDEX IF NOT EXISTS labels_by_image ON labels(image_id, id);
"""


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class LabelStore:
    """The SQLite file of one project; every write is its own committed transaction."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self.db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.executescript(SCHEMA)
        except sqlite3.DatabaseError as error:
            raise DalkitError(
                f"{self.path} is not a dalkit project database ({error}); give the project's own folder."
            ) from None

    def close(self) -> None:
        self.db.close()

    def get_meta(self, key: str) -> object:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def set_meta(self, key: str, value: object) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def add_images(self, paths: Iterable[str]) -> int:
        """Register image paths (relative, '/'-separated); known ones are kept as they are. Returns how many are new."""
        with self.db:
            before = self.db.total_changes
            self.db.executemany("INSERT OR IGNORE INTO images(path) VALUES (?)", [(p,) for p in paths])
            return self.db.total_changes - before

    def images(self) -> list[tuple[int, str]]:
        """(id, path) of every image, by id."""
        return self.db.execute("SELECT id, path FROM images ORDER BY id").fetchall()

    def add_labels(self, pairs: Sequence[tuple[int, str]], source: str) -> None:
        """Record (image id, label) pairs in one transaction: all of them are kept, or none."""
        stamp = now()
        with self.db:
            self.db.executemany(
                "INSERT INTO labels(image_id, label, source, given_at) VALUES (?, ?, ?, ?)",
                [(image_id, label, source, stamp) for image_id, label in pairs],
            )

    def current_labels(self) -> dict[int, str]:
        """Each labelled image's latest label."""
        rows = self.db.execute(
            "SELECT image_id, label FROM labels WHERE id IN (SELECT MAX(id) FROM labels GROUP BY image_id)"
        )
        return dict(rows.fetchall())

    def label_history(self, image_id: int) -> list[tuple[str, str, str]]:
        """(label, source, given_at) of every label the image was given, oldest first."""
        query = "SELECT label, source, given_at FROM labels WHERE image_id = ? ORDER BY id"
        return self.db.execute(query, (image_id,)).fetchall()

    def last_round(self) -> int:
        """The latest round of questions, 0 if none was asked yet."""
        return self.db.execute("SELECT COALESCE(MAX(round), 0) FROM questions").fetchone()[0]

    def add_questions(self, rows: Sequence[tuple[int, float | None, str | None]]) -> int:
        """Record a new round: (image id, score, guess) in the order asked. Returns the round number."""
        round_number, stamp = self.last_round() + 1, now()
        with self.db:
            self.db.executemany(
                "INSERT INTO questions VALUES (?, ?, ?, ?, ?, ?)",
                [(round_number, i, rank, score, guess, stamp) for rank, (i, score, guess) in enumerate(rows)],
            )
        return round_number

    def questions(self, round_number: int) -> list[tuple[int, float | None, str | None]]:
        """(image id, score, guess) of one round, in the order asked."""
        query = "SELECT image_id, score, guess FROM questions WHERE round = ? ORDER BY rank"
        return self.db.execute(query, (round_number,)).fetchall()
