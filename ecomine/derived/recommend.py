"""Recommendations per user: collaborative (Spark ML ALS), content (similar products) and
popularity, blended into one top-k list; plus the ranking metrics that judge them.

Three candidate sources, each a ranked list per user of products the user has not rated:

* ``collaborative``: ALS on explicit ratings (users and products indexed to integers in
  alphabetical order, ``coldStartStrategy="drop"``), for users with at least
  ``min_history`` rated products; only products with at least ``min_item_ratings``
  ratings are candidates (an item seen once has a noise factor that ALS ranks high).
* ``content``: neighbours of the products the user liked (rating >= ``like_threshold``)
  in the similar-products table (read both ways), scored by the sum of similarities.
  It needs no ratings of the candidate, which is how a brand-new product gets
  recommended.
* ``popular``: a damped mean rating times ``log1p(count)``
  (``(sum + m * mean) / (count + m)``, ``m = POPULARITY_DAMPING``); the only source for
  users with fewer than ``min_history`` ratings, and the filler up to ``k`` for everyone.

New products (no interaction by anyone yet) get ``new_slots`` reserved places at the
end of each list (``HybridWeights.new_slots``): a fourth candidate list, internal source
``NEW``, ranks the products nobody has rated by their highest similarity to one the user
liked; the blend fills ``k - new_slots`` places and those products the rest (their rows
say ``source = "content"`` and carry score 0: they are placed, not scored by the blend).
Without reserved places a new product has to outrank warm ones on summed similarity,
which on MovieLens it never did (bench/recsys.py, docs/recsys.md).

The blend is reciprocal-rank fusion: ``score = sum_s weight_s / (offset + rank_s)`` over
the sources that list the product, so no source's score scale has to be calibrated
against another's; ``source`` names the source that contributes most. Its knobs
(``HybridWeights``) are tuned in ``bench/recsys.py`` on a validation split cut from the
training period. A source with weight 0 adds no candidates, except ``popular``, which
still fills up to ``k`` (rows scored 0, in popularity order). Already-rated products are
never recommended; each user in the input gets up to ``k`` rows (fewer only when the
sources run out: popular offers ``n_candidates + POPULAR_MARGIN`` products, minus those
the user rated). Same input, same output: fixed seeds, scores rounded to 6 decimals,
ties broken by popularity rank then product id.

The metric functions (``rmse``, ``ndcg_at_k``, ``recall_at_k``, ``catalog_coverage``,
``ranking_metrics``, ``bootstrap_users``) are numpy/pandas and need no JVM.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from pyspark.ml.recommendation import ALSModel
    from pyspark.sql import DataFrame

__all__ = [
    "AlsFit",
    "HybridWeights",
    "POPULARITY_DAMPING",
    "SOURCES",
    "blend",
    "bootstrap_users",
    "catalog_coverage",
    "clean_interactions",
    "fit_als",
    "ndcg_at_k",
    "ranking_metrics",
    "recall_at_k",
    "recommend",
    "recommendation_candidates",
    "rmse",
]

log = logging.getLogger(__name__)

SOURCES = ("collaborative", "content", "popular")
NEW = "content_new"  # internal candidate list: products without any interaction, by max similarity to a liked one
POPULARITY_DAMPING = 10.0
POPULAR_MARGIN = 500
SCORE_DECIMALS = 6


@dataclass(frozen=True)
class HybridWeights:
    """Knobs of the reciprocal-rank blend: one weight per source and the rank offset
    (larger offset: flatter, so lower-ranked candidates of a heavy source count more)."""

    collaborative: float = 1.0
    content: float = 1.0
    popular: float = 2.0  # tuned on the MovieLens validation split (bench/recsys.py)
    offset: float = 10.0
    new_slots: int = 2  # places per list reserved for products nobody has rated yet (bench/recsys.py)

    def __post_init__(self) -> None:
        if min(self.collaborative, self.content, self.popular) < 0 or self.offset < 0 or self.new_slots < 0:
            raise ValueError(f"hybrid weights, offset and new_slots must be >= 0, got {self}")

    def of(self, source: str) -> float:
        return float(getattr(self, source))


# --------------------------------------------------------------------------- Spark


def clean_interactions(interactions: DataFrame, implicit_rating: float = 4.0) -> DataFrame:
    """(user_id, product_id, rating) with one row per (user, product): the latest event
    (``created_at`` when present; then the higher rating) wins; a null or NaN rating
    becomes ``implicit_rating`` (a view/purchase without stars); rows without a user or a
    product are dropped."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    missing = sorted({"user_id", "product_id", "rating"} - set(interactions.columns))
    if missing:
        from ecomine.errors import SchemaError

        raise SchemaError(f"interactions lack columns {missing}; they have {sorted(interactions.columns)}")
    rating = F.col("rating").cast("double")
    when = F.col("created_at").cast("timestamp") if "created_at" in interactions.columns else F.lit(None)
    df = interactions.select(
        F.col("user_id").cast("string").alias("user_id"),
        F.col("product_id").cast("string").alias("product_id"),
        F.when(rating.isNull() | F.isnan(rating), F.lit(float(implicit_rating))).otherwise(rating).alias("rating"),
        when.alias("_at"),
    ).where(F.col("user_id").isNotNull() & F.col("product_id").isNotNull())
    w = Window.partitionBy("user_id", "product_id").orderBy(F.col("_at").desc_nulls_last(), F.col("rating").desc())
    return df.withColumn("_n", F.row_number().over(w)).where("_n = 1").select("user_id", "product_id", "rating")


@dataclass
class AlsFit:
    """A fitted ALS model with the integer indexes it was trained on (``user_index``:
    user_id, uix; ``item_index``: product_id, iix; both alphabetical)."""

    model: ALSModel
    user_index: DataFrame
    item_index: DataFrame

    def predict(self, pairs: DataFrame) -> DataFrame:
        """(user_id, product_id, prediction) for the pairs whose user and product were in
        training (others dropped: cold start)."""
        from pyspark.sql import functions as F

        idx = pairs.select("user_id", "product_id").join(self.user_index, "user_id").join(self.item_index, "product_id")
        out = self.model.transform(idx)
        return out.select("user_id", "product_id", F.col("prediction").cast("double").alias("prediction"))

    def user_factors(self) -> DataFrame:
        """(user_id, features array<float>)."""
        return (
            self.model.userFactors.withColumnRenamed("id", "uix")
            .join(self.user_index, "uix")
            .select("user_id", "features")
        )

    def item_factors(self) -> DataFrame:
        """(product_id, features array<float>)."""
        return (
            self.model.itemFactors.withColumnRenamed("id", "iix")
            .join(self.item_index, "iix")
            .select("product_id", "features")
        )


def fit_als(
    ratings: DataFrame, *, rank: int = 16, reg: float = 0.1, max_iter: int = 10, seed: int = 20261203
) -> AlsFit:
    """Explicit-rating ALS on ``clean_interactions`` output, ids indexed alphabetically so
    the same input gives the same integer ids (and, with the seed, the same factors)."""
    from pyspark.ml.feature import StringIndexer
    from pyspark.ml.recommendation import ALS

    t0 = time.time()
    users = StringIndexer(inputCol="user_id", outputCol="uix", stringOrderType="alphabetAsc").fit(ratings)
    items = StringIndexer(inputCol="product_id", outputCol="iix", stringOrderType="alphabetAsc").fit(ratings)
    spark = ratings.sparkSession
    user_index = spark.createDataFrame(
        [(u, i) for i, u in enumerate(users.labelsArray[0])], "user_id string, uix int"
    ).cache()
    item_index = spark.createDataFrame(
        [(p, i) for i, p in enumerate(items.labelsArray[0])], "product_id string, iix int"
    ).cache()
    train = ratings.join(user_index, "user_id").join(item_index, "product_id").select("uix", "iix", "rating")
    als = ALS(
        userCol="uix",
        itemCol="iix",
        ratingCol="rating",
        rank=int(rank),
        regParam=float(reg),
        maxIter=int(max_iter),
        seed=int(seed),
        coldStartStrategy="drop",
        implicitPrefs=False,
        nonnegative=False,
    )
    model = als.fit(train)
    log.info(
        "als: rank=%d reg=%g iters=%d on %d users x %d products in %.1fs",
        rank,
        reg,
        max_iter,
        len(users.labelsArray[0]),
        len(items.labelsArray[0]),
        time.time() - t0,
    )
    return AlsFit(model=model, user_index=user_index, item_index=item_index)


def _top(df: DataFrame, n: int, score: str = "score") -> DataFrame:
    """Per user, the ``n`` best rows by rounded score desc then product_id, with ``source_rank``."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    w = Window.partitionBy("user_id").orderBy(F.col(score).desc(), F.col("product_id").asc())
    return df.withColumn("source_rank", F.row_number().over(w)).where(F.col("source_rank") <= int(n))


def popularity(ratings: DataFrame) -> DataFrame:
    """(product_id, n_ratings, popularity) with popularity = damped mean rating x log1p(count)."""
    from pyspark.sql import functions as F

    mean = ratings.agg(F.avg("rating")).first()[0]
    m = F.lit(POPULARITY_DAMPING)
    return (
        ratings.groupBy("product_id")
        .agg(F.count("*").alias("n_ratings"), F.sum("rating").alias("s"))
        .select(
            "product_id",
            "n_ratings",
            F.round((F.col("s") + m * F.lit(float(mean))) / (F.col("n_ratings") + m) * F.log1p("n_ratings"), 9).alias(
                "popularity"
            ),
        )
    )


def recommendation_candidates(
    interactions: DataFrame,
    neighbours: DataFrame | None,
    *,
    rank: int = 16,
    reg: float = 0.1,
    max_iter: int = 10,
    seed: int = 20261203,
    min_history: int = 3,
    min_item_ratings: int = 5,
    like_threshold: float = 4.0,
    implicit_rating: float = 4.0,
    n_candidates: int = 50,
    sources: Iterable[str] = SOURCES,
) -> DataFrame:
    """Every source's ranked candidates: (user_id, product_id, source, source_rank, score).

    ``score`` is the source's own: ALS predicted rating, summed neighbour similarity, or
    popularity; with the content source also the ``NEW`` list (products without any
    interaction, by their highest similarity to a product the user liked). Up to ``n_candidates`` per user and source, never a product the user rated (ALS is asked for ``n_candidates`` + the longest history + the rare products, so no user runs short).
    ``sources`` limits the work to the named sources (``popular`` is always computed: it
    is the filler)."""
    from pyspark.sql import functions as F

    sources = set(sources) | {"popular"}
    unknown = sources - set(SOURCES)
    if unknown:
        raise ValueError(f"unknown sources {sorted(unknown)}; expected some of {SOURCES}")
    users = (
        interactions.select(F.col("user_id").cast("string").alias("user_id"))
        .where(F.col("user_id").isNotNull())
        .distinct()
    )
    ratings = clean_interactions(interactions, implicit_rating).cache()
    history = ratings.groupBy("user_id").agg(F.count("*").alias("n_history"))
    eligible = history.where(F.col("n_history") >= int(min_history)).select("user_id")
    rated = ratings.select("user_id", "product_id")
    pop = popularity(ratings).cache()
    parts = []

    # popular: one global list, long enough to survive removing what each user rated
    top_pop = pop.orderBy(F.col("popularity").desc(), F.col("product_id").asc()).limit(n_candidates + POPULAR_MARGIN)
    popular = (
        users.crossJoin(F.broadcast(top_pop.select("product_id", F.col("popularity").alias("score"))))
        .join(rated, ["user_id", "product_id"], "left_anti")
        .transform(_top, n_candidates)
        .withColumn("source", F.lit("popular"))
    )
    parts.append(popular)

    if "collaborative" in sources:
        fit = fit_als(ratings, rank=rank, reg=reg, max_iter=max_iter, seed=seed)
        subset = eligible.join(fit.user_index, "user_id").select("uix")
        # ask for enough items that n_candidates survive removing the user's rated and rare ones
        max_history = history.agg(F.max("n_history")).first()[0] or 0
        n_items, n_rare = pop.agg(F.count("*"), F.sum((F.col("n_ratings") < int(min_item_ratings)).cast("int"))).first()
        n_rare = n_rare or 0
        n_request = int(min(n_items, n_candidates + max_history + n_rare))
        recs = (
            fit.model.recommendForUserSubset(subset, n_request)
            .select("uix", F.explode("recommendations").alias("r"))
            .select("uix", F.col("r.iix").alias("iix"), F.col("r.rating").cast("double").alias("score"))
            .join(fit.user_index, "uix")
            .join(fit.item_index, "iix")
            .join(pop.where(F.col("n_ratings") >= int(min_item_ratings)).select("product_id"), "product_id")
            .join(rated, ["user_id", "product_id"], "left_anti")
            .select("user_id", "product_id", F.round("score", SCORE_DECIMALS).alias("score"))
            .transform(_top, n_candidates)
            .withColumn("source", F.lit("collaborative"))
        )
        parts.append(recs)

    if "content" in sources and neighbours is not None:
        nb = neighbours.select(
            F.col("product_id").cast("string").alias("a"),
            F.col("similar_product_id").cast("string").alias("b"),
            F.col("similarity").cast("double").alias("sim"),
        )
        both = nb.unionByName(nb.select(F.col("b").alias("a"), F.col("a").alias("b"), "sim"))
        both = (
            both.where((F.col("a") != F.col("b")) & (F.col("sim") > 0)).groupBy("a", "b").agg(F.max("sim").alias("sim"))
        )
        liked = ratings.where(F.col("rating") >= float(like_threshold)).join(eligible, "user_id")
        content = (
            liked.join(both, liked["product_id"] == both["a"])
            .groupBy("user_id", F.col("b").alias("product_id"))
            .agg(F.round(F.sum("sim"), SCORE_DECIMALS).alias("score"))
            .join(rated, ["user_id", "product_id"], "left_anti")
            .transform(_top, n_candidates)
            .withColumn("source", F.lit("content"))
        )
        parts.append(content)
        # products nobody has interacted with: their best similarity to one the user liked
        known = ratings.select("product_id").distinct()
        new = (
            liked.join(both, liked["product_id"] == both["a"])
            .select("user_id", F.col("b").alias("product_id"), "sim")
            .join(known, "product_id", "left_anti")
            .groupBy("user_id", "product_id")
            .agg(F.round(F.max("sim"), SCORE_DECIMALS).alias("score"))
            .transform(_top, n_candidates)
            .withColumn("source", F.lit(NEW))
        )
        parts.append(new)

    cols = ["user_id", "product_id", "source", "source_rank", "score"]
    out = parts[0].select(*cols)
    for p in parts[1:]:
        out = out.unionByName(p.select(*cols))
    return out


def blend(candidates: DataFrame, k: int = 10, weights: HybridWeights | None = None) -> DataFrame:
    """Top-``k`` per user from ``recommendation_candidates`` by reciprocal-rank fusion:
    (user_id, product_id, rank 1..k, score, source). See the module docstring."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    weights = weights or HybridWeights()
    kept = [s for s in SOURCES if s == "popular" or weights.of(s) > 0]
    w_col = F.lit(0.0)
    prio = F.lit(0)
    for i, s in enumerate(SOURCES):
        w_col = F.when(F.col("source") == s, F.lit(weights.of(s))).otherwise(w_col)
        prio = F.when(F.col("source") == s, F.lit(len(SOURCES) - i)).otherwise(prio)
    scored = candidates.where(F.col("source").isin(kept)).withColumn(
        "contrib", w_col / (F.lit(float(weights.offset)) + F.col("source_rank"))
    )
    agg = scored.groupBy("user_id", "product_id").agg(
        F.round(F.sum("contrib"), SCORE_DECIMALS).alias("score"),
        F.min(F.when(F.col("source") == "popular", F.col("source_rank"))).alias("pop_rank"),
        F.max_by("source", F.struct(F.col("contrib"), prio)).alias("source"),
    )
    w = Window.partitionBy("user_id").orderBy(
        F.col("score").desc(), F.col("pop_rank").asc_nulls_last(), F.col("product_id").asc()
    )
    cols = ["user_id", "product_id", "rank", F.col("score").cast("double").alias("score"), "source"]
    ranked = agg.withColumn("rank", F.row_number().over(w).cast("int"))
    slots = min(int(weights.new_slots), int(k))
    if slots == 0:
        return ranked.where(F.col("rank") <= int(k)).select(*cols)
    # reserved places: the user's best new products, after the blend's top k - (how many there are)
    wn = Window.partitionBy("user_id").orderBy(F.col("score").desc(), F.col("product_id").asc())
    new = (
        candidates.where(F.col("source") == NEW)
        .withColumn("r", F.row_number().over(wn))
        .where(F.col("r") <= slots)
        .select("user_id", "product_id", F.lit(1).alias("grp"), "r")
    )
    n_new = new.groupBy("user_id").agg(F.count("*").alias("n_new"))
    main = (
        ranked.join(new.select("user_id", "product_id"), ["user_id", "product_id"], "left_anti")
        .withColumn("r", F.row_number().over(Window.partitionBy("user_id").orderBy("rank")))
        .join(n_new, "user_id", "left")
        .where(F.col("r") <= F.lit(int(k)) - F.coalesce(F.col("n_new"), F.lit(0)))
        .select("user_id", "product_id", F.lit(0).alias("grp"), "r", "score", "source")
    )
    placed = new.withColumn("score", F.lit(0.0)).withColumn("source", F.lit("content"))
    wf = Window.partitionBy("user_id").orderBy("grp", "r")
    return (
        main.unionByName(placed)
        .withColumn("rank", F.row_number().over(wf).cast("int"))
        .where(F.col("rank") <= int(k))
        .select(*cols)
    )


def recommend(
    interactions: DataFrame,
    neighbours: DataFrame | None,
    k: int = 10,
    *,
    rank: int = 16,
    reg: float = 0.1,
    max_iter: int = 10,
    seed: int = 20261203,
    min_history: int = 3,
    min_item_ratings: int = 5,
    like_threshold: float = 4.0,
    implicit_rating: float = 4.0,
    weights: HybridWeights | None = None,
) -> DataFrame:
    """Top-``k`` recommendations of every user in ``interactions``: (user_id, product_id,
    rank int 1..k, score double rounded to 6 decimals, source "collaborative" | "content" |
    "popular").

    ``interactions``: user_id, product_id, rating (null: ``implicit_rating``), created_at.
    ``neighbours``: ``similar_products`` output (product_id, similar_product_id,
    similarity), or None for no content source. Users with fewer than ``min_history``
    rated products get popular products only. ``weights`` defaults to ``HybridWeights()``
    (the values tuned in bench/recsys.py); weight 0 switches a source off, ``new_slots``
    places at the end of each list go to products nobody has rated yet (module docstring)."""
    weights = weights or HybridWeights()
    if not clean_interactions(interactions, implicit_rating).take(1):  # nothing to learn from: no rows, no list
        spark = interactions.sparkSession
        return spark.createDataFrame([], "user_id string, product_id string, rank int, score double, source string")
    sources = [s for s in SOURCES if weights.of(s) > 0 or (s == "content" and weights.new_slots > 0)]
    candidates = recommendation_candidates(
        interactions,
        neighbours,
        rank=rank,
        reg=reg,
        max_iter=max_iter,
        seed=seed,
        min_history=min_history,
        min_item_ratings=min_item_ratings,
        like_threshold=like_threshold,
        implicit_rating=implicit_rating,
        n_candidates=max(50, 2 * k),
        sources=sources,
    )
    return blend(candidates, k, weights)


# --------------------------------------------------------------------------- metrics (pure)


def rmse(y_true: Sequence[float], y_pred: Sequence[float]) -> float:
    """Root mean squared error; NaN for no rows."""
    t, p = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    if t.shape != p.shape:
        raise ValueError(f"y_true has shape {t.shape}, y_pred {p.shape}")
    return float(np.sqrt(np.mean((t - p) ** 2))) if t.size else math.nan


def ndcg_at_k(recommended: Sequence, relevant: Iterable, k: int = 10) -> float:
    """Binary-relevance NDCG@k: sum over the first k recommendations of
    ``1/log2(position + 1)`` for relevant ones, over the same sum for a list with all
    relevant items first (``min(k, |relevant|)`` of them). NaN when nothing is relevant."""
    rel = set(relevant)
    if not rel:
        return math.nan
    dcg = sum(1.0 / math.log2(i + 2) for i, item in enumerate(list(recommended)[:k]) if item in rel)
    idcg = sum(1.0 / math.log2(i + 2) for i in range(min(k, len(rel))))
    return dcg / idcg


def recall_at_k(recommended: Sequence, relevant: Iterable, k: int = 10) -> float:
    """Share of the relevant items found in the first k recommendations
    (``|top-k & relevant| / |relevant|``); NaN when nothing is relevant."""
    rel = set(relevant)
    if not rel:
        return math.nan
    return len(set(list(recommended)[:k]) & rel) / len(rel)


def catalog_coverage(recommended: Iterable, catalog_size: int) -> float:
    """Share of the catalog recommended to at least one user."""
    if catalog_size <= 0:
        raise ValueError(f"catalog_size must be > 0, got {catalog_size}")
    return len(set(recommended)) / catalog_size


def ranking_metrics(recs: pd.DataFrame, relevant: pd.DataFrame, k: int = 10) -> pd.DataFrame:
    """Per user with at least one relevant item: (user_id, ndcg, recall, n_relevant).
    ``recs``: user_id, product_id, rank; ``relevant``: user_id, product_id. A user with
    relevant items but no recommendations scores 0."""
    lists: Mapping[object, list] = {
        u: g.sort_values("rank", kind="stable")["product_id"].tolist() for u, g in recs.groupby("user_id", sort=False)
    }
    rows = []
    for u, g in relevant.groupby("user_id", sort=True):
        rel = set(g["product_id"])
        rec = lists.get(u, [])
        rows.append((u, ndcg_at_k(rec, rel, k), recall_at_k(rec, rel, k), len(rel)))
    return pd.DataFrame(rows, columns=["user_id", "ndcg", "recall", "n_relevant"])


def bootstrap_users(
    values: Sequence[float],
    weights: Sequence[float] | None = None,
    *,
    n: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    transform: Callable[[float], float] | None = None,
) -> tuple[float, float, float]:
    """(value, ci_low, ci_high): the weighted mean of per-user ``values`` (then
    ``transform``), with a percentile bootstrap interval from ``n`` resamples of users with
    replacement. Ranking metrics: values = per-user NDCG, no weights. RMSE: values =
    per-user mean squared error, weights = the user's rows, transform = sqrt, so a
    resample pools its users' rows. NaN values are dropped first; all NaN gives NaNs."""
    v = np.asarray(values, dtype=float)
    w = np.ones_like(v) if weights is None else np.asarray(weights, dtype=float)
    if v.shape != w.shape:
        raise ValueError(f"values has shape {v.shape}, weights {w.shape}")
    keep = ~np.isnan(v)
    v, w = v[keep], w[keep]
    f = transform or (lambda x: x)
    if v.size == 0 or w.sum() <= 0:
        return math.nan, math.nan, math.nan
    value = float(f(float(np.sum(v * w) / np.sum(w))))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, v.size, size=(n, v.size))
    stats = np.array([f(float(x)) for x in (v[idx] * w[idx]).sum(1) / np.maximum(w[idx].sum(1), 1e-300)])
    alpha = (1 - level) / 2
    return value, float(np.quantile(stats, alpha)), float(np.quantile(stats, 1 - alpha))
