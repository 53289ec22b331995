"""A labelling project: a person labels what dalkit asks for, dalkit retrains and asks again.

A project is a folder (`project.sqlite`, `model.pt`, `to_label.csv`) tied to a folder of unlabelled images
and a list of classes. Each round (`ask`) trains a fresh model on every label given so far, scores the
unlabelled images with the project's strategy and asks for the `budget` most useful ones: in `to_label.csv`
(fill in the label column) and on the web page (`dalkit.project.web`). The first round, with nothing labelled,
asks for a uniformly random sample: a model trained on nothing has nothing to rank by.

The engine is the benchmark's (`dalkit.engine`): the same models, heads, objectives, seeds and strategies.
What a person gave is never lost: labels go to SQLite as they are given (see `store`), a filled-in
`to_label.csv` is imported before it is replaced, and an import is all-or-nothing, so a broken file changes
nothing. The database is the one source of truth: a CSV row never overrides a label given after the file was
last saved (such rows are refused and named). One `ask` runs at a time per project (a lock file; a second one
refuses in a sentence), and its round is committed in one transaction that leaves out every image labelled by
then, with an estimate of the trained model's accuracy made from the labelled images (see `estimate`). Only
regular files inside the image folder are registered, read or served: a link that leaves it is ignored.
`to_label.csv`, exports and `model.pt` are written to a temporary file and renamed into place.
"""

from __future__ import annotations

import csv
import os
import stat
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dalkit.errors import DalkitError
from dalkit.files import atomic_file
from dalkit.project.estimate import CROSS_VALIDATION, FOLD_SEED, HIT_RATE, MIN_SCORED, Estimate, stratified_folds
from dalkit.project.store import ASK_LOCK, DATABASE, MODEL_FILE, QUESTIONS_CSV, LabelStore

if TYPE_CHECKING:  # torch and the engine are imported where they are used: `status` and `export` need neither
    import torch

    from dalkit.data import Pool
    from dalkit.engine import Engine


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
        from dalkit.data.folder import PIL_MODES
        from dalkit.models import model_entry
        from dalkit.strategies import create_strategy

        classes = [c.strip() for c in self.classes]
        if len(classes) < 2 or any(not c for c in classes) or len(set(classes)) != len(classes):
            raise DalkitError(
                f"a project needs at least two distinct, non-empty class names (got {self.classes}); "
                "pass e.g. --classes cat,dog."
            )
        check_budget(self.budget)
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
        if not project_image_files(images):
            raise DalkitError(f"{images} holds no image file; add images (.png, .jpg, ...) or pass another --images.")
        directory.mkdir(parents=True, exist_ok=True)
        project = cls(directory, LabelStore(directory / DATABASE), settings)
        project.store.set_meta("settings", asdict(settings))
        project.scan()
        return project

    @classmethod
    def open(cls, directory: str | Path, setup: bool = True) -> Project:
        """The project in `directory`; `setup=False` opens a plain connection (one short web request's)."""
        directory = Path(directory)
        if not (directory / DATABASE).is_file():
            raise DalkitError(f"{directory} holds no dalkit project; create one with `dalkit project create`.")
        store = LabelStore(directory / DATABASE, setup=setup)
        return cls(directory, store, ProjectSettings(**store.get_meta("settings")))

    def close(self) -> None:
        self.store.close()

    def scan(self) -> int:
        """Register the images in the folder that are new since the last scan; returns the number of images."""
        root = Path(self.settings.images)
        if not root.is_dir():
            raise DalkitError(f"the project's image folder {root} is gone; put it back (its labels are kept).")
        root = root.resolve()
        self.store.add_images(path.relative_to(root).as_posix() for path in project_image_files(root))
        return len(self.store.images())

    def image_file(self, path: str) -> Path | None:
        """The file behind a registered image path, resolved, if it is a regular file inside the image folder
        (None for a link that leaves it, a missing file, a folder, a device...)."""
        return inside(Path(self.settings.images).resolve(), Path(self.settings.images) / path)

    # -- labels ---------------------------------------------------------------------------------------------

    def record_labels(self, pairs: Sequence[tuple[str, str]], source: str, saved_at: datetime | None = None) -> int:
        """Record (image path, class name) pairs; all are checked first, then kept together. Returns how many
        changed an image's label (giving an image its current label again records nothing). With `saved_at`,
        see `record_file_labels`."""
        return self.record_file_labels(pairs, source, saved_at)[0]

    def record_file_labels(
        self, pairs: Sequence[tuple[str, str]], source: str, saved_at: datetime | None = None
    ) -> tuple[int, list[str]]:
        """`record_labels`, returning also the paths refused because their image got a different label after
        `saved_at` (when the file the pairs come from was last saved): an older file never wins over a newer
        label. Paths are matched exactly; a cell that a spreadsheet padded with spaces, or that dalkit's own
        CSV prefixed with a quote (a formula guard), is matched without them when the exact name is unknown."""
        ids = {path: image_id for image_id, path in self.store.images()}
        checked = []
        for path, label in pairs:
            image_id = next((ids[name] for name in cell_readings(path) if name in ids), None)
            if image_id is None:
                raise DalkitError(f"image {path!r} is not in this project; use the paths of {QUESTIONS_CSV}.")
            name = next((name for name in cell_readings(label) if name in self.settings.classes), None)
            if name is None:
                raise DalkitError(
                    f"{label!r} (for {path}) is not a class of this project; use one of: "
                    f"{', '.join(self.settings.classes)}."
                )
            checked.append((image_id, name))
        changed, refused = self.store.record_labels(checked, source, saved_at)
        paths = dict(self.store.images())
        return changed, [paths[i] for i in refused]

    def import_csv(self, path: str | Path, log: Callable[[str], None] = print) -> int:
        """Labels from a CSV with `image` and `label` columns (empty labels skipped); all-or-nothing. A row whose
        image got another label after the file was last saved is refused, and `log` says which in one sentence.
        Returns how many labels were recorded."""
        path = Path(path)
        return self.import_pairs(path, read_label_csv(path), f"csv:{path.name}", "row(s)", log)

    def import_label_studio(self, path: str | Path, log: Callable[[str], None] = print) -> int:
        """Labels from Label Studio's JSON export (see `labelstudio`), with `import_csv`'s rules: all-or-nothing,
        and a task whose image got another label after the file was saved is refused and named."""
        from dalkit.project.labelstudio import read_export

        path = Path(path)
        pairs = read_export(path, [image for _, image in self.store.images()])
        return self.import_pairs(path, pairs, f"label-studio:{path.name}", "task(s)", log)

    def import_pairs(
        self, path: Path, pairs: list[tuple[str, str]], source: str, what: str, log: Callable[[str], None]
    ) -> int:
        saved_at = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)
        changed, refused = self.record_file_labels(pairs, source, saved_at)
        if refused:
            shown = ", ".join(refused[:5]) + (f" and {len(refused) - 5} more" if len(refused) > 5 else "")
            log(
                f"{len(refused)} {what} of {path} were not imported because their image got another label after "
                f"the file was last saved ({saved_at.astimezone():%Y-%m-%d %H:%M:%S}): {shown}; the newer label "
                "is kept (change it in the file, save it and import it again if the file is right)."
            )
        return changed

    def record_web_label(
        self, image: str, round_number: int, label: str, labeller: str, seq: int, answer: str = "label", name: str = ""
    ) -> str:
        """One answer from the web page, for an image of round `round_number`, as request `seq` of `labeller`
        (`answer`: a class `label`, `skip`, `unsure` or `none`; `name`: the person's); returns what
        `LabelStore.add_web_label` found (a retried request is recorded once)."""
        from dalkit.project.store import WEB_ANSWERS

        image_id = self.store.image_id(image)
        if image_id is None:
            raise DalkitError(f"image {image!r} is not in this project; reload the page.")
        if answer not in WEB_ANSWERS:
            raise DalkitError(f"answer {answer!r} (for {image}) is not one of {', '.join(WEB_ANSWERS)}.")
        if answer == "label" and label not in self.settings.classes:
            raise DalkitError(
                f"{label!r} (for {image}) is not a class of this project; use one of: "
                f"{', '.join(self.settings.classes)}."
            )
        return self.store.add_web_label(labeller, seq, image_id, label, round_number, answer, name)

    def labels(self) -> dict[str, str]:
        """Image path -> its current label."""
        paths = dict(self.store.images())
        return {paths[i]: label for i, label in self.store.current_labels().items()}

    # -- asking ---------------------------------------------------------------------------------------------

    def read_images(self) -> ProjectImages:
        """Every registered image, read and resized; unreadable files are left out and listed, not fatal."""
        from dalkit.data.base import images_from_nhwc
        from dalkit.data.folder import PIL_MODES, read_image

        s, root = self.settings, Path(self.settings.images)
        ids, paths, arrays, unreadable = [], [], [], []
        for image_id, path in self.store.images():
            file = self.image_file(path)
            try:
                if file is None:
                    raise DalkitError(f"{path} is no longer a regular file inside {root}")
                arrays.append(read_image(file, s.image_size, PIL_MODES[s.channels]))
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

        One ask runs at a time (a second one, from this process or another, refuses in a sentence). A filled-in
        `to_label.csv` is imported first, so its labels are not lost when it is replaced (rows older than a
        label given since are refused, see `import_csv`). The round is committed in one transaction that leaves
        out every image labelled by then, e.g. on the web page while the model trained.
        """
        from dalkit.seeding import derive_seed, resolve_device

        start = time.perf_counter()
        s = self.settings
        budget = check_budget(s.budget if budget is None else budget)
        with self.ask_lock():
            questions_csv = self.directory / QUESTIONS_CSV
            if questions_csv.exists():
                imported = self.import_csv(questions_csv, log=log)
                if imported:
                    log(f"imported {imported} label(s) from {questions_csv}")
            self.scan()
            data = self.read_images()
            if data.unreadable:
                log(
                    f"{len(data.unreadable)} image(s) could not be read and are left out: "
                    f"{', '.join(data.unreadable[:5])}"
                )
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
                picks, scores, guesses, predictions, estimate = self.select(
                    data, pool, budget, round_number, device, progress, log
                )
            else:
                log(f"round {round_number}: nothing is labelled yet, so the first images are a random sample")
                rng = np.random.default_rng(derive_seed(s.seed, round_number))
                picks, scores, guesses, predictions, estimate = (
                    rng.choice(unlabelled, size=budget, replace=False),
                    [None] * budget,
                    [None] * budget,
                    [],
                    None,
                )
            chosen = [(int(data.ids[i]), sc, g) for i, sc, g in zip(picks, scores, guesses)]
            round_number, kept = self.store.add_questions(chosen, predictions, estimate)
            if not kept:
                raise DalkitError(
                    "every image dalkit chose was labelled while it was choosing; ask again for new ones."
                )
            if len(kept) < len(chosen):
                log(
                    f"{len(chosen) - len(kept)} of the {len(chosen)} images chosen were labelled meanwhile and "
                    f"are left out of round {round_number}"
                )
            if estimate is not None:
                log(replace(estimate, round=round_number).text())
            path_of = dict(zip(data.ids.tolist(), data.paths))
            asked = Round(
                round_number,
                [path_of[i] for i, _, _ in kept],
                [sc for _, sc, _ in kept],
                [g for _, _, g in kept],
                time.perf_counter() - start,
            )
            write_questions_csv(questions_csv, asked)
        return asked

    @contextmanager
    def ask_lock(self) -> Iterator[None]:
        """Hold the project's ask lock (a lock on `ask.lock`, which the system releases if the process dies);
        refuse in one sentence if another ask holds it."""
        with (self.directory / ASK_LOCK).open("a+", encoding="utf-8") as handle:
            if not try_lock(handle):
                try:
                    handle.seek(0)
                    holder = handle.read(200).strip()
                except OSError:
                    holder = ""
                raise DalkitError(
                    f"another `ask` is running on this project ({holder or 'in another process'}); wait for it "
                    "to finish, then ask again."
                )
            handle.seek(0)
            handle.truncate()
            handle.write(f"process {os.getpid()}, since {datetime.now():%H:%M:%S}")
            handle.flush()
            yield

    def pool(self, data: ProjectImages) -> Pool:
        """A Pool over the readable images, labelled with the current labels (as class numbers)."""
        from dalkit.data import Pool

        pool = Pool(len(data.ids))
        position = {image_id: k for k, image_id in enumerate(data.ids.tolist())}
        labelled = [(position[i], label) for i, label in self.store.current_labels().items() if i in position]
        if labelled:
            indices, names = zip(*labelled)
            pool.label(np.array(indices), np.array([self.settings.classes.index(n) for n in names]), cycle=0)
        return pool

    def engine(self, data: ProjectImages, device: torch.device, progress: bool) -> Engine:
        """The benchmark's engine, on the project's images: its model, strategy and a fresh-model schedule."""
        from dalkit.data import AugmentSpec
        from dalkit.data.augment import Normalizer
        from dalkit.data.base import channel_stats
        from dalkit.engine import Engine, EngineSpec
        from dalkit.models import model_entry
        from dalkit.train import TrainConfig

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
        self,
        data: ProjectImages,
        pool: Pool,
        budget: int,
        round_number: int,
        device: torch.device,
        progress: bool,
        log: Callable[[str], None] = print,
    ) -> tuple[np.ndarray, list[float | None], list[str | None], list[tuple[int, str, float]], Estimate]:
        """Train a fresh model on the labelled images, then let the strategy pick among the unlabelled ones.
        Returns the picks, their scores and guesses, (image id, class, probability) of every readable image
        by this round's model and its accuracy estimate (both stored with the round, so `export` and `status`
        need no model)."""
        import torch

        from dalkit.models.saved import save_classifier

        s = self.settings
        engine = self.engine(data, device, progress)
        model = engine.new_model(round_number)
        images = engine.inputs(data.pixels.to(device))  # a frozen encoder's cached features
        unlabelled = pool.unlabelled_indices()
        engine.fit(model, images, pool, round_number, unlabelled)
        estimate = self.estimate(engine, images, pool, round_number, log, data.ids)
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
        every = torch.empty(len(data.ids), probs.shape[1])
        every[torch.from_numpy(unlabelled)] = probs.float().cpu()
        labelled = pool.labelled_indices()
        if len(labelled):
            every[torch.from_numpy(labelled)] = class_probabilities(
                model, engine.normalizer, data.pixels[labelled], device
            )
        confidence, predicted = every.max(1)
        predictions = [
            (int(i), s.classes[c], float(p))
            for i, c, p in zip(data.ids.tolist(), predicted.tolist(), confidence.tolist())
        ]
        return selection.indices, scores, [s.classes[g] for g in guesses], predictions, estimate

    def estimate(
        self,
        engine: Engine,
        images: torch.Tensor,
        pool: Pool,
        round_number: int,
        log: Callable[[str], None],
        ids: np.ndarray,
    ) -> Estimate:
        """The accuracy estimate of this round's model from the labelled images (see `estimate`): k-fold
        cross-validation of the engine's own recipe when it trains a head on frozen features (seconds), scored on
        the images asked at random where there are enough, else the hit rate of the last stored predictions on the
        images labelled since. `ids`: each pool position's image id."""
        import torch

        from dalkit.data import Pool
        from dalkit.seeding import derive_seed

        if not engine.frozen:
            model_round, judged, right = self.store.hit_rate()
            return Estimate(right / judged if judged else None, HIT_RATE, judged, model_round=model_round)
        labelled = pool.labelled_indices()
        labels = pool.labels[labelled]
        folds = stratified_folds(
            labels, len(self.settings.classes), derive_seed(self.settings.seed, round_number, FOLD_SEED)
        )
        if folds is None:
            return Estimate(None, CROSS_VALIDATION, len(labelled))
        k = int(folds.max()) + 1
        at_random = np.isin(ids[labelled], list(self.store.asked_at_random()))
        scored = at_random if at_random.sum() >= MIN_SCORED else np.ones(len(labelled), dtype=bool)
        log(f"estimating its accuracy: {k}-fold cross-validation on {len(labelled)} labels")
        right = 0
        for fold in range(k):
            train, held = folds != fold, labelled[(folds == fold) & scored]
            subset = Pool(len(pool))
            subset.label(labelled[train], labels[train], cycle=0)
            model = engine.new_model(round_number)
            engine.fit(model, images, subset, round_number, pool.unlabelled_indices())
            probs = class_probabilities(model, engine.input_normalizer, images[torch.from_numpy(held)], engine.device)
            right += int((probs.argmax(1).numpy() == pool.labels[held]).sum())
        count = int(scored.sum())
        return Estimate(
            right / count, CROSS_VALIDATION, len(labelled), folds=k, scored=count if scored is at_random else None
        )

    # -- reports --------------------------------------------------------------------------------------------

    def rounds(self) -> list[dict]:
        """Per round: images asked, how many have a label now, how many the page set aside (skip, unsure), and
        how often the model's guess was that label."""
        current = self.store.current_labels()
        summary = []
        for number in range(1, self.store.last_round() + 1):
            asked = self.store.questions(number)
            answered = [(current[i], guess) for i, _, guess in asked if i in current]
            judged = [label == guess for label, guess in answered if guess is not None]
            agreement = sum(judged) / len(judged) if judged else None
            summary.append(
                {
                    "round": number,
                    "asked": len(asked),
                    "labelled": len(answered),
                    "set_aside": len(self.store.set_aside(number)),
                    "agreement": agreement,
                }
            )
        return summary

    def estimate_text(self) -> str:
        """The latest round's accuracy estimate in one line (read from the store: no model, no torch)."""
        estimate = self.store.latest_estimate()
        if estimate is None:
            return "no accuracy estimate yet: label the images asked, then ask again (a trained round makes one)"
        return estimate.text()

    def class_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(self.settings.classes, 0)
        for label, n in self.store.label_counts().items():
            counts[label] += n
        return counts

    def predictions(self) -> dict[str, tuple[str, float]]:
        """Image path -> (class, probability) by the last round's model, for every readable image ({} before
        the first trained round). Runs the model; `stored_predictions` reads what the round stored."""
        if not (self.directory / MODEL_FILE).is_file():
            return {}
        data = self.read_images()
        return dict(zip(data.paths, self.predict_pixels(data.pixels)))

    def predict_pixels(self, pixels: torch.Tensor) -> list[tuple[str, float]]:
        """(class, probability) of each image of a uint8 (N, C, H, W) tensor, by the project's last model."""
        from dalkit.models.saved import load_classifier
        from dalkit.seeding import resolve_device

        device = resolve_device(self.settings.device)
        saved = load_classifier(self.directory / MODEL_FILE, device)
        confidence, predicted = class_probabilities(saved.model, saved.normalizer, pixels, device).max(1)
        return [(self.settings.classes[c], p) for c, p in zip(predicted.tolist(), confidence.tolist())]

    def predict_files(self, files: Sequence[str | Path]) -> list[tuple[str, str | None, float | None, str | None]]:
        """(file, class, probability, None) for each image file by the project's last model, or (file, None,
        None, why) for one that could not be read. One sentence if the project has no model yet."""
        from dalkit.data.base import images_from_nhwc
        from dalkit.data.folder import PIL_MODES, read_image

        if not (self.directory / MODEL_FILE).is_file():
            raise DalkitError(
                f"{self.directory} has no model yet: label some images, then `dalkit project ask "
                f"{self.directory}` trains one."
            )
        s = self.settings
        arrays, readable, rows = [], [], {}
        for k, file in enumerate(files):
            try:
                if not Path(file).is_file():
                    raise DalkitError(f"image {file} is not a file")
                arrays.append(read_image(Path(file), s.image_size, PIL_MODES[s.channels]))
                readable.append(k)
            except DalkitError as error:
                rows[k] = (str(file), None, None, str(error).split(";")[0])
        if arrays:
            pixels = np.stack(arrays).reshape(len(arrays), s.image_size, s.image_size, s.channels)
            for k, (name, p) in zip(readable, self.predict_pixels(images_from_nhwc(pixels))):
                rows[k] = (str(files[k]), name, p, None)
        return [rows[k] for k in range(len(files))]

    def stored_predictions(self) -> dict[str, tuple[str, float]]:
        """Image path -> (class, probability) as the last trained round's model predicted it when it asked
        ({} before the first trained round); no model is run, so no torch is needed."""
        paths = dict(self.store.images())
        return {paths[i]: (guess, p) for i, (guess, p) in self.store.latest_predictions().items()}

    def export_rows(self) -> list[tuple]:
        """Every image: its label, the last trained round's prediction and probability, and the latest score
        the strategy gave it when it was asked (with that round)."""
        labels, predicted = self.labels(), self.stored_predictions()
        paths = dict(self.store.images())
        asked = {paths[i]: (number, score) for i, number, score in self.store.latest_scores()}
        rows = []
        for _, image in self.store.images():
            guess, probability = predicted.get(image, ("", None))
            number, score = asked.get(image, (None, None))
            rows.append((image, labels.get(image, ""), guess, probability, score, number))
        return rows

    def export_csv(self, path: str | Path) -> Path:
        """Every image: its label if it has one, the last trained round's prediction and probability (stored
        when it asked), and the strategy's latest score for it and in which round."""
        rows = [("image", "label", "prediction", "probability", "score", "round")]
        for image, label, guess, probability, score, number in self.export_rows():
            rows.append(
                (
                    image,
                    label,
                    guess,
                    "" if probability is None else f"{probability:.4f}",
                    "" if score is None else f"{score:.6g}",
                    "" if number is None else number,
                )
            )
        path = Path(path)
        write_atomically(path, rows)
        return path


def class_probabilities(model, normalizer, pixels: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The model's class probabilities (on the CPU) for a uint8 (N, C, H, W) tensor, in inference batches."""
    from dalkit.features import predict
    from dalkit.models.base import model_input
    from dalkit.runtime import inference_batch_size

    size = inference_batch_size(device)
    batches = (model_input(normalizer(pixels[k : k + size].to(device))) for k in range(0, len(pixels), size))
    return predict(model, batches, device).probs.float().cpu()


def check_budget(budget: object) -> int:
    """The number of images to ask for, checked once at the boundary (CLI, web page, Python)."""
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 1:
        raise DalkitError(f"--budget must be a whole number of images, at least 1 (got {budget!r}); e.g. --budget 20.")
    return int(budget)


def try_lock(handle) -> bool:
    """Take an exclusive lock on an open file without waiting; False if another holder has it."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def inside(root: Path, path: Path) -> Path | None:
    """`path` resolved, if it is a regular file inside the resolved folder `root`; else None."""
    try:
        resolved = path.resolve(strict=True)
        regular = stat.S_ISREG(resolved.stat().st_mode)
    except (OSError, RuntimeError):  # missing, a broken or looping link, no permission
        return None
    return resolved if regular and resolved.is_relative_to(root) else None


def project_image_files(root: Path) -> list[Path]:
    """The image files a project registers: regular files inside `root` (a link is kept only if it resolves
    to one; linked folders are not entered), skipping hidden entries, in a fixed order."""
    from dalkit.data.folder import EXTENSIONS

    root = root.resolve()
    found = []
    for parent, dirs, names in os.walk(root):
        dirs[:] = [name for name in dirs if not name.startswith(".")]
        for name in names:
            if name.startswith(".") or os.path.splitext(name)[1].lower() not in EXTENSIONS:
                continue
            if inside(root, Path(parent) / name) is not None:
                found.append(Path(parent) / name)
    return sorted(found)


# A label CSV larger than this is refused before it is read: a million rows of image and label fit in it.
MAX_LABEL_CSV_BYTES = 64 * 2**20
# Cells that a spreadsheet would run as a formula (OWASP's CSV injection list); dalkit writes them with a
# leading single quote, and reads its own quoted cells back.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def read_label_csv(path: Path) -> list[tuple[str, str]]:
    """(image, label) rows of a CSV whose header has `image` and `label` columns; empty labels are skipped.

    Commas, semicolons (what spreadsheets save in many locales) and tabs all separate cells; the header says which.
    Image names are kept exactly as written (labels lose surrounding spaces). The file is streamed: one larger
    than `MAX_LABEL_CSV_BYTES` is refused before any of it is read.
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise DalkitError(f"{path} does not exist; give the CSV you filled in.") from None
    except OSError as error:
        raise DalkitError(f"{path} could not be read ({error.strerror}); give the CSV you filled in.") from None
    if size > MAX_LABEL_CSV_BYTES:
        raise DalkitError(
            f"{path} is {file_size(size)}, more than the {file_size(MAX_LABEL_CSV_BYTES)} a label CSV may be (about "
            "a million rows); keep only its image and label columns, or split it into smaller files."
        )
    pairs: dict[str, str] = {}
    line = 1
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            header = handle.readline(2**16)
            handle.seek(0)
            delimiter = max(",;\t", key=header.count)
            reader = csv.DictReader(handle, delimiter=delimiter)
            if reader.fieldnames is None or not {"image", "label"} <= set(reader.fieldnames):
                raise DalkitError(
                    f"{path} needs a header with 'image' and 'label' columns (found {reader.fieldnames}); "
                    f"keep the header of {QUESTIONS_CSV}."
                )
            for row in reader:
                image, label, line = row["image"], row["label"], reader.line_num
                if image is None or label is None:
                    raise DalkitError(f"line {line} of {path} has fewer cells than the header; fix that line.")
                label = label.strip()
                if not label:
                    continue
                if pairs.get(image, label) != label:
                    raise DalkitError(
                        f"line {line} of {path} labels {image} {label!r} but an earlier line {pairs[image]!r}."
                    )
                pairs[image] = label
    except csv.Error as error:
        if "field limit" in str(error):
            raise DalkitError(
                f"line {line + 1} of {path} has a cell longer than {csv.field_size_limit() // 1024} KB; a label CSV "
                "holds image paths and class names: check that this is the file you meant."
            ) from None
        raise DalkitError(f"{path} is not a readable UTF-8 CSV ({error}); save it as CSV (UTF-8) and retry.") from None
    except UnicodeDecodeError as error:
        raise DalkitError(f"{path} is not a readable UTF-8 CSV ({error}); save it as CSV (UTF-8) and retry.") from None
    return list(pairs.items())


def file_size(size: int) -> str:
    return f"{size / 2**30:.1f} GB" if size >= 2**30 else f"{size / 2**20:.0f} MB"


def cell_readings(cell: str) -> list[str]:
    """What a CSV cell may stand for, most literal first: as written, without the quote that guards a formula,
    and without the spaces a spreadsheet may add."""
    readings = [cell]
    for text in (cell, cell.strip()):
        if text.startswith("'") and text[1:].startswith(FORMULA_STARTS):
            readings.append(text[1:])
        readings.append(text)
    return list(dict.fromkeys(readings))


def spreadsheet_cell(value: object) -> object:
    """A cell a spreadsheet shows as text: one starting with = + - @ tab or CR (and not a number) gets a leading
    single quote, as OWASP recommends against CSV injection."""
    if not isinstance(value, str) or not value.startswith(FORMULA_STARTS):
        return value
    try:
        float(value)
    except ValueError:
        return "'" + value
    return value


def write_questions_csv(path: Path, asked: Round) -> None:
    """to_label.csv: the round's images in the order asked, with an empty label column to fill in."""
    rows = [("image", "label", "model_guess", "score", "round")]
    rows += [
        (p, "", g or "", "" if sc is None else f"{sc:.6g}", asked.number)
        for p, g, sc in zip(asked.paths, asked.guesses, asked.scores)
    ]
    write_atomically(path, rows)


def write_atomically(path: Path, rows: list[tuple]) -> None:
    """Write a CSV (every cell quoted, names exactly as they are, formula cells guarded), whole or not at all."""
    with atomic_file(path, newline="", encoding="utf-8") as handle:
        csv.writer(handle, quoting=csv.QUOTE_ALL).writerows([spreadsheet_cell(c) for c in row] for row in rows)
