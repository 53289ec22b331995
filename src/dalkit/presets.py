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
# CS-KD active learning with Shuffle Attention (Pang et al., AIPR 2023). The paper is known only by its
# abstract, which states: the classifier is trained with class-wise self-knowledge distillation to curb
# overfitting on few labels; Shuffle Attention, combining spatial and channel information of the feature
# maps, improves how informative unlabelled images are judged; evaluation against AL baselines on CIFAR-10,
# CIFAR-100, SVHN and FashionMNIST (the Sequential-GCN / MoBYv2AL benchmark family).
# Chosen where it is silent (each one an option):
# - backbone: CIFAR ResNet-18 with SA in every block after the last BN (SA-Net's placement); the group
#   count rule for 64-channel stages is `dalkit.models.attention.sa_groups` (--model-option sa_groups=G);
# - CS-KD with the CS-KD paper's defaults T = 4, lambda = 1 (--objective-option cskd.temperature=...);
# - "judging informativeness with SA features": a Learning Loss module fed by the SA-refined stage maps,
#   ranking candidates by predicted loss (the benchmark family's Learning Loss baseline, made SA-aware);
#   the alternative is Core-Set on the SA-refined embedding (--strategy coreset);
# - the training schedule: the AL papers' ResNet-18 schedule (200 epochs, lr 0.1, x0.1 at 160).
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
