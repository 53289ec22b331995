"""BADGE, Batch Active learning by Diverse Gradient Embeddings (Ash et al., ICLR 2020).

Setting: each candidate is represented by the gradient of the cross-entropy loss, at the model's own
prediction y_hat = argmax p, with respect to the last layer's weights: g = (p - e_{y_hat}) (x) h, with h the
penultimate embedding. Its norm measures uncertainty (a lower bound on the gradient for any true label) and
its direction diversity. The batch is chosen by k-means++ seeding over the candidates' g: each next pick is
drawn with probability proportional to D^2, its squared distance to the nearest pick so far (the labelled
set plays no part, as in the paper). The first pick is the point with the largest gradient norm, as in the
authors' reference code (the paper's k-means++ would draw it uniformly).

g is never formed (it has C * d entries per point): <g_i, g_j> = <p_i - e_i, p_j - e_j> <h_i, h_j> and
||g_i||^2 = ||p_i - e_i||^2 ||h_i||^2, so every distance costs O(C + d) and memory stays O(n (C + d)).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from dalkit.strategies.base import QueryContext, Selection, Strategy, top_k
from dalkit.strategies.kcenter import sq_from_dots
from dalkit.strategies.registry import register_strategy


def greedy_seeding(
    min_sq: torch.Tensor,
    budget: int,
    sq_distance_to: Callable[[torch.Tensor], torch.Tensor],
    choose: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    first: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """k-means++ seeding's loop.

    `min_sq` (n,) is each point's squared distance to its nearest centre so far. Each step picks
    `choose(min_sq, picked)` (or `first` at step 0; both (1,) index tensors), records min_sq of the pick at
    pick time, and lowers min_sq with one (n,) computation `sq_distance_to(pick)`. Nothing leaves the device.
    Returns the picks, their min_sq at pick time, and min_sq after the last pick.
    """
    min_sq = min_sq.clone()
    picked = torch.zeros(len(min_sq), dtype=torch.bool, device=min_sq.device)
    picks = torch.empty(budget, dtype=torch.long, device=min_sq.device)
    values = torch.empty(budget, device=min_sq.device)
    for t in range(budget):
        index = first if t == 0 and first is not None else choose(min_sq, picked)
        picks[t : t + 1] = index
        values[t : t + 1] = min_sq[index]
        picked[index] = True
        torch.minimum(min_sq, sq_distance_to(index), out=min_sq)
    return picks, values, min_sq


class GradientEmbedding:
    """BADGE's g_i = (p_i - onehot(argmax p_i)) (x) h_i for n points, kept as its two factors."""

    def __init__(self, probs: torch.Tensor, embeddings: torch.Tensor) -> None:
        probs = probs.float()
        self.residuals = probs - torch.nn.functional.one_hot(probs.argmax(1), probs.shape[1]).to(probs.dtype)
        self.embeddings = embeddings.float().to(probs.device)
        self.sq_norms = self.residuals.square().sum(1) * self.embeddings.square().sum(1)

    def __len__(self) -> int:
        return len(self.sq_norms)

    def sq_distances(self, index: torch.Tensor) -> torch.Tensor:
        """Squared distances (n, len(index)) from every point to the points at `index`, g never formed."""
        dots = (self.residuals @ self.residuals[index].T) * (self.embeddings @ self.embeddings[index].T)
        return sq_from_dots(self.sq_norms, self.sq_norms[index], dots)


def d2_sample(min_sq: torch.Tensor, picked: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One position drawn with probability proportional to `min_sq` among the unpicked (uniform if all are 0).

    Inverse-CDF sampling on the device from a single uniform of the (CPU) generator, in float64.
    """
    weights = min_sq.double().masked_fill(picked, 0.0)
    weights = torch.where(weights.sum() > 0, weights, (~picked).double())
    cumulative = weights.cumsum(0)
    total = cumulative[-1:]
    u = torch.rand(1, generator=generator, dtype=torch.float64).to(min_sq.device)
    target = torch.minimum(u * total, torch.nextafter(total, torch.zeros_like(total)))
    return torch.searchsorted(cumulative, target, right=True)


def kmeans_pp_seeding(
    grads: GradientEmbedding, budget: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """BADGE's k-means++ seeding: largest ||g|| first, then D^2 sampling; returns picks and their D^2.

    The first pick's score is its squared gradient norm (its D^2 to the origin); ties for it are broken
    with `generator`.
    """
    if not 0 < budget <= len(grads):
        raise ValueError(f"cannot pick {budget} of {len(grads)} points")
    first = top_k(grads.sq_norms, 1, generator)
    unset = torch.full((len(grads),), torch.inf, device=grads.sq_norms.device)
    picks, scores, _ = greedy_seeding(
        unset,
        budget,
        lambda index: grads.sq_distances(index)[:, 0],
        lambda min_sq, picked: d2_sample(min_sq, picked, generator),
        first=first,
    )
    scores[:1] = grads.sq_norms[first]
    return picks, scores


@register_strategy("badge")
class BADGE(Strategy):
    """BADGE: k-means++ seeding (D^2 sampling) on hypothetical-label gradient embeddings of the last layer."""

    def select(self, ctx: QueryContext, budget: int) -> Selection:
        outputs = ctx.outputs("candidates")
        picks, scores = kmeans_pp_seeding(GradientEmbedding(outputs.probs, outputs.embeddings), budget, ctx.generator)
        return Selection(ctx.candidates[picks.cpu().numpy()], scores.cpu().numpy())
