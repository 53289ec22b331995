"""The CIFAR ResNets of He et al. (2016, section 4.2) used by the long-tail and knowledge-distillation benchmarks.

6n+2 layers: a 3x3 stem, then three stages of n basic blocks (the second and third halve the resolution), global
average pooling and a linear layer. Two reference codes, followed exactly (layout, shortcut, initialisation):

* "resnet32" (n = 5, 16/32/64 channels, 0.46M parameters for 10 classes): kaidic/LDAM-DRW `models/resnet_cifar.py`
  (Cao et al., NeurIPS 2019), itself Idelbayev's port of the paper's network. Shortcut option A: where the shape
  changes, the identity is subsampled (x[:, :, ::2, ::2]) and zero-padded with planes // 4 channels on each side,
  so the shortcuts have no parameters. Conv and linear weights are kaiming_normal_ (fan_in).
  Schedule (LDAM-DRW `cifar_train.py`): 200 epochs, SGD lr 0.1, momentum 0.9, weight decay 2e-4, batch 128, lr
  x0.01 after epochs 160 and 180 (0.1 -> 1e-3 -> 1e-5). Its 5-epoch linear warm-up is not modelled here.
* "resnet8x4" (n = 1) and "resnet32x4" (n = 5), stem 32 channels and stages 64/128/256 (`num_filters` [32, 64, 128,
  256]), 1.23M and 7.43M parameters for 100 classes: HobbitLong/RepDistiller `models/resnet.py` (Tian et al., CRD,
  ICLR 2020), the teacher/student pair of the CIFAR-100 KD benchmark. Shortcut option B: a 1x1 convolution with
  batch norm where the shape changes (also into the first stage, 32 -> 64 channels). Conv weights are
  kaiming_normal_ (fan_out, relu); the linear layer keeps PyTorch's default. Schedule (RepDistiller
  `train_teacher.py`, `helper/util.py`): 240 epochs, SGD lr 0.05, momentum 0.9, weight decay 5e-4, batch 64, lr
  x0.1 after epochs 150, 180 and 210.

RepDistiller's own "resnet32" (16/16/32/64 with option-B shortcuts) is a different network from LDAM-DRW's; the
name here means LDAM-DRW's. The three stage maps are the block outputs after the final ReLU (RepDistiller's f1-f3).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from dalkit.models.base import StagedClassifier, TrainDefaults
from dalkit.models.registry import register_model
from dalkit.models.resnet import BasicBlock

LDAM_DRW_SCHEDULE = TrainDefaults(
    epochs=200, lr=0.1, milestones=(160, 180), batch_size=128, weight_decay=2e-4, gamma=0.01
)
REPDISTILLER_SCHEDULE = TrainDefaults(
    epochs=240, lr=0.05, milestones=(150, 180, 210), batch_size=64, weight_decay=5e-4, gamma=0.1
)
X4_CHANNELS = (32, 64, 128, 256)


class ZeroPadShortcut(nn.Module):
    """Option A: the identity, subsampled by `stride` and zero-padded to `planes` channels (half on each side)."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        if planes < in_planes:
            raise ValueError("an option-A shortcut can only add channels")
        self.stride = stride
        self.before = (planes - in_planes) // 2
        self.after = planes - in_planes - self.before

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, :: self.stride, :: self.stride], (0, 0, 0, 0, self.before, self.after))


class ZeroPadBlock(BasicBlock):
    """The basic block with an option-A (parameter-free) shortcut where the shape changes."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__(in_planes, planes, stride)
        if stride != 1 or in_planes != planes:
            self.shortcut = ZeroPadShortcut(in_planes, planes, stride)


class CifarResNet(StagedClassifier):
    """He et al.'s 6n+2-layer CIFAR ResNet; `channels` = (stem, stage 1, stage 2, stage 3)."""

    def __init__(
        self,
        depth: int,
        channels: tuple[int, int, int, int],
        num_classes: int,
        in_channels: int = 3,
        dropout: float = 0.0,
        zero_pad_shortcut: bool = False,
    ) -> None:
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"a CIFAR ResNet has 6n+2 layers (8, 14, 20, 32, ...), not {depth}")
        blocks = (depth - 2) // 6
        block = ZeroPadBlock if zero_pad_shortcut else BasicBlock
        stem = nn.Sequential(
            nn.Conv2d(in_channels, channels[0], 3, 1, 1, bias=False), nn.BatchNorm2d(channels[0]), nn.ReLU()
        )
        widths = list(zip(channels[:-1], channels[1:]))
        stages = [make_stage(block, a, b, blocks, 1 if i == 0 else 2) for i, (a, b) in enumerate(widths)]
        super().__init__(stem, stages, tuple(channels[1:]), num_classes, dropout)


def make_stage(block: type[BasicBlock], in_planes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    """`blocks` blocks; the first changes the width and applies the stride."""
    return nn.Sequential(block(in_planes, planes, stride), *(block(planes, planes, 1) for _ in range(blocks - 1)))


def kaiming_init(model: nn.Module, mode: str, kinds: tuple[type[nn.Module], ...]) -> None:
    """kaiming_normal_ (ReLU gain) on the weights of the modules of the given kinds, as the reference codes do."""
    for module in model.modules():
        if isinstance(module, kinds):
            nn.init.kaiming_normal_(module.weight, mode=mode, nonlinearity="relu")


@register_model("resnet32", LDAM_DRW_SCHEDULE, "CIFAR ResNet-32 of LDAM-DRW (16/32/64, zero-padding shortcuts)")
def resnet32(num_classes: int, in_channels: int = 3, image_size: int = 32, dropout: float = 0.0) -> CifarResNet:
    model = CifarResNet(32, (16, 16, 32, 64), num_classes, in_channels, dropout, zero_pad_shortcut=True)
    kaiming_init(model, "fan_in", (nn.Conv2d, nn.Linear))
    return model


def repdistiller_resnet(depth: int, num_classes: int, in_channels: int, dropout: float) -> CifarResNet:
    model = CifarResNet(depth, X4_CHANNELS, num_classes, in_channels, dropout)
    kaiming_init(model, "fan_out", (nn.Conv2d,))
    return model


@register_model("resnet8x4", REPDISTILLER_SCHEDULE, "CIFAR ResNet-8x4 of the CRD/RepDistiller KD benchmark (student)")
def resnet8x4(num_classes: int, in_channels: int = 3, image_size: int = 32, dropout: float = 0.0) -> CifarResNet:
    return repdistiller_resnet(8, num_classes, in_channels, dropout)


@register_model("resnet32x4", REPDISTILLER_SCHEDULE, "CIFAR ResNet-32x4 of the CRD/RepDistiller KD benchmark (teacher)")
def resnet32x4(num_classes: int, in_channels: int = 3, image_size: int = 32, dropout: float = 0.0) -> CifarResNet:
    return repdistiller_resnet(32, num_classes, in_channels, dropout)
