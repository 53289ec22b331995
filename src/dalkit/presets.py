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
# MoBYv2AL's protocol: CIFAR-10/100 start with 5,000 labels and add 2,500 per cycle, SVHN 1,000 + 1,000,
# FashionMNIST 100 + 100; 10 cycles; a random subset of 10,000 unlabelled candidates per cycle (also the
# images MoBY trains on); a fresh model each cycle. Training: SGD lr 0.01, momentum 0.9, weight decay 5e-4,
# batch 128, 222 epochs (the reference's default), x0.1 at epochs 60, 120 and 160 (the reference meant to
# decay there but never did, see dalkit.objectives.moby).
register_method(
    "mobyv2al",
    "MoBYv2AL (Caramalau et al. 2022): ResNet-18 trained with CE + MoBY self-supervision on labelled and "
    "candidate images, Core-Set (k-center greedy) on the query encoder's features; protocol: CIFAR 5,000 + 2,500, "
    "SVHN 1,000 + 1,000, FashionMNIST 100 + 100",
    model="resnet18",
    objectives=("ce", "moby"),
    strategy="mobyv2al",
    epochs=222,
    lr=0.01,
    milestones=(60, 120, 160),
    batch_size=128,
    weight_decay=5e-4,
    candidates=10000,
)


def method_fields(name: str) -> dict:
    """The ExperimentConfig fields a method sets."""
    return dict(METHODS.create(name).fields)


def list_methods() -> list[str]:
    return METHODS.names()
