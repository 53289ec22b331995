"""The one training loop: SGD with momentum (or Adam) and weight decay, step or cosine decay, batch augmentation
on the device, and early stopping on a validation set.

The loss of a batch is the sum of the configured objectives (cross-entropy by default; see
`dalkit.objectives`).

What the Bayesian AL papers' protocols need, each off by default (`TrainConfig`):

- `optimizer="adam"`: both papers train with Adam at lr 1e-3 (Gal et al.'s Keras `optimizer='adam'`, BatchBALD's
  `optim.Adam(model.parameters())`). Weight decay is then an L2 term in the gradient (torch's `Adam`, as Keras's
  `l2` regulariser), not AdamW's decoupled decay.
- `weight_decay_per_label`: the weight decay is divided by the number of labelled training images, Gal et al.'s
  L2 of c / N that shrinks as labels arrive. A model may leave parameters out of weight decay by naming them in
  `no_weight_decay()` (timm's convention; `gal-cnn` decays only its dense layer, as the Keras scripts do).
- `epoch_samples`: an epoch draws at least this many images, the labelled set repeated in a random order
  (`randperm(epoch_samples) % n`, every image floor(E / n) or ceil(E / n) times), BatchBALD's
  `RandomFixedLengthSampler` (5,056 on MNIST), so 20 labels still give 79 steps of 64 per epoch. With more labelled
  images than that, an epoch is one pass over them.
- `patience` (with validation images, see `Trainer.fit`): after every epoch the model is evaluated on the
  validation images (eval mode: no dropout); training stops when the validation accuracy has not risen above its
  best for `patience` epochs in a row (`epochs` is then the maximum), and the weights of the best epoch are put
  back, also when the maximum is reached first: BatchBALD's `RestoringScoreGuard` (github.com/BlackHC/BatchBALD
  `src/ignite_restoring_score_guard.py`: score = validation accuracy, "improved" = strictly higher, patience 3,
  at most 30 epochs on MNIST). The model's state (with its heads) is restored; objectives' own state (MoBY's
  momentum encoder) is not.

Under torch.distributed (`dalkit run --distributed`, torchrun) the model is wrapped in DistributedDataParallel:
every rank draws the same epoch order and augments the whole batch from the same generator, then trains on its
share (`batch[rank::world]`), so the averaged gradient is the whole batch's up to batch norm (statistics per
share), dropout masks (drawn per share) and the order of float sums.

The fast path in one place: the labelled images live on the device as uint8; each step gathers a
batch, augments it (random crop with padding, flip) and normalises it there. The model runs in
channels_last (faster convolutions on CPU too) and, on CUDA, under bf16 autocast. The epochs run in
`dalkit.runtime.fit_loop`: nothing inside an epoch synchronises with the host, the loss is summed on the
device and read once per epoch for the progress bar (images/s and ETA).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch

from dalkit.data.augment import Normalizer, augment_batch
from dalkit.data.base import AugmentSpec
from dalkit.models.base import Classifier, TrainDefaults, model_input
from dalkit.objectives import CrossEntropy, Objective, Step
from dalkit.runtime import autocast, batch_slices, distributed, fit_loop, inference_batch_size


@dataclass(frozen=True)
class TrainConfig:
    epochs: int
    lr: float
    milestones: tuple[int, ...] = ()
    batch_size: int = 128
    momentum: float = 0.9
    weight_decay: float = 5e-4
    gamma: float = 0.1
    schedule: str = "step"  # "step": x gamma at each milestone; "cosine": lr * (1 + cos(pi * epoch / epochs)) / 2
    nesterov: bool = False
    optimizer: str = "sgd"  # "sgd" (momentum, nesterov) or "adam" (betas 0.9, 0.999; L2 weight decay)
    weight_decay_per_label: bool = False  # weight_decay / (labelled images), Gal et al.'s c / N
    epoch_samples: int | None = None  # at least this many images per epoch: the labelled set repeated (BatchBALD)
    patience: int | None = None  # early stopping on validation accuracy; needs validation images

    @classmethod
    def from_defaults(cls, defaults: TrainDefaults, **overrides) -> TrainConfig:
        """A model's default schedule with the given (non-None) fields replaced.

        When `epochs` is changed and `milestones` is not, the default milestones keep their place in the schedule
        (200 epochs with a decay at 160 becomes 50 with a decay at 40), so a shorter run still decays its lr.
        """
        config = cls(**asdict(defaults))
        given = {k: v for k, v in overrides.items() if v is not None}
        if "epochs" in given and "milestones" not in given:
            given["milestones"] = tuple(round(m * given["epochs"] / defaults.epochs) for m in defaults.milestones)
        return replace(config, **given)


@dataclass(frozen=True)
class TrainStats:
    seconds: float
    images_per_second: float
    final_loss: float
    epochs: int | None = None  # epochs run (fewer than configured when early stopping ended training)
    best_epoch: int | None = None  # 1-based epoch whose weights were kept (early stopping)
    validation_accuracy: float | None = None  # of the weights kept, on the validation images
    epoch_losses: tuple[float, ...] = ()  # each epoch's mean training loss (the curve that shows convergence)
    objective_losses: dict[str, tuple[float, ...]] = field(default_factory=dict)  # per objective, when several


@dataclass(frozen=True)
class Evaluation:
    accuracy: float
    per_class_accuracy: list[float]
    predictions: np.ndarray


SCHEDULES = ("step", "cosine")
OPTIMIZERS = ("sgd", "adam")


def decayed_parameters(model: torch.nn.Module) -> list[dict] | list[torch.nn.Parameter]:
    """The optimizer's parameters: all of them, or two groups when the model names some in `no_weight_decay()`
    (timm's convention), the second with weight decay 0."""
    skip = model.no_weight_decay() if hasattr(model, "no_weight_decay") else set()
    if not skip:
        return list(model.parameters())
    named = list(model.named_parameters())
    return [
        {"params": [p for name, p in named if name not in skip]},
        {"params": [p for name, p in named if name in skip], "weight_decay": 0.0},
    ]


def scaled_groups(model: torch.nn.Module, lr: float) -> list[dict]:
    """A model's own `parameter_groups()` (a pretrained encoder's), each at `lr` x its `lr_scale` (default 1)."""
    return [{"params": g["params"], "lr": lr * g.get("lr_scale", 1.0)} for g in model.parameter_groups()]


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, labelled: int) -> torch.optim.Optimizer:
    """SGD with momentum (default) or Adam; weight decay divided by `labelled` with `weight_decay_per_label`;
    per-group learning rates when the model defines `parameter_groups()` (fine-tuning a pretrained encoder)."""
    decay = cfg.weight_decay / max(labelled, 1) if cfg.weight_decay_per_label else cfg.weight_decay
    params = scaled_groups(model, cfg.lr) if hasattr(model, "parameter_groups") else decayed_parameters(model)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=decay, nesterov=cfg.nesterov)


def epoch_order(n: int, epoch_samples: int | None, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """One epoch's image order: a permutation of the n images, or, when `epoch_samples` > n, a permutation of
    `epoch_samples` positions taken mod n (each image floor(E / n) or ceil(E / n) times, BatchBALD's sampler)."""
    if epoch_samples is None or epoch_samples <= n:
        return torch.randperm(n, device=device, generator=generator)
    return torch.randperm(epoch_samples, device=device, generator=generator) % n


class EarlyStopping:
    """Keeps the best validation accuracy's weights; says stop after `patience` epochs without a strict rise."""

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.state: dict[str, torch.Tensor] | None = None
        self.waited = 0

    def update(self, epoch: int, accuracy: float, model: torch.nn.Module) -> bool:
        """Record epoch `epoch`'s (0-based) validation accuracy; True when training should stop."""
        if self.best is not None and accuracy <= self.best:
            self.waited += 1
            return self.waited >= self.patience
        self.best, self.best_epoch, self.waited = accuracy, epoch + 1, 0
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return False

    def restore(self, model: torch.nn.Module) -> None:
        if self.state is not None:
            model.load_state_dict(self.state)


def lr_schedule(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LRScheduler:
    """Stepped once per epoch: step decay at `milestones`, or cosine from lr to 0 over the epochs (pycls's 'cos')."""
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, list(cfg.milestones), cfg.gamma)


class Trainer:
    """Fits a classifier on labelled uint8 images with the configured schedule."""

    def __init__(
        self,
        config: TrainConfig,
        augment: AugmentSpec,
        normalizer: Normalizer,
        device: torch.device,
        progress: bool = True,
        objectives: Sequence[Objective] | None = None,
        names: Sequence[str] | None = None,
    ) -> None:
        """`names` label `objectives` in `TrainStats.objective_losses` (default: their class names)."""
        self.config = config
        self.objectives = list(objectives) if objectives else [CrossEntropy()]
        self.names = list(names) if names else [type(objective).__name__ for objective in self.objectives]
        self.augment = augment
        self.device = device
        self.normalizer = normalizer.to(device)
        self.progress = progress

    def _inputs(self, images: torch.Tensor) -> torch.Tensor:
        return model_input(self.normalizer(images))

    def fit(
        self,
        model: Classifier,
        images: torch.Tensor,
        labels: torch.Tensor,
        generator: torch.Generator,
        unlabelled: torch.Tensor | None = None,
        validation: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> TrainStats:
        """Train `model` in place; `images` (uint8) and `labels` are moved to the device once.

        `unlabelled` (uint8 candidate images) is offered to objectives that learn from unlabelled
        images (MoBY), through `Step.unlabelled_batch`. `validation` (uint8 images, labels) drives early stopping
        when `patience` is set, and is otherwise evaluated once, after training.
        """
        cfg = self.config
        if cfg.patience is not None and validation is None:
            raise ValueError("early stopping (patience) needs validation images")
        images, labels = images.to(self.device), labels.to(self.device)
        n = len(images)
        draw_unlabelled = None
        if unlabelled is not None and len(unlabelled):
            unlabelled = unlabelled.to(self.device)

            def draw_unlabelled(count: int) -> torch.Tensor:
                pick = torch.randint(len(unlabelled), (count,), device=self.device, generator=generator)
                return unlabelled[pick]

        for objective in self.objectives:
            objective.prepare(model, images, labels, generator, self.progress)
        optimizer = make_optimizer(model, cfg, n)
        schedule = lr_schedule(optimizer, cfg)
        slices = batch_slices(max(n, cfg.epoch_samples or 0), cfg.batch_size)
        seen = sum(s.stop - s.start for s in slices)
        steps = cfg.epochs * len(slices)
        clean_forward = any(objective.reads_output for objective in self.objectives)
        rank, world = distributed()
        net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model

        def inputs_for(idx: torch.Tensor) -> torch.Tensor:
            return self._inputs(augment_batch(images[idx], self.augment, generator))

        def epoch_steps(epoch: int) -> Iterator[tuple[torch.Tensor, int]]:
            order = epoch_order(n, cfg.epoch_samples, generator, self.device)
            for k, part in enumerate(slices):
                idx = order[part]
                x = inputs_for(idx)  # every rank draws the whole batch, so the generators stay in step
                if world > 1:  # this rank's share; DDP averages the gradients of the shares
                    idx, x = idx[rank::world], x[rank::world]
                with autocast(self.device):
                    step = Step(
                        model,
                        x,
                        labels[idx],
                        net(x) if clean_forward else None,
                        idx,
                        labels,
                        epoch,
                        generator,
                        inputs_for,
                        progress=(epoch * len(slices) + k) / steps,
                        epochs=cfg.epochs,
                        normalize=self._inputs,
                        unlabelled_batch=draw_unlabelled,
                        raw=images[idx],
                        pixels=self.normalizer.pixels,
                    )
                    terms = [objective.loss(step) for objective in self.objectives]
                    batch_loss = sum(terms)
                optimizer.zero_grad(set_to_none=True)
                batch_loss.backward()
                optimizer.step()
                for objective in self.objectives:
                    objective.after_step(step)
                yield torch.stack([term.detach().float() for term in terms]), part.stop - part.start
            schedule.step()

        stopping = EarlyStopping(cfg.patience) if cfg.patience is not None else None

        def after_epoch(epoch: int, loss: torch.Tensor) -> bool:
            if stopping is None:
                return False
            assert validation is not None
            accuracy = self.evaluate(model, *validation).accuracy
            model.train()
            return stopping.update(epoch, accuracy, model)

        model.train()
        start = time.perf_counter()
        losses = fit_loop(
            cfg.epochs,
            seen,
            epoch_steps,
            progress=self.progress,
            description="train",
            names=self.names,
            stop=after_epoch,
        )
        terms = losses.reshape(-1, len(self.objectives))  # (epochs run, objectives)
        seconds = time.perf_counter() - start
        curve = tuple(terms.sum(dim=1).tolist())
        parts = {name: tuple(terms[:, i].tolist()) for i, name in enumerate(self.names)} if len(self.names) > 1 else {}
        final_loss = curve[-1] if curve else float("nan")
        epochs = len(curve)
        stats = TrainStats(
            seconds, epochs * seen / max(seconds, 1e-9), final_loss, epochs, epoch_losses=curve, objective_losses=parts
        )
        if stopping is not None:
            stopping.restore(model)
            return replace(stats, best_epoch=stopping.best_epoch, validation_accuracy=stopping.best)
        if validation is not None:
            accuracy = self.evaluate(model, *validation).accuracy
            model.train()
            return replace(stats, validation_accuracy=accuracy)
        return stats

    @torch.inference_mode()
    def evaluate(self, model: Classifier, images: torch.Tensor, labels: torch.Tensor) -> Evaluation:
        """Accuracy and per-class accuracy on a labelled split (eval mode, no augmentation)."""
        model.eval()
        batch_size = inference_batch_size(self.device)
        predictions = []
        for start in range(0, len(images), batch_size):
            x = self._inputs(images[start : start + batch_size].to(self.device))
            with autocast(self.device):
                predictions.append(model(x).logits.argmax(dim=1).cpu())
        predicted = torch.cat(predictions).numpy() if predictions else np.empty(0, dtype=np.int64)
        truth = labels.numpy()
        correct = predicted == truth
        num_classes = model.num_classes
        per_class = [
            float(correct[truth == c].mean()) if (truth == c).any() else float("nan") for c in range(num_classes)
        ]
        return Evaluation(float(correct.mean()), per_class, predicted)
