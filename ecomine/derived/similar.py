"""Similar products from text embeddings: top-k cosine neighbours per product, in Spark.

How: products are grouped into blocks (``block``: the first level of the category path in
the nightly job, e.g. ``Women``, ``Lingerie``, ``Movies``; null is a block of its own),
and each block's exact top-k is computed on an executor with numpy (``applyInPandas``: a
chunked matrix product of the unit vectors, never a driver-side loop). A block larger than
``max_block`` products is cut further by random hyperplanes (sign bits of seeded Gaussian
projections: ``ceil(log2(n / max_block))`` bits), so the work per task stays bounded at any
catalog size: about ``n * max_block`` dot products in all instead of ``n^2``.

What it gives up, by design: neighbours in another block (another top-level department,
or the other side of a hyperplane in a split block). Within a block the neighbours and
their cosines are exact. ``bench/recsys.py`` measures how much of the global exact top-10
the blocked top-10 keeps (docs/recsys.md).

Why not Spark ML's ``BucketedRandomProjectionLSH``: measured first (bench/recsys.py,
docs/recsys.md): on 384-d MiniLM embeddings true neighbours are only ~1.4x closer than
random pairs, and BRP has one projection per table and OR-amplification only, so a
recall of 0.87 needed ~78% of all pairs as candidates (143 s for 2,000 listings here).

Output per product: up to ``k`` rows (fewer when its block has fewer other products),
``rank`` 1..k by cosine rounded to 6 decimals descending, then ``similar_product_id``
ascending, so the same input gives the same rows.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = ["DEFAULT_MAX_BLOCK", "OUTPUT_DDL", "block_top_k", "exact_neighbours", "similar_products"]

log = logging.getLogger(__name__)

DEFAULT_MAX_BLOCK = 20_000  # products per numpy block: 20k x 384 float32 = 31 MB; chunks of 1,024 rows at a time
SIM_DECIMALS = 6
CHUNK = 1024
OUTPUT_DDL = "product_id string, similar_product_id string, rank int, similarity double"


def exact_neighbours(ids: Sequence, matrix: np.ndarray, k: int) -> list[tuple[object, object, int, float]]:
    """Reference top-``k`` by cosine, all pairs in numpy (tests and the bench):
    (id, neighbour id, rank 1..k, cosine rounded to 6 decimals), ranked like ``similar_products``."""
    m = np.asarray(matrix, dtype=np.float64)
    m = m / np.linalg.norm(m, axis=1, keepdims=True)
    sims = np.round(m @ m.T, SIM_DECIMALS)
    keys = [str(i) for i in ids]
    out = []
    for a in range(len(keys)):
        cand = sorted((-sims[a, b], keys[b]) for b in range(len(keys)) if b != a)[:k]
        out += [(keys[a], b, r, float(-s)) for r, (s, b) in enumerate(cand, start=1)]
    return out


def block_top_k(ids: Sequence[str], vectors: np.ndarray, k: int, chunk: int = CHUNK) -> pd.DataFrame:
    """Exact top-``k`` cosine neighbours within one block (pure numpy, what each Spark task
    runs): ``OUTPUT_DDL`` columns. ``vectors`` are normalised here; rows with a zero or
    non-finite vector must be removed by the caller."""
    ids = np.asarray([str(i) for i in ids], dtype=object)
    n = len(ids)
    if n < 2 or k < 1:
        return pd.DataFrame(
            {
                "product_id": pd.Series([], dtype=object),
                "similar_product_id": pd.Series([], dtype=object),
                "rank": pd.Series([], dtype="int32"),
                "similarity": pd.Series([], dtype="float64"),
            }
        )
    m = np.asarray(vectors, dtype=np.float32)
    m = m / np.linalg.norm(m, axis=1, keepdims=True)
    kk = min(k, n - 1)
    order_ids = np.argsort(ids, kind="stable")  # tie-break: neighbour id ascending
    rank_of = np.empty(n, dtype=np.int64)
    rank_of[order_ids] = np.arange(n)
    rows_a, rows_b, ranks, sims = [], [], [], []
    for start in range(0, n, chunk):
        block = np.round((m[start : start + chunk] @ m.T).astype(np.float64), SIM_DECIMALS)
        idx = np.arange(block.shape[0])
        block[idx, start + idx] = -np.inf  # never the product itself
        # candidates: the top kk + margin by value (ties at the cut are resolved exactly below)
        take = min(n - 1, kk + 8)
        part = np.argpartition(-block, take - 1, axis=1)[:, :take] if take < n else np.tile(np.arange(n), (len(idx), 1))
        for i in idx:
            cand = part[i]
            cand = cand[np.isfinite(block[i, cand])]
            vals = block[i, cand]
            cut = np.sort(vals)[::-1][kk - 1] if len(vals) >= kk else -np.inf
            # every column tied with the k-th value, so the id tie-break is exact
            ties = np.flatnonzero(block[i] == cut)
            cand = np.unique(np.concatenate([cand[vals >= cut], ties]))
            cand = cand[np.lexsort((rank_of[cand], -block[i, cand]))][:kk]
            rows_a += [ids[start + i]] * len(cand)
            rows_b += list(ids[cand])
            ranks += list(range(1, len(cand) + 1))
            sims += list(block[i, cand])
    return pd.DataFrame(
        {
            "product_id": rows_a,
            "similar_product_id": rows_b,
            "rank": np.asarray(ranks, dtype=np.int32),
            "similarity": np.asarray(sims, dtype=np.float64),
        }
    )


def similar_products(
    embeddings: DataFrame,
    k: int = 10,
    *,
    max_block: int = DEFAULT_MAX_BLOCK,
    seed: int = 20261203,
    key: str = "product_id",
    vector: str = "embedding",
    block: str | None = "block",
) -> DataFrame:
    """Top-``k`` most similar products of every product by cosine of the embeddings.

    Input: one row per product with ``key`` (string), ``vector`` (array<float>) and, when
    ``block`` names a column that exists, the block it belongs to (products are compared
    only within their block; without the column all products form one block). Null, empty
    or non-finite embeddings are skipped; a key seen twice keeps one row. Output:
    ``OUTPUT_DDL`` (see the module docstring for ranks and what blocking gives up)."""
    from pyspark.sql import functions as F

    if k < 1 or max_block < 2:
        raise ValueError(f"need k >= 1 and max_block >= 2, got k={k}, max_block={max_block}")
    has_block = block is not None and block in embeddings.columns
    e = F.col(vector)
    df = (
        embeddings.select(
            F.col(key).cast("string").alias("id"),
            e.alias("e"),
            (F.col(block).cast("string") if has_block else F.lit(None).cast("string")).alias("block"),
        )
        .where(F.col("id").isNotNull() & e.isNotNull() & (F.size(e) > 0))
        .where(~F.exists("e", lambda v: v.isNull() | F.isnan(v)))
        .where(F.aggregate("e", F.lit(0.0).cast("double"), lambda acc, v: acc + v * v) > 0)
        .dropDuplicates(["id"])
    )
    sizes = {r["block"]: int(r["count"]) for r in df.groupBy("block").count().collect()}
    bits = {b: max(0, math.ceil(math.log2(n / max_block))) for b, n in sizes.items()}
    df = df.withColumn("part", F.lit(0))
    if any(bits.values()):
        dim = df.select(F.size("e")).first()[0]
        planes = np.random.default_rng(seed).standard_normal((max(bits.values()), dim))
        for j, plane in enumerate(planes):
            dot = F.aggregate(
                F.zip_with("e", F.array(*[F.lit(float(x)) for x in plane]), lambda a, b: a * b),
                F.lit(0.0).cast("double"),
                lambda acc, v: acc + v,
            )
            need = F.create_map(*[x for b, n in bits.items() if b is not None for x in (F.lit(b), F.lit(n))])
            n_bits = F.coalesce(need[F.col("block")], F.lit(bits.get(None, 0)))
            bit = F.when((F.lit(j) < n_bits) & (dot >= 0), F.lit(1 << j)).otherwise(F.lit(0))
            df = df.withColumn("part", F.col("part") + bit)
    log.info(
        "similar products: %d products in %d blocks (largest %d; %d split by hyperplanes, max_block %d)",
        sum(sizes.values()), len(sizes), max(sizes.values(), default=0), sum(1 for b in bits.values() if b),
        max_block,
    )  # fmt: skip

    def top_k(pdf: pd.DataFrame) -> pd.DataFrame:
        return block_top_k(pdf["id"].tolist(), np.stack(pdf["e"].to_numpy()), k)

    return df.select("id", "e", "block", "part").groupBy("block", "part").applyInPandas(top_k, OUTPUT_DDL)
