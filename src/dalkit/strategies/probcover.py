"""ProbCover (Yehuda, Dekel, Hacohen & Weinshall, NeurIPS 2022, "Active Learning Through a Covering Lens").

Setting: the low-budget regime, cold start included, as Max Probability Coverage: choose the picks so that balls
of radius delta around them and the labelled points cover as many points (labelled + candidates) as possible.
On the L2-normalised representations, the delta-graph has a directed edge i -> j when ||x_i - x_j|| < delta
(every point covers itself). Every point within delta of a labelled point is covered first; then, budget times,
the greedy Max Coverage step (a 1 - 1/e approximation): pick the candidate with the most uncovered
out-neighbours (ties at random), mark them covered and drop their incoming edges. A pick's score is the number
of points it newly covers. Once every point is covered, the remaining picks are uniform at random among the
remaining candidates (score 0); the authors' code (github.com/avihu111/TypiClust, deep-al/pycls/al/prob_cover.py)
would take the argmax of all-zero degrees there, its first point, possibly one already labelled.

delta, when not given, follows the paper's purity rule: k-means clusters the points into as many clusters as the
model has classes; a point's delta-ball is pure when every point in it shares the point's cluster; delta is the
largest of the grid 0.05, 0.10, ..., 1.00 whose purity (fraction of points with a pure ball) is at least alpha
(0.95 in the paper), or 0.05 when none is. One chunked pass gives each point's distance to the nearest point of
another cluster, so every delta of the grid is tried at once. It is chosen afresh whenever the representation
changes (each cycle with the classifier's embeddings); while it stays the same (a frozen pretrained encoder, or
features=ssl) delta and the graph are kept from the run's first cycle.

Representation (option `features`, see `dalkit.strategies.representation`): the paper uses self-supervised
features (SimCLR for CIFAR, as TypiClust; DINO for ImageNet subsets). `features=ssl` trains the SimCLR encoder with
dalkit (`dalkit.ssl`, once per pool, cached); `features=backbone` (the default) uses the classifier's penultimate
embeddings, recomputed each cycle. The selection's `info` records which, with the delta used.

Memory: the graph is stored as a CSR matrix (4-5 bytes an edge, twice: out- and in-edges) and refused past
`max_edges` edges; distances are computed in chunk_size x chunk_size tiles, the last partial ones included.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from scipy import sparse

from dalkit.errors import DalkitError
from dalkit.options import require
from dalkit.strategies.base import QueryContext, Selection, Strategy
from dalkit.strategies.coreset import sq_distance_blocks
from dalkit.strategies.registry import register_strategy
from dalkit.strategies.representation import Representation
from dalkit.strategies.typiclust import kmeans_labels

DELTAS = np.round(np.arange(1, 21) * 0.05, 2)  # the grid searched by the purity rule: 0.05, 0.10, ..., 1.00


def delta_graph(points: torch.Tensor, delta: float, chunk_size: int, max_edges: int) -> sparse.csr_array:
    """The delta-graph as an n x n boolean CSR matrix: row i holds every j with ||x_i - x_j|| < delta, i included.

    Raises DalkitError once more than `max_edges` edges are found.
    """
    n = len(points)
    indptr, indices, count = [np.zeros(1, dtype=np.int64)], [], 0
    for i, j, block in sq_distance_blocks(points, points, chunk_size):
        if j == 0:
            rows, columns = [], []
        if i == j:
            block.fill_diagonal_(0.0)  # a point always covers itself, whatever the rounding
        r, c = (block < delta**2).nonzero(as_tuple=True)
        count += len(r)
        if count > max_edges:
            raise DalkitError(
                f"the probcover delta-graph at delta={delta:.3g} has more than max_edges={max_edges} edges; "
                "pass a smaller --strategy-option delta, fewer --candidates, or a larger max_edges."
            )
        rows.append(r.cpu().numpy())
        columns.append((c + j).cpu().numpy().astype(np.int32))
        if j + block.shape[1] >= n:  # the row chunk is complete: its edges in row order, columns ascending
            rows_here = np.concatenate(rows)
            order = np.argsort(rows_here, kind="stable")
            indices.append(np.concatenate(columns)[order])
            indptr.append(indptr[-1][-1] + np.cumsum(np.bincount(rows_here, minlength=len(block))))
    indices = np.concatenate(indices) if indices else np.zeros(0, dtype=np.int32)
    indptr = np.concatenate(indptr).astype(np.int32 if count < 2**31 else np.int64)  # int32 keeps indices int32
    return sparse.csr_array((np.ones(count, dtype=bool), indices, indptr), shape=(n, n))


def covered_by(graph: sparse.csr_array, sources: np.ndarray) -> np.ndarray:
    """Boolean mask of the points within delta of any of `sources` (positions into the graph)."""
    covered = np.zeros(graph.shape[0], dtype=bool)
    covered[graph[np.asarray(sources, dtype=np.int64)].indices] = True
    return covered


def coverage(graph: sparse.csr_array, selected: np.ndarray) -> float:
    """Fraction of the graph's points within delta of a selected point (positions, labelled ones included)."""
    return float(covered_by(graph, selected).mean()) if graph.shape[0] else 0.0


def max_coverage(
    graph: sparse.csr_array, labelled: np.ndarray, budget: int, generator: torch.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy Max Coverage over the graph's positions not in `labelled`; returns the picks and their new coverage.

    The `labelled` positions cover their out-neighbours and cannot be picked. Degrees are
    kept up to date by walking the in-edges of each newly covered point, so all picks cost O(edges + budget * n).
    Ties (and the random picks once everything is covered) follow one random order of the candidates.
    """
    n = graph.shape[0]
    incoming = graph.T.tocsr()
    covered = covered_by(graph, labelled)
    degrees = (graph @ (~covered).astype(np.int64)).astype(np.int64)
    available = np.ones(n, dtype=bool)
    available[labelled] = False
    candidates = np.flatnonzero(available)
    order = candidates[torch.randperm(len(candidates), generator=generator).numpy()]
    picks, gains = np.empty(budget, dtype=np.int64), np.empty(budget, dtype=np.int64)
    for t in range(budget):
        pick = int(order[np.argmax(np.where(available[order], degrees[order], -1))])
        neighbours = graph.indices[graph.indptr[pick] : graph.indptr[pick + 1]]
        new = neighbours[~covered[neighbours]]
        covered[new] = True
        degrees -= np.bincount(incoming[new].indices, minlength=n)
        available[pick] = False
        picks[t], gains[t] = pick, len(new)
    return picks, gains


def foreign_distances(points: torch.Tensor, clusters: np.ndarray, chunk_size: int) -> torch.Tensor:
    """Each point's distance to the nearest point of another cluster (+inf when there is none), chunked."""
    labels = torch.as_tensor(clusters, device=points.device)
    nearest = torch.full((len(points),), torch.inf, device=points.device)
    for i, j, block in sq_distance_blocks(points, points, chunk_size):
        same = labels[i : i + len(block), None] == labels[None, j : j + block.shape[1]]
        rows = slice(i, i + len(block))
        nearest[rows] = torch.minimum(nearest[rows], block.masked_fill(same, torch.inf).amin(1))
    return nearest.sqrt()


def ball_purity(points: torch.Tensor, clusters: np.ndarray, deltas: np.ndarray, chunk_size: int) -> np.ndarray:
    """For each delta, the fraction of points whose open delta-ball holds only points of their own cluster."""
    foreign = foreign_distances(points, clusters, chunk_size).cpu().numpy()
    return (foreign[None, :] >= np.asarray(deltas)[:, None]).mean(axis=1)


def purity_delta(
    points: torch.Tensor, clusters: np.ndarray, alpha: float, chunk_size: int, deltas: np.ndarray = DELTAS
) -> float:
    """The largest of `deltas` (ascending) with ball purity >= alpha, or the smallest when none reaches it."""
    pure = np.flatnonzero(ball_purity(points, clusters, deltas, chunk_size) >= alpha)
    return float(deltas[pure[-1]] if len(pure) else deltas[0])


@register_strategy("probcover")
class ProbCover(Strategy):
    """ProbCover: greedy max coverage of the delta-graph, labelled balls covered first."""

    def __init__(
        self,
        delta: float | None = None,
        alpha: float = 0.95,
        max_edges: int = 50_000_000,
        features: str = "backbone",
        **ssl_options,
    ) -> None:
        require(delta is None or delta > 0, "probcover", "delta", delta, "be positive", "delta=0.6")
        require(0 < alpha <= 1, "probcover", "alpha", alpha, "be in (0, 1]", "alpha=0.95")
        require(max_edges >= 1, "probcover", "max_edges", max_edges, "be at least 1", "max_edges=50000000")
        self.delta = delta
        self.alpha = alpha
        self.max_edges = max_edges
        self.source = Representation("probcover", features, ssl_options)
        self.representation = self.source.request
        self.kept: tuple[str, float, sparse.csr_array] | None = None  # (representation's digest, delta, graph)
        # delta chosen at the first query (its k-means draws from that cycle's generator) stays for the run
        self.carries_state = delta is None

    def choose_delta(self, points: torch.Tensor, num_classes: int, ctx: QueryContext) -> float:
        """The given delta, or the purity rule's over k-means with one cluster per class."""
        if self.delta is not None:
            return self.delta
        clusters = kmeans_labels(points, min(num_classes, len(points)), ctx.generator)
        return purity_delta(points, clusters, self.alpha, ctx.chunk_size)

    def graph(self, points: torch.Tensor, pool: np.ndarray, ctx: QueryContext) -> tuple[float, sparse.csr_array, bool]:
        """delta and the delta-graph of `points` (pool images `pool`), and whether they were reused: both are kept
        while the representation stays the same (frozen features: a pretrained encoder's, or features=ssl), so
        the two n x n passes run once a run, not once a cycle, as the paper chooses delta once per data set."""
        digest = hashlib.blake2b(digest_size=16)
        digest.update(np.ascontiguousarray(pool, dtype=np.int64).data)
        digest.update(np.ascontiguousarray(points.cpu().numpy()).data)
        key = digest.hexdigest()
        if self.kept is not None and self.kept[0] == key:
            return *self.kept[1:], True
        delta = self.choose_delta(points, ctx.num_classes, ctx)
        self.kept = (key, delta, delta_graph(points, delta, ctx.chunk_size, self.max_edges))
        return *self.kept[1:], False

    def select(self, ctx: QueryContext, budget: int) -> Selection:
        points, info = self.source.points(ctx)
        num_labelled = len(points) - len(ctx.candidates)
        pool = np.concatenate([ctx.labelled, ctx.candidates]).astype(np.int64)
        order = np.argsort(pool, kind="stable")  # the graph's positions follow the pool, whichever are labelled
        delta, graph, reused = self.graph(points[torch.as_tensor(order, device=points.device)], pool[order], ctx)
        position = np.empty_like(order)
        position[order] = np.arange(len(order))
        labelled = position[:num_labelled]
        picks, gains = max_coverage(graph, labelled, budget, ctx.generator)
        covered = coverage(graph, np.concatenate([labelled, picks]))
        info = {**info, "delta": delta, "coverage": covered, "graph_reused": reused}
        return Selection(ctx.candidates[order[picks] - num_labelled], gains.astype(float), info)
