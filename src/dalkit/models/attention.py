"""Shuffle Attention (SA-Net: Zhang & Yang, ICASSP 2021) and `resnet18-sa`, a CIFAR ResNet-18 using it.

The SA module splits the C channels into G groups and each group's C/G channels in half: the first
half is gated per channel by sigmoid(cweight * GAP(x) + cbias) (channel attention), the second by
sigmoid(sweight * GroupNorm(x) + sbias) with one GroupNorm group per channel (spatial attention).
The halves are concatenated, the groups merged back to C channels and the channels shuffled with 2
groups so that information flows between the two halves. Gate weights start at 0 and biases at 1, so
at initialisation every gate is sigmoid(1), as in the reference code.

Group rule: SA-Net uses G = 64, which needs C divisible by 2G (128 for G = 64); ResNet-18's first
stage has only 64 channels (fewer with a smaller `width`). `sa_groups(C, preferred)` therefore takes
the largest G <= preferred with C % (2G) == 0: 64 channels -> 32 groups, 128 or more -> 64.
`resnet18-sa` applies the rule per stage to its `sa_groups` option (the preferred G, default 64).

As in SA-Net's ResNet blocks, SA refines the residual branch after its last batch norm, before the
residual addition; the stage feature maps in `ModelOutput.features` are therefore SA-refined.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from dalkit.models.registry import register_model
from dalkit.models.resnet import PAPER_SCHEDULE, BasicBlock, ResNet

SA_NET_GROUPS = 64


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet channel shuffle: (B, g, C/g, H, W) -> transpose -> flatten (C=8, g=2: 0,4,1,5,2,6,3,7)."""
    b, c, h, w = x.shape
    if c % groups:
        raise ValueError(f"channel_shuffle: {c} channels are not divisible by {groups} groups")
    return x.reshape(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


def sa_groups(channels: int, preferred: int = SA_NET_GROUPS) -> int:
    """The largest group count G <= `preferred` with `channels` divisible by 2G (64 -> 32, 128+ -> 64)."""
    if preferred < 1:
        raise ValueError(f"the preferred number of SA groups must be positive, got {preferred}")
    for groups in range(preferred, 0, -1):
        if channels % (2 * groups) == 0:
            return groups
    raise ValueError(f"Shuffle Attention needs an even number of channels, got {channels}")


class ShuffleAttention(nn.Module):
    """SA-Net's Shuffle Attention over `channels` channels in `groups` groups (None: `sa_groups(channels)`)."""

    def __init__(self, channels: int, groups: int | None = None) -> None:
        super().__init__()
        if groups is None:
            groups = sa_groups(channels)
        if groups < 1 or channels % (2 * groups):
            hint = f"; sa_groups({channels}) = {sa_groups(channels)} fits" if channels % 2 == 0 else ""
            raise ValueError(
                f"Shuffle Attention needs channels divisible by 2 * groups, got {channels} channels "
                f"and {groups} groups{hint}"
            )
        self.channels = channels
        self.groups = groups
        half = channels // (2 * groups)
        self.cweight = nn.Parameter(torch.zeros(1, half, 1, 1))
        self.cbias = nn.Parameter(torch.ones(1, half, 1, 1))
        self.sweight = nn.Parameter(torch.zeros(1, half, 1, 1))
        self.sbias = nn.Parameter(torch.ones(1, half, 1, 1))
        self.gn = nn.GroupNorm(half, half)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        grouped = x.reshape(b * self.groups, c // self.groups, h, w)
        x_c, x_s = grouped.chunk(2, dim=1)
        channel_gate = torch.sigmoid(self.cweight * x_c.mean(dim=(2, 3), keepdim=True) + self.cbias)
        spatial_gate = torch.sigmoid(self.sweight * self.gn(x_s) + self.sbias)
        out = torch.cat([x_c * channel_gate, x_s * spatial_gate], dim=1).reshape(b, c, h, w)
        return channel_shuffle(out, 2)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, groups={self.groups}"


class SABasicBlock(BasicBlock):
    """A ResNet basic block whose residual branch ends in Shuffle Attention (after bn2, before the addition)."""

    def __init__(self, in_planes: int, planes: int, stride: int, groups: int | None = None) -> None:
        super().__init__(in_planes, planes, stride)
        self.sa = ShuffleAttention(planes, groups)

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        return self.sa(super().residual(x))


def sa_block(preferred_groups: int = SA_NET_GROUPS) -> Callable[[int, int, int], SABasicBlock]:
    """A `ResNet` block factory: SA blocks with `sa_groups(planes, preferred_groups)` groups."""
    if preferred_groups < 1:
        raise ValueError(f"the preferred number of SA groups must be positive, got {preferred_groups}")

    def build(in_planes: int, planes: int, stride: int) -> SABasicBlock:
        return SABasicBlock(in_planes, planes, stride, groups=sa_groups(planes, preferred_groups))

    return build


@register_model("resnet18-sa", PAPER_SCHEDULE, "CIFAR ResNet-18 with Shuffle Attention in every block (SA-Net)")
def resnet18_sa(
    num_classes: int,
    in_channels: int = 3,
    image_size: int = 32,
    width: int = 64,
    dropout: float = 0.0,
    sa_groups: int = SA_NET_GROUPS,
) -> ResNet:
    return ResNet((2, 2, 2, 2), num_classes, in_channels, width, dropout, block=sa_block(sa_groups))
