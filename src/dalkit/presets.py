"""Methods from papers as presets: a named bundle of model, objectives and strategy.

`dalkit run --method NAME` starts from the preset; any option given explicitly on the command line
(or field passed to `ExperimentConfig`) overrides it, so each part still combines with the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dalkit.registry import Registry


@dataclass(frozen=True)
class Method:
    summary: str
    fields: dict = field(default_factory=dict)


METHODS: Registry[Method] = Registry("method")


def register_method(name: str, summary: str, **fields) -> None:
    METHODS.register(name)(lambda: Method(summary, fields))


register_method(
    "learning-loss",
    "Learning Loss (Yoo & Kweon 2019): ResNet-18 + loss prediction module, query the largest predicted loss",
    model="resnet18",
    objectives=("ce", "learning-loss"),
    strategy="learning-loss",
)
register_method(
    "cskd-sa",
    "CS-KD active learning with Shuffle Attention (Pang et al. 2023): resnet18-sa trained with CE + CS-KD, "
    "loss prediction on the SA-refined stage features, query the largest predicted loss",
    model="resnet18-sa",
    objectives=("ce", "cskd", "learning-loss"),
    strategy="learning-loss",
)
register_method(
    "coreset",
    "Core-Set (Sener & Savarese 2018): ResNet-18, k-center greedy on penultimate embeddings",
    model="resnet18",
    strategy="coreset",
)


def method_fields(name: str) -> dict:
    """The ExperimentConfig fields a method sets."""
    return dict(METHODS.create(name).fields)


def list_methods() -> list[str]:
    return METHODS.names()
