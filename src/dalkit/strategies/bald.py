"""BALD with MC dropout (Houlsby et al. 2011; Gal, Islam & Ghahramani, ICML 2017).

score = H[mean_s p_s] - mean_s H[p_s], the mutual information between the label and the weights,
estimated from `samples` stochastic forward passes with dropout active and batch norm in eval mode.
The model's deterministic trunk (everything before the first dropout layer) runs once per batch and
only the stochastic head is repeated; samples are drawn one after another into running sums, so
memory does not grow with the number of samples. Dropout masks come from a torch RNG seeded from the
context's generator, so the same seed gives the same picks.
"""

from __future__ import annotations

import torch
from torch import nn

from dalkit.errors import DalkitError
from dalkit.strategies.base import QueryContext, Selection, Strategy, autocast, entropy, top_k
from dalkit.strategies.registry import register_strategy


def mutual_information(prob_sum: torch.Tensor, entropy_sum: torch.Tensor, samples: int) -> torch.Tensor:
    """BALD from running sums over MC samples: H[sum p / S] - sum H[p] / S (clamped at 0)."""
    return (entropy(prob_sum / samples) - entropy_sum / samples).clamp_min(0)


def set_dropout(model: nn.Module, active: bool) -> None:
    for module in model.modules():
        if isinstance(module, nn.modules.dropout._DropoutNd):
            module.train(active)


@register_strategy("bald")
class BALD(Strategy):
    """Highest mutual information first; `samples` MC-dropout passes (20 by default)."""

    def __init__(self, samples: int = 20) -> None:
        self.samples = samples

    def scores(self, ctx: QueryContext) -> torch.Tensor:
        model = ctx.model
        if not model.has_dropout():
            raise DalkitError(
                "BALD needs a model with dropout; pass --model-option dropout=0.3 or use small-cnn / mnist-cnn."
            )
        seed = int(torch.randint(2**62, (1,), generator=ctx.generator))
        devices = [ctx.device] if ctx.device.type == "cuda" else []
        was_training = model.training
        model.eval()
        set_dropout(model, True)
        results = []
        try:
            with torch.random.fork_rng(devices=devices), torch.inference_mode(), autocast(ctx.device):
                torch.manual_seed(seed)
                for x in ctx.batches(ctx.candidates):
                    z = model.trunk(x)
                    prob_sum = torch.zeros(len(x), model.num_classes, device=ctx.device)
                    entropy_sum = torch.zeros(len(x), device=ctx.device)
                    for _ in range(self.samples):
                        probs = model.head(z).logits.float().softmax(dim=1)
                        prob_sum += probs
                        entropy_sum += entropy(probs)
                    results.append(mutual_information(prob_sum, entropy_sum, self.samples))
        finally:
            model.train(was_training)
        return torch.cat(results)

    def select(self, ctx: QueryContext, budget: int) -> Selection:
        scores = self.scores(ctx)
        picked = top_k(scores, budget, ctx.generator).cpu().numpy()
        return Selection(ctx.candidates[picked], scores[picked].cpu().numpy())
