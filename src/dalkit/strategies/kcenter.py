"""Farthest-first traversal (k-center greedy) that reads few vectors per pick, in memory or over shards on disk.

Each point keeps its squared distance to the nearest centre so far (float32) and which centre that is. When a
new centre c is added, the triangle inequality gives d(x, c) >= d(a, c) - d(x, a) for x's centre a, so a point
with d(a, c) >= 2 d(x, a) cannot get closer to c and is settled from two numbers, without reading its vector;
centre-to-centre distances are few and cheap. The vectors are read only for the other points, from storage in
float16 or bfloat16 (half the bytes of float32: the pick loop is bound by reading them) and accumulated in float32
as ||x||^2 - 2 x.c + ||c||^2, with ||x||^2 of the stored vector. Float16 rows on the CPU are first screened with
float16 products (rounded, with a proven error bound); only the rows the screen cannot rule out are computed exactly,
so the picks are those of the exact float32 arithmetic on the stored values.

The points live in `blocks` (row-major 2-D tensors, possibly views of memory-mapped files); each pick is the
argmax of the per-block maxima, ties to the earliest block and row. Memory beyond the vectors: 12 bytes a point
(squared norm, running minimum, centre), one chunk's products and a 4 MB conversion buffer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

#: a settled point must clear the bound by this relative margin, so float rounding never settles one wrongly
SLACK = 1e-4
#: stored rows are converted to float32 this many bytes at a time (a piece that stays in the CPU's cache)
CONVERT_BYTES = 4 << 20
#: chunks of fewer rows skip the float16 screen (its second pass over the few rows it keeps costs more there)
SCREEN_ROWS = 256


def sq_norms(x: torch.Tensor) -> torch.Tensor:
    """Squared row norms without an n x d temporary (2 GB at 1M x 512)."""
    return torch.linalg.vector_norm(x, dim=1).square()


def sq_from_dots(a_sq: torch.Tensor, b_sq: torch.Tensor, dots: torch.Tensor) -> torch.Tensor:
    """Squared distances (len(a), len(b)) from squared norms and inner products, clamped at 0."""
    return (a_sq[:, None] + b_sq[None, :] - 2 * dots).clamp_min_(0)


def chunked_sq_norms(rows: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """Squared norms (float32) of stored rows, converted one chunk at a time."""
    out = torch.empty(len(rows), device=rows.device)
    for i in range(0, len(rows), chunk_size):
        out[i : i + chunk_size] = sq_norms(rows[i : i + chunk_size].float())
    return out


class FarthestFirst:
    """k-center greedy state over `blocks` of stored points, with `centers` (m, d) as the first centres.

    `pick()` adds the point farthest from every centre and returns (block, row, squared distance at pick time:
    +inf when there were no centres). `touched` counts the vectors read by each pick's update.
    """

    def __init__(self, blocks: Sequence[torch.Tensor], centers: torch.Tensor, budget: int, chunk_size: int) -> None:
        self.blocks = list(blocks)
        self.chunk_size = chunk_size
        dim = self.blocks[0].shape[1]
        device = self.blocks[0].device
        stored = centers.to(device, self.blocks[0].dtype).float()  # the centres in the points' own precision
        self.centers = torch.empty(len(stored) + budget, dim, device=device)
        self.centers[: len(stored)] = stored
        self.centers_sq = torch.zeros(len(self.centers), device=device)
        self.centers_sq[: len(stored)] = sq_norms(stored)
        self.count = len(stored)
        self.sq = [chunked_sq_norms(b, chunk_size) for b in self.blocks]
        self.min_sq, self.owner = [], []
        for block, block_sq in zip(self.blocks, self.sq):
            nearest, owner = self.nearest(block, block_sq)
            self.min_sq.append(nearest)
            self.owner.append(owner)
        self.touched: list[int] = []
        self.exact = 0  # rows the float16 screen could not rule out, computed exactly
        self.max_norm = max((float(b.max()) for b in self.sq if len(b)), default=0.0) ** 0.5
        self.buffer = torch.empty(max(1, CONVERT_BYTES // (4 * dim)), dim, device=device)

    def nearest(self, block: torch.Tensor, block_sq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each row's squared distance to its nearest centre (+inf if none) and that centre's number."""
        centers, centers_sq = self.centers[: self.count], self.centers_sq[: self.count]
        nearest = torch.full((len(block),), math.inf, device=block.device)
        owner = torch.zeros(len(block), dtype=torch.int64, device=block.device)
        for i in range(0, len(block), self.chunk_size):
            rows, rows_sq = block[i : i + self.chunk_size].float(), block_sq[i : i + self.chunk_size]
            for j in range(0, len(centers), self.chunk_size):
                part = slice(j, j + self.chunk_size)
                d = sq_from_dots(rows_sq, centers_sq[part], rows @ centers[part].T)
                best, where = d.min(1)
                closer = best < nearest[i : i + len(rows)]
                nearest[i : i + len(rows)][closer] = best[closer]
                owner[i : i + len(rows)][closer] = where[closer] + j
        return nearest, owner

    def farthest(self) -> tuple[int, int]:
        """(block, row) of the point farthest from every centre; ties to the earliest."""
        maxima = torch.stack([m.max() for m in self.min_sq])
        b = int(maxima.argmax())
        return b, int(self.min_sq[b].argmax())

    def pick(self, at: tuple[int, int] | None = None) -> tuple[int, int, float]:
        """Add the farthest point (or the one `at` (block, row)) as a centre and lower every distance."""
        b, r = self.farthest() if at is None else at
        value = float(self.min_sq[b][r])
        center = self.blocks[b][r].float()
        k = self.count
        self.centers[k], self.centers_sq[k] = center, self.sq[b][r]
        self.count += 1
        known = slice(0, k + 1)
        to_new = sq_from_dots(self.centers_sq[known], self.centers_sq[k : k + 1], self.centers[known] @ center[:, None])
        to_new = to_new[:, 0]
        self.touched.append(sum(self.lower(i, center, k, to_new) for i in range(len(self.blocks))))
        self.min_sq[b][r] = -1.0  # picked: never the farthest again, never read again
        return b, r, value

    def products(self, rows: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
        """rows @ center in float32. Stored float16/bfloat16 rows are converted a cache-sized piece at a time into
        one reused buffer (at 50,000 random 512-d rows, whole 8,192-row chunks were 2.4x slower than float32 and
        4 MB pieces 1.9x faster; see benchmarks)."""
        if rows.dtype == torch.float32:
            return rows @ center
        out = torch.empty(len(rows), device=rows.device)
        step = len(self.buffer)
        for i in range(0, len(rows), step):
            piece = self.buffer[: min(step, len(rows) - i)].copy_(rows[i : i + step])
            torch.mv(piece, center, out=out[i : i + len(piece)])
        return out

    def distances(
        self, rows: torch.Tensor, rows_sq: torch.Tensor, rows_min: torch.Tensor, center: torch.Tensor, center_sq
    ) -> torch.Tensor:
        """Squared distances of `rows` to `center`, exact (float32 accumulation) wherever one can be below
        `rows_min`; elsewhere a lower bound that is not. Float16 rows on the CPU are screened first with torch's
        float16 matrix-vector kernel (it reads the half-size rows without a conversion pass: 2x float32's speed;
        its result is the exact product rounded to float16, so within 2^-11 of it); only rows the screen cannot
        rule out are computed exactly."""
        if rows.dtype != torch.float16 or rows.device.type != "cpu" or len(rows) < SCREEN_ROWS:
            return (rows_sq + center_sq - 2 * self.products(rows, center)).clamp_min_(0)
        # the centre as float16, scaled by a power of two so that no product overflows; `lost` is what rounding
        # it took away (elements scaled into float16's subnormals), bounded below as ||x|| ||lost||
        bound = self.max_norm * float(torch.linalg.vector_norm(center))
        scale = 2.0 ** max(0, math.ceil(math.log2(max(bound, 1e-30) / 2**15)))
        center16 = (center / scale).half()
        lost = float(torch.linalg.vector_norm(center - center16.float() * scale))
        dots = torch.mv(rows, center16).float().mul_(scale)
        d = rows_sq + center_sq - 2 * dots
        # |float16 product - exact| <= 2^-11 |exact|; the two float32 sums differ by at most (dim + 4) 2^-23 of
        # the norms: a generous bound on how far `d` can be from the exact path's value
        slack = dots.abs_().mul_(2**-9).add_((rows_sq + center_sq).mul_((rows.shape[1] + 4) * 2**-22))
        if lost:
            slack.add_(rows_sq.sqrt().mul_(4 * lost))
        maybe = (d - slack < rows_min).nonzero().squeeze(1)
        if 4 * len(maybe) > len(rows):
            return (rows_sq + center_sq - 2 * self.products(rows, center)).clamp_min_(0)
        self.exact += len(maybe)
        near = rows.index_select(0, maybe)
        exact = rows_sq.index_select(0, maybe) + center_sq - 2 * self.products(near, center)
        return d.index_copy_(0, maybe, exact).clamp_min_(0)

    def lower(self, i: int, center: torch.Tensor, k: int, to_new: torch.Tensor) -> int:
        """Lower block i's distances with centre k where the bound allows a change; returns the rows read.

        Chunk by chunk: a chunk with many unsettled rows is read whole (contiguous, no gather), one with a few
        has just those rows gathered, one with none is not read."""
        block, block_sq, min_sq, owner = self.blocks[i], self.sq[i], self.min_sq[i], self.owner[i]
        center_sq = self.centers_sq[k]
        need = to_new.index_select(0, owner) < (4 + SLACK) * min_sq
        read = 0
        for s in range(0, len(block), self.chunk_size):
            part = slice(s, s + self.chunk_size)
            count = int(need[part].sum())
            if count == 0:
                continue
            rows, rows_sq, rows_min, rows_owner = block[part], block_sq[part], min_sq[part], owner[part]
            if 4 * count <= len(rows):
                index = need[part].nonzero().squeeze(1)
                rows, rows_sq = rows.index_select(0, index), rows_sq.index_select(0, index)
            read += len(rows)
            if len(rows) < len(rows_min):
                rows_min_read = rows_min.index_select(0, index)
                d = self.distances(rows, rows_sq, rows_min_read, center, center_sq)
                closer = d < rows_min_read
                index = index[closer]
                rows_min[index] = d[closer]
                rows_owner[index] = k
            else:
                d = self.distances(rows, rows_sq, rows_min, center, center_sq)
                closer = d < rows_min
                rows_min.copy_(torch.where(closer, d, rows_min))
                rows_owner.masked_fill_(closer, k)
        return read


def farthest_first(
    points: torch.Tensor, centers: torch.Tensor, budget: int, generator: torch.Generator, chunk_size: int, dtype
) -> tuple[torch.Tensor, torch.Tensor, FarthestFirst]:
    """k-center greedy over in-memory `points`, stored as `dtype`: picked positions, squared distances at pick
    time, and the final state. The points are laid out in one random permutation drawn from `generator`, so ties
    (and a cold start, where every distance is +inf) go to a uniformly random point."""
    if not 0 <= budget <= len(points):
        raise ValueError(f"cannot pick {budget} of {len(points)} points")
    order = torch.randperm(len(points), generator=generator).to(points.device)
    stored = torch.empty(points.shape, dtype=dtype, device=points.device)
    for i in range(0, len(points), chunk_size):
        stored[i : i + chunk_size] = points[order[i : i + chunk_size]]
    state = FarthestFirst([stored], centers, budget, chunk_size)
    picks, values = torch.empty(budget, dtype=torch.long), torch.empty(budget)
    for t in range(budget):
        _, picks[t], values[t] = state.pick()
    return order[picks.to(points.device)], values.to(points.device), state
