"""Core-Set (Sener & Savarese, ICLR 2018): pick the candidates that best cover the pool in embedding space.

Setting: active learning as core-set selection. With s0 the labelled set, choose `budget` candidates so that
s0 plus the picks, used as centres, cover every point (labelled and candidate) of the model's penultimate
embedding with the smallest radius: a k-center problem with k = |s0| + budget, whose radius bounds the
core-set loss. Distances are euclidean, computed in float32 as ||a||^2 - 2ab + ||b||^2 (clamped at 0).

- "coreset": k-center greedy (farthest-first traversal), the paper's 2-approximation, reading the embeddings
  in float16 (`precision=`) and skipping the points the triangle inequality settles (`kcenter.py`).
- "coreset-robust" (or robust=True): the paper's robust k-center with outliers, a feasibility program solved
  in a binary search on the radius; see `robust_k_center` for the exact program and where it departs.

Memory stays O(n + chunk_size * max(chunk_size, d)): no n x n or n x m matrix is ever formed (the robust
program adds its sparse coverage pairs, at most `max_pairs` of them).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, milp

from dalkit.errors import DalkitError
from dalkit.options import require
from dalkit.strategies.base import QueryContext, Selection, Strategy
from dalkit.strategies.kcenter import farthest_first, sq_from_dots, sq_norms
from dalkit.strategies.registry import register_strategy
from dalkit.strategies.sharded import query_store, store_k_center

#: how k-center greedy stores the vectors it reads each pick (`precision=`); the distances are float32 throughout
PRECISIONS = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def sq_distance_blocks(a: torch.Tensor, b: torch.Tensor, chunk_size: int) -> Iterator[tuple[int, int, torch.Tensor]]:
    """(row offset, column offset, block) tiling the len(a) x len(b) squared distances, partial tiles included."""
    b_sq = sq_norms(b)
    for i in range(0, len(a), chunk_size):
        rows = a[i : i + chunk_size]
        rows_sq = sq_norms(rows)
        for j in range(0, len(b), chunk_size):
            yield i, j, sq_from_dots(rows_sq, b_sq[j : j + chunk_size], rows @ b[j : j + chunk_size].T)


def min_sq_distances(points: torch.Tensor, centers: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """Each point's squared distance to its nearest centre (+inf when there are none), chunked over both."""
    nearest = torch.full((len(points),), math.inf, device=points.device)
    for i, _, block in sq_distance_blocks(points, centers, chunk_size):
        rows = slice(i, i + len(block))
        nearest[rows] = torch.minimum(nearest[rows], block.amin(1))
    return nearest


def k_center_greedy(
    points: torch.Tensor,
    centers: torch.Tensor,
    budget: int,
    generator: torch.Generator,
    chunk_size: int,
    dtype: torch.dtype = torch.float16,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sener & Savarese's k-center greedy: add the point farthest from every centre, `budget` times.

    `points` (n, d) are the candidates, `centers` (m, d) the existing centres (m may be 0: then the first
    pick is a uniformly random point from `generator`). Returns the picked positions (LongTensor) and
    `radii[t]`, the covering radius max_i min_c ||x_i - c|| just before pick t (non-increasing; +inf for a
    cold start's first pick). The vectors are read as `dtype` (float16 by default; float32 gives the exact
    float32 traversal), the distances accumulated in float32, and points the triangle inequality settles are
    not read at all (`kcenter.FarthestFirst`). Memory O(n + chunk_size * max(chunk_size, d)) beyond one copy
    of the points in `dtype`.
    """
    picks, sq_radii, _ = farthest_first(points, centers.to(points.device), budget, generator, chunk_size, dtype)
    return picks, sq_radii.sqrt()


def pairs_within(
    rows: torch.Tensor, columns: torch.Tensor, sq_radius: float, chunk_size: int, limit: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """(row, column) positions of the pairs at squared distance <= `sq_radius`, or None past `limit` pairs."""
    found_rows, found_columns, count = [], [], 0
    for i, j, block in sq_distance_blocks(rows, columns, chunk_size):
        r, c = (block <= sq_radius).nonzero(as_tuple=True)
        count += len(r)
        if count > limit:
            return None
        found_rows.append((r + i).cpu().numpy())
        found_columns.append((c + j).cpu().numpy())
    if not found_rows:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(found_rows), np.concatenate(found_columns)


def feasible_centres(
    points: torch.Tensor,
    to_labelled: torch.Tensor,
    budget: int,
    radius: float,
    outliers: int,
    *,
    chunk_size: int,
    time_limit: float,
    max_pairs: int,
) -> torch.Tensor | None:
    """Positions of `budget` new centres leaving at most `outliers` points farther than `radius`, or None.

    None means infeasible, or undecided: the time limit passed without a solution, or the program would have
    more than `max_pairs` coverage pairs. The program is the one in `robust_k_center`.
    """
    n = len(points)
    open_rows = (to_labelled > radius**2).nonzero().squeeze(1)  # points no labelled centre covers
    pairs = pairs_within(points[open_rows], points, radius**2, chunk_size, max_pairs)
    if pairs is None:
        return None
    k = len(open_rows)
    cover = sparse.csr_array((np.ones(len(pairs[0])), pairs), shape=(k, n))
    matrix = sparse.vstack(
        [
            sparse.hstack([cover, sparse.eye_array(k, format="csr")]),  # sum_{j: d(i,j)<=r} u_j + o_i >= 1
            sparse.hstack([sparse.csr_array(np.ones((1, n))), sparse.csr_array((1, k))]),  # sum_j u_j = budget
            sparse.hstack([sparse.csr_array((1, n)), sparse.csr_array(np.ones((1, k)))]),  # sum_i o_i <= outliers
        ],
        format="csr",
    )
    lower = np.concatenate([np.ones(k), [budget, 0]])
    upper = np.concatenate([np.full(k, np.inf), [budget, outliers]])
    result = milp(
        np.zeros(n + k),
        integrality=np.ones(n + k),
        bounds=Bounds(0, 1),
        constraints=LinearConstraint(matrix, lower, upper),
        options={"time_limit": time_limit, "disp": False},
    )
    if result.x is None:
        return None
    chosen = np.flatnonzero(result.x[:n] > 0.5)
    assert len(chosen) == budget, "the program fixes the number of new centres"
    return torch.as_tensor(chosen, device=points.device)


def robust_radius(
    points: torch.Tensor, to_labelled: torch.Tensor, chosen: torch.Tensor, outliers: int, chunk_size: int
) -> float:
    """Covering radius of labelled + `chosen` centres once the `outliers` farthest points are left out."""
    nearest = torch.minimum(to_labelled, min_sq_distances(points, points[chosen], chunk_size))
    return nearest.topk(min(outliers + 1, len(nearest))).values[-1].sqrt().item()


def robust_k_center(
    points: torch.Tensor,
    centers: torch.Tensor,
    budget: int,
    generator: torch.Generator,
    chunk_size: int,
    *,
    outliers: int,
    max_iters: int = 10,
    time_limit: float = 30.0,
    max_pairs: int = 5_000_000,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's robust k-center: binary search on the radius over a mixed-integer feasibility program.

    Paper (Sec. 4.2): start from the greedy solution with radius delta; since greedy is a 2-approximation,
    search r in [delta/2, delta]; at each r solve Feas(r): binary u_j (j is a centre) and omega_ij (i served
    by j), sum_j u_j = |s0| + budget, sum_j omega_ij = 1, omega_ij <= u_j, u_j = 1 on s0, and at most Xi
    "outlier" assignments omega_ij with d(i,j) > r. Feasible: ub = r; infeasible: lb = r.

    What is solved here, over the candidates (the labelled points enter only as fixed centres):

        u_j in {0,1} for each candidate j;  o_i in {0,1} for each candidate i with d(i, s0) > r
        sum_j u_j = budget
        o_i + sum_{j: d(i,j) <= r} u_j >= 1      for each such i
        sum_i o_i <= Xi   (Xi = `outliers`)

    This is the paper's program with the assignments projected out: a point can be assigned within r iff
    some open centre lies within r, so omega_ij exist only for pairs within r plus one outlier variable o_i
    per point (the layout of the authors' Gurobi script); labelled points are centres, so they and every
    candidate within r of one are covered and drop out. The feasible sets of centres are the same.
    Departures: (1) size is bounded: the caller refuses more than `max_points` candidates, and a program
    with over `max_pairs` coverage pairs, or one HiGHS cannot settle within `time_limit` seconds, counts as
    not shown feasible, so the search moves up and the answer is always a certified-feasible solution,
    possibly not the smallest radius. (2) After a feasible solve, ub is the solution's actual robust radius
    (<= r), as the authors' script snaps to realised distances. (3) delta/2 bounds the optimum only without
    outliers; when a solution below it turns up the search stops there. (4) The selection is ordered by
    farthest-first among the chosen centres, each scored by its distance at that point; when no program
    beats greedy, greedy's own picks and radii are returned.
    """
    points = points.float()
    centers = centers.float().to(points.device)
    to_labelled = min_sq_distances(points, centers, chunk_size)
    greedy, sq_radii, final = farthest_first(points, centers, budget, generator, chunk_size, torch.float32)
    lower = upper = final.min_sq[0].max().clamp_min(0).sqrt().item()
    lower /= 2
    best = None
    for _ in range(max_iters):
        if upper - lower <= 1e-6 * upper or budget == len(points):
            break
        radius = (lower + upper) / 2
        chosen = feasible_centres(
            points,
            to_labelled,
            budget,
            radius,
            outliers,
            chunk_size=chunk_size,
            time_limit=time_limit,
            max_pairs=max_pairs,
        )
        if chosen is None:
            lower = radius
        else:
            best = chosen
            upper = min(radius, robust_radius(points, to_labelled, chosen, outliers, chunk_size))
    if best is None:
        return greedy, sq_radii.sqrt()
    order, sq_scores, _ = farthest_first(points[best], centers, budget, generator, chunk_size, torch.float32)
    return best[order], sq_scores.sqrt()


@register_strategy("coreset")
class CoreSet(Strategy):
    """Core-Set: k-center greedy on embeddings, labelled images as centres (robust=True: the paper's MIP)."""

    def __init__(
        self,
        robust: bool = False,
        outliers: int | None = None,
        outlier_fraction: float = 1e-4,
        max_iters: int = 10,
        time_limit: float = 30.0,
        max_points: int = 5000,
        max_pairs: int = 5_000_000,
        precision: str = "float16",
        store: str | None = None,
        shard_rows: int = 262_144,
    ) -> None:
        rule = "be float16, bfloat16 or float32"
        require(precision in PRECISIONS, "coreset", "precision", precision, rule, "precision=float32")
        require(outliers is None or outliers >= 0, "coreset", "outliers", outliers, "be 0 or more", "outliers=0")
        require(
            0 <= outlier_fraction < 1,
            "coreset",
            "outlier_fraction",
            outlier_fraction,
            "be in [0, 1)",
            "outlier_fraction=0.0001",
        )
        require(store is None or not robust, "coreset", "store", store, "be left out with robust", "robust=False")
        numbers = [("max_iters", max_iters), ("max_points", max_points), ("max_pairs", max_pairs)]
        for name, value in numbers + [("shard_rows", shard_rows)]:
            require(value >= 1, "coreset", name, value, "be at least 1", f"{name}=10")
        require(time_limit > 0, "coreset", "time_limit", time_limit, "be positive (seconds)", "time_limit=30")
        self.robust = robust
        self.outliers = outliers
        self.outlier_fraction = outlier_fraction
        self.max_iters = max_iters
        self.time_limit = time_limit
        self.max_points = max_points
        self.max_pairs = max_pairs
        self.precision = precision
        self.store = store
        self.shard_rows = shard_rows

    def outlier_count(self, num_points: int) -> int:
        """Xi: `outliers` if given, else ceil(outlier_fraction * candidates), so 1e-4 of the points."""
        if self.outliers is not None:
            return self.outliers
        return math.ceil(self.outlier_fraction * num_points)

    def select(self, ctx: QueryContext, budget: int) -> Selection:
        if self.robust and len(ctx.candidates) > self.max_points:
            raise DalkitError(
                f"robust Core-Set solves its program on at most max_points={self.max_points} candidates but got "
                f"{len(ctx.candidates)}; pass --candidates {self.max_points} to draw a random candidate subset, "
                "or raise --strategy-option max_points."
            )
        centers = ctx.outputs("labelled").embeddings
        if self.store is not None:
            return self.select_on_store(ctx, centers, budget)
        points = ctx.outputs("candidates").embeddings
        if self.robust:
            picks, scores = robust_k_center(
                points,
                centers,
                budget,
                ctx.generator,
                ctx.chunk_size,
                outliers=self.outlier_count(len(points)),
                max_iters=self.max_iters,
                time_limit=self.time_limit,
                max_pairs=self.max_pairs,
            )
        else:
            dtype = PRECISIONS[self.precision]
            picks, scores = k_center_greedy(points, centers, budget, ctx.generator, ctx.chunk_size, dtype)
        return Selection(ctx.candidates[picks.cpu().numpy()], scores.cpu().numpy())

    def select_on_store(self, ctx: QueryContext, centers: torch.Tensor, budget: int) -> Selection:
        """The candidates' embeddings computed shard by shard into a float16 store under `store` (removed after
        the query), and k-center greedy run on it: memory a few numbers a candidate, whatever the pool's size."""
        with query_store(ctx, ctx.candidates, self.store, self.shard_rows) as store:
            picks, scores = store_k_center(store, centers.cpu(), budget, ctx.generator, ctx.chunk_size)
        info = {"store": str(self.store), "shards": store.num_shards}
        return Selection(ctx.candidates[picks.numpy()], scores.numpy(), info)


@register_strategy("coreset-robust")
class RobustCoreSet(CoreSet):
    """Core-Set, robust k-center: the paper's outlier-robust MIP (HiGHS) over at most 5,000 candidates."""

    def __init__(self, **options) -> None:
        super().__init__(robust=True, **options)
