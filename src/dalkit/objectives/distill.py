"""Knowledge distillation from a trained teacher: Hinton KD, one-hot teachers, Patched One-hot Distillation.

All three train the student on

    (1 - weight) * CE(student, y) + weight * T^2 * KL(q || softmax(student / T))

and differ in the target q the teacher gives:

- `kd` (Hinton, Vinyals & Dean 2015): q = softmax(teacher / T). Defaults T = 4, weight = 0.9: the setting of
  the CIFAR-100 KD benchmark (Tian et al., CRD, ICLR 2020: CE weight 0.1, KD weight 0.9, T = 4) whose
  resnet32x4 -> resnet8x4 figures are student 72.50, KD 73.33, teacher 79.42.
- `onehot-kd`: the teacher exposes only its top-1 label (a black-box or label-only API): q = one_hot(argmax).
- `patch-kd`, Patched One-hot Distillation (NTU thesis, 2022, known here by its abstract): the one-hot teacher
  is asked about `patches` random square crops of each image, each `patch_size` of the side, resized to the
  full size; q is the empirical distribution of its answers, a soft target recovered from hard labels.
  Chosen where the abstract is silent (options): 8 patches of 0.75 of the side, drawn per image and step from
  the run's generator; the crops are taken from the student's augmented view.

T defaults to 1 for the two one-hot teachers: their targets are not softened logits, so there is no teacher
temperature to match, and at T = 1 the student's probabilities are fitted to the vote frequencies themselves.
Each of the three already contains the cross-entropy term: name it alone (`--objectives kd`), not `ce,kd`.

The teacher is a finished run (its directory, or a model file): `--objective-option kd.teacher=RUN_DIR`, or
`dalkit distill --teacher RUN_DIR`. It runs in eval mode without gradients, on the student's batch converted
to its own input normalisation.
"""

from __future__ import annotations

from abc import abstractmethod

import torch
from torch.nn import functional as F

from dalkit.errors import DalkitError
from dalkit.models.base import Classifier, model_input
from dalkit.models.saved import SavedModel, load_classifier
from dalkit.objectives.base import Objective, Step, register_objective
from dalkit.options import require
from dalkit.runtime import autocast


def distillation_loss(
    logits: torch.Tensor, labels: torch.Tensor, target: torch.Tensor, temperature: float, weight: float
) -> torch.Tensor:
    """(1 - weight) * CE(logits, labels) + weight * T^2 * KL(target || softmax(logits / T)), batch mean."""
    logits = logits.float()
    log_student = F.log_softmax(logits / temperature, dim=1)
    kl = F.kl_div(log_student, target.float(), reduction="batchmean")  # sum target * (log target - log p)
    return (1 - weight) * F.cross_entropy(logits, labels) + weight * temperature**2 * kl


def patch_votes(predictions: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(batch, patches) class predictions -> (batch, num_classes) vote frequencies; each row sums to 1."""
    return F.one_hot(predictions, num_classes).float().mean(dim=1)


def random_patches(images: torch.Tensor, patches: int, patch_size: float, generator: torch.Generator) -> torch.Tensor:
    """`patches` random square crops per image, each `patch_size` of the side, resized back to the full size.

    (B, C, H, W) -> (B * patches, C, H, W), image-major. Bilinear crop-and-resize through an affine grid.
    """
    b = len(images)
    scale = torch.full((b * patches,), patch_size, device=images.device)
    # the crop centre, in [-1, 1] coordinates, keeping the crop inside the image
    centre = (torch.rand(b * patches, 2, generator=generator, device=generator.device).to(images.device) * 2 - 1) * (
        1 - patch_size
    )
    theta = torch.zeros(b * patches, 2, 3, device=images.device)
    theta[:, 0, 0], theta[:, 1, 1] = scale, scale
    theta[:, :, 2] = centre
    source = images.float().repeat_interleave(patches, dim=0)
    grid = F.affine_grid(theta, list(source.shape), align_corners=False)
    return F.grid_sample(source, grid, mode="bilinear", padding_mode="border", align_corners=False)


class Distillation(Objective):
    """Shared by the three teachers: options, loading the teacher once, the loss; `target` differs."""

    name = "distillation"
    default_temperature = 1.0

    def __init__(self, teacher: str | None = None, temperature: float | None = None, weight: float = 0.9) -> None:
        temperature = self.default_temperature if temperature is None else temperature
        if not isinstance(teacher, str) or not teacher:
            raise DalkitError(
                f"the {self.name} objective needs a teacher: give --objective-option {self.name}.teacher=RUN_DIR "
                "(a finished run's directory), or use `dalkit distill --teacher RUN_DIR`."
            )
        require(temperature > 0, self.name, "temperature", temperature, "be positive", "temperature=4")
        require(0 <= weight <= 1, self.name, "weight", weight, "be in [0, 1]", "weight=0.9")
        self.teacher_path = teacher
        self.temperature = float(temperature)
        self.weight = float(weight)
        self.teacher: SavedModel | None = None

    def prepare(
        self,
        model: Classifier,
        images: torch.Tensor,
        labels: torch.Tensor,
        generator: torch.Generator,
        progress: bool = True,
    ) -> None:
        device = next(model.parameters()).device
        if self.teacher is None:
            self.teacher = load_classifier(self.teacher_path, device)
        if self.teacher.model.num_classes != model.num_classes:
            raise DalkitError(
                f"the teacher predicts {self.teacher.model.num_classes} classes and the student "
                f"{model.num_classes}; distil a teacher trained on the same data set."
            )

    @torch.no_grad()
    def teacher_logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """Teacher logits for a batch of 0..255 images (float), under autocast on CUDA."""
        assert self.teacher is not None, "prepare() runs before the first step"
        with autocast(inputs.device):
            return self.teacher.model(model_input(self.teacher.normalizer(inputs))).logits.float()

    @abstractmethod
    def target(self, pixels: torch.Tensor, step: Step) -> torch.Tensor:
        """The soft target q for a batch of 0..255 images (the student's augmented view)."""

    def loss(self, step: Step) -> torch.Tensor:
        assert step.pixels is not None, "the trainer supplies Step.pixels"
        target = self.target(step.pixels(step.inputs), step)
        return distillation_loss(step.output.logits, step.labels, target, self.temperature, self.weight)


@register_objective("kd")
class HintonKD(Distillation):
    """Knowledge distillation (Hinton et al. 2015): CE + T^2 KL to the teacher's softened outputs (T 4, weight 0.9)."""

    name = "kd"
    default_temperature = 4.0

    def target(self, pixels: torch.Tensor, step: Step) -> torch.Tensor:
        return F.softmax(self.teacher_logits(pixels) / self.temperature, dim=1)


@register_objective("onehot-kd")
class OneHotKD(Distillation):
    """KD from a label-only teacher: CE + KL to the teacher's one-hot top-1 predictions."""

    name = "onehot-kd"

    def target(self, pixels: torch.Tensor, step: Step) -> torch.Tensor:
        logits = self.teacher_logits(pixels)
        return F.one_hot(logits.argmax(dim=1), logits.shape[1]).float()


@register_objective("patch-kd")
class PatchedOneHotKD(Distillation):
    """Patched One-hot Distillation: the soft target is the label-only teacher's votes over image patches."""

    name = "patch-kd"

    def __init__(
        self,
        teacher: str | None = None,
        temperature: float | None = None,
        weight: float = 0.9,
        patches: int = 8,
        patch_size: float = 0.75,
    ) -> None:
        super().__init__(teacher, temperature, weight)
        require(patches >= 1, "patch-kd", "patches", patches, "be at least 1", "patches=8")
        require(0 < patch_size <= 1, "patch-kd", "patch_size", patch_size, "be a fraction in (0, 1]", "patch_size=0.75")
        self.patches = patches
        self.patch_size = float(patch_size)

    def target(self, pixels: torch.Tensor, step: Step) -> torch.Tensor:
        crops = random_patches(pixels, self.patches, self.patch_size, step.generator)
        logits = self.teacher_logits(crops)
        votes = logits.argmax(dim=1).view(len(pixels), self.patches)
        return patch_votes(votes, logits.shape[1])
