"""Class-conditional generators with a latent space, for Hybrid Mixup (`dalkit.objectives.hybrid_mixup`).

A `LatentGenerator` has three methods:

- `fit(images, labels, generator, progress)`: learn from the labelled uint8 images (N, C, H, W) and their labels,
  on the training device, drawing all randomness from `generator` and showing a progress bar only if `progress`;
  a no-op for a pre-trained generator (which may use it to load its weights onto `images.device` and note the
  data's image size);
- `class_latents(labels, generator) -> w`: one latent code per label, sampled for that class; the code carries
  the class (StyleGAN2's `mapping(z, c)`, or the built-in CVAE's [z, class embedding]), so a convex combination
  of two codes is a point between two classes;
- `synthesize(w) -> images`: float images on the 0..255 scale, shape (n, C, H, W) of the data.

Generators are registered by name (`register_generator`) and built with `create_generator(name, **options)`.
A user's own generator (e.g. a wrapper around a pre-trained StyleGAN2's G.mapping / G.synthesis) is found
either by a name it registered, once its module has been imported (Python API, or a launcher that imports it
before calling `dalkit.cli.main`), or, with no import needed, by a `package.module:attribute` path: that
module is imported and the attribute (a class or factory) called with the options. Either way nothing in
dalkit changes.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable

import torch

from dalkit.errors import DalkitError
from dalkit.options import call_with_options
from dalkit.registry import Registry


class LatentGenerator(ABC):
    """A class-conditional generator: sample a class's latent code, synthesise images from codes."""

    def fit(  # noqa: B027
        self, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator, progress: bool = True
    ) -> None:
        """Learn from the labelled uint8 images (N, C, H, W) and labels; nothing to do for a pre-trained one."""

    @abstractmethod
    def class_latents(self, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One latent code per label (first dimension len(labels)), sampled for that class from `generator`."""

    @abstractmethod
    def synthesize(self, w: torch.Tensor) -> torch.Tensor:
        """Images for latent codes `w`: float on the 0..255 scale, shape (len(w), C, H, W) of the data."""


GENERATORS: Registry[LatentGenerator] = Registry("generator", "--objective-option hybrid-mixup.KEY=VALUE")
register_generator: Callable = GENERATORS.register


def create_generator(name: str | LatentGenerator, **options) -> LatentGenerator:
    """A generator from a registered name, a `package.module:attribute` path, or an instance (returned as is)."""
    if isinstance(name, LatentGenerator):
        if options:
            raise DalkitError(
                f"options {sorted(options)} were given with a generator instance; set them on the instance instead."
            )
        return name
    if not isinstance(name, str) or not name:
        raise DalkitError(f"the generator must be a registered name or module:attribute path, got {name!r}.")
    if ":" not in name:
        if name not in GENERATORS:
            raise DalkitError(
                f"unknown generator {name!r}; choose one of: {', '.join(GENERATORS.names())}, or give your own as "
                "package.module:attribute (a name you registered needs its module imported first)."
            )
        return GENERATORS.create(name, **options)
    module_name, _, attribute = name.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise DalkitError(
            f"cannot load the generator {name!r} ({error}); give an importable package.module:attribute."
        ) from None
    made = call_with_options(factory, f"generator {name!r}", GENERATORS.option_flag, **options)
    if not isinstance(made, LatentGenerator):
        raise DalkitError(f"{name!r} made a {type(made).__name__}, not a dalkit.generators.LatentGenerator.")
    return made


def list_generators() -> list[str]:
    return GENERATORS.names()
