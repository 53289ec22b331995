"""CIFAR-style ResNet-18 (He et al. 2016), the backbone of the AL papers: 3x3 stem, no max-pool.

`width` scales the channels (64 -> 64/128/256/512); `dropout` adds dropout before the classifier
(needed only for MC-dropout strategies). The default schedule is the AL papers': 200 epochs, lr 0.1,
x0.1 at epoch 160, momentum 0.9, weight decay 5e-4, batch 128 (Yoo & Kweon 2019; Sener & Savarese 2018).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from dalkit.models.base import StagedClassifier, TrainDefaults
from dalkit.models.registry import register_model


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.residual(x) + self.shortcut(x))


class ResNet(StagedClassifier):
    """`block(in_planes, planes, stride)` builds each residual block: a block class or any such factory."""

    def __init__(
        self,
        num_blocks: tuple[int, ...],
        num_classes: int,
        in_channels: int = 3,
        width: int = 64,
        dropout: float = 0.0,
        block: Callable[[int, int, int], nn.Module] = BasicBlock,
    ) -> None:
        stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        stages, in_planes = [], width
        for i, blocks in enumerate(num_blocks):
            planes = width * 2**i
            layers = []
            for j in range(blocks):
                layers.append(block(in_planes, planes, 1 if i == 0 or j > 0 else 2))
                in_planes = planes
            stages.append(nn.Sequential(*layers))
        channels = tuple(width * 2**i for i in range(len(num_blocks)))
        super().__init__(stem, stages, channels, num_classes, dropout)


PAPER_SCHEDULE = TrainDefaults(epochs=200, lr=0.1, milestones=(160,))


@register_model("resnet18", PAPER_SCHEDULE, "CIFAR ResNet-18 (3x3 stem, no max-pool), width option")
def resnet18(
    num_classes: int, in_channels: int = 3, image_size: int = 32, width: int = 64, dropout: float = 0.0
) -> ResNet:
    return ResNet((2, 2, 2, 2), num_classes, in_channels, width, dropout)


@register_model("resnet18-w16", PAPER_SCHEDULE, "ResNet-18 at a quarter of the width (16 base channels), a student")
def resnet18_w16(num_classes: int, in_channels: int = 3, image_size: int = 32, dropout: float = 0.0) -> ResNet:
    return resnet18(num_classes, in_channels, image_size, width=16, dropout=dropout)
