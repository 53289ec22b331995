"""Models: each a function registered by name, created with `create_model`."""

from __future__ import annotations

from dalkit.models import attention, bayesian_cnn, pretrained, resnet, resnet_cifar, small_cnn  # noqa: F401  (register the models)
from dalkit.models.base import Classifier, ModelOutput, TrainDefaults
from dalkit.models.heads import attach_heads, model_head
from dalkit.models.registry import MODELS, model_entry
from dalkit.options import call_with_options


def create_model(
    name: str,
    num_classes: int,
    in_channels: int = 3,
    image_size: int = 32,
    heads: dict[str, dict] | None = None,
    **options,
) -> Classifier:
    """Build a registered model with the `heads` its objectives train (name -> options, see `dalkit.models.heads`);
    `options` are the model's own (width, dropout, ...)."""
    build = model_entry(name).build
    model = call_with_options(
        build,
        f"model {name!r}",
        "--model-option",
        num_classes=num_classes,
        in_channels=in_channels,
        image_size=image_size,
        **options,
    )
    return attach_heads(model, heads or {})


def list_models() -> list[str]:
    return MODELS.names()


__all__ = ["Classifier", "ModelOutput", "TrainDefaults", "create_model", "list_models", "model_entry", "model_head"]
