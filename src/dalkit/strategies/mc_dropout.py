"""MC dropout on the candidates: the shared machinery of the Bayesian acquisition functions.

Gal, Islam & Ghahramani (ICML 2017, "Deep Bayesian Active Learning with Image Data") score candidates from S
stochastic forward passes with dropout on (MC dropout, Gal & Ghahramani 2016), batch norm in eval mode: `bald`,
`variation-ratios`, `mean-std` and `entropy` with `samples` read them through this module, and BatchBALD (Kirsch,
van Amersfoort & Gal, NeurIPS 2019) needs them as one (n, S, C) tensor (`mc_probabilities`).

Each MC sample is one draw of the weights: every dropout layer draws one mask per sample, shared by all candidates
("consistent MC dropout", Kirsch et al. 2019). Per image this is the same estimator as fresh masks per image, but
all candidates are scored under the same posterior samples (which BatchBALD's joint entropies need), and drawing
one mask instead of one per image removes the random-number cost that dominates MC dropout on a CPU. The model's
deterministic trunk (everything before the first dropout layer) runs once per batch and only the head is repeated.
`mc_reduce` hands each batch's samples to a reduction one at a time, so a reduction that keeps running sums (BALD,
mean STD, variation ratios) holds O(batch x classes) memory whatever S is. Masks come from the context's
generator, drawn in the same order by every caller: the same seed gives the same masks, so `bald` and
`mc_probabilities` on the same context seed see the same weight samples.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import nn

from dalkit.errors import DalkitError
from dalkit.runtime import autocast
from dalkit.strategies.base import QueryContext, entropy


class ConsistentDropout:
    """Within the context, each dropout layer multiplies by mask `sample` of its own fixed set of masks.

    Dropout layers stay in eval mode (identity) and a forward hook applies the mask, so the rest of
    the model (batch norm) is untouched. Masks are drawn on first use, one per (layer, sample): per element, or
    per channel for `Dropout1d/2d/3d` (BatchBALD's model drops whole channels).
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
            shape = like.shape[1:]
            if isinstance(self.layers[layer], nn.Dropout1d | nn.Dropout2d | nn.Dropout3d):
                shape = (shape[0],) + (1,) * (len(shape) - 1)  # channel-wise, as the layer drops in training
            keep = torch.rand(shape, generator=self.generator) >= p
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


def mc_reduce(
    ctx: QueryContext,
    samples: int,
    reduce: Callable[[Iterator[torch.Tensor]], torch.Tensor],
    owner: str = "MC dropout",
    log: bool = False,
) -> torch.Tensor:
    """One value (or row) per candidate from `samples` MC-dropout passes, batch by batch.

    For each batch of candidates `reduce` receives an iterator over the batch's S class-probability matrices
    (b, C), float32, one per weight sample in sample order (log-probabilities with `log=True`), each computed when
    the iterator reaches it; it returns a tensor whose first dimension is b. The results are concatenated in
    candidate order. Refuses a model without dropout (naming `owner`); leaves the model's mode as it was.
    """
    model = ctx.model
    if not model.has_dropout():
        raise DalkitError(
            f"{owner} needs a model with dropout (MC dropout); pass --model-option dropout=0.3 or use small-cnn / "
            "mnist-cnn."
        )

    def passes(z: torch.Tensor, dropout: ConsistentDropout) -> Iterator[torch.Tensor]:
        for sample in range(samples):
            dropout.sample = sample
            logits = model.head(z).logits.float()
            yield logits.log_softmax(dim=1) if log else logits.softmax(dim=1)

    was_training = model.training
    model.eval()
    results = []
    try:
        with ConsistentDropout(model, ctx.generator) as dropout, torch.inference_mode(), autocast(ctx.device):
            for x in ctx.batches(ctx.candidates, f"{samples} MC dropout passes"):
                results.append(reduce(passes(model.trunk(x), dropout)))
    finally:
        model.train(was_training)
    return torch.cat(results)


def mc_probabilities(ctx: QueryContext, samples: int, log: bool = False, owner: str = "MC dropout") -> torch.Tensor:
    """The candidates' class probabilities under `samples` consistent MC-dropout weight samples, (n, S, C) float32
    on the context's device (log-probabilities, from log-softmax, with `log=True`): row i is candidate i, column s
    weight sample s, the same masks for every candidate. Memory is n x S x C: bound the candidates (--candidates)
    on a large pool. Same generator seed, same masks as `mc_reduce` (and so as `bald`) on that context."""
    return mc_reduce(ctx, samples, lambda passes: torch.stack(list(passes), dim=1), owner, log=log)


# Reductions over one batch's MC samples (iterators of (b, C) probabilities), in running sums.


def mean_probabilities(passes: Iterator[torch.Tensor]) -> torch.Tensor:
    """The MC-averaged prediction (b, C): mean over samples of p(y | x, w_s)."""
    total, count = None, 0
    for probs in passes:
        total = probs.clone() if total is None else total.add_(probs)
        count += 1
    return total / count


def predictive_entropy(passes: Iterator[torch.Tensor]) -> torch.Tensor:
    """Max Entropy's score (Gal et al. 2017; Shannon 1948): H[mean_s p(y | x, w_s)], the entropy of the MC mean."""
    return entropy(mean_probabilities(passes))


def mutual_information(prob_sum: torch.Tensor, entropy_sum: torch.Tensor, samples: int) -> torch.Tensor:
    """BALD from running sums over MC samples: H[sum p / S] - sum H[p] / S (clamped at 0)."""
    return (entropy(prob_sum / samples) - entropy_sum / samples).clamp_min(0)


def bald_scores(passes: Iterator[torch.Tensor]) -> torch.Tensor:
    """BALD's score (Houlsby et al. 2011): H[mean_s p_s] - mean_s H[p_s], the mutual information between the
    label and the weights."""
    prob_sum, entropy_sum, count = None, None, 0
    for probs in passes:
        if prob_sum is None:
            prob_sum = torch.zeros_like(probs)
            entropy_sum = torch.zeros(len(probs), device=probs.device)
        prob_sum += probs
        entropy_sum += entropy(probs)
        count += 1
    return mutual_information(prob_sum, entropy_sum, count)


def variation_ratios(passes: Iterator[torch.Tensor]) -> torch.Tensor:
    """Variation ratios (Freeman 1965; Gal et al. 2017): 1 - f/S, where f is how many of the S samples predict the
    modal class (each sample's prediction is its argmax)."""
    votes, count = None, 0
    for probs in passes:
        if votes is None:
            votes = torch.zeros(probs.shape, dtype=torch.int32, device=probs.device)
        votes.scatter_add_(1, probs.argmax(dim=1, keepdim=True), torch.ones_like(votes[:, :1]))
        count += 1
    return 1 - votes.max(dim=1).values.float() / count


def mean_std(passes: Iterator[torch.Tensor]) -> torch.Tensor:
    """Mean STD (Kampffmeyer et al. 2016; Kendall et al. 2015; Gal et al. 2017): the mean over classes c of
    sigma_c = sqrt(E[p(y=c | x, w)^2] - E[p(y=c | x, w)]^2), the standard deviation over the S samples (divided by
    S, as the expectation). Accumulated with Welford's update, so it is exact to float32 rounding (the textbook
    E[p^2] - E[p]^2 loses the small deviations of confident predictions to cancellation)."""
    mean, squares, count = None, None, 0
    for probs in passes:
        count += 1
        if mean is None:
            mean, squares = probs.clone(), torch.zeros_like(probs)
            continue
        delta = probs - mean
        mean += delta / count
        squares += delta * (probs - mean)
    return (squares / count).clamp_min(0).sqrt().mean(dim=1)
