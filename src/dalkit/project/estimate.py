"""How accurate a labelling project's model already is, estimated from the labelled images only.

Each trained round (`Project.ask`) stores one estimate with the round (`LabelStore.add_questions`), so `status`
reads it without torch:

- a frozen pretrained encoder (the default): k-fold cross-validation of the project's own training recipe on
  the labelled images (k = 5, stratified by class; fewer folds when a class has fewer than 5 labels; none below
  `MIN_PER_CLASS`). The head trains on cached features in about a second, so k more trainings are cheap. Each
  fold's model is scored on the fold's images that were asked at random (the first round, before any label, is a
  uniform sample of the images), not on those a strategy chose: those are the hard ones, and scoring them made
  the estimate fall as labels grew while the true accuracy rose (76% against 96% at 90 labels, see
  benchmarks/README.md). With fewer than `MIN_SCORED` such images every labelled image is scored, and the text
  says that this is pessimistic.
- any other model (trained from scratch, or a fine-tuned encoder): k more trainings would multiply a round's
  minutes, so the estimate is how often the previous trained round's model guessed right the images labelled
  since (it guessed them before their labels came). Those images were mostly asked because the model found
  them hard, so the figure is pessimistic.

This module imports no torch: `status` and `export` use it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CROSS_VALIDATION, HIT_RATE = "cross-validation", "hit-rate"
#: cross-validation's folds at most, the labels each class needs for an estimate, and the randomly asked images
#: it needs to score only those
MOST_FOLDS, MIN_PER_CLASS, MIN_SCORED = 5, 2, 10
#: the sub-seed of (seed, round, k) that draws the folds (the engine's stages use 1 to 4)
FOLD_SEED = 5


@dataclass(frozen=True)
class Estimate:
    """An accuracy estimate (None: not enough labels), how it was computed (`CROSS_VALIDATION` with `folds`,
    or `HIT_RATE` of the round `model_round`'s model), on how many labelled images, and the round it is kept with."""

    accuracy: float | None
    method: str
    labels: int
    folds: int | None = None
    model_round: int | None = None
    round: int | None = None
    scored: int | None = None  # cross-validation: the randomly asked images scored (None: every labelled one)

    def text(self) -> str:
        """One line for `status`, e.g. 'estimated accuracy 87% (5-fold cross-validation on 90 labels, round 3)'."""
        if self.method == CROSS_VALIDATION:
            if self.accuracy is None:
                return (
                    f"no accuracy estimate in round {self.round}: cross-validation needs at least {MIN_PER_CLASS} "
                    f"labelled images of each class ({self.labels} labels so far)"
                )
            how = f"{self.folds}-fold cross-validation on {self.labels} labels"
            if self.scored is None:
                how += ", scored on all of them: most were asked as hard ones, so the figure is pessimistic"
            else:
                how += f", scored on the {self.scored} asked at random"
            return f"estimated accuracy {self.accuracy:.0%} ({how}, round {self.round})"
        if self.accuracy is None:
            return (
                f"no accuracy estimate in round {self.round}: for a model trained from scratch it is how often a "
                "round's model guessed the images labelled after that round, and there are none yet"
            )
        images = "image" if self.labels == 1 else "images"
        return (
            f"estimated accuracy {self.accuracy:.0%} (the round {self.model_round} model's guesses on the "
            f"{self.labels} {images} labelled since, round {self.round}; they were asked as hard ones, so the figure "
            "is pessimistic)"
        )


def stratified_folds(labels: np.ndarray, num_classes: int, seed: int) -> np.ndarray | None:
    """Each labelled image's fold (0..k-1), every class spread over all k folds, with k = `MOST_FOLDS` or the
    smallest class's count if lower; None when a class has fewer than `MIN_PER_CLASS` labels."""
    counts = np.bincount(labels, minlength=num_classes)
    if counts.min() < MIN_PER_CLASS:
        return None
    k = int(min(MOST_FOLDS, counts.min()))
    rng = np.random.default_rng(seed)
    folds = np.empty(len(labels), dtype=np.int64)
    start = 0
    for label in range(num_classes):
        members = rng.permutation(np.flatnonzero(labels == label))
        folds[members] = (start + np.arange(len(members))) % k  # go on where the last class stopped: even folds
        start += len(members)
    return folds
