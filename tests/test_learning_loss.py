"""Learning Loss: the module's shape, the paper's ranking loss, the stop-gradient epoch, the strategy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dalkit.models import create_model
from dalkit.models.heads import LossPredictionModule, model_head
from dalkit.objectives import create_objective
from dalkit.objectives.base import Step
from dalkit.objectives.learning_loss import margin_ranking_loss
from dalkit.seeding import make_generator
from dalkit.strategies import checked_select, create_strategy, list_strategies


def test_module_maps_four_stage_maps_to_one_number_per_image():
    module = LossPredictionModule((64, 128, 256, 512))
    features = tuple(torch.randn(3, c, s, s) for c, s in [(64, 8), (128, 4), (256, 2), (512, 1)])
    assert module(features).shape == (3,)
    assert [b.out_features for b in module.branches] == [128] * 4 and module.out.in_features == 512


def test_ranking_loss_is_zero_for_correct_order_beyond_the_margin():
    target = torch.tensor([3.0, 2.0, 0.5, 0.1])  # pairs (0,3) and (1,2): first of each has the larger loss
    assert margin_ranking_loss(torch.tensor([5.0, 4.0, 1.0, 0.0]), target) == 0
    # inside the margin or reversed: positive, and exactly the hinge
    predicted = torch.tensor([0.5, 1.0, 1.2, 0.0])  # diffs: 0.5 (right order, within margin), -0.2 (wrong)
    expected = ((1 - 0.5) + (1 + 0.2)) / 2
    torch.testing.assert_close(margin_ranking_loss(predicted, target), torch.tensor(expected))


def step_for(model, epoch: int, epochs: int) -> Step:
    x = torch.randn(8, 1, 8, 8)
    labels = torch.randint(0, 3, (8,))
    return Step(
        model, x, labels, model(x), torch.arange(8), labels, epoch, make_generator(0), lambda i: x[i], epochs=epochs
    )


def backbone_gradient(epoch: int, epochs: int = 200, **options) -> float:
    torch.manual_seed(0)
    objective = create_objective("learning-loss", **options)
    model = create_model("small-cnn", num_classes=3, in_channels=1, image_size=8, width=8, heads=objective.heads())
    objective.prepare(model, torch.zeros(0, dtype=torch.uint8), torch.zeros(0, dtype=torch.long), make_generator(0))
    objective.loss(step_for(model, epoch, epochs)).backward()
    backbone = sum(
        p.grad.abs().sum().item() for n, p in model.named_parameters() if n.startswith("stages") and p.grad is not None
    )
    module = sum(p.grad.abs().sum().item() for p in model.heads["loss-prediction"].parameters())
    assert module > 0  # the module itself keeps learning
    return backbone


def test_backbone_gradient_stops_at_the_stop_epoch():
    assert backbone_gradient(epoch=119, stop_epoch=120) > 0
    assert backbone_gradient(epoch=120, stop_epoch=120) == 0


def test_backbone_gradient_stops_at_the_papers_share_of_a_shorter_schedule():
    """The paper stops at epoch 120 of 200; a 100-epoch schedule (cifar10-cpu) must stop at 60, not never."""
    assert backbone_gradient(epoch=119, epochs=200) > 0 and backbone_gradient(epoch=120, epochs=200) == 0
    assert backbone_gradient(epoch=59, epochs=100) > 0 and backbone_gradient(epoch=60, epochs=100) == 0
    assert backbone_gradient(epoch=99, epochs=100, stop_fraction=1) > 0  # 1: the gradient never stops


def test_strategy_picks_the_largest_predicted_losses(context_factory):
    ctx = context_factory(pool_size=30, labelled=0)
    module = model_head(ctx.model, "loss-prediction")
    with torch.no_grad():
        for p in module.parameters():
            p.normal_()
    strategy = create_strategy("learning-loss")
    scores = strategy.scores(ctx)
    picked = checked_select(strategy, ctx, 5).indices
    expected = ctx.candidates[np.argsort(-scores.numpy())[:5]]
    assert sorted(picked.tolist()) == sorted(expected.tolist())


def test_a_strategy_brings_the_objective_it_reads(tmp_path):
    from dalkit.compare import run_comparison
    from dalkit.loop import ExperimentConfig

    assert ExperimentConfig(strategy="learning-loss").objectives == ("ce", "learning-loss")
    assert ExperimentConfig(strategy="mobyv2al", objectives=["ce"]).objectives == ("ce", "moby")
    assert ExperimentConfig(strategy="learning-loss", objectives=("learning-loss", "ce")).objectives == (
        "learning-loss",
        "ce",
    )
    base = ExperimentConfig(
        initial=10, budget=5, cycles=2, epochs=1, progress=False, device="cpu", out_dir=str(tmp_path)
    )
    comparison = run_comparison(base, ["random", "learning-loss"], [0], log=lambda _: None)
    random_run, ll_run = (s.runs[0] for s in comparison.summaries)
    assert random_run.config.objectives == ("ce",)
    assert ll_run.config.objectives == ("ce", "learning-loss")

    def trained_loss_module(run) -> bool:
        state = torch.load(run.directory / "model.pt", weights_only=False)["state_dict"]
        return any(key.startswith("heads.loss-prediction.") for key in state)

    assert trained_loss_module(ll_run) and not trained_loss_module(random_run)


@pytest.mark.parametrize("name", list_strategies())
def test_every_strategy_makes_a_config(name):
    from dalkit.loop import ExperimentConfig

    expected = {"learning-loss": ("ce", "learning-loss"), "mobyv2al": ("ce", "moby")}.get(name, ("ce",))
    assert ExperimentConfig(strategy=name).objectives == expected
