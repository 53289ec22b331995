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


MODELS: Registry[ModelEntry] = Registry("model")


def register_model(name: str, train_defaults: TrainDefaults, summary: str):
    def decorate(build: Callable[..., Classifier]) -> Callable[..., Classifier]:
        MODELS.register(name)(lambda: ModelEntry(build, train_defaults, summary))
        return build

    return decorate


def model_entry(name: str) -> ModelEntry:
    return MODELS.create(name)
