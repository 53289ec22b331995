"""TypiClust (Hacohen, Dekel & Weinshall, ICML 2022, "Active Learning on a Budget"): typical points of new clusters.

Setting: the low-budget regime, cold start included, where labelling typical examples beats labelling uncertain
ones. The L2-normalised representations of the labelled points and the candidates are clustered by k-means into
K = |labelled| + budget clusters (at most `max_clusters`). Then, budget times, the largest cluster holding no
labelled or selected point is chosen, and in it the most typical point:

    typicality(x) = 1 / (mean euclidean distance from x to its k nearest neighbours in the cluster + 1e-5).

Representation (option `features`, see `dalkit.strategies.representation`): the paper clusters self-supervised
features (SimCLR ResNet-18 trained 500 epochs on the whole training set; SCAN's clustering for TypiClust-SCAN, not
offered here). `features=ssl` trains that encoder with dalkit (`dalkit.ssl`, once per pool, cached);
`features=backbone` (the default) clusters the classifier's penultimate embeddings, recomputed each cycle. The
selection's `info` records which, with the number of clusters.

Details taken from the authors' code (github.com/avihu111/TypiClust, deep-al/pycls/al/typiclust.py):
K is capped at 500 clusters; KMeans for K <= 50, MiniBatchKMeans (batch 5000) above (with n_init 10 and 3, the
scikit-learn defaults it ran with); clusters of 5 points or fewer are never chosen (`min_cluster_size=6`);
typicality is computed among the cluster's points that are neither labelled nor selected, with
k = min(k_neighbours, m // 2) for m such points (a lone point is picked with typicality NaN).

Departures: (1) distances are euclidean, as in the paper (the code's faiss IndexFlatL2 returns squared ones).
(2) Clusters are re-ranked before every pick by (labelled + selected points, then size, largest first; remaining
ties at random): while uncovered clusters remain this is the code's order, and once every cluster is covered it
picks again from the least-covered, largest clusters (the code cycles through its initial order). (3) When no
cluster of `min_cluster_size` points has a candidate left, every cluster with one is eligible (the code fails).
Memory: k-means plus O(chunk_size * (chunk_size + k)) for the neighbour search; no n x n matrix.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.exceptions import ConvergenceWarning

from dalkit.options import require
from dalkit.strategies.base import QueryContext, Selection, Strategy, top_k
from dalkit.strategies.coreset import sq_distance_blocks
from dalkit.strategies.registry import register_strategy
from dalkit.strategies.representation import Representation, normalised_embeddings  # noqa: F401  (re-exported)

MINI_BATCH_ABOVE = 50  # the reference switches to MiniBatchKMeans above this many clusters


def kmeans_labels(points: torch.Tensor, num_clusters: int, generator: torch.Generator) -> np.ndarray:
    """k-means cluster of each point (KMeans up to 50 clusters, MiniBatchKMeans above), seeded from `generator`.

    Some clusters may come out empty when there are fewer distinct points than clusters.
    """
    seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
    if num_clusters <= MINI_BATCH_ABOVE:
        model = KMeans(n_clusters=num_clusters, n_init=10, random_state=seed)
    else:
        model = MiniBatchKMeans(n_clusters=num_clusters, batch_size=5000, n_init=3, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # duplicate points: fewer distinct clusters
        return model.fit_predict(points.cpu().numpy()).astype(np.int64)


def mean_knn_distances(points: torch.Tensor, k: int, chunk_size: int) -> torch.Tensor:
    """Each point's mean euclidean distance to its k nearest other points (k < len(points)), chunked."""
    means = torch.empty(len(points), device=points.device)
    best = None
    for i, j, block in sq_distance_blocks(points, points, chunk_size):
        if j == 0:
            best = torch.full((len(block), k + 1), torch.inf, device=points.device)
        best = torch.cat([best, block], dim=1).topk(k + 1, dim=1, largest=False).values
        if j + block.shape[1] >= len(points):  # last tile of this row chunk: drop the point itself (distance 0)
            means[i : i + len(block)] = best[:, 1:].sqrt().mean(dim=1)  # topk sorts, smallest first
    return means


def typicality(points: torch.Tensor, k_neighbours: int, chunk_size: int) -> torch.Tensor:
    """1 / (mean distance to the k = min(k_neighbours, m // 2) nearest neighbours + 1e-5); NaN for a lone point."""
    k = min(k_neighbours, len(points) // 2)
    if k == 0:
        return torch.full((len(points),), torch.nan, device=points.device)
    return 1 / (mean_knn_distances(points, k, chunk_size) + 1e-5)


def next_cluster(counts: np.ndarray, sizes: np.ndarray, eligible: np.ndarray, rank: np.ndarray) -> int:
    """The eligible cluster with the fewest labelled + selected points, then the largest, then the lowest rank."""
    order = np.lexsort((rank, -sizes, counts))
    return int(order[eligible[order]][0])


def typiclust(
    points: torch.Tensor,
    clusters: np.ndarray,
    num_labelled: int,
    budget: int,
    generator: torch.Generator,
    *,
    k_neighbours: int = 20,
    min_cluster_size: int = 6,
    chunk_size: int = 4096,
) -> tuple[np.ndarray, np.ndarray]:
    """TypiClust's picks among `points[num_labelled:]` (positions into `points`) and each pick's typicality.

    `points` (n, d) holds the labelled points first; `clusters` (n,) their k-means clusters.
    """
    num_clusters = int(clusters.max()) + 1 if len(clusters) else 0
    sizes = np.bincount(clusters, minlength=num_clusters)
    counts = np.bincount(clusters[:num_labelled], minlength=num_clusters)
    rank = torch.randperm(num_clusters, generator=generator).numpy()
    taken = np.zeros(len(points), dtype=bool)
    taken[:num_labelled] = True
    picks, scores = np.empty(budget, dtype=np.int64), np.empty(budget)
    for t in range(budget):
        has_candidates = counts < sizes
        large = has_candidates & (sizes >= min_cluster_size)
        cluster = next_cluster(counts, sizes, large if large.any() else has_candidates, rank)
        members = np.flatnonzero((clusters == cluster) & ~taken)
        typical = typicality(points[torch.as_tensor(members, device=points.device)], k_neighbours, chunk_size)
        best = int(top_k(typical.nan_to_num(nan=0.0), 1, generator)[0])
        picks[t], scores[t] = members[best], float(typical[best])
        taken[members[best]] = True
        counts[cluster] += 1
    return picks, scores


@register_strategy("typiclust")
class TypiClust(Strategy):
    """TypiClust: the most typical point of each of the largest clusters that hold no labelled point yet."""

    def __init__(
        self,
        k_neighbours: int = 20,
        max_clusters: int = 500,
        min_cluster_size: int = 6,
        features: str = "backbone",
        **ssl_options,
    ) -> None:
        for name, value, example in [
            ("k_neighbours", k_neighbours, 20),
            ("max_clusters", max_clusters, 500),
            ("min_cluster_size", min_cluster_size, 6),
        ]:
            require(value >= 1, "typiclust", name, value, "be at least 1", f"{name}={example}")
        self.k_neighbours = k_neighbours
        self.max_clusters = max_clusters
        self.min_cluster_size = min_cluster_size
        self.source = Representation("typiclust", features, ssl_options)
        self.representation = self.source.request

    def select(self, ctx: QueryContext, budget: int) -> Selection:
        points, info = self.source.points(ctx)
        num_labelled = len(points) - len(ctx.candidates)
        num_clusters = min(num_labelled + budget, self.max_clusters, len(points))
        clusters = kmeans_labels(points, num_clusters, ctx.generator)
        picks, scores = typiclust(
            points,
            clusters,
            num_labelled,
            budget,
            ctx.generator,
            k_neighbours=self.k_neighbours,
            min_cluster_size=self.min_cluster_size,
            chunk_size=ctx.chunk_size,
        )
        return Selection(ctx.candidates[picks - num_labelled], scores, {**info, "clusters": num_clusters})
