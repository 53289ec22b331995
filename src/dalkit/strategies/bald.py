"""BALD with MC dropout (Houlsby et al. 2011; Gal, Islam & Ghahramani, ICML 2017).

score = H[mean_s p_s] - mean_s H[p_s], the mutual information between the label and the weights,
estimated from `samples` stochastic forward passes with batch norm in eval mode.

Each MC sample is one draw of the weights: every dropout layer draws one mask per sample, shared by
all candidates ("consistent MC dropout", Kirsch et al., BatchBALD 2019). Per image this is the same
estimator as fresh masks per image, but all candidates are scored under the same posterior samples,
and drawing one mask instead of one per image removes the random-number cost that dominates MC
dropout on a CPU. The model's deterministic trunk (everything before the first dropout layer) runs
once per batch and only the head is repeated; samples go into running sums, so memory does not grow
with the number of samples. Masks come from the context's generator: same seed, same picks.
"""

from __future__ import annotations

import torch
from torch import nn

from dalkit.errors import DalkitError
from dalkit.options import require
from dalkit.runtime import autocast
from dalkit.strategies.base import QueryContext, RankingStrategy, entropy
from dalkit.strategies.registry import register_strategy


def mutual_information(prob_sum: torch.Tensor, entropy_sum: torch.Tensor, samples: int) -> torch.Tensor:
    """BALD from running sums over MC samples: H[sum p / S] - sum H[p] / S (clamped at 0)."""
    return (entropy(prob_sum / samples) - entropy_sum / samples).clamp_min(0)


class ConsistentDropout:
    """Within the context, each dropout layer multiplies by mask `sample` of its own fixed set of masks.

    Dropout layers stay in eval mode (identity) and a forward hook applies the mask, so the rest of
    the model (batch norm) is untouched. Masks are drawn on first use, one per (layer, sample).
    """

    def __init__(self, model: nn.Module, generator: torch.Generator) -> None:
        self.layers = [m for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0]
        self.generator = generator
        self.sample = 0
        self.masks: dict[tuple[int, int], torch.Tensor] = {}
        self.handles: list = []

    def mask(self, layer: int, like: torch.Tensor) -> torch.Tensor:
        key = (layer, self.sample)
        if key not in self.masks:
            p = self.layers[layer].p
            keep = torch.rand(like.shape[1:], generator=self.generator) >= p
            self.masks[key] = (keep.float() / (1 - p)).to(like.device)
        return self.masks[key]

    def __enter__(self) -> ConsistentDropout:
        for i, layer in enumerate(self.layers):
            hook = lambda module, inputs, output, i=i: output * self.mask(i, output).to(output.dtype)  # noqa: E731
            self.handles.append(layer.register_forward_hook(hook))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self.handles:
            handle.remove()


@register_strategy("bald")
class BALD(RankingStrategy):
    """Highest mutual information first; `samples` MC-dropout passes (20 by default)."""

    def __init__(self, samples: int = 20) -> None:
        require(samples >= 2, "bald", "samples", samples, "be at least 2 (MC dropout samples)", "samples=20")
        self.samples = samples

    def scores(self, ctx: QueryContext) -> torch.Tensor:
        model = ctx.model
        if not model.has_dropout():
            raise DalkitError(
                "BALD needs a model with dropout; pass --model-option dropout=0.3 or use small-cnn / mnist-cnn."
            )
        was_training = model.training
        model.eval()
        results = []
        try:
            with ConsistentDropout(model, ctx.generator) as dropout, torch.inference_mode(), autocast(ctx.device):
                for x in ctx.batches(ctx.candidates):
                    z = model.trunk(x)
                    prob_sum = torch.zeros(len(x), model.num_classes, device=ctx.device)
                    entropy_sum = torch.zeros(len(x), device=ctx.device)
                    for sample in range(self.samples):
                        dropout.sample = sample
                        probs = model.head(z).logits.float().softmax(dim=1)
                        prob_sum += probs
                        entropy_sum += entropy(probs)
                    results.append(mutual_information(prob_sum, entropy_sum, self.samples))
        finally:
            model.train(was_training)
        return torch.cat(results)
