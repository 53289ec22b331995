"""The points TypiClust and ProbCover select on: the classifier's embeddings, or self-supervised features.

Strategy option `features`:
- "backbone" (default): the classifier's penultimate embeddings of the labelled images and the candidates, from
  the model trained this cycle (recomputed every cycle). With `--objectives ce,moby` these are MoBY-trained.
- "ssl": SimCLR features of all pool images (`dalkit.features.simclr`), which the engine computes once per pool
  (cached) before the query and hands over in `QueryContext.features`; options `ssl_<name>` set its
  `SimCLRConfig` fields (ssl_epochs, ssl_backbone, ssl_width, ssl_batch_size, ssl_lr, ssl_temperature,
  ssl_weight_decay, ssl_momentum, ssl_projection_dim, ssl_final_lr_ratio, ssl_seed) and `ssl_cache_dir` the cache
  folder ("none": memory only).

Either way the points are L2-normalised, labelled images first, and the selection's `info` says which were used.
The strategy trains nothing: it declares the request (`Representation.request`, its `Strategy.representation`)
and reads the answer.
"""

from __future__ import annotations

import numpy as np
import torch

from dalkit.errors import DalkitError
from dalkit.features import FeatureRequest
from dalkit.features.simclr import SimCLRConfig
from dalkit.options import call_with_options, require
from dalkit.strategies.base import QueryContext

FEATURES = ("backbone", "ssl")
SSL_PREFIX = "ssl_"


def normalised_embeddings(ctx: QueryContext) -> torch.Tensor:
    """L2-normalised embeddings of the labelled points then the candidates, (|labelled| + |candidates|, d)."""
    labelled = ctx.outputs("labelled").embeddings
    candidates = ctx.outputs("candidates").embeddings
    points = torch.cat([labelled.to(candidates.device), candidates]).float()
    return torch.nn.functional.normalize(points, dim=1)


class Representation:
    """Validated `features` choice of one strategy: the request the engine satisfies, and `points(ctx)`."""

    def __init__(self, owner: str, features: str = "backbone", ssl_options: dict | None = None) -> None:
        options = dict(ssl_options or {})
        require(features in FEATURES, owner, "features", features, f"be one of {', '.join(FEATURES)}", "features=ssl")
        unknown = sorted(name for name in options if not name.startswith(SSL_PREFIX))
        if unknown:
            raise DalkitError(
                f"{owner} does not take the option {', '.join(unknown)}; its self-supervised options start with "
                f"{SSL_PREFIX} (e.g. ssl_epochs); check --strategy-option."
            )
        if options and features != "ssl":
            raise DalkitError(
                f"the {owner} options {', '.join(sorted(options))} apply only to self-supervised features; "
                "add --strategy-option features=ssl."
            )
        self.owner = owner
        self.features = features
        self.request: FeatureRequest | None = None
        if features == "ssl":
            cache_dir = options.pop("ssl_cache_dir", None)
            fields = {name[len(SSL_PREFIX) :]: value for name, value in options.items()}
            config = call_with_options(SimCLRConfig, owner, "--strategy-option", option_prefix=SSL_PREFIX, **fields)
            config.check(owner)
            self.request = FeatureRequest("ssl", config, cache_dir)

    def points(self, ctx: QueryContext) -> tuple[torch.Tensor, dict]:
        """L2-normalised points of the labelled images then the candidates, and a JSON-able record of their source."""
        if self.request is None:
            info = {"features": "backbone", "source": "the classifier's penultimate embeddings, this cycle's model"}
            return normalised_embeddings(ctx), info
        if ctx.features is None:
            raise DalkitError(
                f"{self.owner} with features={self.features} reads precomputed features that this query context "
                "lacks; run it through dalkit.engine.Engine, which computes them."
            )
        order = torch.as_tensor(np.concatenate([ctx.labelled, ctx.candidates]), dtype=torch.long)
        points = torch.nn.functional.normalize(ctx.features[order].to(ctx.device).float(), dim=1)
        return points, ctx.features_info
