"""BatchBALD (Kirsch, van Amersfoort & Gal, NeurIPS 2019, "BatchBALD: Efficient and Diverse Batch
Acquisition for Deep Bayesian Active Learning", arXiv:1906.08158).

Setting. The batch is the set that maximises the joint mutual information between its labels and the
weights, a({x_1..x_n}) = H(y_1..y_n) - sum_i E_w[H(y_i | w)], built greedily (a is submodular, so greedy
is within 1 - 1/e of the best batch). The weight posterior is S consistent MC-dropout samples (one set of
dropout masks shared by every candidate, `mc_dropout.ConsistentDropout`), so p(y_1..y_n) = 1/S sum_s prod_i
p(y_i | x_i, w_s). The paper's MNIST runs use S = 100 (`samples`, the default; its code's
`num_inference_samples`).

Joint entropy. Write the batch so far as B and its labels' configurations as y_B. For a candidate x,
H(y_B, y_x) = H(y_B) + E_{y_B}[H(y_x | y_B)], and p(y_x | y_B) = sum_s p(w_s | y_B) p(y_x | x, w_s) with
p(w_s | y_B) the MC samples reweighted by how well they predict y_B. So the gain of x is
E_{y_B}[H(sum_s p(w_s | y_B) p(y_x | w_s))] - E_w[H(y_x | w)]: one (configurations x S) @ (S x C) product per
candidate, chunked over candidates. The expectation over y_B is

- exact while the batch's C^|B| configurations number at most `num_configurations`: every configuration,
  weighted by its probability (the reference's switch: exact while C^|B| <= its `num_samples`), less the
  least likely ones holding under float32's epsilon of the mass (no gain moves by more than eps log C);
- sampled beyond: `num_configurations` configurations drawn from p(y_B) (stratified over the MC samples:
  draw w_s in turn, then each label from p(y | w_s)), equally weighted; a configuration drawn twice is scored
  once with twice the weight (the same estimate). This is the paper's importance-sampling estimator with
  p(y_B) as the proposal: (1/M) sum_m sum_y -p(y_m, y) log p(y_m, y) / p(y_m).

Defaults. `samples` = 100 MC-dropout samples: the paper's MNIST runs (its code's `num_inference_samples`,
k100 in its result files). `num_configurations` = 10,000: exact joint entropy for the first 5 picks at
C = 10, sampled after. The paper's code drew 40,000 (BlackHC/BatchBALD, multi_bald.py: 40000 // k
configurations per MC sample) and batchbald_redux's example 100,000, both on a GPU; the estimator's error
shrinks as 1/sqrt(M) and the cost grows as M, so `num_configurations=40000` reproduces the paper's code at
four times the cost.

Cost and memory. A step scores each candidate against every configuration: n x M x C entries, each a
length-S dot product and a -p log p, so a batch of b costs about n C S sum_{k<b} min(C^k, M) multiply-adds
(6 10^11 for b = 10 at n = 10,000, S = 100, C = 10, M = 10,000; see benchmarks/batchbald_time.py). The
candidates' (n, S, C) probabilities are held (4 n S C bytes); one chunk of `chunk_size` candidates adds an
(M x chunk x C) block (by default the chunk is sized to keep it at 2^24 floats, 64 MB).

Lazy greedy (`lazy`, default on; Minoux's accelerated greedy): a candidate's gain can only shrink as the
batch grows (submodularity, the paper's Lemma), so its last computed gain bounds its current one. Candidates
are scored in chunks in order of that bound, and a step stops once the best gain found beats every
remaining bound. With the exact joint entropy this picks exactly what scoring every candidate picks; with
the sampled estimator the bounds are themselves estimates, so picks can differ where two gains lie within
the estimator's noise. It saves most when picks are unrelated; when every gain shrinks together (the batch
pins down the weights) it scores nearly every candidate anyway. `lazy=false` scores every candidate at
every step, as the paper's code does.

Each pick's score is the batch's estimated a_BatchBALD up to and including it (the reference's reported
score); `Selection.info` gives, per pick, the configurations it was scored with (`configurations`, distinct
ones) and the candidates scored (`evaluated`), and how many picks used the exact joint entropy (`exact_picks`:
the first ones; the rest were sampled).
Every draw (dropout masks, tie-breaking, sampled configurations) comes from the context's generator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from dalkit.errors import DalkitError
from dalkit.options import require
from dalkit.runtime import progress_bar
from dalkit.strategies.base import QueryContext, Selection, Strategy
from dalkit.strategies.mc_dropout import mc_probabilities
from dalkit.strategies.registry import register_strategy

#: floats in one chunk's (configurations x chunk x classes) block when `chunk_size` is not given
CHUNK_FLOATS = 2**24


@dataclass
class Configurations:
    """The label configurations y_m of the batch so far, for the expectation over y_B.

    weights (M,): p(y_m) (exact) or 1/M (sampled); posterior (M, S): p(w_s | y_m), rows summing to 1;
    entropy: H(y_B), exact or estimated; exact: whether every configuration is there.
    """

    weights: torch.Tensor
    posterior: torch.Tensor
    entropy: float
    exact: bool

    def __len__(self) -> int:
        return len(self.weights)


def _from_log_joint(log_joint: torch.Tensor, weights: torch.Tensor | None, dtype: torch.dtype) -> Configurations:
    """Configurations from log prod_i p(y_m,i | w_s) (M, S). `weights` None means exact: every configuration
    weighted by p(y_m), less the least likely ones whose total probability is below `dtype`'s epsilon (they
    change no gain by more than eps log C, below the rounding of a `dtype` sum)."""
    log_p = torch.logsumexp(log_joint, dim=1) - math.log(log_joint.shape[1])  # log p(y_m)
    if weights is None:
        p = log_p.exp()
        entropy = float(-(p * log_p).sum())
        order = torch.argsort(p)
        kept = order[p[order].cumsum(dim=0) > torch.finfo(dtype).eps]
        posterior = torch.softmax(log_joint[kept], dim=1).to(dtype)
        return Configurations(p[kept].to(dtype), posterior, entropy, True)
    posterior = torch.softmax(log_joint, dim=1).to(dtype)
    return Configurations(weights.to(dtype), posterior, float(-(weights * log_p).sum()), False)


def _log_probs(probs: torch.Tensor) -> torch.Tensor:
    """log p in float64, zeros clamped to the smallest normal double (their configurations weigh ~0)."""
    return probs.double().clamp_min(torch.finfo(torch.float64).tiny).log()


def exact_configurations(batch_probs: torch.Tensor, dtype: torch.dtype = torch.float32) -> Configurations:
    """All C^k configurations of a batch's (k, S, C) MC probabilities, each with its probability."""
    k, samples, classes = batch_probs.shape
    log_probs = _log_probs(batch_probs)
    log_joint = torch.zeros(1, samples, dtype=torch.float64, device=batch_probs.device)
    for i in range(k):
        log_joint = (log_joint[:, None, :] + log_probs[i].T[None]).reshape(-1, samples)
    return _from_log_joint(log_joint, None, dtype)


def sampled_configurations(
    batch_probs: torch.Tensor, num: int, generator: torch.Generator, dtype: torch.dtype = torch.float32
) -> Configurations:
    """`num` configurations drawn from p(y_B) = 1/S sum_s prod_i p(y_i | w_s): configuration m takes
    w_(m mod S) (stratified), then each label from p(y_i | w_s) by inverse CDF with uniforms from `generator`.
    Configurations drawn more than once are kept once with their count as weight (the same estimate)."""
    k, samples, classes = batch_probs.shape
    device = batch_probs.device
    which = torch.arange(num, device=device) % samples
    uniforms = torch.rand(k, num, 1, generator=generator, dtype=torch.float64, device=generator.device).to(device)
    labels = torch.empty(num, k, dtype=torch.long, device=device)
    for i in range(k):
        cdf = batch_probs[i].double()[which].cumsum(dim=1)  # (num, C): p(y_i | w_s) of each configuration's s
        labels[:, i] = (cdf < uniforms[i] * cdf[:, -1:]).sum(dim=1).clamp_max(classes - 1)
    labels, counts = torch.unique(labels, dim=0, return_counts=True)
    log_probs = _log_probs(batch_probs)
    log_joint = torch.zeros(len(labels), samples, dtype=torch.float64, device=device)
    for i in range(k):
        log_joint += log_probs[i].T[labels[:, i]]
    return _from_log_joint(log_joint, counts.double() / num, dtype)


def configurations(
    batch_probs: torch.Tensor, num: int, generator: torch.Generator, dtype: torch.dtype = torch.float32
) -> Configurations:
    """Exact while C^k <= `num` (the reference's switch point), else `num` sampled configurations."""
    k, _, classes = batch_probs.shape
    if classes**k <= num:
        return exact_configurations(batch_probs, dtype)
    return sampled_configurations(batch_probs, num, generator, dtype)


def conditional_entropy(configs: Configurations, probs: torch.Tensor) -> torch.Tensor:
    """E_{y_B}[H(y_x | y_B)] for each candidate of `probs` (b, S, C), in one matrix product.

    p(y_x | y_m) = posterior[m] @ probs[x]; memory (M x b x C) floats: chunk the candidates to bound it.
    """
    b, samples, classes = probs.shape
    predictive = configs.posterior @ probs.to(configs.posterior.dtype).permute(1, 0, 2).reshape(samples, -1)
    torch.special.entr(predictive, out=predictive)  # -p log p, 0 at 0
    return (configs.weights @ predictive).view(b, classes).sum(dim=1)


def joint_entropy(configs: Configurations, probs: torch.Tensor) -> torch.Tensor:
    """H(y_B, y_x) for each candidate of `probs` (b, S, C): H(y_B) + E_{y_B}[H(y_x | y_B)]."""
    return configs.entropy + conditional_entropy(configs, probs).double()


def expected_entropy(probs: torch.Tensor) -> torch.Tensor:
    """E_w[H(y | w)] = 1/S sum_s H(p(y | x, w_s)) for each point of `probs` (n, S, C), in float64."""
    return torch.special.entr(probs).sum(dim=2).double().mean(dim=1)


@dataclass
class GreedyBatch:
    """Picks (positions in `probs`) in order; scores[i]: a_BatchBALD of picks[:i+1]; per pick, the number of
    configurations it was scored with (exact or sampled) and of candidates scored."""

    picks: list[int]
    scores: list[float]
    exact: list[bool]
    configurations: list[int]
    evaluated: list[int]


def greedy_batchbald(
    probs: torch.Tensor,
    budget: int,
    generator: torch.Generator,
    num_configurations: int = 10_000,
    chunk_size: int | None = None,
    lazy: bool = True,
    progress: bool = False,
) -> GreedyBatch:
    """Greedy BatchBALD over MC probabilities `probs` (n, S, C); ties broken at random with `generator`; with
    `progress`, a bar counts the picks."""
    n, samples, classes = probs.shape
    dtype = probs.dtype if probs.dtype == torch.float64 else torch.float32
    probs = probs.to(dtype)
    # candidates are visited in a random order, so the first of equal gains (the one kept) is a random one
    order = torch.randperm(n, generator=generator, device=generator.device).to(probs.device)
    cond = expected_entropy(probs)
    bound = torch.full((n,), math.inf, dtype=torch.float64, device=probs.device)
    taken = torch.zeros(n, dtype=torch.bool, device=probs.device)
    result = GreedyBatch([], [], [], [], [])
    for _ in progress_bar(range(budget), progress=progress, desc="BatchBALD", unit="pick", leave=False):
        configs = configurations(probs[result.picks], num_configurations, generator, dtype)
        step = chunk_size or max(1, CHUNK_FLOATS // (len(configs) * classes))
        left = order[~taken[order]]
        if lazy:
            left = left[torch.argsort(bound[left], descending=True, stable=True)]
        best_gain, best, evaluated = -math.inf, -1, 0
        for start in range(0, len(left), step):
            index = left[start : start + step]
            gain = conditional_entropy(configs, probs[index]).double() - cond[index]
            bound[index] = gain
            evaluated += len(index)
            value, at = gain.max(dim=0)
            if float(value) > best_gain:
                best_gain, best = float(value), int(index[at])
            if lazy and start + step < len(left) and best_gain >= float(bound[left[start + step]]):
                break
        if best < 0:
            raise DalkitError(
                "BatchBALD got no finite score: the model's MC-dropout probabilities are not finite (NaN); "
                "check that training did not diverge (lower --lr)."
            )
        batch_cond = float(cond[result.picks].sum()) if result.picks else 0.0
        taken[best] = True
        result.scores.append(configs.entropy - batch_cond + best_gain)
        result.picks.append(best)
        result.exact.append(configs.exact)
        result.configurations.append(len(configs))
        result.evaluated.append(evaluated)
    return result


@register_strategy("batchbald")
class BatchBALD(Strategy):
    """Greedy joint mutual information under `samples` consistent MC-dropout samples (100, the paper's MNIST
    setting); exact joint entropy while C^batch <= `num_configurations` (10,000; the paper's code: 40,000), that many
    sampled configurations beyond; `chunk_size` candidates scored at once (default: sized to 64 MB per chunk);
    `lazy` greedy evaluation (exact picks with the exact estimator)."""

    def __init__(
        self, samples: int = 100, num_configurations: int = 10_000, chunk_size: int | None = None, lazy: bool = True
    ) -> None:
        require(samples >= 2, "batchbald", "samples", samples, "be at least 2 (MC dropout samples)", "samples=100")
        require(
            1 <= num_configurations <= 10**6,
            "batchbald",
            "num_configurations",
            num_configurations,
            "be between 1 and 1,000,000 (label configurations per joint entropy)",
            "num_configurations=10000",
        )
        require(
            chunk_size is None or chunk_size >= 1,
            "batchbald",
            "chunk_size",
            chunk_size,
            "be at least 1 (candidates scored at once)",
            "chunk_size=256",
        )
        self.samples = samples
        self.num_configurations = num_configurations
        self.chunk_size = chunk_size
        self.lazy = lazy

    def select(self, ctx: QueryContext, budget: int) -> Selection:
        probs = mc_probabilities(ctx, self.samples, owner="BatchBALD")
        with torch.inference_mode():
            batch = greedy_batchbald(
                probs, budget, ctx.generator, self.num_configurations, self.chunk_size, self.lazy, ctx.progress
            )
        info = {
            "samples": self.samples,
            "num_configurations": self.num_configurations,
            "exact_picks": sum(batch.exact),
            "configurations": batch.configurations,
            "evaluated": batch.evaluated,
            "lazy": self.lazy,
        }
        return Selection(ctx.candidates[batch.picks], np.asarray(batch.scores), info)
