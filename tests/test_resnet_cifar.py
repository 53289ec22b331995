"""The LDAM-DRW and RepDistiller CIFAR ResNets: published sizes, shapes, shortcuts, schedules."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dalkit.models import TrainDefaults, create_model, model_entry
from dalkit.models.resnet_cifar import CifarResNet, ZeroPadShortcut

# exact counts of the reference networks (LDAM-DRW resnet32, RepDistiller resnet8x4 / resnet32x4), and the
# published rounded sizes: Idelbayev's / LDAM-DRW's table (0.46M, CIFAR-10), the CRD benchmark (CIFAR-100)
SIZES = [
    ("resnet32", 10, 464_154, 0.46e6),
    ("resnet8x4", 100, 1_233_540, 1.23e6),
    ("resnet32x4", 100, 7_433_860, 7.43e6),
]


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(("name", "num_classes", "exact", "published"), SIZES)
def test_parameter_counts_match_the_published_ones(name, num_classes, exact, published):
    count = parameter_count(create_model(name, num_classes=num_classes))
    assert count == exact
    assert abs(count - published) / published < 0.01


@pytest.mark.parametrize(
    ("name", "widths", "sizes"),
    [("resnet32", (16, 32, 64), (32, 16, 8)), ("resnet8x4", (64, 128, 256), (32, 16, 8))],
)
def test_outputs_embedding_and_three_stage_maps(name, widths, sizes):
    model = create_model(name, num_classes=7).eval()
    out = model(torch.randn(2, 3, 32, 32))
    assert out.logits.shape == (2, 7) and out.embedding.shape == (2, widths[-1])
    assert [f.shape for f in out.features] == [(2, w, s, s) for w, s in zip(widths, sizes)]
    assert model.stage_channels == widths and model.embedding_dim == widths[-1]
    torch.testing.assert_close(
        model.head(model.trunk(torch.ones(1, 3, 32, 32))).logits, model(torch.ones(1, 3, 32, 32)).logits
    )


def test_resnet32x4_shapes_on_a_grey_image():
    model = create_model("resnet32x4", num_classes=3, in_channels=1).eval()
    out = model(torch.randn(1, 1, 32, 32))
    assert out.logits.shape == (1, 3) and len(out.features) == 3 and out.features[-1].shape == (1, 256, 8, 8)


@pytest.mark.parametrize(("name", "depth"), [("resnet32", 32), ("resnet8x4", 8), ("resnet32x4", 32)])
def test_depth_counts_the_3x3_convolutions_and_the_linear_layer(name, depth):
    model = create_model(name, num_classes=10)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) + 1 == depth


def test_shortcut_options():
    zero_pad = create_model("resnet32", num_classes=10)
    assert not any(isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) for m in zero_pad.modules())
    assert sum(isinstance(m, ZeroPadShortcut) for m in zero_pad.modules()) == 2
    projection = create_model("resnet8x4", num_classes=10)  # 1x1 conv into each of the three stages
    assert sum(isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) for m in projection.modules()) == 3


def test_zero_pad_shortcut_subsamples_and_pads_half_on_each_side():
    x = torch.randn(2, 16, 8, 8)
    y = ZeroPadShortcut(16, 32, 2)(x)
    assert y.shape == (2, 32, 4, 4)
    assert torch.equal(y[:, 8:24], x[:, :, ::2, ::2])
    assert not y[:, :8].any() and not y[:, 24:].any()


def test_depth_must_be_6n_plus_2():
    with pytest.raises(ValueError):
        CifarResNet(30, (16, 16, 32, 64), 10)


def test_train_defaults_are_the_reference_schedules():
    ldam_drw = TrainDefaults(epochs=200, lr=0.1, milestones=(160, 180), batch_size=128, weight_decay=2e-4, gamma=0.01)
    assert model_entry("resnet32").train_defaults == ldam_drw
    repdistiller = TrainDefaults(epochs=240, lr=0.05, milestones=(150, 180, 210), batch_size=64, weight_decay=5e-4)
    assert model_entry("resnet8x4").train_defaults == model_entry("resnet32x4").train_defaults == repdistiller
