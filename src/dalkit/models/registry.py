"""The model registry: `create_model(name, num_classes=, in_channels=, image_size=, **options)`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dalkit.models.base import Classifier, TrainDefaults
from dalkit.registry import Registry


@dataclass(frozen=True)
class ModelEntry:
    build: Callable[..., Classifier]
    train_defaults: TrainDefaults
    summary: str
    pretrained: bool = False  # a pretrained encoder with a head (`dalkit.models.pretrained`): its own input pipeline


MODELS: Registry[ModelEntry] = Registry("model")


def register_model(name: str, train_defaults: TrainDefaults, summary: str, pretrained: bool = False):
    def decorate(build: Callable[..., Classifier]) -> Callable[..., Classifier]:
        MODELS.register(name)(lambda: ModelEntry(build, train_defaults, summary, pretrained))
        return build

    return decorate


TIMM_PREFIX = "timm:"


def model_entry(name: str) -> ModelEntry:
    """The registered model `name`; `timm:NAME` is timm's model NAME as a pretrained encoder with a head."""
    if name.startswith(TIMM_PREFIX):
        from functools import partial

        from dalkit.models.pretrained import HEAD_DEFAULTS, timm_classifier

        build = partial(timm_classifier, name[len(TIMM_PREFIX) :])
        return ModelEntry(build, HEAD_DEFAULTS, f"timm's {name[len(TIMM_PREFIX) :]}, frozen + head", True)
    return MODELS.create(name)
