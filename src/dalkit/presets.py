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

# TypiClust in the low-budget regime (Hacohen, Dekel & Weinshall, ICML 2022, "Active Learning on a Budget:
# Opposite Strategies Suit High and Low Budgets", arXiv 2202.02794), fully supervised framework, CIFAR-10.
# Source of the settings: the authors' code, github.com/avihu111/TypiClust (read at commit 4097a71):
# - USAGE.md: TypiClust (K-means variant) run as `train_al.py --cfg configs/cifar10/al/RESNET18.yaml
#   --al typiclust_rp --initial_size 0 --budget 100`: cold start (the strategy picks the first 100 too),
#   100 labels a round; ACTIVE_LEARNING.MAX_ITER 5, i.e. 6 trainings at 100, 200, ..., 600 labels (here
#   `cycles=7`: round 0 has no labels and only queries). The paper's main supervised figure steps by
#   1 label per class instead: `--budget 10` (10, 20, ..., 60 labels).
# - deep-al/configs/cifar10/al/RESNET18.yaml: ResNet-18, SGD lr 0.025, momentum 0.9, Nesterov, weight decay
#   3e-4, cosine schedule (pycls "cos", to 0), batch 100, 200 epochs, a fresh model (same initial weights) every
#   round; augmentation random crop (padding 4) + horizontal flip.
# - features: SimCLR ResNet-18 trained 500 epochs on the training images (scan/configs/pretext/
#   simclr_cifar10.yml), here `features=ssl` (dalkit.ssl, cached after the first run).
# Departures: dalkit's ResNet-18 is the CIFAR one without the max-pool (the pycls one in the reference keeps a
# 3x3 stem plus max-pool); the reference holds out 10% of the training set as a validation set and tests the
# best epoch on it, dalkit tests the last epoch and keeps all 50,000 images in the pool; a new random init each
# round instead of the same init reused.
# Balanced start instead of the cold start: `--initial 100 --initial-mode balanced` (10 per class).
# Published numbers it should approach (what could be checked, and where):
# - the repository's results.png (README "TypiClust Results summary"): TypiClust's accuracy gain over random
#   selection on CIFAR-10 is +6.4 points fully supervised, +27.5 with a linear classifier on the self-supervised
#   embedding, +39.4 semi-supervised (FlexMatch); the figure does not state the budget these gains are taken at.
# - the abstract: FlexMatch on 10 TypiClust-selected CIFAR-10 labels reaches 93.2%, 39.4 points above random
#   selection (semi-supervised; dalkit's trainer is fully supervised, so this is not what this preset measures).
# - per-budget supervised accuracies are plotted (paper Fig. 4), not tabulated in the text; they could not be
#   read here, so none are quoted. What the preset should show: TypiClust above random at every budget up to a
#   few hundred labels, by several points.
register_method(
    "typiclust-lowbudget",
    "TypiClust, low budget (Hacohen et al. 2022): CIFAR-10, ResNet-18, cold start, 100 labels a round up to 600, "
    "SimCLR features trained on the pool (500 epochs, cached), SGD lr 0.025 Nesterov cosine, 200 epochs, batch 100",
    dataset="cifar10",
    model="resnet18",
    strategy="typiclust",
    strategy_options={"typiclust.features": "ssl", "probcover.features": "ssl"},
    initial=0,
    budget=100,
    cycles=7,
    epochs=200,
    lr=0.025,
    batch_size=100,
    weight_decay=3e-4,
    milestones=(),
    schedule="cosine",
    nesterov=True,
)


def method_fields(name: str) -> dict:
    """The ExperimentConfig fields a method sets."""
    return dict(METHODS.create(name).fields)


def list_methods() -> list[str]:
    return METHODS.names()
