"""The points TypiClust and ProbCover select on: the classifier's embeddings, or self-supervised features.

Strategy option `features`:
- "backbone" (default): the classifier's penultimate embeddings of the labelled images and the candidates, from
  the model trained this cycle (recomputed every cycle). With `--objectives ce,moby` these are MoBY-trained.
- "ssl": a SimCLR encoder trained by dalkit on all pool images without labels (`dalkit.ssl`), once per pool and
  cached; options `ssl_<name>` set its `SimCLRConfig` fields (ssl_epochs, ssl_backbone, ssl_width, ssl_batch_size,
  ssl_lr, ssl_temperature, ssl_weight_decay, ssl_momentum, ssl_projection_dim, ssl_final_lr_ratio, ssl_seed) and
  `ssl_cache_dir` the cache folder ("none": memory only).

Either way the points are L2-normalised, labelled images first, and the selection's `info` says which were used.
"""

from __future__ import annotations

import numpy as np
import torch

from dalkit.errors import DalkitError
from dalkit.strategies.base import QueryContext

FEATURES = ("backbone", "ssl")


def normalised_embeddings(ctx: QueryContext) -> torch.Tensor:
    """L2-normalised embeddings of the labelled points then the candidates, (|labelled| + |candidates|, d)."""
    labelled = ctx.outputs("labelled").embeddings
    candidates = ctx.outputs("candidates").embeddings
    points = torch.cat([labelled.to(candidates.device), candidates]).float()
    return torch.nn.functional.normalize(points, dim=1)


class Representation:
    """Validated `features` choice of one strategy; `points(ctx)` gives the points and what they were."""

    def __init__(self, owner: str, features: str = "backbone", ssl_options: dict | None = None) -> None:
        from dalkit.ssl import SIMCLR_FIELDS, SimCLRConfig  # dalkit.ssl imports dalkit.train, which imports us

        options = dict(ssl_options or {})
        if features not in FEATURES:
            raise DalkitError(
                f"the {owner} option features must be one of {', '.join(FEATURES)} (got {features!r}); "
                "pass e.g. features=ssl."
            )
        allowed = {f"ssl_{name}" for name in SIMCLR_FIELDS} | {"ssl_cache_dir"}
        unknown = sorted(set(options) - allowed)
        if unknown:
            raise DalkitError(
                f"{owner} does not take the option {', '.join(unknown)}; its self-supervised options are "
                f"{', '.join(sorted(allowed))}; check --strategy-option."
            )
        if options and features != "ssl":
            raise DalkitError(
                f"the {owner} options {', '.join(sorted(options))} apply only to self-supervised features; "
                "add --strategy-option features=ssl."
            )
        self.owner = owner
        self.features = features
        self.cache_dir = options.pop("ssl_cache_dir", None)
        self.config = SimCLRConfig(**{name[4:]: value for name, value in options.items()})
        if features == "ssl":
            self.config.check(owner)

    def points(self, ctx: QueryContext) -> tuple[torch.Tensor, dict]:
        """L2-normalised points of the labelled images then the candidates, and a JSON-able record of their source."""
        if self.features == "backbone":
            info = {"features": "backbone", "source": "the classifier's penultimate embeddings, this cycle's model"}
            return normalised_embeddings(ctx), info
        from dalkit.ssl import features_at, pool_features

        features, info = pool_features(
            ctx.images, ctx.normalizer, self.config, ctx.device, self.cache_dir, ctx.batch_size
        )
        order = np.concatenate([ctx.labelled, ctx.candidates])
        return features_at(features, order, ctx.device), info
