"""Sequential GCN (Caramalau, Bhattarai & Kim, CVPR 2021): UncertainGCN and CoreGCN.

Setting: after the learner is trained, its penultimate embeddings of the labelled images and the candidates
become the nodes of one graph whose edges are their similarities; a two-layer GCN, trained from scratch in
every `select` call, learns to tell labelled nodes (1) from unlabelled ones (0). Message passing pulls
strongly connected nodes together, so the GCN's outputs and hidden features say how far each candidate is
from the labelled set.

Graph (`normalised_adjacency`): features L2-normalised, S = X X^T, A = D^-1 (S - I) + I with D the degrees
(row sums) of S - I: the paper's Eq., row-normalised neighbour weights plus a self-loop of weight 1. The
authors' code (github.com/razvancaramalau/Sequential-GCN-for-Active-Learning, selection_methods.py,
`aff_to_adj`) multiplies by D^-1 on the right instead, (S - I) D^-1 + I: column-normalised, the transpose
of the paper's A; `columns=True` (strategy option `normalise="columns"`) reproduces it. A is not symmetric
in either form (unless all degrees are equal); D (A - I) = S - I is.

GCN and training, from the authors' code (main.py arguments, config.py, models/query_models.py): node inputs
are the L2-normalised features; h = dropout(relu(A X W1 + b1)), output sigmoid(A h W2 + b2) (their third
layer `gc2` is defined but unused, so two layers as in the paper); hidden size 128, dropout 0.3, Kipf-style
uniform(+-1/sqrt(fan_out)) init; Adam lr 1e-3, weight decay 5e-4, 200 full-graph epochs; loss
-mean(log s_labelled) - lambda_loss * mean(log(1 - s_unlabelled)) with lambda_loss = 1.2 (computed here
from logits with log-sigmoid: the same loss, no log(0)).

- "uncertaingcn": the candidates whose confidence s (probability of "labelled") is closest to s_margin = 0.1,
  i.e. the smallest |s - s_margin| (`margin_picks`; the code sorts by it and takes the last `budget` of the
  descending order). Scores: s.
- "coregcn": k-center greedy (`coreset.k_center_greedy`) with the labelled nodes as centres, on the GCN's
  node features; as in the code, these are the hidden features concatenated with the output logit
  (`torch.cat((feat, x), 1)`). Scores: the covering radius before each pick.

Departures: the graph is dense, n x n for n = labelled + candidates, as in the reference; above `max_nodes`
(20,000 by default; the papers use a random subset of 10,000 unlabelled images) it is refused with a hint to
pass `--candidates`. The candidates stand for the paper's unlabelled subset. Cold start (nothing labelled):
there is no positive class to train on, so both strategies fall back to k-center greedy on the raw
embeddings (a random first pick, then farthest-first; Core-Set's cold start). Randomness (GCN weights,
dropout masks) comes from one seed drawn from `ctx.generator`, under `isolated_rng`.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Iterator

import torch
from torch import nn
from torch.nn import functional as F

from dalkit.errors import DalkitError
from dalkit.runtime import fit_loop, isolated_rng
from dalkit.seeding import draw_seed
from dalkit.strategies.base import QueryContext, Selection, Strategy, top_k
from dalkit.strategies.coreset import k_center_greedy
from dalkit.strategies.registry import register_strategy


def normalised_adjacency(features: torch.Tensor, columns: bool = False, eps: float = 1e-12) -> torch.Tensor:
    """Sequential GCN's graph: A = D^-1 (S - I) + I, S = X X^T on L2-normalised rows of `features` (n, d).

    D holds the degrees of S - I (its row sums, equal to its column sums as it is symmetric). `columns=True`
    gives the authors' code's (S - I) D^-1 + I instead. A zero degree (a node similar to nothing) gets no
    neighbour weights. Dense n x n float32, built in place: one n x n buffer.
    """
    x = F.normalize(features.float(), dim=1)
    adjacency = x @ x.T
    adjacency.diagonal().sub_(1.0)
    degree = adjacency.sum(1)
    inverse = torch.where(degree.abs() > eps, 1 / degree, torch.zeros_like(degree))
    adjacency.mul_(inverse[None, :] if columns else inverse[:, None])
    adjacency.diagonal().add_(1.0)
    return adjacency


class GraphConvolution(nn.Module):
    """Kipf & Welling's layer A (X W) + b, with the reference's uniform(+-1/sqrt(out_features)) init."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        bound = 1 / math.sqrt(out_features)
        self.weight = nn.Parameter(torch.empty(in_features, out_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(out_features).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
        return adjacency @ (x @ self.weight) + self.bias


class GCN(nn.Module):
    """Two graph convolutions; returns the output logit (n,) and the hidden features (n, hidden)."""

    def __init__(self, in_features: int, hidden: int = 128, dropout: float = 0.3) -> None:
        super().__init__()
        self.gc1 = GraphConvolution(in_features, hidden)
        self.gc2 = GraphConvolution(hidden, 1)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, adjacency: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = F.dropout(torch.relu(self.gc1(x, adjacency)), self.dropout, training=self.training)
        return self.gc2(hidden, adjacency).squeeze(1), hidden


def labelled_vs_unlabelled_loss(logits: torch.Tensor, labelled: torch.Tensor, lambda_loss: float) -> torch.Tensor:
    """-mean log s over labelled nodes - lambda_loss * mean log(1 - s) over the others, s = sigmoid(logits)."""
    positive = F.logsigmoid(logits[labelled]).mean()
    negative = F.logsigmoid(-logits[~labelled]).mean()
    return -positive - lambda_loss * negative


def margin_picks(confidence: torch.Tensor, s_margin: float, budget: int, generator: torch.Generator) -> torch.Tensor:
    """UncertainGCN's rule: positions of the `budget` smallest |confidence - s_margin| (ties at random)."""
    return top_k(-(confidence - s_margin).abs(), budget, generator)


class SequentialGCN(Strategy):
    """Shared part: build the graph over labelled + candidate embeddings, train the GCN, then `pick`."""

    name = "sequential-gcn"

    def __init__(
        self,
        hidden: int = 128,
        dropout: float = 0.3,
        lr: float = 1e-3,
        weight_decay: float = 5e-4,
        epochs: int = 200,
        lambda_loss: float = 1.2,
        normalise: str = "rows",
        max_nodes: int = 20_000,
    ) -> None:
        if normalise not in ("rows", "columns"):
            raise DalkitError(
                f"the {self.name} option normalise must be 'rows' (the paper) or 'columns' (the authors' code), "
                f"not {normalise!r}."
            )
        if hidden < 1 or epochs < 1 or not 0 <= dropout < 1:
            raise DalkitError(
                f"the {self.name} options need hidden >= 1, epochs >= 1 and 0 <= dropout < 1 "
                f"(got hidden={hidden}, epochs={epochs}, dropout={dropout})."
            )
        self.hidden = hidden
        self.dropout = dropout
        self.lr = lr
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.lambda_loss = lambda_loss
        self.normalise = normalise
        self.max_nodes = max_nodes

    def check_size(self, num_nodes: int) -> None:
        if num_nodes > self.max_nodes:
            raise DalkitError(
                f"{self.name} builds a dense graph over labelled + candidate images and allows at most "
                f"max_nodes={self.max_nodes} nodes but got {num_nodes}; pass --candidates 10000 to draw a random "
                "candidate subset as the paper does, or raise --strategy-option max_nodes."
            )

    def fit(self, x: torch.Tensor, adjacency: torch.Tensor, labelled: torch.Tensor, progress: bool = True) -> GCN:
        """Train a fresh GCN on node inputs `x` (n, d); `labelled` (n,) marks the positive nodes.

        Its initialisation and dropout draw from the global RNG: call it under `isolated_rng`.
        """
        gcn = GCN(x.shape[1], self.hidden, self.dropout).to(x.device)
        optimizer = torch.optim.Adam(gcn.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        gcn.train()

        def full_graph_step(_: int) -> Iterator[tuple[torch.Tensor, int]]:
            loss = labelled_vs_unlabelled_loss(gcn(x, adjacency)[0], labelled, self.lambda_loss)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            yield loss, 1

        fit_loop(self.epochs, 1, full_graph_step, progress=progress, description=self.name, unit="epoch")
        return gcn.eval()

    def node_outputs(self, ctx: QueryContext) -> tuple[torch.Tensor, torch.Tensor]:
        """GCN logits (n,) and hidden features (n, hidden) for the nodes [labelled..., candidates...].

        Trains under `isolated_rng` with a seed drawn from `ctx.generator`.
        """
        labelled = ctx.outputs("labelled").embeddings
        x = F.normalize(torch.cat([labelled, ctx.outputs("candidates").embeddings.to(labelled.device)]).float(), dim=1)
        adjacency = normalised_adjacency(x, columns=self.normalise == "columns")
        is_labelled = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        is_labelled[: len(labelled)] = True
        with isolated_rng(draw_seed(ctx.generator)):
            gcn = self.fit(x, adjacency, is_labelled, ctx.progress)
        with torch.inference_mode():
            return gcn(x, adjacency)

    def select(self, ctx: QueryContext, budget: int) -> Selection:
        num_labelled = len(ctx.labelled)
        self.check_size(num_labelled + len(ctx.candidates))
        if num_labelled == 0:
            points = ctx.outputs("candidates").embeddings
            picks, scores = k_center_greedy(points, points[:0], budget, ctx.generator, ctx.chunk_size)
            return Selection(ctx.candidates[picks.cpu().numpy()], scores.cpu().numpy())
        logits, hidden = self.node_outputs(ctx)
        picks, scores = self.pick(ctx, budget, logits, hidden, num_labelled)
        return Selection(ctx.candidates[picks.cpu().numpy()], scores.cpu().numpy())

    @abstractmethod
    def pick(
        self, ctx: QueryContext, budget: int, logits: torch.Tensor, hidden: torch.Tensor, num_labelled: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Candidate positions and their scores from the trained GCN's outputs on all nodes."""


def gcn_features(logits: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """CoreGCN's node features: the hidden features with the output logit appended, as in the authors' code."""
    return torch.cat([hidden, logits[:, None]], dim=1)


@register_strategy("uncertaingcn")
class UncertainGCN(SequentialGCN):
    """UncertainGCN: the candidates whose GCN confidence of being labelled is closest to `s_margin` (0.1)."""

    name = "uncertaingcn"

    def __init__(self, s_margin: float = 0.1, **options) -> None:
        super().__init__(**options)
        self.s_margin = s_margin

    def pick(
        self, ctx: QueryContext, budget: int, logits: torch.Tensor, hidden: torch.Tensor, num_labelled: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        confidence = logits[num_labelled:].sigmoid()
        picks = margin_picks(confidence, self.s_margin, budget, ctx.generator)
        return picks, confidence[picks]


@register_strategy("coregcn")
class CoreGCN(SequentialGCN):
    """CoreGCN: k-center greedy on the GCN's node features [hidden, logit], labelled nodes as centres."""

    name = "coregcn"

    def pick(
        self, ctx: QueryContext, budget: int, logits: torch.Tensor, hidden: torch.Tensor, num_labelled: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        features = gcn_features(logits, hidden)
        return k_center_greedy(features[num_labelled:], features[:num_labelled], budget, ctx.generator, ctx.chunk_size)
