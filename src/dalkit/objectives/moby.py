"""MoBY self-supervision for MoBYv2AL (Caramalau, Bhattarai, Stoyanov & Kim, BMVC 2022).

The classifier's trunk (ResNet-18, 512-d) is the online (query) encoder. The model's `moby` head
(`dalkit.models.heads`, declared when the model is created, so trained by the one optimizer and saved
with the model): a projector Linear(512 -> 128) and a predictor Linear(128 -> 128) (the reference builds
MoBY with proj_num_layers = pred_num_layers = 1, i.e. one linear layer each, no batch norm or ReLU). A key
encoder and key projector (a deep copy of the model, held by this objective as training state like the
optimizer's momentum: not optimised, not saved, re-made at every fit since each cycle starts a fresh model)
follow the online ones by an exponential moving average after every step, with

    m = 1 - (1 - 0.99) * (cos(pi * progress) + 1) / 2          (0.99 at the start, 1 at the end)

Two queues of 4,096 L2-normalised keys (random at the start), one per view. For a strong view s and
a weak view w of each image, with q = normalize(predictor(projector(online(.)))) and
k = normalize(key_projector(key(.))):

    loss = InfoNCE(q_s, k_w, queue_w) + InfoNCE(q_w, k_s, queue_s),   temperature 0.2

where InfoNCE(q, k, queue) = CE over [q.k, q.queue] / T with the positive first; then k_s and k_w
join their queues (the oldest leave). The strong view is `ssl_augment.strong_view`, the weak view the
usual padded crop and flip (for labelled images the very inputs of the step, whose forward pass the
cross-entropy shares, as in the reference where the weak view's features feed the classifier; for
candidates a crop after padding `weak_padding` = 4 and, if `weak_flip`, a flip, as the reference's
CIFAR transform). Strong views of labelled images start from `Step.raw`, the batch before augmentation.

Joint training as the reference: each step takes the labelled batch and as many unlabelled
candidates (`unlabelled_per_batch`), and adds

    weight * (contrastive(labelled batch) + contrastive(unlabelled batch)),   weight 0.5

to the cross-entropy (objective "ce") on the labelled batch. The reference alternates a labelled
batch (CE + 0.5 contrastive) and an unlabelled batch (0.5 contrastive) as two optimizer steps; here
the two are one step with the sum of both losses. Each batch goes through the encoders on its own,
as the reference's homogeneous batches do (batch-norm statistics per batch).

Departures from the reference code, and why:
- Known defects not reproduced: (1) the reference's interleaved loader applies the cross-entropy to
  every batch up to index `last_inter`, which includes unlabelled batches, so their true labels reach
  the loss in part of each epoch; dalkit's trainer only ever gets the labelled pool's labels. (2) The
  classifier's optimizer calls zero_grad() right before step(), so the linear head is never updated;
  here the head trains with the rest. (3) MultiStepLR.step(loss) passes the loss as the epoch, so the
  learning rate never decays; here it decays x0.1 at epochs 60, 120 and 160. (4) The reported
  accuracy is the best over test-set evaluations (and those evaluations also run the MoBY forward,
  which moves the key encoder and pushes test keys into the queues); dalkit evaluates once, after
  training, without touching the encoders.
- The momentum schedule runs over this fit's steps (`Step.progress`); the reference counts steps
  against a fixed 222 epochs and counts the test passes too, so its m reaches 1 before training ends
  and then falls again.
- Weight decay 5e-4 applies to every trained parameter (the reference's classifier had 0, moot as
  it never stepped). The reference's queue needs 4096 % batch == 0; this queue takes any count.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn
from torch.nn import functional as F

from dalkit.data.ssl_augment import strong_view, weak_view
from dalkit.errors import DalkitError
from dalkit.models.base import Classifier
from dalkit.models.heads import model_head
from dalkit.objectives.base import Objective, Step, register_objective


def momentum_at(progress: float, base: float = 0.99) -> float:
    """The key encoder's momentum at a fraction `progress` of training: `base` at 0, rising to 1 at 1."""
    return 1 - (1 - base) * (math.cos(math.pi * progress) + 1) / 2


@torch.no_grad()
def momentum_update(online: nn.Module, target: nn.Module, m: float) -> None:
    """target <- m * target + (1 - m) * online, for every parameter the two share by name."""
    sources = dict(online.named_parameters())
    pairs = [(p, sources[name]) for name, p in target.named_parameters() if name in sources]
    if pairs:
        targets, onlines = zip(*pairs)
        torch._foreach_lerp_(list(targets), [p.detach() for p in onlines], 1 - m)


class KeyQueue:
    """A ring buffer of the newest `size` L2-normalised keys, (size, dim); starts as random unit vectors
    drawn from `generator`."""

    def __init__(self, size: int, dim: int, generator: torch.Generator, device: torch.device | str = "cpu") -> None:
        if size < 1:
            raise DalkitError(f"the moby option queue_size must be at least 1 (got {size}).")
        keys = torch.randn(size, dim, generator=generator, device=generator.device)
        self.keys = F.normalize(keys, dim=1).to(device)
        self.pointer = 0

    def __len__(self) -> int:
        return len(self.keys)

    @torch.no_grad()
    def push(self, keys: torch.Tensor) -> None:
        """Enqueue `keys` (n, dim) in place of the oldest; of more than `size` keys only the last stay."""
        size = len(self.keys)
        kept = keys[-size:]
        start = self.pointer + len(keys) - len(kept)
        slots = (start + torch.arange(len(kept), device=self.keys.device)) % size
        self.keys[slots] = kept.detach().to(self.keys.dtype)
        self.pointer = (self.pointer + len(keys)) % size


def contrastive_loss(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float) -> torch.Tensor:
    """InfoNCE, averaged over the batch: each q's positive is its own k, the negatives are the queue's keys."""
    q, k, queue = q.float(), k.float(), queue.float().detach()
    positive = (q * k).sum(dim=1, keepdim=True)
    logits = torch.cat([positive, q @ queue.T], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))


@register_objective("moby")
class MoBY(Objective):
    """MoBY contrastive term on labelled and unlabelled images (T 0.2, 4,096 keys, momentum 0.99 -> 1, weight 0.5)."""

    uses_unlabelled = True
    trains_head = "moby"

    def __init__(
        self,
        temperature: float = 0.2,
        queue_size: int = 4096,
        projection_dim: int = 128,
        momentum: float = 0.99,
        weight: float = 0.5,
        unlabelled_per_batch: int | None = None,
        weak_padding: int = 4,
        weak_flip: bool = True,
    ) -> None:
        if not 0 <= momentum <= 1:
            raise DalkitError(f"the moby option momentum must be in [0, 1] (got {momentum}).")
        self.temperature = temperature
        self.queue_size = queue_size
        self.projection_dim = projection_dim
        self.momentum = momentum
        self.weight = weight
        self.unlabelled_per_batch = unlabelled_per_batch
        self.weak_padding = weak_padding
        self.weak_flip = weak_flip
        self.key: Classifier | None = None
        self.queues: dict[str, KeyQueue] = {}
        self.pending: dict[str, list[torch.Tensor]] = {}

    def heads(self) -> dict[str, dict]:
        return {"moby": {"projection_dim": self.projection_dim}}

    def prepare(
        self,
        model: Classifier,
        images: torch.Tensor,
        labels: torch.Tensor,
        generator: torch.Generator,
        progress: bool = True,
    ) -> None:
        """Copy the model (with its `moby` head) as the key encoder and reset the queues (random keys)."""
        device = next(model.parameters()).device
        model_head(model, "moby")
        self.key = copy.deepcopy(model).requires_grad_(False).train()  # batch statistics, as the reference
        self.queues = {
            view: KeyQueue(self.queue_size, self.projection_dim, generator, device) for view in ("strong", "weak")
        }
        self.pending = {"strong": [], "weak": []}

    def query(self, model: Classifier, embedding: torch.Tensor) -> torch.Tensor:
        head = model_head(model, "moby")
        return F.normalize(head.predictor(head.projector(embedding)).float(), dim=1)

    @torch.no_grad()
    def keys(self, inputs: torch.Tensor) -> torch.Tensor:
        assert self.key is not None, "prepare() runs before the first step"
        return F.normalize(model_head(self.key, "moby").projector(self.key.trunk(inputs)).float(), dim=1)

    def batch_loss(
        self, step: Step, weak: torch.Tensor, strong: torch.Tensor, weak_embedding: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The symmetric loss of one batch given its weak and strong (normalised) inputs; queues up its keys."""
        if weak_embedding is None:
            weak_embedding = step.model.trunk(weak)
        q_weak = self.query(step.model, weak_embedding)
        q_strong = self.query(step.model, step.model.trunk(strong))
        k_weak, k_strong = self.keys(weak), self.keys(strong)
        self.pending["weak"].append(k_weak)
        self.pending["strong"].append(k_strong)
        return contrastive_loss(q_strong, k_weak, self.queues["weak"].keys, self.temperature) + contrastive_loss(
            q_weak, k_strong, self.queues["strong"].keys, self.temperature
        )

    def loss(self, step: Step) -> torch.Tensor:
        if step.normalize is None:
            raise DalkitError("the moby objective needs Step.normalize (run it through dalkit.train.Trainer).")
        total = step.output.logits.sum() * 0
        if step.raw is not None:
            strong = step.normalize(strong_view(step.raw, step.generator))
            total = total + self.batch_loss(step, step.inputs, strong, step.output.embedding)
        count = len(step.labels) if self.unlabelled_per_batch is None else self.unlabelled_per_batch
        if step.unlabelled_batch is not None and count > 0:
            images = step.unlabelled_batch(count)
            weak = step.normalize(weak_view(images, step.generator, self.weak_padding, self.weak_flip))
            strong = step.normalize(strong_view(images, step.generator))
            total = total + self.batch_loss(step, weak, strong)
        return self.weight * total

    def after_step(self, step: Step) -> None:
        """EMA of the key encoder and projector (m from the cosine schedule), then enqueue this step's keys."""
        assert self.key is not None, "prepare() runs before the first step"
        momentum_update(step.model, self.key, momentum_at(step.progress, self.momentum))
        for view, keys in self.pending.items():
            if keys:
                self.queues[view].push(torch.cat(keys))
            keys.clear()
