"""Cluster-Margin (Citovsky, DeSalvo, Gentile, Karydas, Rajagopalan, Rostamizadeh & Kumar, NeurIPS 2021,
"Batch Active Learning at Scale"): the lowest-margin candidates, spread over clusters by round-robin.

Setting (the paper's Algorithm 1): batch active learning with large batches, where a top-k of an uncertainty
score fills the batch with near-duplicates of one confusion. Once, before the first query, the penultimate
embeddings of the whole pool, from the first trained model, are clustered by hierarchical agglomerative
clustering (HAC) with average linkage, merging while the average distance between two clusters is at most a
threshold epsilon; the clusters are kept for every later round. Each round, with k_t the batch size:

1. margin(x) = p_top1(x) - p_top2(x) under the current model; M = the k_m candidates of smallest margin;
2. the clusters that hold a point of M, sorted by how many points of M each holds, smallest first;
3. round-robin over that order: one point of M drawn at random from each cluster in turn, skipping clusters
   whose points of M are all taken, until k_t are picked.

So no cluster gives a second point while another cluster of M still has an untaken one, and rare clusters
come first. Here k_t is the budget and k_m = ceil(km_ratio * budget), capped at the number of candidates
(default km_ratio = 10; km_ratio = 1 makes the batch exactly the budget lowest margins, in cluster order;
below 1 the batch is completed with the next-lowest margins). Ties in margin, in cluster size and the draw
within a cluster all come from the query's generator. A pick's score is p_top2 - p_top1, as `margin`'s.

Where the flat clustering is cut: `threshold` is the paper's epsilon (a euclidean average-linkage distance, in
the embedding's own units); as no value carries over between models and data sets, the default instead cuts
the dendrogram into `clusters` clusters, by default ceil(sqrt(n)) for n pool images (at most centroids // 2
on the large-pool path below). Every pool image, labelled or not, is clustered, so the clusters hold for
every later round's candidates; they are recomputed only when the pool's size changes. The selection's
`info` records how the clusters were made and how many of them the k_m candidates touch.

Scale. Exact average-linkage HAC needs the n(n-1)/2 pairwise distances (4 TB in float64 at n = 1,000,000),
so exact HAC (scipy.cluster.hierarchy, average linkage, euclidean) runs on pools of at most `exact_max`
images (default 5,000: 100 MB of distances). Above that, dalkit runs an equivalent on quantised data:

- k-means to `centroids` (default 2,000) centroids: Lloyd iterations on a random sample of 40 points per
  centroid, started from random sample points, then one chunked pass assigning every pool image to its
  nearest centroid and one recomputing each centroid as the mean of its images (empty ones are dropped);
- exact average-linkage HAC of the centroids, each weighted by its number of images (nearest-neighbour
  chain on the m x m centroid distances, with the Lance-Williams update
  d(A u B, C) = (w_A d(A, C) + w_B d(B, C)) / (w_A + w_B));
- every image inherits its centroid's cluster.

Weighted, not plain HAC of the centroids, because it is then exactly the paper's average-linkage HAC of the
pool with each image moved onto its centroid: images that share a centroid are at distance 0, so they merge
first, and from then on the average distance between two clusters of images is the size-weighted average of
their centroids' distances. Unweighted HAC would count a centroid of 5 images as much as one of 5,000.
The only approximation is the quantisation (each image at its centroid). Memory beyond the embeddings:
O(n) labels, the k-means sample (80,000 x d floats by default), chunk_size x centroids distance blocks and the
m x m float64 centroid distances (32 MB at m = 2,000); never an n x n or n x centroids matrix.

Departures: (1) the paper clusters the unlabelled pool; here every pool image is clustered, labelled ones
too, so one clustering serves every round's candidates; (2) the default cut (a number of clusters, not a
distance); (3) above `exact_max` images, the quantised equivalent above instead of exact HAC.

The first query computes the model's outputs on every pool image once and reads the candidates' margins from
that pass; later queries read only the candidates' outputs (`QueryContext.outputs`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import pdist, squareform

from dalkit.errors import DalkitError
from dalkit.features import predict
from dalkit.options import require
from dalkit.strategies.base import QueryContext, Selection, Strategy, top_k
from dalkit.strategies.kcenter import sq_from_dots, sq_norms
from dalkit.strategies.registry import register_strategy
from dalkit.strategies.sharded import query_store

SAMPLE_PER_CENTROID = 40  # k-means is fitted on a random sample of this many points per centroid


# --- average-linkage HAC -------------------------------------------------------------------------------------


def flat_clusters(
    num_points: int, merges: np.ndarray, heights: np.ndarray, clusters: int | None, threshold: float | None
) -> np.ndarray:
    """Cluster of each of `num_points` points (0..K-1) after the dendrogram's merges up to the cut.

    `merges` (num_points - 1, 2) names one member of each side of every merge, `heights` its linkage distance.
    The cut applies every merge of height <= `threshold`, or the num_points - `clusters` lowest ones.
    For a linkage without inversions (average linkage has none), applying merges by height gives the same
    flat clusters as the greedy algorithm's order.
    """
    order = np.argsort(heights, kind="stable")
    if threshold is not None:
        order = order[heights[order] <= threshold]
    else:
        order = order[: max(num_points - max(clusters or 1, 1), 0)]
    parent = np.arange(num_points)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in merges[order]:
        ra, rb = root(int(a)), root(int(b))
        parent[max(ra, rb)] = min(ra, rb)
    roots = np.array([root(i) for i in range(num_points)], dtype=np.int64)
    return np.unique(roots, return_inverse=True)[1].astype(np.int64)


def weighted_average_linkage(points: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Average-linkage HAC of `points` (m, d), point i counting as `weights[i]` coincident points.

    Nearest-neighbour chain (exact for average linkage, which is reducible) on the m x m euclidean distances
    in float64, O(m^2) memory and time. Returns the m - 1 merges (one member of each side) and their heights,
    in the order found (not sorted).
    """
    m = len(points)
    if m < 2:
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0)
    dist = squareform(pdist(np.asarray(points, dtype=np.float64)))
    np.fill_diagonal(dist, np.inf)
    size = np.asarray(weights, dtype=np.float64).copy()
    active = np.ones(m, dtype=bool)
    merges = np.empty((m - 1, 2), dtype=np.int64)
    heights = np.empty(m - 1)
    chain: list[int] = []
    done = 0
    while done < m - 1:
        if not chain:
            chain.append(int(np.flatnonzero(active)[0]))
        a = chain[-1]
        row = dist[a]
        b = int(row.argmin())
        if len(chain) > 1 and row[chain[-2]] <= row[b]:
            b = chain[-2]  # prefer the chain's previous element on a tie, so the chain always ends
        if len(chain) > 1 and b == chain[-2]:
            chain.pop()
            chain.pop()
            keep, drop = min(a, b), max(a, b)
            merges[done], heights[done] = (keep, drop), dist[a, b]
            merged = (size[keep] * dist[keep] + size[drop] * dist[drop]) / (size[keep] + size[drop])
            dist[keep, :] = merged
            dist[:, keep] = merged
            dist[keep, keep] = np.inf
            dist[drop, :] = np.inf
            dist[:, drop] = np.inf
            size[keep] += size[drop]
            active[drop] = False
            done += 1
        else:
            chain.append(b)
    return merges, heights


def exact_hac(points: np.ndarray, clusters: int | None, threshold: float | None) -> np.ndarray:
    """Exact average-linkage HAC (scipy) of `points` (n, d), euclidean, cut at `threshold` or into `clusters`."""
    n = len(points)
    if n < 2:
        return np.zeros(n, dtype=np.int64)
    tree = linkage(pdist(np.asarray(points, dtype=np.float64)), method="average")
    if threshold is not None:
        labels = fcluster(tree, t=threshold, criterion="distance")
    else:
        labels = fcluster(tree, t=min(clusters or 1, n), criterion="maxclust")
    return np.unique(labels, return_inverse=True)[1].astype(np.int64)


# --- k-means quantisation --------------------------------------------------------------------------------------


def nearest_centroid(points: torch.Tensor, centroids: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """Index of each point's nearest centroid, in chunks of `chunk_size` points (chunk x m blocks)."""
    centroids = centroids.float()
    centroids_sq = sq_norms(centroids)
    nearest = torch.empty(len(points), dtype=torch.long, device=points.device)
    for start in range(0, len(points), chunk_size):
        rows = points[start : start + chunk_size].float()
        nearest[start : start + len(rows)] = sq_from_dots(sq_norms(rows), centroids_sq, rows @ centroids.T).argmin(1)
    return nearest


Blocks = Sequence[torch.Tensor]  # a pool's rows in consecutive row-major blocks (one tensor, or a store's shards)


def as_blocks(rows: torch.Tensor | Blocks) -> list[torch.Tensor]:
    return [rows] if isinstance(rows, torch.Tensor) else list(rows)


def cluster_means(blocks: Blocks, labels: torch.Tensor, k: int, chunk_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (k, d; float32, summed in float64 by chunks) and size of each of k clusters of the rows of
    `blocks` (labels: one per row, in block order); empty ones are 0."""
    sums = torch.zeros(k, blocks[0].shape[1], dtype=torch.float64, device=labels.device)
    offset = 0
    for block in blocks:
        for start in range(0, len(block), chunk_size):
            rows = block[start : start + chunk_size]
            sums.index_add_(0, labels[offset + start : offset + start + len(rows)], rows.to(labels.device).double())
        offset += len(block)
    counts = torch.bincount(labels, minlength=k)
    return (sums / counts.clamp_min(1)[:, None]).float(), counts


def gather_rows(blocks: Blocks, indices: torch.Tensor) -> torch.Tensor:
    """Rows `indices` (into the blocks' rows in order) as one float32 tensor, in the order given."""
    indices = indices.cpu()
    ends = torch.tensor([len(b) for b in blocks]).cumsum(0)
    which = torch.searchsorted(ends, indices, right=True)
    out = torch.empty(len(indices), blocks[0].shape[1], device=blocks[0].device)
    for b in which.unique().tolist():
        mine = (which == b).nonzero().squeeze(1)
        rows = indices[mine] - (int(ends[b]) - len(blocks[b]))
        out[mine.to(out.device)] = blocks[b][rows.to(blocks[b].device)].float()
    return out


def kmeans(
    blocks: torch.Tensor | Blocks, k: int, generator: torch.Generator, chunk_size: int, iterations: int = 10
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """k-means of the rows of `blocks` (n, d in all) into at most k non-empty clusters; every draw from
    `generator`.

    Lloyd's iterations on a random sample of SAMPLE_PER_CENTROID * k points (all points when fewer), started
    from k random sample points; then every point is assigned to its nearest centroid (chunked, block by block)
    and each centroid recomputed as the mean of its points. Returns each point's cluster (n,), the centroids
    (m, d) and their sizes (m,), with the m <= k empty clusters dropped and the rest renumbered.
    """
    blocks = as_blocks(blocks)
    n = sum(len(b) for b in blocks)
    k = min(k, n)
    sample = gather_rows(blocks, torch.randperm(n, generator=generator)[: min(n, SAMPLE_PER_CENTROID * k)])
    start = torch.randperm(len(sample), generator=generator)[:k].to(sample.device)
    centroids = sample[start].clone()
    for _ in range(iterations):
        means, counts = cluster_means([sample], nearest_centroid(sample, centroids, chunk_size), k, chunk_size)
        centroids = torch.where((counts > 0)[:, None], means, centroids)  # an empty cluster keeps its centroid
    del sample
    labels = torch.cat([nearest_centroid(block, centroids, chunk_size) for block in blocks])
    centroids, counts = cluster_means(blocks, labels, k, chunk_size)
    kept = counts > 0
    renumber = torch.cumsum(kept.long(), 0) - 1
    return renumber[labels], centroids[kept], counts[kept]


# --- the pool's clusters -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PoolClusters:
    """The cluster of every pool image (index = pool index) and how it was made."""

    labels: np.ndarray
    method: str
    centroids: int | None = None

    @property
    def num_clusters(self) -> int:
        return int(self.labels.max()) + 1 if len(self.labels) else 0

    @property
    def pool_size(self) -> int:
        return len(self.labels)


def default_clusters(num_points: int, centroids: int | None) -> int:
    """ceil(sqrt(n)) clusters, at most half the centroids on the k-means path."""
    target = max(1, math.ceil(math.sqrt(num_points)))
    return target if centroids is None else max(1, min(target, centroids // 2))


def cluster_embeddings(
    embeddings: torch.Tensor | Blocks,
    generator: torch.Generator,
    *,
    clusters: int | None = None,
    threshold: float | None = None,
    exact_max: int = 5000,
    centroids: int = 2000,
    kmeans_iterations: int = 10,
    chunk_size: int = 4096,
) -> PoolClusters:
    """Average-linkage HAC of `embeddings` (n, d; or blocks of rows, e.g. a pool store's memory-mapped shards,
    read chunk by chunk): exact up to `exact_max` points, else on k-means centroids.

    Cut at distance `threshold`, else into `clusters` clusters (default: `default_clusters`). See the module
    docstring for the large-pool path and why its centroid HAC is weighted.
    """
    blocks = as_blocks(embeddings)
    n = sum(len(b) for b in blocks)
    if n <= exact_max:
        target = clusters if clusters is not None else default_clusters(n, None)
        points = torch.cat([b.float().cpu() for b in blocks]).numpy()
        labels = exact_hac(points, target if threshold is None else None, threshold)
        return PoolClusters(labels, "exact average-linkage HAC")
    target = clusters if clusters is not None else default_clusters(n, centroids)
    assignment, centres, counts = kmeans(blocks, centroids, generator, chunk_size, kmeans_iterations)
    merges, heights = weighted_average_linkage(centres.double().cpu().numpy(), counts.cpu().numpy())
    of_centroid = flat_clusters(len(centres), merges, heights, target if threshold is None else None, threshold)
    labels = of_centroid[assignment.cpu().numpy()]
    return PoolClusters(labels, "k-means, then size-weighted average-linkage HAC of the centroids", len(centres))


# --- the round-robin selection -------------------------------------------------------------------------------


def round_robin(clusters: np.ndarray, count: int, generator: torch.Generator) -> np.ndarray:
    """Positions into `clusters` (the cluster of each margin candidate) in Cluster-Margin's pick order.

    Clusters sorted by how many candidates they hold, smallest first (ties at random); then rounds that take
    one candidate at random from each cluster still holding an untaken one, in that order, until `count`.
    """
    ids, inverse, sizes = np.unique(clusters, return_inverse=True, return_counts=True)
    tie = torch.randperm(len(ids), generator=generator).numpy()
    rank = np.empty(len(ids), dtype=np.int64)
    rank[np.lexsort((tie, sizes))] = np.arange(len(ids))
    cluster_rank = rank[inverse]
    shuffle = torch.randperm(len(clusters), generator=generator).numpy()
    by_cluster = np.lexsort((shuffle, cluster_rank))  # grouped by cluster in order, random order inside each
    grouped = cluster_rank[by_cluster]
    turn = np.arange(len(clusters)) - np.searchsorted(grouped, grouped, side="left")  # 0 for a cluster's first
    return by_cluster[np.lexsort((grouped, turn))][:count]


def km_size(km_ratio: float, budget: int) -> int:
    """k_m = ceil(km_ratio x budget), at least 1 (a product that is whole up to rounding is not rounded up)."""
    return max(1, math.ceil(km_ratio * budget - 1e-9))


def margin_scores(probs: torch.Tensor) -> torch.Tensor:
    """p_top2 - p_top1 (the negated margin: higher is less certain), as the `margin` strategy scores."""
    top2 = probs.topk(2, dim=1).values
    return top2[:, 1] - top2[:, 0]


def cluster_margin(
    scores: torch.Tensor, clusters: np.ndarray, budget: int, km: int, generator: torch.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Cluster-Margin's picks (positions into the candidates, in pick order) and M, the margin set.

    `scores` (n,) are the candidates' negated margins, `clusters` (n,) their clusters; M is the `km` highest
    scores (ties at random). Round-robin over M's clusters; when km < budget, the rest by score.
    """
    km = min(km, len(scores))
    order = top_k(scores, max(km, budget), generator).cpu().numpy()
    margin_set = order[:km]
    picks = margin_set[round_robin(clusters[margin_set], budget, generator)]
    return (np.concatenate([picks, order[km:budget]]) if km < budget else picks), margin_set


# --- the strategy ----------------------------------------------------------------------------------------------


@register_strategy("cluster-margin")
class ClusterMargin(Strategy):
    """Cluster-Margin: the k_m lowest-margin candidates, round-robin over pool clusters (HAC once), smallest first."""

    carries_state = True  # the clustering of the first query's embeddings, kept for the run

    def __init__(
        self,
        km_ratio: float = 10.0,
        clusters: int | None = None,
        threshold: float | None = None,
        exact_max: int = 5000,
        centroids: int = 2000,
        kmeans_iterations: int = 10,
        store: str | None = None,
        shard_rows: int = 262_144,
    ) -> None:
        owner = "cluster-margin"
        require(km_ratio > 0, owner, "km_ratio", km_ratio, "be positive (k_m = km_ratio x budget)", "km_ratio=10")
        require(clusters is None or clusters >= 1, owner, "clusters", clusters, "be at least 1", "clusters=100")
        require(
            threshold is None or threshold > 0, owner, "threshold", threshold, "be a positive distance", "threshold=5"
        )
        require(exact_max >= 1, owner, "exact_max", exact_max, "be at least 1", "exact_max=5000")
        require(centroids >= 2, owner, "centroids", centroids, "be at least 2", "centroids=2000")
        require(
            clusters is None or clusters <= centroids,
            owner,
            "clusters",
            clusters,
            f"be at most centroids={centroids}, which bound the clusters of a pool above exact_max images",
            f"clusters={centroids // 2}",
        )
        require(kmeans_iterations >= 1, owner, "kmeans_iterations", kmeans_iterations, "be at least 1", "10")
        require(shard_rows >= 1, owner, "shard_rows", shard_rows, "be at least 1", "shard_rows=262144")
        if clusters is not None and threshold is not None:
            raise DalkitError(
                "the cluster-margin options clusters and threshold both say where to cut the clustering; "
                "pass only one of them."
            )
        self.km_ratio = km_ratio
        self.clusters = clusters
        self.threshold = threshold
        self.exact_max = exact_max
        self.centroids = centroids
        self.kmeans_iterations = kmeans_iterations
        self.store = store
        self.shard_rows = shard_rows
        self.pool_clusters: PoolClusters | None = None  # computed at the first query, kept for the run

    def cluster_pool(self, ctx: QueryContext) -> torch.Tensor:
        """Cluster every pool image's embedding under this query's model; returns the candidates' probabilities.
        With `store`, the embeddings go to a temporary float16 store on disk, shard by shard, and are clustered
        from there (memory: the clusters, the k-means sample and one chunk, whatever the pool's size)."""
        options = {
            "clusters": self.clusters,
            "threshold": self.threshold,
            "exact_max": self.exact_max,
            "centroids": self.centroids,
            "kmeans_iterations": self.kmeans_iterations,
            "chunk_size": ctx.chunk_size,
        }
        if self.store is not None:
            with query_store(ctx, np.arange(len(ctx.pool)), self.store, self.shard_rows) as store:
                self.pool_clusters = cluster_embeddings(store.shards("embeddings"), ctx.generator, **options)
                return gather_rows(store.shards("probs"), torch.as_tensor(ctx.candidates, dtype=torch.long))
        outputs = predict(ctx.model, ctx.batches(np.arange(len(ctx.pool))), ctx.device)
        self.pool_clusters = cluster_embeddings(outputs.embeddings, ctx.generator, **options)
        return outputs.probs[torch.as_tensor(ctx.candidates, dtype=torch.long, device=outputs.probs.device)]

    def select(self, ctx: QueryContext, budget: int) -> Selection:
        if self.pool_clusters is None or self.pool_clusters.pool_size != len(ctx.pool):
            probs = self.cluster_pool(ctx)
        else:
            probs = ctx.outputs("candidates").probs
        assert self.pool_clusters is not None
        scores = margin_scores(probs)
        km = min(len(ctx.candidates), km_size(self.km_ratio, budget))
        clusters = self.pool_clusters.labels[ctx.candidates]
        picks, margin_set = cluster_margin(scores, clusters, budget, km, ctx.generator)
        info = {
            "clustering": self.pool_clusters.method,
            "clusters": self.pool_clusters.num_clusters,
            "centroids": self.pool_clusters.centroids,
            "km": km,
            "km_clusters": len(np.unique(clusters[margin_set])),
        }
        return Selection(ctx.candidates[picks], scores.cpu().numpy()[picks], info)
