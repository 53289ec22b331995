"""The one training loop: SGD with momentum and weight decay, step or cosine decay, batch augmentation on the device.

The loss of a batch is the sum of the configured objectives (cross-entropy by default; see
`dalkit.objectives`).

The fast path in one place: the labelled images live on the device as uint8; each step gathers a
batch, augments it (random crop with padding, flip) and normalises it there. The model runs in
channels_last (faster convolutions on CPU too) and, on CUDA, under bf16 autocast. The epochs run in
`dalkit.runtime.fit_loop`: nothing inside an epoch synchronises with the host, the loss is summed on the
device and read once per epoch for the progress bar (images/s and ETA).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

from dalkit.data.augment import Normalizer, augment_batch
from dalkit.data.base import AugmentSpec
from dalkit.models.base import Classifier, TrainDefaults, model_input
from dalkit.objectives import CrossEntropy, Objective, Step
from dalkit.runtime import autocast, batch_slices, fit_loop, inference_batch_size


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


@dataclass(frozen=True)
class Evaluation:
    accuracy: float
    per_class_accuracy: list[float]
    predictions: np.ndarray


SCHEDULES = ("step", "cosine")


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
    ) -> None:
        self.config = config
        self.objectives = list(objectives) if objectives else [CrossEntropy()]
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
    ) -> TrainStats:
        """Train `model` in place; `images` (uint8) and `labels` are moved to the device once.

        `unlabelled` (uint8 candidate images) is offered to objectives that learn from unlabelled
        images (MoBY), through `Step.unlabelled_batch`.
        """
        cfg = self.config
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
        optimizer = torch.optim.SGD(
            model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=cfg.nesterov
        )
        schedule = lr_schedule(optimizer, cfg)
        slices = batch_slices(n, cfg.batch_size)
        seen = sum(s.stop - s.start for s in slices)
        steps = cfg.epochs * len(slices)
        clean_forward = any(objective.reads_output for objective in self.objectives)

        def inputs_for(idx: torch.Tensor) -> torch.Tensor:
            return self._inputs(augment_batch(images[idx], self.augment, generator))

        def epoch_steps(epoch: int) -> Iterator[tuple[torch.Tensor, int]]:
            order = torch.randperm(n, device=self.device, generator=generator)
            for k, part in enumerate(slices):
                idx = order[part]
                x = inputs_for(idx)
                with autocast(self.device):
                    step = Step(
                        model,
                        x,
                        labels[idx],
                        model(x) if clean_forward else None,
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
                    batch_loss = sum(objective.loss(step) for objective in self.objectives)
                optimizer.zero_grad(set_to_none=True)
                batch_loss.backward()
                optimizer.step()
                for objective in self.objectives:
                    objective.after_step(step)
                yield batch_loss, part.stop - part.start
            schedule.step()

        model.train()
        start = time.perf_counter()
        losses = fit_loop(cfg.epochs, seen, epoch_steps, progress=self.progress, description="train")
        seconds = time.perf_counter() - start
        final_loss = float(losses[-1]) if len(losses) else float("nan")
        return TrainStats(seconds, cfg.epochs * seen / max(seconds, 1e-9), final_loss)

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
