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
from typing import NamedTuple

import numpy as np
import torch

from dalkit.data.augment import Normalizer
from dalkit.data.pool import Pool
from dalkit.errors import DalkitError
from dalkit.models.base import Classifier, model_input


class Outputs(NamedTuple):
    """Softmax probabilities (n, C) and penultimate embeddings (n, d), float32 on the device."""

    probs: torch.Tensor
    embeddings: torch.Tensor


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


def predict(model: Classifier, batches: Iterator[torch.Tensor], device: torch.device) -> Outputs:
    """Probabilities and embeddings for a stream of batches, in eval mode under inference mode."""
    was_training = model.training
    model.eval()
    probs, embeddings = [], []
    with torch.inference_mode(), autocast(device):
        for x in batches:
            out = model(x)
            probs.append(out.logits.float().softmax(dim=1))
            embeddings.append(out.embedding.float())
    model.train(was_training)
    if not probs:
        empty = torch.empty(0, model.num_classes, device=device)
        return Outputs(empty, torch.empty(0, model.embedding_dim, device=device))
    return Outputs(torch.cat(probs), torch.cat(embeddings))


def inference_batch_size(device: torch.device) -> int:
    """Large batches on a GPU; on a CPU, smaller ones keep activations in cache (measured faster)."""
    return 1024 if device.type == "cuda" else 256


def autocast(device: torch.device) -> torch.autocast:
    """bf16 autocast on CUDA; a no-op elsewhere."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


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

    # The training objective whose output `select` reads (e.g. a loss prediction module); a run with this
    # strategy trains with it even when --objectives leaves it out (see `ExperimentConfig`).
    objective: str | None = None

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
