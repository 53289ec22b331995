"""The strategy contract and the query context every strategy reads from.

A strategy is `select(ctx, budget) -> Selection`. The design sketch had `select(model, pool,
budget, generator)`; a context object is used instead because strategies share expensive inputs:
the model's outputs on the candidates and on the labelled set are computed once per cycle, in large
batches under inference mode, and cached in the context for every strategy need. A strategy never
trains the classifier and draws randomness only from `ctx.generator`, so it is pure given the
context. Candidates are pool indices; a selection is a subset of them, in pick order, with the score
behind each pick so a person can see why an image was chosen.

A ranking strategy (one score per candidate) takes the `budget` highest scores by default, or draws its batch
at random with probabilities that grow with the score (`sampling`, `beta`: stochastic batch acquisition,
Kirsch et al. 2023); both are implemented once here, in `RankingStrategy`, for every score-based strategy.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from dalkit.data.augment import Normalizer
from dalkit.data.pool import Pool
from dalkit.errors import DalkitError
from dalkit.features import FeatureRequest, Outputs, predict
from dalkit.features.classifier import image_batches
from dalkit.models.base import Classifier
from dalkit.options import require
from dalkit.runtime import progress_bar


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

    def batches(self, indices: np.ndarray, description: str = "predict") -> Iterator[torch.Tensor]:
        """Normalised image batches for `indices`, on the device, in order (last batch may be short), counted on a
        progress bar named `description` as the caller finishes each (a pass over a large pool takes minutes)."""
        bar = progress_bar(
            progress=self.progress, total=len(indices), desc=description, unit="img", unit_scale=True, leave=False
        )
        with bar:
            for batch in image_batches(self.images, self.normalizer, indices, self.batch_size, self.device):
                yield batch
                bar.update(len(batch))

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


#: how a ranking strategy turns its scores into a batch (see `sample_batch`)
SAMPLING_MODES = ("topk", "power", "softmax", "softrank")


def sampling_log_weights(
    scores: torch.Tensor, sampling: str, beta: float, generator: torch.Generator, floor: float | None = 0.0
) -> torch.Tensor:
    """Log of the unnormalised probability of drawing each candidate first (float64), for stochastic batch
    acquisition (Kirsch, Farquhar, Atighehchian, Jesson, Branchaud-Charron & Gal, TMLR 2023), on the CPU:

    - power: (score - floor)^beta. Power sampling needs non-negative scores, and reads a score of zero as "nothing
      to learn here" (the paper's assumption, true of entropy, BALD, variation ratios, mean STD, least confidence).
      A strategy whose scores can be negative declares the lowest score it can give (`score_floor`; margin's is
      -1, so its weight is 1 - (p1 - p2)); scores with no known floor (`floor=None`: learning-loss's predicted
      loss) are shifted by the candidates' minimum. The reference samplers (the authors' tempered sampler in
      BlackHC/active_learning_redux, baal's PowerSampling) set negative scores to zero instead, which would give
      every margin score weight zero. A weight of zero is never drawn before a positive one.
    - softmax: exp(beta * score), any real score.
    - softrank: rank^-beta, rank 1 for the highest score (ties ranked at random with `generator`).
    """
    scores = scores.detach().to("cpu", torch.float64)  # n numbers; float64 everywhere (MPS has none)
    if sampling == "power":
        shift = scores.min() if floor is None else floor
        return beta * (scores - shift).clamp_min(0).log()
    if sampling == "softmax":
        return beta * scores
    if sampling == "softrank":
        order = top_k(scores, len(scores), generator)
        ranks = torch.empty_like(scores)
        ranks[order] = torch.arange(1, len(scores) + 1, dtype=scores.dtype, device=scores.device)
        return -beta * ranks.log()
    raise ValueError(f"unknown sampling {sampling!r}")


def gumbel_top_k(log_weights: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k positions drawn without replacement, each with probability proportional to exp(log_weight) among those not
    yet drawn (the Gumbel-top-k trick: the k largest log_weight + Gumbel(0, 1) noise; Vieira 2014, Kool, van Hoof &
    Welling 2019). All noise comes from `generator`; positions of weight zero come last, in random order."""
    uniform = torch.rand(len(log_weights), generator=generator, dtype=torch.float64).clamp_min(1e-300)
    gumbel = -(-uniform.log()).log()
    return top_k(log_weights + gumbel.to(log_weights.device), k, generator)


def sample_batch(
    scores: torch.Tensor,
    k: int,
    generator: torch.Generator,
    sampling: str = "topk",
    beta: float = 1.0,
    floor: float | None = 0.0,
) -> torch.Tensor:
    """Positions of a batch of k candidates: the k highest scores (`topk`, ties at random), or k drawn without
    replacement with the weights of `sampling_log_weights` (`power`, `softmax`, `softrank`). As beta grows the
    draws approach top-k; as it shrinks, uniform sampling (among the positive weights, for power)."""
    if sampling == "topk":
        return top_k(scores, k, generator)
    return gumbel_top_k(sampling_log_weights(scores, sampling, beta, generator, floor), k, generator)


class Strategy(ABC):
    """Base class: constructors only store parameters; `select` does the work."""

    #: the registered name (set by `register_strategy`); messages about the strategy's options use it
    name: str = "strategy"

    #: the model head whose training `select` relies on: it reads the head's output (learning-loss) or the
    #: encoder its objective shapes (mobyv2al); the engine creates the model with it and trains it with the
    #: objective that declares `trains_head` for it, even when --objectives leaves that out
    needs_head: str | None = None
    #: precomputed features `select` reads from `QueryContext.features` (None: the classifier's own outputs)
    representation: FeatureRequest | None = None
    #: `select` (or the objective behind it) learns from the images themselves (a VAE, augmented views), so it
    #: cannot run on a frozen pretrained encoder's cached features
    reads_pixels: bool = False
    #: `select` keeps what it computed at an earlier query (Cluster-Margin's clustering of the first model's
    #: embeddings), so an interrupted run cannot continue from its last completed cycle (`dalkit.loop`)
    carries_state: bool = False

    @abstractmethod
    def select(self, ctx: QueryContext, budget: int) -> Selection:
        """Pick `budget` distinct candidates (pool indices), most wanted first."""


class RankingStrategy(Strategy):
    """A strategy that scores every candidate, then takes the `budget` highest (`sampling=topk`, ties broken at
    random) or draws the batch at random, more likely the higher the score (`power`, `softmax`, `softrank`, with
    `beta`; stochastic batch acquisition, Kirsch et al., TMLR 2023: top-k batches of one score are near-duplicates,
    a random batch weighted by the score is diverse and costs nothing more).

    Subclasses with their own constructor take `sampling` and `beta` too and pass them to `__init__` here, so the
    options are declared (and validated by `dalkit.options`) for every ranking strategy.
    """

    #: the lowest score the strategy can give (power sampling weighs a candidate by (score - score_floor)^beta);
    #: None: scores are unbounded below and are shifted by the candidates' minimum
    score_floor: float | None = 0.0

    def __init__(self, sampling: str = "topk", beta: float = 1.0) -> None:
        modes = ", ".join(SAMPLING_MODES)
        require(sampling in SAMPLING_MODES, self.name, "sampling", sampling, f"be one of {modes}", "sampling=power")
        rule = "be a positive number (the larger, the closer to top-k)"
        require(math.isfinite(beta) and beta > 0, self.name, "beta", beta, rule, "beta=1")
        self.sampling = sampling
        self.beta = float(beta)

    @abstractmethod
    def scores(self, ctx: QueryContext) -> torch.Tensor:
        """One score per candidate; higher means more wanted."""

    def select(self, ctx: QueryContext, budget: int) -> Selection:
        scores = self.scores(ctx)
        sampling, beta = getattr(self, "sampling", "topk"), getattr(self, "beta", 1.0)
        picked = sample_batch(scores, budget, ctx.generator, sampling, beta, self.score_floor).cpu().numpy()
        info = {"sampling": sampling} if sampling == "topk" else {"sampling": sampling, "beta": beta}
        return Selection(ctx.candidates[picked], scores[picked].cpu().numpy(), info)


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
