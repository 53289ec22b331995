"""The sharded pool store: round trip, unfinished stores refused, selection on it equal to selection in memory."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dalkit.errors import DalkitError
from dalkit.features.pool_store import build_store, open_store
from dalkit.seeding import make_generator
from dalkit.strategies import checked_select, create_strategy
from dalkit.strategies.base import entropy, sample_batch
from dalkit.strategies.cluster_margin import cluster_embeddings
from dalkit.strategies.coreset import k_center_greedy
from dalkit.strategies.sharded import store_k_center, store_scores


def pool(n: int = 230, dim: int = 12, classes: int = 4):
    g = torch.Generator().manual_seed(0)
    means = 6 * torch.randn(9, dim, generator=g)
    embeddings = means[torch.randint(9, (n,), generator=g)] + torch.randn(n, dim, generator=g)
    probs = torch.softmax(2 * torch.randn(n, classes, generator=g), 1)
    return embeddings.half().float(), probs.half().float()  # the values float16 storage keeps


def stored(tmp_path, embeddings, probs, shard_rows=50):
    def compute_shard(i):
        part = slice(i * shard_rows, (i + 1) * shard_rows)
        return {"embeddings": embeddings[part].numpy(), "probs": probs[part].numpy()}

    return build_store(tmp_path / "store", len(embeddings), shard_rows, compute_shard)


def test_round_trip_keeps_every_row_in_order(tmp_path):
    embeddings, probs = pool()
    store = open_store(stored(tmp_path, embeddings, probs).root)
    assert store.num_shards == 5 and store.columns == {"embeddings": 12, "probs": 4}
    torch.testing.assert_close(torch.cat(store.shards("embeddings")).float(), embeddings)
    torch.testing.assert_close(torch.cat(store.shards("probs")).float(), probs)


def test_a_half_written_store_is_never_taken_as_complete(tmp_path):
    embeddings, probs = pool()

    def failing(i):
        if i == 3:
            raise RuntimeError("worker lost")
        return {"embeddings": embeddings[i * 50 : (i + 1) * 50].numpy()}

    with pytest.raises(RuntimeError):
        build_store(tmp_path / "store", len(embeddings), 50, failing)
    assert list(tmp_path.iterdir()) == []  # neither the final name nor the partial directory
    store = stored(tmp_path, embeddings, probs)
    (store.root / "embeddings-00002.f16").write_bytes(b"\0" * 10)  # a shard cut short
    with pytest.raises(DalkitError, match="embeddings-00002.f16"):
        open_store(store.root)
    (store.root / "manifest.json").unlink()
    with pytest.raises(DalkitError, match="not a complete pool store"):
        open_store(store.root)


@pytest.mark.parametrize("labelled", [0, 3])
def test_sharded_core_set_picks_what_the_in_memory_one_picks(tmp_path, labelled):
    embeddings, probs = pool()
    centers = embeddings[:labelled] + 0.25
    store = stored(tmp_path, embeddings, probs, shard_rows=37)
    seen = []
    picks, radii = store_k_center(store, centers, 40, make_generator(5), 16, progress=seen.append)
    want, want_radii = k_center_greedy(embeddings, centers, 40, make_generator(5), 16, torch.float16)
    assert picks.tolist() == want.tolist()
    torch.testing.assert_close(radii, want_radii)
    assert seen == list(range(1, 41))


@pytest.mark.parametrize("sampling", ["topk", "power"])
def test_sharded_scores_select_what_the_in_memory_scores_select(tmp_path, sampling):
    embeddings, probs = pool()
    store = stored(tmp_path, embeddings, probs, shard_rows=64)
    got = sample_batch(store_scores(store, entropy), 25, make_generator(1), sampling)
    want = sample_batch(entropy(probs), 25, make_generator(1), sampling)
    assert got.tolist() == want.tolist()
    assert np.unique(got.numpy()).size == 25


@pytest.mark.parametrize("labelled", [0, 5])
def test_coreset_with_a_store_option_picks_what_it_picks_in_memory(tmp_path, context_factory, labelled):
    in_memory = checked_select(create_strategy("coreset"), context_factory(pool_size=90, labelled=labelled), 12)
    strategy = create_strategy("coreset", store=str(tmp_path / "stores"), shard_rows=20)
    on_disk = checked_select(strategy, context_factory(pool_size=90, labelled=labelled), 12)
    assert on_disk.indices.tolist() == in_memory.indices.tolist()
    assert on_disk.info["shards"] == -(-(90 - labelled) // 20)
    assert list((tmp_path / "stores").iterdir()) == []  # the query's store is removed after it


def test_robust_coreset_refuses_a_store():
    with pytest.raises(DalkitError, match="store"):
        create_strategy("coreset-robust", store="somewhere")


def test_cluster_margin_clusters_a_store_as_it_clusters_in_memory(tmp_path):
    embeddings, probs = pool()
    store = stored(tmp_path, embeddings, probs, shard_rows=64)
    options = {"exact_max": 10, "centroids": 20, "clusters": 6, "chunk_size": 16}  # the k-means path, 4 shards
    got = cluster_embeddings(store.shards("embeddings"), make_generator(3), **options)
    want = cluster_embeddings(embeddings, make_generator(3), **options)
    assert got.method == want.method and got.centroids == want.centroids
    assert got.labels.tolist() == want.labels.tolist()


def test_cluster_margin_with_a_store_option_spreads_its_batch_and_removes_the_store(tmp_path, context_factory):
    options = {"exact_max": 20, "centroids": 30, "clusters": 8}
    strategy = create_strategy("cluster-margin", store=str(tmp_path / "stores"), shard_rows=25, **options)
    picked = checked_select(strategy, context_factory(pool_size=90, labelled=5), 6)
    assert picked.info["clustering"].startswith("k-means") and picked.info["clusters"] == 8
    clusters = strategy.pool_clusters.labels[picked.indices]
    assert len(set(clusters.tolist())) == min(6, picked.info["km_clusters"])  # one a cluster while others remain
    assert list((tmp_path / "stores").iterdir()) == []
