"""A labelling project: a person labels what dalkit asks for, dalkit retrains and asks again.

A project is a folder (`project.sqlite`, `model.pt`, `to_label.csv`) tied to a folder of unlabelled images
and a list of classes. Each round (`ask`) trains a fresh model on every label given so far, scores the
unlabelled images with the project's strategy and asks for the `budget` most useful ones: in `to_label.csv`
(fill in the label column) and on the web page (`dalkit.project.web`). The first round, with nothing labelled,
asks for a uniformly random sample: a model trained on nothing has nothing to rank by.

The engine is the benchmark's (`dalkit.engine`): the same models, heads, objectives, seeds and strategies.
What a person gave is never lost: labels go to SQLite as they are given (see `store`), a filled-in
`to_label.csv` is imported before it is replaced, and an import is all-or-nothing, so a broken file changes
nothing.
"""

from __future__ import annotations

import csv
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from dalkit.data import AugmentSpec, Pool
from dalkit.data.augment import Normalizer
from dalkit.data.base import channel_stats, images_from_nhwc
from dalkit.data.folder import PIL_MODES, image_files, read_image
from dalkit.engine import Engine, EngineSpec
from dalkit.errors import DalkitError
from dalkit.features import predict
from dalkit.models import model_entry
from dalkit.models.base import model_input
from dalkit.models.saved import load_classifier, save_classifier
from dalkit.project.store import DATABASE, MODEL_FILE, QUESTIONS_CSV, LabelStore
from dalkit.runtime import inference_batch_size
from dalkit.seeding import derive_seed, resolve_device
from dalkit.strategies import create_strategy
from dalkit.train import TrainConfig


@dataclass
class ProjectSettings:
    """What a project is: its images, classes, and how it trains and asks."""

    images: str
    classes: list[str]
    model: str = "resnet18"
    model_options: dict = field(default_factory=dict)
    strategy: str = "margin"
    strategy_options: dict = field(default_factory=dict)
    budget: int = 20
    image_size: int = 32
    channels: int = 3
    epochs: int | None = None  # None: the model's default schedule
    seed: int = 0
    device: str = "auto"

    def validate(self) -> None:
        classes = [c.strip() for c in self.classes]
        if len(classes) < 2 or any(not c for c in classes) or len(set(classes)) != len(classes):
            raise DalkitError(
                f"a project needs at least two distinct, non-empty class names (got {self.classes}); "
                "pass e.g. --classes cat,dog."
            )
        if self.budget < 1:
            raise DalkitError(f"--budget must be at least 1 (got {self.budget}).")
        if self.channels not in PIL_MODES:
            raise DalkitError(f"--channels must be 1 or 3 (got {self.channels}).")
        if self.image_size < 8:
            raise DalkitError(f"--image-size must be at least 8 pixels (got {self.image_size}).")
        model_entry(self.model)
        create_strategy(self.strategy, **self.strategy_options)


@dataclass
class Round:
    """One round of questions: image paths in the order asked, with the strategy's scores and model's guesses."""

    number: int
    paths: list[str]
    scores: list[float | None]
    guesses: list[str | None]
    seconds: float


@dataclass
class ProjectImages:
    """The readable images of a project, as one uint8 tensor, with their store ids and paths."""

    ids: np.ndarray
    paths: list[str]
    pixels: torch.Tensor  # (N, C, H, W) uint8
    unreadable: list[str]


class Project:
    """One labelling project on disk; see the module docstring."""

    def __init__(self, directory: Path, store: LabelStore, settings: ProjectSettings) -> None:
        self.directory = directory
        self.store = store
        self.settings = settings

    # -- creating and opening -------------------------------------------------------------------------------

    @classmethod
    def create(cls, directory: str | Path, images: str | Path, classes: Sequence[str], **options) -> Project:
        """A new project in `directory` (created; refused if it holds a project) over the image folder `images`."""
        directory = Path(directory)
        if (directory / DATABASE).exists():
            raise DalkitError(f"{directory} already holds a project; open it, or choose another folder.")
        images = Path(images).expanduser().resolve()
        if not images.is_dir():
            raise DalkitError(f"image folder {images} was not found; pass --images pointing at your images.")
        settings = ProjectSettings(str(images), [c.strip() for c in classes], **options)
        settings.validate()
        if not image_files(images):
            raise DalkitError(f"{images} holds no image file; add images (.png, .jpg, ...) or pass another --images.")
        directory.mkdir(parents=True, exist_ok=True)
        project = cls(directory, LabelStore(directory / DATABASE), settings)
        project.store.set_meta("settings", asdict(settings))
        project.scan()
        return project

    @classmethod
    def open(cls, directory: str | Path) -> Project:
        directory = Path(directory)
        if not (directory / DATABASE).is_file():
            raise DalkitError(f"{directory} holds no dalkit project; create one with `dalkit project create`.")
        store = LabelStore(directory / DATABASE)
        return cls(directory, store, ProjectSettings(**store.get_meta("settings")))

    def close(self) -> None:
        self.store.close()

    def scan(self) -> int:
        """Register the images in the folder that are new since the last scan; returns the number of images."""
        root = Path(self.settings.images)
        if not root.is_dir():
            raise DalkitError(f"the project's image folder {root} is gone; put it back (its labels are kept).")
        self.store.add_images(path.relative_to(root).as_posix() for path in image_files(root))
        return len(self.store.images())

    # -- labels ---------------------------------------------------------------------------------------------

    def record_labels(self, pairs: Sequence[tuple[str, str]], source: str) -> int:
        """Record (image path, class name) pairs; all are checked first, then kept together. Returns how many
        changed an image's label (giving an image its current label again records nothing)."""
        ids = {path: image_id for image_id, path in self.store.images()}
        current = self.store.current_labels()
        new = []
        for path, label in pairs:
            if path not in ids:
                raise DalkitError(f"image {path!r} is not in this project; use the paths of {QUESTIONS_CSV}.")
            if label not in self.settings.classes:
                raise DalkitError(
                    f"{label!r} (for {path}) is not a class of this project; use one of: "
                    f"{', '.join(self.settings.classes)}."
                )
            if current.get(ids[path]) != label:
                new.append((ids[path], label))
        self.store.add_labels(new, source)
        return len(new)

    def import_csv(self, path: str | Path) -> int:
        """Labels from a CSV with `image` and `label` columns (empty labels skipped); all-or-nothing."""
        return self.record_labels(read_label_csv(Path(path)), source=f"csv:{Path(path).name}")

    def labels(self) -> dict[str, str]:
        """Image path -> its current label."""
        paths = dict(self.store.images())
        return {paths[i]: label for i, label in self.store.current_labels().items()}

    # -- asking ---------------------------------------------------------------------------------------------

    def read_images(self) -> ProjectImages:
        """Every registered image, read and resized; unreadable files are left out and listed, not fatal."""
        s, root = self.settings, Path(self.settings.images)
        ids, paths, arrays, unreadable = [], [], [], []
        for image_id, path in self.store.images():
            try:
                arrays.append(read_image(root / path, s.image_size, PIL_MODES[s.channels]))
            except DalkitError:
                unreadable.append(path)
                continue
            ids.append(image_id)
            paths.append(path)
        if not arrays:
            raise DalkitError(f"no image of {root} could be read; check the files.")
        pixels = np.stack(arrays).reshape(len(arrays), s.image_size, s.image_size, s.channels)
        return ProjectImages(np.array(ids), paths, images_from_nhwc(pixels), unreadable)

    def ask(self, budget: int | None = None, log: Callable[[str], None] = print, progress: bool = True) -> Round:
        """Train on the labels so far and ask for the next `budget` images (the project's budget by default).

        A filled-in `to_label.csv` is imported first, so its labels are not lost when it is replaced.
        """
        start = time.perf_counter()
        s = self.settings
        budget = s.budget if budget is None else budget
        questions_csv = self.directory / QUESTIONS_CSV
        if questions_csv.exists():
            imported = self.import_csv(questions_csv)
            if imported:
                log(f"imported {imported} label(s) from {questions_csv}")
        self.scan()
        data = self.read_images()
        if data.unreadable:
            log(f"{len(data.unreadable)} image(s) could not be read and are left out: {', '.join(data.unreadable[:5])}")
        pool = self.pool(data)
        unlabelled = pool.unlabelled_indices()
        if not len(unlabelled):
            raise DalkitError("every image of the project is labelled; add images to the folder to go on.")
        if budget > len(unlabelled):
            raise DalkitError(
                f"only {len(unlabelled)} image(s) are unlabelled, fewer than the budget of {budget}; "
                f"pass --budget {len(unlabelled)}."
            )
        round_number = self.store.last_round() + 1
        device = resolve_device(s.device)
        if pool.num_labelled:
            log(f"round {round_number}: training {s.model} on {pool.num_labelled} labelled image(s)")
            picks, scores, guesses = self.select(data, pool, budget, round_number, device, progress)
        else:
            log(f"round {round_number}: nothing is labelled yet, so the first images are a random sample")
            rng = np.random.default_rng(derive_seed(s.seed, round_number))
            picks, scores, guesses = (
                rng.choice(unlabelled, size=budget, replace=False),
                [None] * budget,
                [None] * budget,
            )
        self.store.add_questions([(int(data.ids[i]), sc, g) for i, sc, g in zip(picks, scores, guesses)])
        asked = Round(round_number, [data.paths[i] for i in picks], scores, guesses, time.perf_counter() - start)
        write_questions_csv(questions_csv, asked)
        return asked

    def pool(self, data: ProjectImages) -> Pool:
        """A Pool over the readable images, labelled with the current labels (as class numbers)."""
        pool = Pool(len(data.ids))
        position = {image_id: k for k, image_id in enumerate(data.ids.tolist())}
        labelled = [(position[i], label) for i, label in self.store.current_labels().items() if i in position]
        if labelled:
            indices, names = zip(*labelled)
            pool.label(np.array(indices), np.array([self.settings.classes.index(n) for n in names]), cycle=0)
        return pool

    def engine(self, data: ProjectImages, device: torch.device, progress: bool) -> Engine:
        """The benchmark's engine, on the project's images: its model, strategy and a fresh-model schedule."""
        s = self.settings
        return Engine(
            EngineSpec(
                num_classes=len(s.classes),
                image_shape=tuple(data.pixels.shape[1:]),
                normalizer=Normalizer(*channel_stats(data.pixels)),
                augment=AugmentSpec(crop_padding=s.image_size // 8, flip=True),
                train=TrainConfig.from_defaults(model_entry(s.model).train_defaults, epochs=s.epochs),
                model=s.model,
                model_options=s.model_options,
                strategy=s.strategy,
                strategy_options=s.strategy_options,
                seed=s.seed,
                device=device,
                progress=progress,
            )
        )

    def select(
        self, data: ProjectImages, pool: Pool, budget: int, round_number: int, device: torch.device, progress: bool
    ) -> tuple[np.ndarray, list[float | None], list[str | None]]:
        """Train a fresh model on the labelled images, then let the strategy pick among the unlabelled ones."""
        s = self.settings
        engine = self.engine(data, device, progress)
        model = engine.new_model(round_number)
        images = data.pixels.to(device)
        unlabelled = pool.unlabelled_indices()
        engine.fit(model, images, pool, round_number, unlabelled)
        save_classifier(
            self.directory / MODEL_FILE,
            model,
            s.model,
            s.model_options,
            tuple(data.pixels.shape[1:]),
            s.classes,
            engine.normalizer,
        )
        selection, ctx = engine.query(model, images, pool, unlabelled, budget, round_number)
        probs = ctx.outputs("candidates").probs
        guesses = probs[torch.from_numpy(np.searchsorted(unlabelled, selection.indices))].argmax(1).tolist()
        scores = [None] * budget if selection.scores is None else [float(x) for x in selection.scores]
        return selection.indices, scores, [s.classes[g] for g in guesses]

    # -- reports --------------------------------------------------------------------------------------------

    def rounds(self) -> list[dict]:
        """Per round: images asked, how many have a label now, and how often the model's guess was that label."""
        current = self.store.current_labels()
        summary = []
        for number in range(1, self.store.last_round() + 1):
            asked = self.store.questions(number)
            answered = [(current[i], guess) for i, _, guess in asked if i in current]
            judged = [label == guess for label, guess in answered if guess is not None]
            agreement = sum(judged) / len(judged) if judged else None
            summary.append({"round": number, "asked": len(asked), "labelled": len(answered), "agreement": agreement})
        return summary

    def class_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(self.settings.classes, 0)
        for label in self.store.current_labels().values():
            counts[label] += 1
        return counts

    def predictions(self) -> dict[str, tuple[str, float]]:
        """Image path -> (class, probability) by the last round's model, for every readable image ({} before
        the first trained round)."""
        if not (self.directory / MODEL_FILE).is_file():
            return {}
        device = resolve_device(self.settings.device)
        saved = load_classifier(self.directory / MODEL_FILE, device)
        data = self.read_images()
        size = inference_batch_size(device)
        batches = (
            model_input(saved.normalizer(data.pixels[k : k + size].to(device))) for k in range(0, len(data.ids), size)
        )
        confidence, predicted = predict(saved.model, batches, device).probs.max(1)
        return {
            path: (self.settings.classes[c], p)
            for path, c, p in zip(data.paths, predicted.tolist(), confidence.tolist())
        }

    def export_csv(self, path: str | Path) -> Path:
        """Every image: its label if it has one, and the last round's model's prediction and probability."""
        labels, predicted = self.labels(), self.predictions()
        rows = [("image", "label", "prediction", "probability")]
        for _, image in self.store.images():
            guess, probability = predicted.get(image, ("", None))
            rows.append((image, labels.get(image, ""), guess, "" if probability is None else f"{probability:.4f}"))
        path = Path(path)
        write_atomically(path, rows)
        return path


def read_label_csv(path: Path) -> list[tuple[str, str]]:
    """(image, label) rows of a CSV whose header has `image` and `label` columns; empty labels are skipped.

    Commas, semicolons (what spreadsheets save in many locales) and tabs all separate cells; the header says which.
    """
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            header = handle.readline()
            handle.seek(0)
            delimiter = max(",;\t", key=header.count)
            reader = csv.DictReader(handle, delimiter=delimiter)
            if reader.fieldnames is None or not {"image", "label"} <= set(reader.fieldnames):
                raise DalkitError(
                    f"{path} needs a header with 'image' and 'label' columns (found {reader.fieldnames}); "
                    f"keep the header of {QUESTIONS_CSV}."
                )
            rows = [(row["image"], row["label"], reader.line_num) for row in reader]
    except FileNotFoundError:
        raise DalkitError(f"{path} does not exist; give the CSV you filled in.") from None
    except (csv.Error, UnicodeDecodeError) as error:
        raise DalkitError(f"{path} is not a readable UTF-8 CSV ({error}); save it as CSV (UTF-8) and retry.") from None
    pairs: dict[str, str] = {}
    for image, label, line in rows:
        if image is None or label is None:
            raise DalkitError(f"line {line} of {path} has fewer cells than the header; fix that line.")
        image, label = image.strip(), label.strip()
        if not label:
            continue
        if pairs.get(image, label) != label:
            raise DalkitError(f"line {line} of {path} labels {image} {label!r} but an earlier line {pairs[image]!r}.")
        pairs[image] = label
    return list(pairs.items())


def write_questions_csv(path: Path, asked: Round) -> None:
    """to_label.csv: the round's images in the order asked, with an empty label column to fill in."""
    rows = [("image", "label", "model_guess", "score", "round")]
    rows += [
        (p, "", g or "", "" if sc is None else f"{sc:.6g}", asked.number)
        for p, g, sc in zip(asked.paths, asked.guesses, asked.scores)
    ]
    write_atomically(path, rows)


def write_atomically(path: Path, rows: list[tuple]) -> None:
    """Write a CSV through a temporary file and a rename, so a crash leaves the old file or the new, whole."""
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)
    os.replace(temporary, path)
