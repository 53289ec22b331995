"""Class-conditional generators with a latent space, for Hybrid Mixup; the interface is in `base`."""

from __future__ import annotations

from dalkit.generators import cvae  # noqa: F401  (register the built-in generators)
from dalkit.generators.base import (
    GENERATORS,
    LatentGenerator,
    create_generator,
    list_generators,
    register_generator,
)

__all__ = ["GENERATORS", "LatentGenerator", "create_generator", "list_generators", "register_generator"]
