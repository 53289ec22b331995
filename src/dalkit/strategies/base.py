"""The strategy contract and the query context every strategy reads from.

A strategy is `select(ctx, budget) -> Selection`. The design sketch had `select(model, pool,
budget, generator)`; a context object is used instead because strategies share expensive inputs:
the model's outputs on the candidates and on the labelled set are computed once per cycle, in large
batches under inference mode, and cached in the context for every strategy need. A strategy never
trains the classifier and draws randomness only from `ctx.generator`, so it is pure given the
context. Candidates are pool indices; a selection is a subset of them, in pick order, with the score
behind each pick so a person can see why an image was chosen.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from dalkit.data.augment import Normalizer
from dalkit.data.pool import Pool
from dalkit.errors import DalkitError
from dalkit.features import FeatureRequest, Outputs, predict
from dalkit.models.base import Classifier, model_input


@dataclass
class Selection:
    """Picked pool indices in pick order, the score behind each, and what the strategy reports about the query
    (`info`, JSON-able: e.g. which representation it read), written to the run's selection record."""

    indices: np.ndarray
    scores: np.ndarray | None = None
    info: dict = field(default_factory=dict)


@dataclass
class QueryContext:
    """What a strategy may read for one query. `images` is the whole training split (uint8)."""

    model: Classifier
    images: torch.Tensor
    normalizer: Normalizer
    pool: Pool
    candidates: np.ndarray
    generator: torch.Generator
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    batch_size: int = 1024
    chunk_size: int = 4096
    progress: bool = True
    features: torch.Tensor | None = None  # the representation the strategy asked for, one row per pool image
    features_info: dict = field(default_factory=dict)  # where `features` came from (see `dalkit.features`)
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def labelled(self) -> np.ndarray:
        return self.pool.labelled_indices()

    @property
    def num_classes(self) -> int:
        return self.model.num_classes

    def batches(self, indices: np.ndarray) -> Iterator[torch.Tensor]:
        """Normalised image batches for `indices`, on the device, in order (last batch may be short)."""
        index = torch.as_tensor(indices, dtype=torch.long)
        for start in range(0, len(index), self.batch_size):
            chunk = self.images[index[start : start + self.batch_size]].to(self.device, non_blocking=True)
            yield model_input(self.normalizer(chunk))

    def outputs(self, which: str = "candidates") -> Outputs:
        """Model outputs on 'candidates' or 'labelled' images, computed once and cached."""
        if which not in self._cache:
            indices = {"candidates": self.candidates, "labelled": self.labelled}[which]
            self._cache[which] = predict(self.model, self.batches(indices), self.device)
        return self._cache[which]


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) of each row of a probability matrix."""
    return -(probs * probs.clamp_min(1e-12).log()).sum(dim=-1)


def top_k(scores: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """Positions of the k largest scores; ties are broken at random with `generator`."""
    perm = torch.randperm(len(scores), generator=generator).to(scores.device)
    order = torch.argsort(scores[perm], descending=True, stable=True)[:k]
    return perm[order]


class Strategy(ABC):
    """Base class: constructors only store parameters; `select` does the work."""

    #: the model head whose training `select` relies on: it reads the head's output (learning-loss) or the
    #: encoder its objective shapes (mobyv2al); the engine creates the model with it and trains it with the
    #: objective that declares `trains_head` for it, even when --objectives leaves that out
    needs_head: str | None = None
    #: precomputed features `select` reads from `QueryContext.features` (None: the classifier's own outputs)
    representation: FeatureRequest | None = None

    @abstractmethod
    def select(self, ctx: QueryContext, budget: int) -> Selection:
        """Pick `budget` distinct candidates (pool indices), most wanted first."""


class RankingStrategy(Strategy):
    """A strategy that scores every candidate and takes the `budget` highest (ties broken at random)."""

    @abstractmethod
    def scores(self, ctx: QueryContext) -> torch.Tensor:
        """One score per candidate; higher means more wanted."""

    def select(self, ctx: QueryContext, budget: int) -> Selection:
        scores = self.scores(ctx)
        picked = top_k(scores, budget, ctx.generator).cpu().numpy()
        return Selection(ctx.candidates[picked], scores[picked].cpu().numpy())


class ScoreStrategy(RankingStrategy):
    """A ranking by one score computed from the model's probabilities on the candidates."""

    @abstractmethod
    def score(self, probs: torch.Tensor) -> torch.Tensor:
        """Higher means more wanted."""

    def scores(self, ctx: QueryContext) -> torch.Tensor:
        return self.score(ctx.outputs("candidates").probs)


def checked_select(strategy: Strategy, ctx: QueryContext, budget: int) -> Selection:
    """Run `strategy` after validating the budget, and check its answer keeps the contract."""
    if budget < 1:
        raise DalkitError(f"the budget must be at least 1 (got {budget}); pass a positive --budget.")
    if budget > len(ctx.candidates):
        raise DalkitError(
            f"the budget of {budget} is larger than the {len(ctx.candidates)} candidates left; "
            "lower --budget, or raise --candidates."
        )
    selection = strategy.select(ctx, budget)
    indices = np.asarray(selection.indices, dtype=np.int64)
    if len(indices) != budget or len(np.unique(indices)) != budget:
        raise RuntimeError(f"{type(strategy).__name__} returned {len(indices)} picks for a budget of {budget}")
    if not np.isin(indices, ctx.candidates).all():
        raise RuntimeError(f"{type(strategy).__name__} picked an image that is not a candidate")
    return Selection(indices, selection.scores, selection.info)
