"""Methods from papers as presets: a named bundle of model, objectives and strategy.

`dalkit run --method NAME` starts from the preset; any option given explicitly on the command line
(or field passed to `ExperimentConfig`) overrides it, so each part still combines with the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dalkit.errors import DalkitError
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
# Its ablations, for `dalkit compare --methods cskd-sa,cskd-sa-no-sa,cskd-sa-no-cskd,learning-loss`: with the
# learning-loss method they make the 2 x 2 of {CS-KD or not} x {Shuffle Attention or not}, every one selecting
# with the same loss-prediction strategy.
register_method(
    "cskd-sa-no-sa",
    "cskd-sa without Shuffle Attention (CS-KD alone): resnet18 trained with CE + CS-KD, query the largest "
    "predicted loss",
    model="resnet18",
    objectives=("ce", "cskd", "learning-loss"),
    strategy="learning-loss",
)
register_method(
    "cskd-sa-no-cskd",
    "cskd-sa without CS-KD (Shuffle Attention alone): resnet18-sa trained with CE, query the largest predicted loss",
    model="resnet18-sa",
    objectives=("ce", "learning-loss"),
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

# The CIFAR-10 protocol of the Learning Loss / Sequential-GCN / CS-KD + SA family of papers (Yoo & Kweon, CVPR 2019,
# section 4.1; Caramalau et al., CVPR 2021; Pang et al., AIPR 2023 evaluate in it): CIFAR-10, 1,000 random initial
# labels, 1,000 more a cycle up to 10,000, each cycle scoring a random subset of 10,000 unlabelled images, a
# ResNet-18 trained from scratch every cycle for 200 epochs (SGD lr 0.1, momentum 0.9, weight decay 5e-4, batch
# 128, x0.1 at epoch 160), random crop (padding 4) + horizontal flip. GPU work: about 10 GPU-hours a run.
# Rows: `dalkit compare --method cifar10-paper --strategies random,entropy,coreset --methods cskd-sa,...`.
#: the cifar10-paper protocol's fields, which cifar10-cpu cuts down
CIFAR10_PAPER = dict(
    dataset="cifar10",
    model="resnet18",
    initial=1000,
    budget=1000,
    cycles=10,
    candidates=10000,
    epochs=200,
    lr=0.1,
    milestones=(160,),
    batch_size=128,
    weight_decay=5e-4,
)
register_method(
    "cifar10-paper",
    "the Learning Loss family's CIFAR-10 protocol: ResNet-18, 1,000 + 1,000 a cycle up to 10,000, 10,000 random "
    "candidates, 200 epochs (SGD 0.1, x0.1 at 160, wd 5e-4, batch 128); a GPU protocol",
    **CIFAR10_PAPER,
)
# The same protocol cut to what a 2-core CPU runs in about 20 minutes a run with CE (issue #16), for comparing the
# family's methods here: real CIFAR-10, 500 random initial labels + 500 a cycle up to 2,500, 10,000 random
# candidates a cycle, the papers' augmentation and optimiser. Departures (benchmarks/README.md, "cifar10-cpu"):
# - ResNet-18 at a quarter of the width (16 base channels: 1/16 of the convolution work; 722 training images/s
#   with CE here, 321 for cskd-sa, 127 for mobyv2al);
# - 100 epochs instead of 200, with the papers' x0.1 decay kept at 80% of them;
# - an epoch is at least `epoch_samples` = 1,000 images (the labelled set repeated), so the 500 initial labels get
#   the steps of 1,000 (780 steps of 128 a cycle up to 1,000 labels, 1,950 at 2,500). Sized on the loss each
#   cycle records: with a fixed 780 steps at every size, 2,500 labels ended at a train loss of 0.54 (82.9% of the
#   labelled set right, 61.6% test); with these 1,950, at 0.031 (99.8%, 67.0% test).
register_method(
    "cifar10-cpu",
    "the cifar10-paper protocol cut for a 2-core CPU: ResNet-18 width 16, 500 + 500 a cycle up to 2,500, 10,000 "
    "random candidates, 100 epochs of at least 1,000 images (lr 0.1, x0.1 at 80, wd 5e-4, batch 128)",
    **{
        **CIFAR10_PAPER,
        "model_options": {"width": 16},
        "initial": 500,
        "budget": 500,
        "cycles": 5,
        "epochs": 100,
        "epoch_samples": 1000,
        "milestones": (80,),
    },
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

# Gal, Islam & Ghahramani, "Deep Bayesian Active Learning with Image Data", ICML 2017 (arXiv 1703.02910), MNIST.
# Where each setting comes from: the paper's MNIST experiments (the model; "a (random but balanced) initial training
# set of 20 data points"; the standard 10,000-image test set; 100 acquisitions of the 10 images that maximise the
# acquisition function; each experiment repeated three times and averaged), and the authors' Keras scripts,
# github.com/Riashat/Deep-Bayesian-Active-Learning (commit e4e970c) MC_Dropout_Keras/Dropout_VarRatio_Q10_N1000_Paper.py
# and its siblings for BALD, Max Entropy, Mean STD, Random:
# - model `gal-cnn` (dalkit.models.bayesian_cnn): the paper's 2 x conv 4x4 / 32 + ReLU, max-pool 2x2, dropout 0.25,
#   dense 128 + ReLU, dropout 0.5, dense 10 (the scripts use 3x3 kernels and 5x5 pooling: --model-option kernel=3
#   pool=5);
# - `Queries = 10` per acquisition; `pool_subset = 2000`: each acquisition scores a random subset of 2,000 pool
#   images (`random.sample` each round) -> candidates=2000; `dropout_iterations = 100` MC dropout samples;
# - `nb_epoch = 50` epochs from scratch after every acquisition (a new `Sequential` each round), `batch_size = 128`,
#   `optimizer='adam'` (Keras default lr 1e-3), L2 `c / N` with c = 3.5 on the dense-128 weights only (N = labelled
#   images), which is torch weight decay 7 / N (`gal-cnn`'s training defaults, `weight_decay_per_label`);
# - no augmentation (the scripts feed the raw images / 255); test accuracy with dropout off (`model.evaluate`), as
#   dalkit evaluates.
# Departures: the paper tunes the weight decay on a 100-image validation set; the scripts fix c = 3.5 and so does
# this preset (no validation set). The scripts' pool is 40,000 of the 60,000 training images (a 5,000-image
# validation slice is only monitored); here every training image but the labelled ones is in the pool, which with
# 2,000 random candidates per round changes little. The scripts stop after 98 acquisitions (20..1,000 labels, their
# Results/Accuracy_Plot.py); the paper's 100 give cycles=101 (20..1,020 labels). One script
# (Dropout_Bald_Q10_N1000_Paper.py) has `nb_epoch = 5` and a 256-unit layer, the others 50 and 128: the preset
# follows the majority and the paper. (That code also never removes acquired images from its pool: it
# concatenates the scored subset back onto it; dalkit never asks for a labelled image again.)
# The acquisition functions of the paper: --strategy bald | variation-ratios | mean-std | entropy | random.
# The paper's result to compare with: its Table 1, the number of acquired images to reach 10% and 5% test error
# (`dalkit compare --method gal2017-mnist --strategies ... --targets 90,95`).
register_method(
    "gal2017-mnist",
    "Deep Bayesian AL (Gal, Islam & Ghahramani, ICML 2017), MNIST: gal-cnn (MC dropout), 20 balanced labels + 10 a "
    "round for 100 rounds, 2,000 random candidates, 100 MC samples, Adam 50 epochs, batch 128, L2 3.5/N, no augment",
    dataset="mnist",
    model="gal-cnn",
    strategy="bald",
    strategy_options={f"{name}.samples": 100 for name in ("bald", "variation-ratios", "mean-std", "entropy")},
    initial=20,
    initial_mode="balanced",
    budget=10,
    cycles=101,
    candidates=2000,
    epochs=50,
    lr=1e-3,
    batch_size=128,
    optimizer="adam",
    weight_decay=7.0,
    weight_decay_per_label=True,
    augment=False,
)

# BatchBALD (Kirsch, van Amersfoort & Gal, NeurIPS 2019, arXiv 1906.08158), MNIST. The settings are those recorded
# with the paper's own runs, github.com/BlackHC/BatchBALD laaos_results/paper/mnist_multibald_bald_k100_b10_*.py
# (BatchBALD) and mnist_independent_bald_k100_b10_*.py (BALD), `store['args']`, with the code they ran
# (src/run_experiment.py, src/dataset_enum.py, src/train_model.py, src/mnist_model.py):
# - `initial_samples_per_class: 2` -> 20 balanced labels; `available_sample_k: 10` per acquisition;
#   `target_num_acquired_samples: 300` -> up to 320 labels (cycles=31); `num_inference_samples: 100` MC samples
#   for the acquisition; no candidate subset (`initial_percentage: 100`: the whole pool is scored);
# - model `batchbald-cnn` (`mnist_model.BayesianNet`), `optim.Adam(model.parameters())` (lr 1e-3, no weight decay),
#   `batch_size: 64`, a new model every round;
# - `epoch_samples: 5056` (`RandomFixedLengthSampler`: an epoch draws 5,056 images, the labelled set repeated),
#   `epochs: 30` at most, `early_stopping_patience: 3` on validation accuracy, best epoch's weights restored
#   (`RestoringScoreGuard`); `validation_set_size: 1024` images extracted at random from the pool after the
#   initial samples (`active_learning_data.extract_dataset`), so never acquired;
# - no augmentation (`ToTensor` + `Normalize` only).
# Departures: the reference tests with the average of 100 MC-dropout predictions (`SamplerModel(model, k=100)`),
# dalkit with dropout off; the reference stops a run early once test accuracy reaches 96% (`target_accuracy`);
# dalkit runs every cycle. What those recorded runs reached (6 seeds each, labels including the initial 20, mean +-
# std; computed from the iterations in the files above): BatchBALD 90% at 101.7 +- 16.7, 95% at 221.7 +- 27.3;
# BALD (top-10) 90% at 158.3 +- 29.1, 95% at 256.7 +- 4.7 for the 3 of 6 seeds that reached it within 320.
# Repeated MNIST: --method batchbald-repeated-mnist.
#: what the BatchBALD paper's MNIST and Repeated MNIST runs share (see the comments above and below)
BATCHBALD_PROTOCOL = dict(
    initial=20,
    initial_mode="balanced",
    budget=10,
    cycles=31,
    lr=1e-3,
    batch_size=64,
    optimizer="adam",
    weight_decay=0.0,
    epoch_samples=5056,
    patience=3,
    augment=False,
)
register_method(
    "batchbald-mnist",
    "BatchBALD (Kirsch et al., NeurIPS 2019), MNIST: batchbald-cnn, 20 balanced + 10 a round up to 320 labels, 100 "
    "MC samples, Adam, batch 64, 5,056 images an epoch, early stopping (patience 3, <= 30 epochs, 1,024 validation)",
    dataset="mnist",
    model="batchbald-cnn",
    strategy="batchbald",
    strategy_options={"batchbald.samples": 100, "bald.samples": 100},
    epochs=30,
    validation=1024,
    **BATCHBALD_PROTOCOL,
)

# BatchBALD's Repeated MNIST experiment: the settings of laaos_results/paper/
# rmnist_w_noise_{multibald,independent}_bald_k10_b10_*.py in github.com/BlackHC/BatchBALD: the data set
# `repeated_mnist_w_noise` (dalkit's `repeated-mnist`: 3 noisy copies of MNIST's training set), 10 MC samples
# (`num_inference_samples: 10`), 10 per acquisition, `validation_set_size: 3072`, `epochs: 40` at most, patience 3,
# 5,056 images an epoch, batch 64, Adam, 20 balanced initial labels, up to 300 acquired (the reference also stops at
# 95% test accuracy). Its ablations with 2 and 5 copies: --dataset-option copies=2 / copies=5. Recorded results
# (6 seeds, labels incl. the initial 20): BatchBALD 90% at 135.0 +- 9.6, 95% at 270.0 +- 12.6 (5 of 6 seeds);
# BALD 90% at 273.3 +- 12.5 (3 of 6), 95% never within 320; random (5 a round) 90% at 209.2 +- 31.5.
register_method(
    "batchbald-repeated-mnist",
    "BatchBALD's Repeated MNIST (Kirsch et al. 2019): repeated-mnist (3 noisy copies), batchbald-cnn, 10 MC samples, "
    "20 balanced + 10 a round up to 320, early stopping (patience 3, <= 40 epochs, 3,072 validation)",
    dataset="repeated-mnist",
    model="batchbald-cnn",
    strategy="batchbald",
    strategy_options={"batchbald.samples": 10, "bald.samples": 10},
    epochs=40,
    validation=3072,
    **BATCHBALD_PROTOCOL,
)


#: what a method is, as against the protocol it was published with: what `dalkit compare --methods` takes from it
METHOD_PARTS = ("model", "model_options", "objectives", "objective_options", "strategy", "strategy_options")


def method_parts(name: str) -> dict:
    """The method's model, objectives and strategy (and their options), with the model and strategy always named."""
    fields = method_fields(name)
    missing = [key for key in ("model", "strategy") if key not in fields]
    if missing:
        raise DalkitError(
            f"method {name!r} is a protocol, not a method (it names no {' or '.join(missing)}); give it as --method."
        )
    return {key: fields[key] for key in METHOD_PARTS if key in fields}


def method_fields(name: str) -> dict:
    """The ExperimentConfig fields a method sets."""
    return dict(METHODS.create(name).fields)


def list_methods() -> list[str]:
    return METHODS.names()
