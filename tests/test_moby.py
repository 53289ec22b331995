"""MoBYv2AL: momentum schedule and update, key queue, InfoNCE, batched SSL views, joint training, selection."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dalkit.data import ssl_augment as aug
from dalkit.data.augment import Normalizer
from dalkit.data.base import AugmentSpec
from dalkit.loop import ExperimentConfig
from dalkit.models import create_model
from dalkit.objectives import CrossEntropy, Step, create_objective
from dalkit.objectives.moby import KeyQueue, MoBY, contrastive_loss, momentum_at, momentum_update
from dalkit.seeding import make_generator
from dalkit.strategies import create_strategy
from dalkit.strategies.coreset import k_center_greedy
from dalkit.train import TrainConfig, Trainer


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one intra-op thread is faster, and far faster on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def images(n: int, channels: int = 3, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, channels, size, size), generator=make_generator(seed), dtype=torch.uint8)


# --- momentum encoder ---------------------------------------------------------------------------


def test_momentum_schedule_rises_from_base_to_one():
    assert momentum_at(0.0) == pytest.approx(0.99, abs=1e-12)
    assert momentum_at(1.0) == 1.0
    assert momentum_at(0.5) == pytest.approx(0.995)
    assert momentum_at(0.0, base=0.9) == pytest.approx(0.9)
    values = [momentum_at(p / 10) for p in range(11)]
    assert values == sorted(values)


def test_momentum_update_moves_every_target_parameter_by_the_schedule_factor():
    torch.manual_seed(0)
    online = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.Linear(5, 2))
    target = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.Linear(5, 2)).requires_grad_(False)
    with torch.no_grad():
        for p in target.parameters():
            p.normal_()
    before = [p.clone() for p in target.parameters()]
    online_before = [p.clone() for p in online.parameters()]
    m = momentum_at(0.3)
    momentum_update(online, target, m)
    for old, new, source, kept in zip(before, target.parameters(), online.parameters(), online_before):
        torch.testing.assert_close(new, m * old + (1 - m) * source, rtol=1e-6, atol=1e-7)
        assert torch.equal(source, kept)  # the online network is untouched


# --- queue and loss ------------------------------------------------------------------------------


def test_queue_keeps_exactly_the_newest_keys_and_stays_normalised():
    queue = KeyQueue(8, 4, make_generator(0))
    torch.testing.assert_close(queue.keys.norm(dim=1), torch.ones(8))
    pushed = F.normalize(torch.randn(23, 4, generator=make_generator(1)), dim=1)
    for start in range(0, 15, 3):  # 15 keys in pushes of 3: the queue wrapped around
        queue.push(pushed[start : start + 3])
    assert_same_rows(queue.keys, pushed[7:15])
    queue.push(pushed[15:23][:0])  # an empty push changes nothing
    assert_same_rows(queue.keys, pushed[7:15])
    queue.push(pushed)  # more keys than slots at once: only the last 8 stay
    assert_same_rows(queue.keys, pushed[-8:])
    torch.testing.assert_close(queue.keys.norm(dim=1), torch.ones(8))


def assert_same_rows(actual: torch.Tensor, expected: torch.Tensor) -> None:
    distances = torch.cdist(actual, expected)
    assert len(actual) == len(expected)
    assert (distances.min(dim=1).values < 1e-6).all() and (distances.min(dim=0).values < 1e-6).all()


def dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b))


def test_contrastive_loss_matches_a_hand_computation():
    q = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    k = torch.tensor([[0.8, 0.6], [0.0, 1.0]])
    queue = torch.tensor([[1.0, 0.0], [0.0, -1.0], [-0.6, 0.8]])
    t = 0.5
    expected = 0.0
    for qi, ki in zip(q.tolist(), k.tolist()):
        logits = [dot(qi, ki) / t] + [dot(qi, n) / t for n in queue.tolist()]
        expected += -logits[0] + math.log(sum(math.exp(v) for v in logits))
    assert contrastive_loss(q, k, queue, t).item() == pytest.approx(expected / 2, rel=1e-6)


def test_contrastive_loss_is_lower_when_queries_match_their_keys():
    g = make_generator(0)
    q = F.normalize(torch.randn(16, 8, generator=g), dim=1)
    other = F.normalize(torch.randn(16, 8, generator=g), dim=1)
    queue = F.normalize(torch.randn(32, 8, generator=g), dim=1)
    assert contrastive_loss(q, q, queue, 0.2) < contrastive_loss(q, other, queue, 0.2)


# --- augmentations -------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 3])
def test_views_keep_shape_dtype_and_range(channels):
    x = images(12, channels)
    g = make_generator(0)
    for view in (aug.strong_view(x, g), aug.weak_view(x, g)):
        assert view.shape == x.shape and view.dtype == torch.uint8
    unit = x.float() / 255
    ops = [
        lambda v: aug.random_resized_crop(v, g),
        lambda v: aug.colour_jitter(v, g, p=1.0),
        lambda v: aug.random_grayscale(v, g, p=1.0),
        lambda v: aug.gaussian_blur(v, g, p=1.0),
        lambda v: aug.random_solarize(v, g, p=1.0),
    ]
    for op in ops:
        out = op(unit)
        assert out.shape == unit.shape and out.dtype == torch.float32
        assert out.min() >= 0 and out.max() <= 1


def test_random_resized_crop_with_full_scale_and_square_ratio_is_the_identity():
    x = images(6).float() / 255
    out = aug.random_resized_crop(x, make_generator(0), scale=(1.0, 1.0), ratio=(1.0, 1.0))
    torch.testing.assert_close(out, x, atol=1e-5, rtol=0)


def test_crop_boxes_lie_inside_the_image_with_the_asked_area_and_aspect():
    top, left, h, w = aug.crop_boxes(2000, 32, 32, (0.2, 1.0), (3 / 4, 4 / 3), make_generator(0), torch.device("cpu"))
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 32).all() and (left + w <= 32).all()
    area = h * w / (32 * 32)
    assert area.min() > 0.15 and area.max() <= 1  # rounding the sides moves the area a little
    assert ((w / h) > 0.65).all() and ((w / h) < 1.5).all()
    assert len(set(zip(top.tolist(), left.tolist(), h.tolist()))) > 500  # boxes differ per image


def test_solarize_inverts_exactly_the_values_at_or_above_the_threshold():
    x = torch.tensor([0.0, 0.25, 0.49, 0.5, 0.8, 1.0])
    torch.testing.assert_close(aug.solarize(x), torch.tensor([0.0, 0.25, 0.49, 0.5, 0.2, 0.0]))
    k = torch.arange(256).float() / 255  # on k/255 images the threshold is PIL's 128
    assert torch.equal(aug.solarize(k) != k, torch.arange(256) >= 128)


def test_weak_view_is_a_window_of_the_padded_image_possibly_flipped():
    x = images(40, size=6)
    out = aug.weak_view(x, make_generator(0), padding=2)
    windows = set()
    for i in range(len(x)):
        found = [
            (flip, dy, dx)
            for flip, source in ((False, x[i]), (True, x[i].flip(2)))
            for dy in range(5)
            for dx in range(5)
            if torch.equal(out[i], F.pad(source, (2, 2, 2, 2))[:, dy : dy + 6, dx : dx + 6])
        ]
        assert found, "not a window of the padded (flipped) image"
        windows.update(found)
    assert len(windows) > 10 and {flip for flip, _, _ in windows} == {False, True}


def test_each_image_draws_its_own_augmentation():
    same = images(1).expand(16, -1, -1, -1).contiguous()
    g = make_generator(0)
    for out in (aug.strong_view(same, g), aug.weak_view(same, g)):
        assert len({bytes(o.flatten().tolist()) for o in out}) > 8


def test_colour_jitter_factors_are_per_image_and_in_range():
    x = torch.full((64, 3, 4, 4), 0.5) * torch.tensor([0.6, 1.0, 0.8]).view(1, 3, 1, 1)
    out = aug.colour_jitter(x, make_generator(0), brightness=0.4, contrast=0, saturation=0, hue=0, p=1.0)
    ratio = out / x
    assert torch.allclose(ratio, ratio[:, :1, :1, :1].expand_as(ratio), atol=1e-5)  # one factor per image
    factors = ratio[:, 0, 0, 0]
    assert factors.min() >= 0.6 - 1e-6 and factors.max() <= 1.4 + 1e-6 and factors.std() > 0.1
    assert torch.equal(aug.colour_jitter(x, make_generator(0), p=0.0), x)


def test_hue_rotation_keeps_luma_and_grayscale_equalises_channels():
    x = 0.4 + 0.2 * torch.rand(8, 3, 5, 5, generator=make_generator(0))  # in gamut after a small turn
    shifted = aug.adjust_hue(x, torch.full((8,), 0.05))
    torch.testing.assert_close(aug.grayscale(shifted), aug.grayscale(x), atol=1e-5, rtol=0)
    assert not torch.allclose(shifted, x, atol=1e-3)
    torch.testing.assert_close(aug.adjust_hue(x, torch.zeros(8)), x, atol=1e-5, rtol=0)
    gray = aug.random_grayscale(x, make_generator(0), p=1.0)
    assert torch.equal(gray[:, 0], gray[:, 1]) and torch.equal(gray[:, 1], gray[:, 2])
    single = x[:, :1]
    assert torch.equal(aug.random_grayscale(single, make_generator(0), p=1.0), single)


def test_gaussian_blur_keeps_flat_images_and_smooths_the_others():
    g = make_generator(0)
    flat = torch.full((4, 3, 16, 16), 0.3)
    torch.testing.assert_close(aug.gaussian_blur(flat, g, p=1.0), flat)
    x = images(4).float() / 255
    blurred = aug.gaussian_blur(x, g, p=1.0, sigma=(1.0, 2.0))
    assert (blurred.std(dim=(1, 2, 3)) < x.std(dim=(1, 2, 3))).all()
    assert torch.equal(aug.gaussian_blur(x, g, p=0.0), x)


# --- the objective -------------------------------------------------------------------------------


def normalizer() -> Normalizer:
    return Normalizer(torch.tensor([0.5, 0.5, 0.5]), torch.tensor([0.25, 0.25, 0.25]))


def test_loss_uses_labelled_and_unlabelled_images_and_trains_projector_predictor_and_trunk():
    torch.manual_seed(0)
    objective = MoBY(queue_size=16)
    model = create_model("resnet18", num_classes=3, width=8, heads=objective.heads())
    objective.prepare(model, torch.zeros(0, dtype=torch.uint8), torch.zeros(0, dtype=torch.long), make_generator(0))
    raw, pool = images(6), images(20, seed=1)
    asked = []

    def unlabelled_batch(count: int) -> torch.Tensor:
        asked.append(count)
        return pool[:count]

    norm = normalizer()
    inputs = norm(raw)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    step = Step(
        model, inputs, labels, model(inputs), torch.arange(6), labels, 0, make_generator(0), lambda i: inputs[i]
    )
    step.normalize, step.unlabelled_batch, step.raw = norm, unlabelled_batch, raw
    loss = objective.loss(step)
    assert asked == [6]  # as many unlabelled images as labelled ones
    assert [len(k) for k in objective.pending["weak"]] == [6, 6]
    assert torch.isfinite(loss) and loss > 0
    loss.backward()
    for module in (model.heads["moby"].predictor, model.heads["moby"].projector, model.stem):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
    assert all(p.grad is None for p in objective.key.parameters())


def test_moby_trains_end_to_end_and_the_key_encoder_follows_without_gradients():
    torch.manual_seed(0)
    objective = MoBY(queue_size=32)
    model = create_model("resnet18", num_classes=3, width=8, heads=objective.heads())
    trainer = Trainer(
        TrainConfig(epochs=2, lr=0.05, batch_size=8),
        AugmentSpec(crop_padding=2, flip=True),
        normalizer(),
        torch.device("cpu"),
        progress=False,
        objectives=[CrossEntropy(), objective],
    )
    # prepare now to record the heads; fit keeps them and re-copies the key
    objective.prepare(model, torch.zeros(0, dtype=torch.uint8), torch.zeros(0, dtype=torch.long), make_generator(0))
    projector = copy.deepcopy(model.heads["moby"].projector.state_dict())
    initial = {name: p.clone() for name, p in model.named_parameters()}
    labels = torch.randint(0, 3, (24,), generator=make_generator(2))
    stats = trainer.fit(model, images(24), labels, make_generator(0), unlabelled=images(40, seed=1))
    assert math.isfinite(stats.final_loss)
    assert not torch.equal(model.heads["moby"].projector.weight, projector["weight"])  # the optimizer trains it
    key = dict(objective.key.named_parameters())
    online_ids = {id(p) for p in model.parameters()}
    assert not any(id(p) in online_ids for p in key.values())
    assert all(not p.requires_grad and p.grad is None for p in key.values())
    moved = [name for name, p in key.items() if not torch.equal(p, initial[name])]
    assert "stem.0.weight" in moved and "heads.moby.projector.weight" in moved
    # an EMA with m close to 1 stays near the start, unlike the online encoder
    start, online, ema = initial["stem.0.weight"], model.stem[0].weight, key["stem.0.weight"]
    assert (ema - start).norm() < (online - start).norm()
    for queue in objective.queues.values():
        torch.testing.assert_close(queue.keys.norm(dim=1), torch.ones(32))


def test_moby_learns_to_tell_images_apart_after_a_plateau_at_chance(monkeypatch):
    """Instance discrimination, the property MoBY exists for: on 32 distinct images (two weak views each, so the task
    is learnable in a few hundred steps) the loss sits at chance, log(queue + 1), for the first hundred steps or so,
    then falls well below it. Misaligned positives, or a key encoder that did not follow, would stay at chance."""
    monkeypatch.setattr("dalkit.objectives.moby.strong_view", lambda x, g: aug.weak_view(x, g, 1, True))
    torch.manual_seed(0)
    objective = MoBY(queue_size=32)
    model = create_model("resnet18", num_classes=2, width=4, heads=objective.heads())
    trainer = Trainer(
        TrainConfig(epochs=250, lr=0.05, batch_size=16, weight_decay=0.0),
        AugmentSpec(crop_padding=1, flip=True),
        normalizer(),
        torch.device("cpu"),
        progress=False,
        objectives=[objective],
    )
    stats = trainer.fit(model, images(32), torch.zeros(32, dtype=torch.long), make_generator(0))
    chance, losses = math.log(33), stats.epoch_losses
    assert abs(sum(losses[10:30]) / 20 - chance) < 0.1  # the plateau: steps 20-60
    assert sum(losses[-5:]) / 5 < 0.85 * chance


def test_registered_with_options_and_as_a_method():
    objective = create_objective("moby", temperature=0.1, queue_size=64)
    assert isinstance(objective, MoBY) and objective.uses_unlabelled and objective.queue_size == 64
    config = ExperimentConfig.from_method("mobyv2al")
    assert config.objectives == ("ce", "moby") and config.strategy == "mobyv2al" and config.model == "resnet18"
    assert (config.epochs, config.lr, config.milestones, config.batch_size) == (222, 0.01, (60, 120, 160), 128)
    assert config.train_config().weight_decay == 5e-4 and config.candidates == 10000


# --- selection -----------------------------------------------------------------------------------


@pytest.mark.parametrize("labelled", [0, 5])
def test_selection_is_k_center_greedy_on_the_embeddings(labelled, context_factory):
    ctx = context_factory(pool_size=40, labelled=labelled, seed=7)
    picked = create_strategy("mobyv2al").select(ctx, 6).indices
    points, centres = ctx.outputs("candidates").embeddings, ctx.outputs("labelled").embeddings
    expected, _ = k_center_greedy(points, centres, 6, make_generator(7), ctx.chunk_size)
    assert picked.tolist() == ctx.candidates[expected.numpy()].tolist()
