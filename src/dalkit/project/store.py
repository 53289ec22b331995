"""A labelling project's records in one SQLite file: images, every label a person gave, every question asked.

Why SQLite: each label is committed the moment it is given (one transaction, write-ahead log), so a crash,
a closed browser or a killed process never loses a label already given; two writers (the web page and an
import) cannot corrupt the file; and the records stay readable with any SQLite tool. The database is the one
source of truth: a CSV is an input to it, never a second copy that could win over it.

Every write is one `BEGIN IMMEDIATE` transaction that also makes its checks (is the image in that round? was it
labelled after this CSV was saved? is it labelled by now?), so a check and the write it allows cannot be
separated by another writer.

Tables:
- `meta(key, value)`: the project's settings and classes, as JSON.
- `images(id, path)`: the project's images, by path relative to the image folder; ids never change.
- `labels(id, image_id, label, source, given_at)`: append-only. An image's label is its latest row;
  a correction adds a row, so the history of every image is kept. An empty label is a label taken back (the
  page's undo): the image is unlabelled again. `source` names the web page's labeller (`web:NAME`).
- `questions(round, image_id, rank, score, guess, asked_at)`: what dalkit asked in each round, with the
  model's guess, so a later label can be compared with the guess made before it was known.
- `predictions(round, image_id, guess, probability)`: every readable image's class by the model a round trained,
  stored when it asked, so `status` and `export` read them without loading the model (or torch).
- `answers(id, image_id, round, answer, name, given_at)`: append-only, the page's answers that are not a label:
  `skip` or `unsure` sets the image aside for that round (not asked again in it, not counted as a label); an
  empty answer takes that back (undo, or a label given since). An image's answer in a round is its latest row.
- `web_requests(labeller, seq, image_id, label, round, answered_at)`: each label request of the web page, by
  the page's labeller id and its sequence number, so a retried request is recorded once (round 0: a
  correction in the page's labelled-set view).
- `estimates(round, accuracy, method, labels, folds, model_round, scored)`: the accuracy estimate a trained round made
  from the labelled images (see `dalkit.project.estimate`; accuracy NULL: not enough labels), committed with
  the round. Added after the first projects: `CREATE TABLE IF NOT EXISTS` gives an older database the empty
  table when it is opened, and its status says that no estimate was made yet.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

from dalkit.errors import DalkitError
from dalkit.project.estimate import Estimate

# A project folder's files.
DATABASE = "project.sqlite"
QUESTIONS_CSV = "to_label.csv"
MODEL_FILE = "model.pt"
ASK_LOCK = "ask.lock"

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
CREATE TABLE IF NOT EXISTS web_requests (
    labeller TEXT NOT NULL,
    seq INTEGER NOT NULL,
    image_id INTEGER NOT NULL REFERENCES images(id),
    label TEXT NOT NULL,
    round INTEGER NOT NULL,
    answered_at TEXT NOT NULL,
    PRIMARY KEY (labeller, seq)
);
CREATE TABLE IF NOT EXISTS predictions (
    round INTEGER NOT NULL,
    image_id INTEGER NOT NULL REFERENCES images(id),
    guess TEXT NOT NULL,
    probability REAL NOT NULL,
    PRIMARY KEY (round, image_id)
);
CREATE TABLE IF NOT EXISTS answers (
    id INTEGER PRIMARY KEY,
    image_id INTEGER NOT NULL REFERENCES images(id),
    round INTEGER NOT NULL,
    answer TEXT NOT NULL,
    name TEXT NOT NULL,
    given_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS estimates (
    round INTEGER PRIMARY KEY,
    accuracy REAL,
    method TEXT NOT NULL,
    labels INTEGER NOT NULL,
    folds INTEGER,
    model_round INTEGER,
    scored INTEGER
);
CREATE INDEX IF NOT EXISTS labels_by_image ON labels(image_id, id);
"""

# What `add_web_label` found: the label was recorded (or was the image's label already), the request was
# one already recorded (a retry), a later request of the same page already labelled the image, the image
# was not asked in the round the request names, or a correction named an image that has no label.
RECORDED, UNCHANGED, DUPLICATE, SUPERSEDED, NOT_IN_ROUND = "recorded", "unchanged", "duplicate", "superseded", "round"
NOT_LABELLED = "unlabelled"
# The round a correction names: the page's labelled-set view may change the label of any labelled image.
CORRECTION = 0

# Each image's latest label row, a taken-back (empty) label included; LATEST_LABELS: only the real labels.
LATEST_ROWS = "SELECT image_id, label, given_at FROM labels WHERE id IN (SELECT MAX(id) FROM labels GROUP BY image_id)"
LATEST_LABELS = LATEST_ROWS + " AND label != ''"
LATEST_ANSWERS = (
    "SELECT image_id, answer FROM answers WHERE id IN "
    "(SELECT MAX(id) FROM answers WHERE round = ? GROUP BY image_id) AND answer != ''"
)
# What a page's request sets an image to: a class (`label`), set aside (`skip`, `unsure`), or nothing (`none`).
WEB_ANSWERS = ("label", "skip", "unsure", "none")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def timestamp(text: str) -> datetime:
    """A `given_at`/`asked_at` stamp as an aware datetime (older projects stored whole seconds)."""
    return datetime.fromisoformat(text)


class LabelStore:
    """The SQLite file of one project; every write is its own committed transaction.

    `setup=False` skips creating the tables (the web server opens one short connection per request, after
    `Project.open` has set the file up)."""

    def __init__(self, path: Path, setup: bool = True) -> None:
        self.path = Path(path)
        try:
            # isolation_level=None: no implicit transactions; `transaction()` opens each one explicitly.
            self.db = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
            if setup:
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.executescript(SCHEMA)
        except sqlite3.DatabaseError as error:
            raise DalkitError(
                f"{self.path} is not a dalkit project database ({error}); give the project's own folder."
            ) from None

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once (BEGIN IMMEDIATE), so what it reads cannot change before it writes."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def get_meta(self, key: str) -> object:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def set_meta(self, key: str, value: object) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def add_images(self, paths: Iterable[str]) -> int:
        """Register image paths (relative, '/'-separated); known ones are kept as they are. Returns how many are new."""
        rows = [(p,) for p in paths]
        with self.transaction() as db:
            before = db.total_changes
            db.executemany("INSERT OR IGNORE INTO images(path) VALUES (?)", rows)
            return db.total_changes - before

    def images(self) -> list[tuple[int, str]]:
        """(id, path) of every image, by id."""
        return self.db.execute("SELECT id, path FROM images ORDER BY id").fetchall()

    def image_id(self, path: str) -> int | None:
        row = self.db.execute("SELECT id FROM images WHERE path = ?", (path,)).fetchone()
        return None if row is None else row[0]

    def image_path(self, image_id: int) -> str | None:
        row = self.db.execute("SELECT path FROM images WHERE id = ?", (image_id,)).fetchone()
        return None if row is None else row[0]

    def add_labels(self, pairs: Sequence[tuple[int, str]], source: str) -> None:
        """Record (image id, label) pairs in one transaction: all of them are kept, or none."""
        stamp = now()
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO labels(image_id, label, source, given_at) VALUES (?, ?, ?, ?)",
                [(image_id, label, source, stamp) for image_id, label in pairs],
            )

    def record_labels(
        self, pairs: Sequence[tuple[int, str]], source: str, saved_at: datetime | None = None
    ) -> tuple[int, list[int]]:
        """Record the (image id, label) pairs that change an image's label, in one transaction. With `saved_at`
        (when the file they come from was last saved), a pair is refused if the image's current label differs
        and was given after that moment: an older file never overrides a newer label. Returns (how many were
        recorded, the refused image ids)."""
        stamp, changed, refused = now(), [], []
        with self.transaction() as db:
            current = {i: (label, given) for i, label, given in db.execute(LATEST_ROWS)}
            for image_id, label in pairs:
                label_now, given_at = current.get(image_id, (None, None))
                if label_now == label:
                    continue
                if saved_at is not None and given_at is not None and timestamp(given_at) > saved_at:
                    refused.append(image_id)
                    continue
                changed.append((image_id, label, source, stamp))
            db.executemany("INSERT INTO labels(image_id, label, source, given_at) VALUES (?, ?, ?, ?)", changed)
        return len(changed), refused

    def add_web_label(
        self,
        labeller: str,
        seq: int,
        image_id: int,
        label: str,
        round_number: int,
        answer: str = "label",
        name: str = "",
    ) -> str:
        """One answer from the web page, checked and recorded in one transaction; returns what happened (RECORDED,
        UNCHANGED, DUPLICATE, SUPERSEDED, NOT_IN_ROUND or NOT_LABELLED: see above). The last two leave no trace.

        `answer` says what the request sets the image to (see WEB_ANSWERS): the class `label`; `skip` or `unsure`
        (set aside for this round, its label, if any, taken back); or `none` (no label and no answer: the
        page's undo of the first answer). Each change is a new row, so the history is kept; `name` is the
        person's name the page asked for, recorded with it. Round `CORRECTION` changes the class of an image
        that has a label, whatever round asked for it (NOT_LABELLED if it has none)."""
        with self.transaction() as db:
            row = db.execute("SELECT label FROM labels WHERE image_id = ? ORDER BY id DESC LIMIT 1", (image_id,))
            label_now = (row.fetchone() or ("",))[0]
            if round_number == CORRECTION:
                if answer != "label" or not label_now:
                    return NOT_LABELLED
            else:
                asked = db.execute("SELECT 1 FROM questions WHERE round = ? AND image_id = ?", (round_number, image_id))
                if asked.fetchone() is None:
                    return NOT_IN_ROUND
            known = db.execute("SELECT 1 FROM web_requests WHERE labeller = ? AND seq = ?", (labeller, seq))
            if known.fetchone() is not None:
                return DUPLICATE
            stamp = now()
            db.execute(
                "INSERT INTO web_requests VALUES (?, ?, ?, ?, ?, ?)",
                (labeller, seq, image_id, label if answer == "label" else f"<{answer}>", round_number, stamp),
            )
            later = db.execute(
                "SELECT 1 FROM web_requests WHERE labeller = ? AND image_id = ? AND seq > ?", (labeller, image_id, seq)
            )
            if later.fetchone() is not None:
                return SUPERSEDED
            row = db.execute(
                "SELECT answer FROM answers WHERE image_id = ? AND round = ? ORDER BY id DESC LIMIT 1",
                (image_id, round_number),
            )
            answer_now = (row.fetchone() or ("",))[0]
            wanted_label = label if answer == "label" else ""
            wanted_answer = answer if answer in ("skip", "unsure") else ""
            if (label_now, answer_now) == (wanted_label, wanted_answer):
                return UNCHANGED
            source = f"web:{name}" if name else "web"
            if label_now != wanted_label:
                db.execute(
                    "INSERT INTO labels(image_id, label, source, given_at) VALUES (?, ?, ?, ?)",
                    (image_id, wanted_label, source, stamp),
                )
            if answer_now != wanted_answer:
                db.execute(
                    "INSERT INTO answers(image_id, round, answer, name, given_at) VALUES (?, ?, ?, ?, ?)",
                    (image_id, round_number, wanted_answer, name, stamp),
                )
            return RECORDED

    def set_aside(self, round_number: int) -> dict[int, str]:
        """Image id -> `skip` or `unsure`, for the images of a round that the page set aside (not labels)."""
        return dict(self.db.execute(LATEST_ANSWERS, (round_number,)).fetchall())

    def current_labels(self) -> dict[int, str]:
        """Each labelled image's latest label."""
        return {image_id: label for image_id, label, _ in self.db.execute(LATEST_LABELS)}

    def label_counts(self) -> dict[str, int]:
        """How many images have each label now, counted by SQLite (every label request answers with it)."""
        return dict(self.db.execute(f"SELECT label, COUNT(*) FROM ({LATEST_LABELS}) GROUP BY label"))

    def labelled(self, label: str | None = None) -> list[tuple[int, str, str, str]]:
        """(image id, label, source, given_at) of every labelled image (only those of class `label`, if given),
        the latest labelled first."""
        query = (
            "SELECT image_id, label, source, given_at FROM labels WHERE id IN (SELECT MAX(id) FROM labels GROUP BY "
            "image_id) AND label != '' AND (? IS NULL OR label = ?) ORDER BY id DESC"
        )
        return self.db.execute(query, (label, label)).fetchall()

    def label_history(self, image_id: int) -> list[tuple[str, str, str]]:
        """(label, source, given_at) of every label the image was given, oldest first."""
        query = "SELECT label, source, given_at FROM labels WHERE image_id = ? ORDER BY id"
        return self.db.execute(query, (image_id,)).fetchall()

    def last_round(self) -> int:
        """The latest round of questions, 0 if none was asked yet."""
        return self.db.execute("SELECT COALESCE(MAX(round), 0) FROM questions").fetchone()[0]

    def add_questions(
        self,
        rows: Sequence[tuple[int, float | None, str | None]],
        predictions: Sequence[tuple[int, str, float]] = (),
        estimate: Estimate | None = None,
    ) -> tuple[int, list[tuple[int, float | None, str | None]]]:
        """Record a new round: (image id, score, guess) in the order asked, leaving out every image that is
        labelled by the moment the round is committed, the (image id, class, probability) predictions of the
        model it trained and its accuracy estimate. Returns the round number and the rows kept (none are
        recorded, and the round number is not used, when no row is left)."""
        with self.transaction() as db:
            round_number, stamp = self.last_round() + 1, now()
            labelled = {image_id for image_id, _, _ in db.execute(LATEST_LABELS)}
            kept = [row for row in rows if row[0] not in labelled]
            db.executemany(
                "INSERT INTO questions VALUES (?, ?, ?, ?, ?, ?)",
                [(round_number, i, rank, score, guess, stamp) for rank, (i, score, guess) in enumerate(kept)],
            )
            if kept:
                db.executemany(
                    "INSERT INTO predictions VALUES (?, ?, ?, ?)",
                    [(round_number, i, guess, probability) for i, guess, probability in predictions],
                )
                if estimate is not None:
                    db.execute(
                        "INSERT INTO estimates VALUES "
                        "(:round, :accuracy, :method, :labels, :folds, :model_round, :scored)",
                        {**asdict(estimate), "round": round_number},
                    )
        return round_number, kept

    def questions(self, round_number: int) -> list[tuple[int, float | None, str | None]]:
        """(image id, score, guess) of one round, in the order asked."""
        query = "SELECT image_id, score, guess FROM questions WHERE round = ? ORDER BY rank"
        return self.db.execute(query, (round_number,)).fetchall()

    def latest_predictions(self) -> dict[int, tuple[str, float]]:
        """Image id -> (class, probability) by the latest round that stored predictions ({} if none did)."""
        query = (
            "SELECT image_id, guess, probability FROM predictions WHERE round = (SELECT MAX(round) FROM predictions)"
        )
        return {i: (guess, p) for i, guess, p in self.db.execute(query)}

    def latest_scores(self) -> list[tuple[int, int, float | None]]:
        """(image id, round, score) of the latest round that asked about each image ever asked."""
        query = (
            "SELECT image_id, round, score FROM questions WHERE (image_id, round) IN "
            "(SELECT image_id, MAX(round) FROM questions GROUP BY image_id)"
        )
        return self.db.execute(query).fetchall()

    def latest_estimate(self) -> Estimate | None:
        """The accuracy estimate of the latest round that made one (None if none did)."""
        row = self.db.execute(
            "SELECT accuracy, method, labels, folds, model_round, round, scored FROM estimates "
            "ORDER BY round DESC LIMIT 1"
        ).fetchone()
        return None if row is None else Estimate(*row)

    def asked_at_random(self) -> set[int]:
        """Ids of the images asked in rounds that no model chose (rounds that stored no predictions: the first one,
        before any label, is a uniform sample of the images)."""
        query = "SELECT image_id FROM questions WHERE round NOT IN (SELECT round FROM predictions)"
        return {image_id for (image_id,) in self.db.execute(query)}

    def hit_rate(self) -> tuple[int | None, int, int]:
        """(round, images, right): the latest round that stored predictions, how many images got their first label
        after it was asked (so its model guessed them unseen), and how many of those its model guessed right."""
        latest = self.db.execute("SELECT MAX(round) FROM predictions").fetchone()[0]
        if latest is None:
            return None, 0, 0
        asked_at = self.db.execute("SELECT MIN(asked_at) FROM questions WHERE round = ?", (latest,)).fetchone()[0]
        query = (
            f"SELECT COUNT(*), COALESCE(SUM(p.guess = l.label), 0) FROM ({LATEST_LABELS}) AS l "
            "JOIN predictions AS p ON p.image_id = l.image_id AND p.round = ? "
            "WHERE NOT EXISTS (SELECT 1 FROM labels AS o WHERE o.image_id = l.image_id AND o.given_at <= ?)"
        )
        images, right = self.db.execute(query, (latest, asked_at)).fetchone()
        return latest, images, right
