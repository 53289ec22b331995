"""Shuffle Attention (SA-Net) and the `resnet18-sa` model."""

from __future__ import annotations

import math

import pytest
import torch

from dalkit.models import create_model, list_models, model_entry
from dalkit.models.attention import SABasicBlock, ShuffleAttention, channel_shuffle, sa_groups
from dalkit.models.resnet import PAPER_SCHEDULE, BasicBlock


def naive_shuffle_attention(sa: ShuffleAttention, x: torch.Tensor) -> torch.Tensor:
    """SA written out channel by channel, independent of the module's reshapes."""
    b, c, h, w = x.shape
    per_group, half = c // sa.groups, c // (2 * sa.groups)
    merged = torch.empty_like(x)
    for n in range(b):
        for g in range(sa.groups):
            for j in range(half):
                xc = x[n, g * per_group + j]
                gate = torch.sigmoid(sa.cweight[0, j, 0, 0] * xc.mean() + sa.cbias[0, j, 0, 0])
                merged[n, g * per_group + j] = xc * gate
                xs = x[n, g * per_group + half + j]
                normed = (xs - xs.mean()) / torch.sqrt(xs.var(unbiased=False) + sa.gn.eps)
                normed = normed * sa.gn.weight[j] + sa.gn.bias[j]
                gate = torch.sigmoid(sa.sweight[0, j, 0, 0] * normed + sa.sbias[0, j, 0, 0])
                merged[n, g * per_group + half + j] = xs * gate
    # shuffle with 2 groups: output channel 2i + k is input channel k * C/2 + i
    order = [k * (c // 2) + i for i in range(c // 2) for k in range(2)]
    return merged[:, order]


def randomise(sa: ShuffleAttention, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in (sa.cweight, sa.cbias, sa.sweight, sa.sbias, sa.gn.weight, sa.gn.bias):
            p.copy_(torch.randn(p.shape, generator=gen))


def test_channel_shuffle_published_pattern():
    x = torch.arange(8.0).reshape(1, 8, 1, 1).expand(2, 8, 3, 3).contiguous()
    out = channel_shuffle(x, 2)
    assert out[0, :, 0, 0].tolist() == [0, 4, 1, 5, 2, 6, 3, 7]
    assert torch.equal(out[1], out[0])
    y = torch.randn(2, 12, 4, 5)
    shuffled = channel_shuffle(y, 3)
    assert torch.equal(shuffled, y[:, [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]])
    assert sorted(shuffled.sum(dim=(0, 2, 3)).tolist()) == sorted(y.sum(dim=(0, 2, 3)).tolist())


def test_sa_groups_rule():
    assert sa_groups(64) == 32
    assert sa_groups(128) == 64
    assert sa_groups(256) == 64
    assert sa_groups(512) == 64
    assert sa_groups(16) == 8
    assert sa_groups(48) == 24
    assert sa_groups(64, preferred=8) == 8
    assert sa_groups(24, preferred=5) == 4
    with pytest.raises(ValueError):
        sa_groups(7)
    with pytest.raises(ValueError):
        sa_groups(64, preferred=0)


def test_module_parameters_and_groupnorm():
    sa = ShuffleAttention(64, groups=8)
    assert sa.groups == 8
    for name in ("cweight", "cbias", "sweight", "sbias"):
        assert getattr(sa, name).shape == (1, 4, 1, 1)
    assert torch.all(sa.cweight == 0) and torch.all(sa.sweight == 0)
    assert torch.all(sa.cbias == 1) and torch.all(sa.sbias == 1)
    assert isinstance(sa.gn, torch.nn.GroupNorm)
    assert sa.gn.num_groups == sa.gn.num_channels == 4
    assert ShuffleAttention(64).groups == 32  # default: the rule applied to SA-Net's 64
    assert ShuffleAttention(512).gn.num_channels == 4
    with pytest.raises(ValueError, match="divisible by 2 \\* groups"):
        ShuffleAttention(64, groups=64)
    with pytest.raises(ValueError):
        ShuffleAttention(48, groups=5)


def test_keeps_shape():
    x = torch.randn(2, 32, 5, 7)
    assert ShuffleAttention(32, groups=4)(x).shape == x.shape


def test_open_gates_is_channel_shuffle():
    sa = ShuffleAttention(32, groups=4)
    with torch.no_grad():
        sa.cweight.zero_()
        sa.sweight.zero_()
        sa.cbias.fill_(1e4)
        sa.sbias.fill_(1e4)
    x = torch.randn(2, 32, 4, 4)
    assert torch.equal(sa(x), channel_shuffle(x, 2))


def test_initial_gates_are_sigmoid_one():
    sa = ShuffleAttention(32, groups=4)
    x = torch.randn(2, 32, 4, 4)
    torch.testing.assert_close(sa(x), channel_shuffle(x * torch.sigmoid(torch.tensor(1.0)), 2))


@pytest.mark.parametrize("channels,groups", [(16, 2), (32, 4), (24, 3)])
def test_matches_channel_by_channel_reference(channels, groups):
    sa = ShuffleAttention(channels, groups)
    randomise(sa)
    x = torch.randn(2, channels, 4, 3) * 2 + 0.5
    torch.testing.assert_close(sa(x), naive_shuffle_attention(sa, x), rtol=1e-5, atol=1e-5)
    # the layout the trainer feeds the model gives the same result
    torch.testing.assert_close(sa(x.contiguous(memory_format=torch.channels_last)), sa(x))


def test_sa_block_refines_the_residual_branch_before_the_addition():
    torch.manual_seed(0)
    block = SABasicBlock(16, 32, 2, groups=4).eval()
    randomise(block.sa)
    plain = BasicBlock(16, 32, 2).eval()
    missing, unexpected = plain.load_state_dict(block.state_dict(), strict=False)
    assert not missing
    assert all(k.startswith("sa.") for k in unexpected)
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(block.residual(x), block.sa(plain.residual(x)))
        torch.testing.assert_close(block(x), torch.relu(block.sa(plain.residual(x)) + plain.shortcut(x)))


def sa_parameter_count(width: int, groups_per_stage: list[int]) -> int:
    """Per block: cweight, cbias, sweight, sbias and the GroupNorm affine, each C/(2G) values."""
    total = 0
    for i, groups in enumerate(groups_per_stage):
        channels = width * 2**i
        total += 2 * (4 + 2) * (channels // (2 * groups))  # two blocks per stage
    return total


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_registered():
    assert "resnet18-sa" in list_models()
    entry = model_entry("resnet18-sa")
    assert entry.train_defaults == PAPER_SCHEDULE
    assert "Shuffle Attention" in entry.summary


def test_resnet18_sa_outputs_and_parameter_count():
    torch.manual_seed(0)
    model = create_model("resnet18-sa", num_classes=10)
    baseline = create_model("resnet18", num_classes=10)
    # stages of 64/128/256/512 channels -> 32/64/64/64 groups -> C/(2G) = 1, 1, 2, 4
    assert count(model) - count(baseline) == sa_parameter_count(64, [32, 64, 64, 64]) == 2 * 6 * 8
    assert model.embedding_dim == 512
    missing, unexpected = model.load_state_dict(baseline.state_dict(), strict=False)
    assert not unexpected
    assert missing and all(".sa." in k for k in missing)
    assert len(missing) == 8 * 6  # 8 blocks x (4 gate tensors + GroupNorm weight and bias)
    blocks = [m for m in model.modules() if isinstance(m, SABasicBlock)]
    assert [b.sa.groups for b in blocks] == [32, 32, 64, 64, 64, 64, 64, 64]

    out = model.eval()(torch.randn(2, 3, 16, 16))
    assert out.logits.shape == (2, 10)
    assert out.embedding.shape == (2, 512)
    assert [f.shape for f in out.features] == [(2, 64, 16, 16), (2, 128, 8, 8), (2, 256, 4, 4), (2, 512, 2, 2)]
    torch.testing.assert_close(out.embedding, out.features[-1].mean(dim=(2, 3)))


def test_resnet18_sa_groups_option_and_small_width():
    model = create_model("resnet18-sa", num_classes=3, width=16, sa_groups=4)
    baseline = create_model("resnet18", num_classes=3, width=16)
    blocks = [m for m in model.modules() if isinstance(m, SABasicBlock)]
    assert [b.sa.groups for b in blocks] == [4] * 8
    assert count(model) - count(baseline) == sa_parameter_count(16, [4, 4, 4, 4])
    default = create_model("resnet18-sa", num_classes=3, width=16)  # 16/32/64/128 -> 8/16/32/64 groups
    assert [b.sa.groups for b in default.modules() if isinstance(b, SABasicBlock)] == [8, 8, 16, 16, 32, 32, 64, 64]
    assert count(default) - count(baseline) == sa_parameter_count(16, [8, 16, 32, 64])
    with pytest.raises(ValueError):
        create_model("resnet18-sa", num_classes=3, width=16, sa_groups=0)


def test_resnet18_sa_features_are_sa_refined_and_gradients_reach_the_gates():
    torch.manual_seed(0)
    model = create_model("resnet18-sa", num_classes=3, width=16, dropout=0.2)
    assert model.has_dropout()
    x = torch.randn(2, 3, 16, 16)
    last = model.stages[-1][-1]
    captured = {}
    last.register_forward_pre_hook(lambda module, args: captured.update(block_input=args[0]))
    last.sa.register_forward_hook(lambda module, args, output: captured.update(sa=output))
    out = model(x)
    assert len(out.features) == 4
    assert out.features[1].shape == (2, 32, 8, 8)
    # the last stage map is the last block's relu(SA(residual) + shortcut)
    expected = torch.relu(captured["sa"] + last.shortcut(captured["block_input"]))
    torch.testing.assert_close(out.features[-1], expected)

    loss = torch.nn.functional.cross_entropy(out.logits, torch.tensor([0, 2]))
    loss.backward()
    for block in (m for m in model.modules() if isinstance(m, SABasicBlock)):
        for p in (block.sa.cweight, block.sa.sweight, block.sa.cbias, block.sa.sbias):
            assert p.grad is not None and torch.isfinite(p.grad).all()
        assert block.sa.cweight.grad.abs().sum() > 0
        assert block.sa.sweight.grad.abs().sum() > 0
    assert not math.isnan(loss.item())
