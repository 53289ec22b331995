"""The engine: model, objectives, trainer, features and strategy, built once and used by every caller.

The AL loop (`dalkit.loop`), the labelling project (`dalkit.project`) and the benchmarks all build an `Engine`
from an `EngineSpec` and call the same three steps, so they share defaults and seeds:

- `new_model(cycle)`: a fresh classifier with the heads its objectives train (`Objective.heads`), weights drawn
  from seed (seed, cycle, 1);
- `fit(model, images, pool, cycle, candidates)`: the trainer on the labelled images, generator (seed, cycle, 3);
  objectives that learn from unlabelled images get the candidates, early stopping the pool's validation images;
- `query(model, images, pool, candidates, budget, cycle)`: the representation the strategy asked for (see
  `dalkit.features`), then the strategy on a `QueryContext`, generator (seed, cycle, 4).

A strategy declares what it needs and the engine satisfies it: `Strategy.needs_head` names a model head, and
`objectives_for` adds the objective that trains it (`Objective.trains_head`) to the run's objectives;
`Strategy.representation` names precomputed features (SimCLR), which the engine computes, or reads from the
cache, before the strategy runs. A strategy never trains the classifier or a representation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from dalkit.data.augment import Normalizer
from dalkit.data.base import AugmentSpec
from dalkit.data.pool import Pool
from dalkit.errors import DalkitError
from dalkit.features import compute_features
from dalkit.features.pretrained import cached_features, feature_view
from dalkit.models import Classifier, create_model, model_entry
from dalkit.models.base import prepare_model
from dalkit.objectives import OBJECTIVES, Objective, create_objective
from dalkit.options import options_for
from dalkit.runtime import inference_batch_size, isolated_rng
from dalkit.seeding import derive_seed, make_generator
from dalkit.strategies import QueryContext, Selection, Strategy, checked_select, create_strategy
from dalkit.strategies.registry import STRATEGIES
from dalkit.train import TrainConfig, Trainer, TrainStats

# Sub-seeds of (seed, cycle, k): one stream per stage, the same for every caller.
MODEL_SEED, CANDIDATE_SEED, FIT_SEED, QUERY_SEED = 1, 2, 3, 4


def objective_for_head(head: str) -> str:
    """The registered objective that trains `head`."""
    names = [name for name in OBJECTIVES.names() if getattr(OBJECTIVES.get(name), "trains_head", None) == head]
    if len(names) != 1:
        raise RuntimeError(f"expected one objective training the head {head!r}, found {names}")
    return names[0]


def objectives_for(strategy: str, objectives: Sequence[str]) -> tuple[str, ...]:
    """`objectives`, plus the objective that trains the head `strategy` needs when none of them does."""
    objectives = tuple(objectives)
    head = STRATEGIES.get(strategy).needs_head
    trained = {getattr(OBJECTIVES.get(name), "trains_head", None) for name in objectives}
    if head is None or head in trained:
        return objectives
    return (*objectives, objective_for_head(head))


@dataclass(frozen=True)
class EngineSpec:
    """What the engine is built from: the data's shape and statistics, and the components by name."""

    num_classes: int
    image_shape: tuple[int, int, int]
    normalizer: Normalizer
    augment: AugmentSpec
    train: TrainConfig
    model: str = "small-cnn"
    model_options: dict = field(default_factory=dict)
    strategy: str = "margin"
    strategy_options: dict = field(default_factory=dict)
    objectives: tuple[str, ...] = ("ce",)
    objective_options: dict = field(default_factory=dict)
    seed: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    progress: bool = True


def provide_representation(strategy: Strategy, ctx: QueryContext, progress: bool = True) -> QueryContext:
    """Fill `ctx.features` with the representation `strategy` asks for (nothing when it reads the classifier)."""
    if strategy.representation is not None:
        ctx.features, ctx.features_info = compute_features(
            strategy.representation, ctx.images, ctx.normalizer, ctx.device, progress
        )
    return ctx


class Engine:
    """The components of one run, built once; see the module docstring."""

    def __init__(self, spec: EngineSpec) -> None:
        self.spec = spec
        # plain keys, and `name.key` keys for this strategy (a preset may hold options for several strategies)
        self.strategy: Strategy = create_strategy(spec.strategy, **options_for(spec.strategy, spec.strategy_options))
        self.objective_names = objectives_for(spec.strategy, spec.objectives)
        self.objectives: list[Objective] = [
            create_objective(name, **options_for(name, spec.objective_options)) for name in self.objective_names
        ]
        self.heads: dict[str, dict] = {}
        for objective in self.objectives:
            self.heads.update(objective.heads())
        channels = spec.image_shape[0]
        # A pretrained encoder owns its input pipeline: it takes images scaled to [0, 1]. In frozen mode the
        # trainer and the strategies read its cached features (`inputs`), passed through unchanged, unaugmented.
        self.encoder_model = self.new_model(0) if model_entry(spec.model).pretrained else None
        self.frozen = getattr(self.encoder_model, "frozen", False)
        if self.frozen and self.strategy.reads_pixels:
            raise DalkitError(
                f"{spec.strategy} learns from the images, and a frozen encoder's run reads cached features; "
                "pass --model-option mode=finetune or choose another strategy."
            )
        unit = Normalizer(torch.zeros(channels), torch.ones(channels))
        self.normalizer = (unit if self.encoder_model is not None else spec.normalizer).to(spec.device)
        identity = Normalizer(torch.zeros(1), torch.ones(1), scale=1)
        self.input_normalizer = (identity if self.frozen else self.normalizer).to(spec.device)
        augment = AugmentSpec() if self.frozen else spec.augment
        self.trainer = Trainer(
            spec.train,
            augment,
            self.input_normalizer,
            spec.device,
            spec.progress,
            self.objectives,
            names=self.objective_names,
        )

    @property
    def device(self) -> torch.device:
        return self.spec.device

    def new_model(self, cycle: int) -> Classifier:
        """A fresh classifier with the heads the objectives train, its weights drawn from (seed, cycle, 1)."""
        s = self.spec
        channels, height, _ = s.image_shape
        with isolated_rng(derive_seed(s.seed, cycle, MODEL_SEED)):
            model = create_model(
                s.model, s.num_classes, in_channels=channels, image_size=height, heads=self.heads, **s.model_options
            )
        return prepare_model(model, s.device)

    def inputs(self, images: torch.Tensor) -> torch.Tensor:
        """What the trainer and the strategies read for `images` (uint8): the images themselves, or, for a frozen
        pretrained encoder, its cached features as (N, d, 1, 1) float16 on the images' device."""
        if not self.frozen:
            return images
        model = self.encoder_model
        features = cached_features(model, images, self.device, progress=self.spec.progress, **model.extraction)
        return feature_view(features).to(images.device)

    def candidate_subset(self, pool: Pool, cycle: int, size: int | None) -> np.ndarray:
        """This cycle's candidates: the unlabelled pool, or a seeded random subset of `size` images.

        Drawn from the cycle's seed and the (unchanged) pool, so training (MoBY) and query see the same subset.
        """
        unlabelled = pool.unlabelled_indices()
        if size is None or size >= len(unlabelled):
            return unlabelled
        rng = np.random.default_rng(derive_seed(self.spec.seed, cycle, CANDIDATE_SEED))
        return np.sort(rng.choice(unlabelled, size=size, replace=False))

    def fit(
        self, model: Classifier, images: torch.Tensor, pool: Pool, cycle: int, candidates: np.ndarray
    ) -> TrainStats:
        """Train `model` on the pool's labelled images (`images`: `inputs` of every pool image, on the device); the
        pool's validation images, if it holds any, go to the trainer for early stopping (`Pool.set_validation`)."""
        labelled = pool.labelled_indices()
        if not len(labelled):
            raise DalkitError("there is nothing labelled to train on; label some images first.")
        unlabelled = None
        if any(objective.uses_unlabelled for objective in self.objectives) and len(candidates):
            unlabelled = images[torch.from_numpy(candidates)]
        validation = None
        held_out = pool.validation_indices()
        if len(held_out):
            validation = (images[torch.from_numpy(held_out)], torch.from_numpy(pool.validation_labels[held_out]))
        generator = make_generator(derive_seed(self.spec.seed, cycle, FIT_SEED), self.device)
        with isolated_rng(derive_seed(self.spec.seed, cycle, FIT_SEED)):  # dropout draws from the global RNG
            return self.trainer.fit(
                model,
                images[torch.from_numpy(labelled)],
                torch.from_numpy(pool.labels[labelled]),
                generator,
                unlabelled,
                validation,
            )

    def context(self, model: Classifier, images: torch.Tensor, pool: Pool, candidates: np.ndarray, cycle: int):
        """The query context of `cycle`, with the representation the strategy asked for."""
        ctx = QueryContext(
            model,
            images,
            self.input_normalizer,
            pool,
            candidates,
            make_generator(derive_seed(self.spec.seed, cycle, QUERY_SEED)),
            self.device,
            batch_size=inference_batch_size(self.device),
            progress=self.spec.progress,
        )
        return provide_representation(self.strategy, ctx, self.spec.progress)

    def query(
        self, model: Classifier, images: torch.Tensor, pool: Pool, candidates: np.ndarray, budget: int, cycle: int
    ) -> tuple[Selection, QueryContext]:
        """The strategy's `budget` picks among `candidates`, and the context it read (its cached model outputs)."""
        ctx = self.context(model, images, pool, candidates, cycle)
        return checked_select(self.strategy, ctx, budget), ctx
