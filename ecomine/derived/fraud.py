"""Fraud signals, a combined fraud score and analyst aggregates, computed in Spark.

``with_fraud_signals(df, cfg)`` takes scored reviews (one row per review with
``review_id, product_id, reviewer_id, rating, text, language, created_at, p_positive``)
and adds:

* ``sig_*`` columns, one per raw signal, each null when the data it needs is missing
  (no reviewer id -> reviewer signals null; no timestamp -> burst signals null; no
  rating or no p_positive -> disagreement null). Everything is native Spark (regexp,
  aggregates joined back on their keys, window functions; no Python UDF); the ML pieces
  are ``HashingTF`` + ``MinHashLSH`` from ``pyspark.ml.feature`` for near-duplicate
  texts and, when supervised, ``LogisticRegression``.
* ``fraud_score`` in [0, 1]: each signal mapped to a risk by the fixed transforms in
  :mod:`ecomine.derived.fraud_rules` and combined by noisy-OR over the known risks (missing
  signals are ignored, so every review gets a score). With ``cfg.supervised`` and a
  label column, a logistic regression on the risks replaces the noisy-OR and the rules
  score is kept as ``fraud_score_rules``.
* ``fraud_reasons`` (readable texts of the strongest rule contributions, at most
  ``cfg.max_reasons``) and ``fraud_reason_codes`` (the same, as risk names).

Not fully lazy: the duplicate clusters are connected components found by iterative
min-label propagation, which runs one small Spark job per round (at most
``cfg.max_component_iterations``) and keeps each round's labels with
``localCheckpoint`` (as it does the narrow per-review key frame, the shingled texts,
the MinHash bucket keys and the pairs). Nothing is collected to the driver except counts and, when
supervised, the fitted coefficients. Nothing is written; callers persist the result.
Signals, transforms, weights and the evaluation on simulated data: ``docs/fraud.md``.
"""

from __future__ import annotations

import logging
from functools import reduce

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from ecomine.derived import fraud_rules as R
from ecomine.derived.fraud_rules import FraudConfig
from ecomine.errors import DataError, SchemaError

log = logging.getLogger(__name__)

__all__ = ["FraudConfig", "with_fraud_signals", "reviewer_risk", "product_risk", "SIGNAL_COLUMNS"]

REQUIRED_COLUMNS = ("review_id", "product_id", "reviewer_id", "rating", "text", "language", "created_at", "p_positive")

#: The signal columns added, in output order.
SIGNAL_COLUMNS: tuple[str, ...] = (
    "sig_rating_text_gap",
    "sig_product_consensus",
    "sig_product_consensus_n",
    "sig_rating_deviation",
    "sig_dup_cluster_size",
    "sig_dup_cluster_reviewers",
    "sig_dup_cluster_products",
    "sig_dup_product_copies",
    "sig_dup_product_window_copies",
    "sig_reviewer_reviews",
    "sig_reviewer_products",
    "sig_reviewer_single_product",
    "sig_reviewer_rated",
    "sig_reviewer_extreme_share",
    "sig_reviewer_scored",
    "sig_reviewer_inflated_share",
    "sig_product_inflating_reviewers",
    "sig_reviewer_deflated_share",
    "sig_reviewer_max_per_day",
    "sig_reviewer_consensus_dev",
    "sig_reviewer_consensus_n",
    "sig_product_day_reviews",
    "sig_product_window_reviews",
    "sig_product_expected_daily",
    "sig_product_burst_z",
    "sig_product_window_rating_shift",
    "sig_product_other_days_rating",
    "sig_text_chars",
    "sig_generic_praise",
    "sig_url",
    "sig_contact",
    "sig_exclamations",
    "sig_repeated_chars",
    "sig_caps_share",
)
OUTPUT_COLUMNS = ("fraud_score", "fraud_reasons", "fraud_reason_codes", "fraud_score_rules")
_P = "_fr_"  # prefix of internal columns, all dropped before returning


# --------------------------------------------------------------------------- helpers


def _require(df: DataFrame, columns: tuple[str, ...] | list[str], what: str) -> None:
    missing = sorted(set(columns) - set(df.columns))
    if missing:
        raise SchemaError(f"{what} lacks columns {missing}; it has {sorted(df.columns)}")


def _ramp(x: Column, lo: float, hi: float) -> Column:
    """Spark twin of fraud_rules.ramp (null stays null: least/greatest would skip it)."""
    scaled = (x.cast("double") - F.lit(float(lo))) / F.lit(float(hi - lo))
    return F.when(x.isNotNull(), F.least(F.greatest(scaled, F.lit(0.0)), F.lit(1.0)))


def _flag_risk(flag: Column) -> Column:
    return F.when(flag.isNotNull(), F.when(flag, F.lit(1.0)).otherwise(F.lit(0.0)))


def _nonzero(x: Column) -> Column:
    return F.when(x > 0, x)


def _rlike(text: Column, pattern: str) -> Column:
    return text.rlike(pattern)


def _count_matches(text: Column, pattern: str) -> Column:
    return F.length(text) - F.length(F.regexp_replace(text, pattern, ""))


_NOT_HAN = "[^" + R.HAN_PATTERN[1:]


# --------------------------------------------------------------------------- preparation


def _prepare(df: DataFrame, cfg: FraudConfig) -> DataFrame:
    """Validated copies of the inputs (``_fr_*``) and the per-row text signals."""
    rating = F.col("rating").cast("double")
    p = F.col("p_positive").cast("double")
    text = F.col("text").cast("string")
    norm = F.trim(F.regexp_replace(F.lower(text), R.NON_WORD_JAVA, " "))
    internal = R.internal_link_pattern(cfg.internal_link_domains)
    text_for_url = F.regexp_replace(text, internal, " ") if internal else text
    letters = F.length(F.regexp_replace(text, "[^A-Za-z]", ""))
    upper = F.length(F.regexp_replace(text, "[^A-Z]", ""))
    out = df.withColumns(
        {
            f"{_P}rating": F.when(rating.isin(1.0, 2.0, 3.0, 4.0, 5.0), rating.cast("int")),
            f"{_P}p": F.when(~F.isnan(p) & (p >= 0.0) & (p <= 1.0), p),
            f"{_P}day": F.to_date(F.col("created_at")),
            f"{_P}norm_raw": norm,
        }
    )
    wlen = F.length(F.col(f"{_P}norm_raw")) + 2 * F.length(F.regexp_replace(F.col(f"{_P}norm_raw"), _NOT_HAN, ""))
    out = out.withColumns(
        {
            f"{_P}norm": F.when(F.col(f"{_P}norm_raw") != "", F.col(f"{_P}norm_raw")),
            f"{_P}wlen": wlen,
        }
    )
    r, pp = F.col(f"{_P}rating"), F.col(f"{_P}p")
    return out.withColumns(
        {
            f"{_P}node": F.when(F.col(f"{_P}norm").isNotNull(), F.xxhash64(F.col(f"{_P}norm"))),
            "sig_rating_text_gap": F.abs((r - F.lit(1)) / F.lit(4.0) - pp),
            "sig_text_chars": F.length(text),
            "sig_generic_praise": F.when(
                text.isNotNull(),
                (F.col(f"{_P}wlen") > 0)
                & (F.col(f"{_P}wlen") <= cfg.generic_max_chars)
                & _rlike(text, R.PRAISE_PATTERN),
            ),
            "sig_url": _rlike(text_for_url, R.URL_PATTERN),
            "sig_contact": _rlike(text, R.EMAIL_PATTERN)
            | _rlike(text, R.PHONE_PATTERN)
            | _rlike(text, R.MESSENGER_PATTERN),
            "sig_exclamations": _count_matches(text, R.EXCLAMATION_PATTERN),
            "sig_repeated_chars": _rlike(text, R.REPEAT_PATTERN),
            "sig_caps_share": F.when(letters >= cfg.caps_min_letters, upper / letters),
        }
    )


# --------------------------------------------------------------------------- product / reviewer
# Every aggregate is computed from the narrow key frame ``k`` (one materialised copy of
# product_id, reviewer_id, rating, day and text hash per review) and joined back onto
# the base once: chaining "aggregate the already-joined frame" would re-evaluate the
# whole plan once per branch, multiplying with every join.


def _key_frame(b: DataFrame) -> DataFrame:
    """The per-review columns the aggregates need, materialised once (localCheckpoint)."""
    return b.select("product_id", "reviewer_id", f"{_P}rating", f"{_P}p", f"{_P}day", f"{_P}node").localCheckpoint()


def _consensus_tables(k: DataFrame) -> tuple[DataFrame, DataFrame]:
    """Per product: sum and count of valid ratings; per (product, reviewer): the same."""
    rating = F.col(f"{_P}rating")
    ps = (
        k.where(F.col("product_id").isNotNull())
        .groupBy("product_id")
        .agg(F.sum(rating).alias(f"{_P}ps"), F.count(rating).alias(f"{_P}pn"))
    )
    prs = (
        k.where(F.col("product_id").isNotNull() & F.col("reviewer_id").isNotNull())
        .groupBy("product_id", "reviewer_id")
        .agg(F.sum(rating).alias(f"{_P}rs"), F.count(rating).alias(f"{_P}rn"))
    )
    return ps, prs


def _join_consensus(rows: DataFrame, ps: DataFrame, prs: DataFrame) -> DataFrame:
    """Leave-reviewer-out consensus: the mean rating of the product's *other* reviewers
    (all of this reviewer's ratings on the product are left out; for a row without a
    reviewer id, only the row itself). Adds sig_product_consensus(_n) and sig_rating_deviation."""
    rating = F.col(f"{_P}rating")
    out = rows.join(ps, on="product_id", how="left").join(prs, on=["product_id", "reviewer_id"], how="left")
    has_rev = F.col("reviewer_id").isNotNull()
    own_n = F.when(has_rev, F.coalesce(F.col(f"{_P}rn"), F.lit(0))).otherwise(
        F.when(rating.isNotNull(), 1).otherwise(0)
    )
    own_s = F.when(has_rev, F.coalesce(F.col(f"{_P}rs"), F.lit(0))).otherwise(F.coalesce(rating, F.lit(0)))
    others_n = F.col(f"{_P}pn") - own_n
    out = out.withColumns(
        {
            "sig_product_consensus_n": others_n,
            "sig_product_consensus": F.when(others_n > 0, (F.col(f"{_P}ps") - own_s) / others_n),
        }
    )
    out = out.withColumn("sig_rating_deviation", F.abs(rating - F.col("sig_product_consensus")))
    return out.drop(f"{_P}ps", f"{_P}pn", f"{_P}rs", f"{_P}rn")


def _reviewer_tables(k: DataFrame, ps: DataFrame, prs: DataFrame, cfg: FraudConfig) -> tuple[DataFrame, DataFrame]:
    """Per known reviewer: counts, extreme share, share of inflated ratings (4-5 stars on
    a text that reads negative), mean deviation from consensus; and the
    most reviews it posted on one day (only over rows with a timestamp)."""
    rating = F.col(f"{_P}rating")
    known = k.where(F.col("reviewer_id").isNotNull())
    dev = _join_consensus(known, ps, prs)
    gap = F.abs((rating - F.lit(1)) / F.lit(4.0) - F.col(f"{_P}p"))
    inflated = F.when(gap.isNotNull(), ((rating >= 4) & (gap >= cfg.disagreement_lo)).cast("double"))
    deflated = F.when(gap.isNotNull(), ((rating <= 2) & (gap >= cfg.disagreement_lo)).cast("double"))
    rv = dev.groupBy("reviewer_id").agg(
        F.count(gap).alias("sig_reviewer_scored"),
        F.avg(inflated).alias("sig_reviewer_inflated_share"),
        F.avg(deflated).alias("sig_reviewer_deflated_share"),
        F.count(F.lit(1)).alias("sig_reviewer_reviews"),
        F.countDistinct("product_id").alias(f"{_P}rp"),
        F.count(rating).alias("sig_reviewer_rated"),
        F.avg(F.when(rating.isNotNull(), rating.isin(1, 5).cast("double"))).alias("sig_reviewer_extreme_share"),
        F.avg("sig_rating_deviation").alias("sig_reviewer_consensus_dev"),
        F.count("sig_rating_deviation").alias("sig_reviewer_consensus_n"),
    )
    rv = rv.withColumns(
        {
            "sig_reviewer_products": _nonzero(F.col(f"{_P}rp")),
            "sig_reviewer_single_product": F.when(F.col(f"{_P}rp") > 0, F.col(f"{_P}rp") == 1),
        }
    ).drop(f"{_P}rp")
    per_day = (
        known.where(F.col(f"{_P}day").isNotNull())
        .groupBy("reviewer_id", f"{_P}day")
        .agg(F.count(F.lit(1)).alias(f"{_P}n"))
        .groupBy("reviewer_id")
        .agg(F.max(f"{_P}n").alias("sig_reviewer_max_per_day"))
    )
    return rv, per_day


def _product_inflation_table(k: DataFrame, cfg: FraudConfig) -> DataFrame:
    """Per product: distinct known reviewers with at least one inflated review on it (4-5
    stars on a text that reads negative), ``sig_product_inflating_reviewers``."""
    rating = F.col(f"{_P}rating")
    gap = F.abs((rating - F.lit(1)) / F.lit(4.0) - F.col(f"{_P}p"))
    return (
        k.where(F.col("product_id").isNotNull() & F.col("reviewer_id").isNotNull())
        .where((rating >= 4) & (gap >= cfg.disagreement_lo))
        .groupBy("product_id")
        .agg(F.countDistinct("reviewer_id").alias(f"{_P}inflating"))
    )


def _product_burst_table(k: DataFrame, cfg: FraudConfig) -> DataFrame:
    """Per (product, day): reviews that day and in the centred ``burst_window_days``
    window, the product's usual daily count, the burst z-score (the larger of the day's
    and the window's) and the window's rating shift against the product's other days."""
    from pyspark.sql import Window

    rating = F.col(f"{_P}rating")
    dnum = F.datediff(F.col(f"{_P}day"), F.lit("1970-01-01"))
    days = (
        k.where(F.col("product_id").isNotNull() & F.col(f"{_P}day").isNotNull())
        .groupBy("product_id", f"{_P}day")
        .agg(
            F.count(F.lit(1)).alias("sig_product_day_reviews"),
            F.sum(rating).alias(f"{_P}s"),
            F.count(rating).alias(f"{_P}n"),
        )
        .withColumn(f"{_P}d", dnum)
    )
    half = cfg.burst_window_days // 2
    w = Window.partitionBy("product_id").orderBy(f"{_P}d").rangeBetween(-half, half)
    days = days.withColumns(
        {
            "sig_product_window_reviews": F.sum("sig_product_day_reviews").over(w),
            f"{_P}ws": F.sum(f"{_P}s").over(w),
            f"{_P}wn": F.sum(f"{_P}n").over(w),
        }
    )
    hist = days.groupBy("product_id").agg(
        F.median("sig_product_day_reviews").alias(f"{_P}med"),
        F.count(F.lit(1)).alias(f"{_P}active"),
        F.sum("sig_product_day_reviews").alias(f"{_P}total"),
        (F.max(f"{_P}d") - F.min(f"{_P}d") + 1).alias(f"{_P}span"),
        F.sum(f"{_P}s").alias(f"{_P}ts"),
        F.sum(f"{_P}n").alias(f"{_P}tn"),
    )
    expected = F.when(
        F.col(f"{_P}active") >= cfg.burst_min_history_days, F.greatest(F.col(f"{_P}med").cast("double"), F.lit(1.0))
    ).otherwise(F.lit(1.0))
    rate = F.col(f"{_P}total") / F.greatest(F.col(f"{_P}span"), F.lit(cfg.burst_min_span_days))
    hist = hist.select(
        "product_id",
        expected.alias("sig_product_expected_daily"),
        F.greatest(F.lit(1.0), rate * cfg.burst_window_days).alias(f"{_P}we"),
        f"{_P}ts",
        f"{_P}tn",
    )
    days = days.join(hist, on="product_id", how="inner")
    z_day = (F.col("sig_product_day_reviews") - F.col("sig_product_expected_daily")) / F.sqrt(
        F.col("sig_product_expected_daily")
    )
    z_win = (F.col("sig_product_window_reviews") - F.col(f"{_P}we")) / F.sqrt(F.col(f"{_P}we"))
    other_n = F.col(f"{_P}tn") - F.col(f"{_P}wn")
    other = F.when(other_n > 0, (F.col(f"{_P}ts") - F.col(f"{_P}ws")) / other_n)
    shift = F.when((F.col(f"{_P}wn") > 0) & (other_n > 0), F.col(f"{_P}ws") / F.col(f"{_P}wn") - other)
    return days.select(
        "product_id",
        f"{_P}day",
        "sig_product_day_reviews",
        "sig_product_window_reviews",
        "sig_product_expected_daily",
        F.greatest(z_day, z_win).alias("sig_product_burst_z"),
        shift.alias("sig_product_window_rating_shift"),
        other.alias("sig_product_other_days_rating"),
    )


# --------------------------------------------------------------------------- duplicates


def _near_duplicate_edges(nodes: DataFrame, cfg: FraudConfig) -> DataFrame:
    """Pairs ``(a, b)`` of distinct normalised texts (a < b) whose character-shingle
    Jaccard similarity is at least ``cfg.jaccard_threshold``.

    Candidates come from MinHashLSH signatures with banding: ``minhash_bands`` bands of
    ``minhash_rows`` MinHash values each; two texts are candidates when all values of
    one band agree (probability 1 - (1 - J^rows)^bands for Jaccard J). Spark's own
    ``approxSimilarityJoin`` ORs single MinHash values, which on 20k+ texts in one
    language produces millions of chance candidates; banding keeps only likely ones.
    Candidates are then checked with the exact Jaccard of the shingle sets.
    """
    from pyspark.ml.feature import HashingTF, MinHashLSH
    from pyspark.ml.functions import vector_to_array

    norm = F.col(f"{_P}norm")
    is_cjk = 2 * F.length(F.regexp_replace(norm, _NOT_HAN, "")) > F.length(norm)
    n = F.when(is_cjk, F.lit(cfg.shingle_chars_cjk)).otherwise(F.lit(cfg.shingle_chars))
    shingled = nodes.withColumn(f"{_P}n", n).withColumn(
        f"{_P}sh",
        F.expr(
            f"array_distinct(transform(sequence(0, greatest(length({_P}norm) - {_P}n, 0)),"
            f" i -> substring({_P}norm, i + 1, {_P}n)))"
        ),
    )
    shingled = shingled.select(f"{_P}node", f"{_P}sh").localCheckpoint()  # read 3 times below
    tf = HashingTF(inputCol=f"{_P}sh", outputCol=f"{_P}vec", numFeatures=cfg.hash_features, binary=True)
    vec = tf.transform(shingled)
    lsh = MinHashLSH(
        inputCol=f"{_P}vec", outputCol=f"{_P}hashes", numHashTables=cfg.minhash_tables, seed=cfg.minhash_seed
    ).fit(vec)
    hashed = lsh.transform(vec).select(f"{_P}node", F.posexplode(f"{_P}hashes").alias("pos", "h"))
    hashed = hashed.select(
        f"{_P}node",
        F.floor(F.col("pos") / cfg.minhash_rows).alias("band"),
        F.struct(F.col("pos"), vector_to_array(F.col("h"))[0].alias("v")).alias("pv"),
    )
    keys = (
        hashed.groupBy(f"{_P}node", "band")
        .agg(F.xxhash64(F.array_sort(F.collect_list("pv"))).alias("key"))
        .localCheckpoint()  # read by the bucket sizes, the oversized count and the pair join
    )
    sizes = keys.groupBy("band", "key").agg(F.count(F.lit(1)).alias("bucket"))
    oversized = sizes.where(F.col("bucket") > cfg.max_bucket_size)
    keys = keys.join(sizes.where((F.col("bucket") >= 2) & (F.col("bucket") <= cfg.max_bucket_size)), ["band", "key"])
    a, b = keys.alias("a"), keys.alias("b")
    cand = (
        a.join(b, (F.col("a.band") == F.col("b.band")) & (F.col("a.key") == F.col("b.key")))
        .where(F.col(f"a.{_P}node") < F.col(f"b.{_P}node"))
        .select(F.col(f"a.{_P}node").alias("a"), F.col(f"b.{_P}node").alias("b"))
        .distinct()
    )
    sa = shingled.select(F.col(f"{_P}node").alias("a"), F.col(f"{_P}sh").alias("sa"))
    sb = shingled.select(F.col(f"{_P}node").alias("b"), F.col(f"{_P}sh").alias("sb"))
    jac = F.size(F.array_intersect("sa", "sb")) / F.size(F.array_union("sa", "sb"))
    edges = cand.join(sa, "a").join(sb, "b").where(jac >= cfg.jaccard_threshold).select("a", "b")
    edges = edges.localCheckpoint()
    n_over = oversized.count()
    if n_over:
        log.warning("near-duplicates: skipped %d LSH buckets larger than %d texts", n_over, cfg.max_bucket_size)
    return edges


def _components(edges: DataFrame, cfg: FraudConfig) -> DataFrame:
    """Connected components of an undirected edge list by min-label propagation:
    every node repeatedly takes the smallest label among itself and its neighbours.
    Stops when no label changes or after ``cfg.max_component_iterations`` rounds (then
    a long chain may stay split; a warning says so). Returns ``(_fr_node, _fr_comp)``
    for nodes that have at least one edge."""
    und = edges.select(F.col("a").alias("src"), F.col("b").alias("dst")).unionByName(
        edges.select(F.col("b").alias("src"), F.col("a").alias("dst"))
    )
    labels = und.groupBy("src").agg(F.least(F.first("src"), F.min("dst")).alias("label"))
    labels = labels.select(F.col("src").alias("node"), "label").localCheckpoint()
    for i in range(cfg.max_component_iterations):
        # column names are disjoint across the joined sides: no self-join ambiguity
        nbr = und.join(labels, F.col("dst") == F.col("node")).groupBy("src").agg(F.min("label").alias("m"))
        step = (
            labels.join(nbr, F.col("node") == F.col("src"), "left")
            .select(
                "node",
                F.least(F.col("label"), F.coalesce(F.col("m"), F.col("label"))).alias("label"),
                F.col("label").alias("old"),
            )
            .localCheckpoint()
        )
        changed = step.where(F.col("label") < F.col("old")).count()
        labels = step.select("node", "label")
        log.debug("duplicate components: round %d, %d labels changed", i + 1, changed)
        if changed == 0:
            break
    else:
        log.warning(
            "duplicate components: not converged after %d rounds; some clusters may be split",
            cfg.max_component_iterations,
        )
    return labels.select(F.col("node").alias(f"{_P}node"), F.col("label").alias(f"{_P}comp"))


def _duplicate_tables(
    b: DataFrame, k: DataFrame, cfg: FraudConfig
) -> tuple[DataFrame | None, DataFrame, DataFrame, DataFrame]:
    """(node -> component for texts with a near-duplicate, or None without MinHash;
    per component: size, distinct reviewers, distinct products; per component and
    product: reviews of the cluster on that product; per component, product and day:
    those within the centred ``burst_window_days`` window). A cluster is exact
    normalised-text duplicates plus MinHash near-duplicate pairs, closed transitively.
    Size counts reviews; reviewers/products count distinct known ids (null when none)."""
    comps = None
    if cfg.minhash_bands > 0:
        nodes = b.where(F.col(f"{_P}node").isNotNull()).select(f"{_P}node", f"{_P}norm").dropDuplicates([f"{_P}node"])
        comps = _components(_near_duplicate_edges(nodes, cfg), cfg)
    rows = k.where(F.col(f"{_P}node").isNotNull())
    rows = _with_component(rows, comps)
    per_product = (
        rows.where(F.col("product_id").isNotNull())
        .groupBy(f"{_P}comp", "product_id")
        .agg(F.count(F.lit(1)).alias("sig_dup_product_copies"))
    )
    from pyspark.sql import Window

    half = cfg.burst_window_days // 2
    per_day = (
        rows.where(F.col("product_id").isNotNull() & F.col(f"{_P}day").isNotNull())
        .groupBy(f"{_P}comp", "product_id", f"{_P}day")
        .agg(F.count(F.lit(1)).alias(f"{_P}c"))
        .withColumn(f"{_P}d", F.datediff(F.col(f"{_P}day"), F.lit("1970-01-01")))
    )
    w = Window.partitionBy(f"{_P}comp", "product_id").orderBy(f"{_P}d").rangeBetween(-half, half)
    per_window = per_day.select(
        f"{_P}comp", "product_id", f"{_P}day", F.sum(f"{_P}c").over(w).alias("sig_dup_product_window_copies")
    )
    stats = (
        rows.groupBy(f"{_P}comp")
        .agg(
            F.count(F.lit(1)).alias("sig_dup_cluster_size"),
            F.countDistinct("reviewer_id").alias(f"{_P}cr"),
            F.countDistinct("product_id").alias(f"{_P}cp"),
        )
        .select(
            f"{_P}comp",
            "sig_dup_cluster_size",
            _nonzero(F.col(f"{_P}cr")).alias("sig_dup_cluster_reviewers"),
            _nonzero(F.col(f"{_P}cp")).alias("sig_dup_cluster_products"),
        )
    )
    return comps, stats, per_product, per_window


def _with_component(rows: DataFrame, comps: DataFrame | None) -> DataFrame:
    """Component id of each row: its near-duplicate component, else its own text hash."""
    if comps is None:
        return rows.withColumn(f"{_P}comp", F.col(f"{_P}node"))
    return rows.join(comps, on=f"{_P}node", how="left").withColumn(
        f"{_P}comp", F.coalesce(F.col(f"{_P}comp"), F.col(f"{_P}node"))
    )


# --------------------------------------------------------------------------- risks and score


def risk_columns(cfg: FraudConfig) -> dict[str, tuple[Column, Column]]:
    """Per risk name: (risk in [0, 1] or null, reason text), built from ``sig_*`` columns
    with the transforms documented in :mod:`ecomine.derived.fraud_rules`."""
    c = F.col
    t = R.REASON_TEMPLATES
    rating = c(f"{_P}rating")

    dup_copies = F.when(
        c("sig_dup_cluster_size").isNotNull(),
        F.coalesce(
            F.greatest(_nonzero(c("sig_dup_cluster_reviewers")), _nonzero(c("sig_dup_cluster_products"))),
            c("sig_dup_cluster_size"),
        ),
    )
    spread = _ramp(dup_copies, 1, cfg.duplicate_copies_hi) * _ramp(
        c(f"{_P}wlen"), cfg.duplicate_len_lo, cfg.duplicate_len_hi
    )
    pile_copies = F.coalesce(c("sig_dup_product_window_copies"), c("sig_dup_product_copies"))
    pile = _ramp(pile_copies, cfg.product_copies_lo, cfg.product_copies_hi) * _ramp(
        c(f"{_P}wlen"), cfg.product_copies_len_lo, cfg.product_copies_len_hi
    )
    dup_risk = F.when(spread.isNotNull(), F.greatest(spread, pile))  # greatest skips a null pile
    dup_text = (
        F.when(
            c("sig_dup_cluster_reviewers") > 0,
            F.format_string(t["duplicate_reviewers"], c("sig_dup_cluster_size"), c("sig_dup_cluster_reviewers")),
        )
        .when(
            c("sig_dup_cluster_products") > 0,
            F.format_string(t["duplicate_products"], c("sig_dup_cluster_size"), c("sig_dup_cluster_products")),
        )
        .otherwise(F.format_string(t["duplicate"], c("sig_dup_cluster_size")))
    )

    disagree_text = F.when(rating >= 3, F.format_string(t["disagreement_high"], rating, c(f"{_P}p"))).otherwise(
        F.format_string(t["disagreement_low"], rating, F.when(rating == 1, "").otherwise("s"), c(f"{_P}p"))
    )

    trust = F.when(c("sig_reviewer_deflated_share").isNull(), F.lit(1.0)).otherwise(
        F.lit(1.0) - _ramp(c("sig_reviewer_deflated_share"), cfg.scale_confusion_lo, cfg.scale_confusion_hi)
    )
    others = c("sig_product_consensus_n")
    dev_risk = F.when(
        c("sig_rating_deviation").isNotNull() & (others > 0),
        _ramp(c("sig_rating_deviation"), cfg.deviation_lo, cfg.deviation_hi)
        * F.least(others / F.lit(float(cfg.deviation_full_others)), F.lit(1.0)),
    )

    # burst direction: share of the room left on the scale that the window's shift closes
    # in this review's direction (fraud_rules.burst_headroom_share)
    shift, other = c("sig_product_window_rating_shift"), c("sig_product_other_days_rating")
    floor = F.lit(cfg.burst_min_headroom)
    aligned = (
        F.when(rating >= 4, shift / F.greatest(F.lit(5.0) - other, floor))
        .when(rating <= 2, -shift / F.greatest(other - F.lit(1.0), floor))
        .otherwise(F.lit(0.0))
    )
    direction = F.when(shift.isNull() | other.isNull() | rating.isNull(), F.lit(1.0)).otherwise(
        F.lit(cfg.burst_flat_factor)
        + F.lit(1.0 - cfg.burst_flat_factor) * _ramp(aligned, cfg.burst_shift_lo, cfg.burst_shift_hi)
    )
    burst_risk = _ramp(c("sig_product_burst_z"), cfg.burst_z_lo, cfg.burst_z_hi) * direction

    extremes_risk = F.when(
        c("sig_reviewer_extreme_share").isNotNull(),
        _ramp(c("sig_reviewer_extreme_share"), cfg.extreme_share_lo, 1.0)
        * _ramp(c("sig_reviewer_rated"), cfg.extreme_min_rated, cfg.extreme_full_rated),
    )
    extremes_text = F.format_string(
        t["reviewer_extremes"],
        F.round(c("sig_reviewer_extreme_share") * c("sig_reviewer_rated")).cast("long"),
        c("sig_reviewer_rated"),
    )

    consensus_risk = F.when(
        c("sig_reviewer_consensus_dev").isNotNull() & (c("sig_reviewer_consensus_n") > 0),
        _ramp(c("sig_reviewer_consensus_dev"), cfg.consensus_lo, cfg.consensus_hi)
        * F.least(c("sig_reviewer_consensus_n") / F.lit(float(cfg.consensus_full_reviews)), F.lit(1.0)),
    )

    single = c("sig_reviewer_single_product")
    single_risk = F.when(
        single.isNotNull() & c("sig_reviewer_reviews").isNotNull(),
        F.when(single & (c("sig_reviewer_reviews") >= cfg.single_product_min_reviews), F.lit(1.0)).otherwise(
            F.lit(0.0)
        ),
    )

    shouting_risk = F.greatest(
        _ramp(c("sig_exclamations"), cfg.exclamation_lo, cfg.exclamation_hi),
        _flag_risk(c("sig_repeated_chars")),
        _ramp(c("sig_caps_share"), cfg.caps_lo, cfg.caps_hi),
    )

    return {
        "duplicate": (dup_risk, dup_text),
        "disagreement": (
            _ramp(c("sig_rating_text_gap"), cfg.disagreement_lo, cfg.disagreement_hi)
            * F.when(rating <= 2, F.lit(cfg.disagreement_low_factor)).otherwise(F.lit(1.0))
            * trust,
            disagree_text,
        ),
        "product_burst": (
            burst_risk,
            F.format_string(
                t["product_burst"],
                c("sig_product_day_reviews"),
                c("sig_product_window_reviews"),
                F.lit(cfg.burst_window_days),
                c("sig_product_expected_daily"),
            ),
        ),
        "reviewer_inflated": (
            F.when(
                c("sig_reviewer_inflated_share").isNotNull(),
                _ramp(c("sig_reviewer_inflated_share"), cfg.inflated_share_lo, cfg.inflated_share_hi)
                * _ramp(c("sig_reviewer_scored"), cfg.inflated_min_scored, cfg.inflated_full_scored)
                * trust,
            ),
            F.format_string(
                t["reviewer_inflated"],
                F.round(c("sig_reviewer_inflated_share") * c("sig_reviewer_scored")).cast("long"),
                c("sig_reviewer_scored"),
            ),
        ),
        "coordinated_inflation": (
            F.when(
                c("sig_product_inflating_reviewers").isNotNull() & c("sig_rating_text_gap").isNotNull(),
                F.when(
                    c("reviewer_id").isNotNull() & (rating >= 4) & (c("sig_rating_text_gap") >= cfg.disagreement_lo),
                    _ramp(c("sig_product_inflating_reviewers"), cfg.coordinated_lo, cfg.coordinated_hi),
                ).otherwise(F.lit(0.0)),
            ),
            F.format_string(t["coordinated_inflation"], c("sig_product_inflating_reviewers")),
        ),
        "reviewer_extremes": (extremes_risk, extremes_text),
        "reviewer_consensus": (
            consensus_risk,
            F.format_string(t["reviewer_consensus"], c("sig_reviewer_consensus_dev")),
        ),
        "reviewer_burst": (
            _ramp(c("sig_reviewer_max_per_day"), cfg.reviewer_burst_lo, cfg.reviewer_burst_hi),
            F.format_string(t["reviewer_burst"], c("sig_reviewer_max_per_day")),
        ),
        "rating_deviation": (
            dev_risk,
            F.format_string(t["rating_deviation"], rating, c("sig_product_consensus")),
        ),
        "single_product_account": (
            single_risk,
            F.format_string(t["single_product_account"], c("sig_reviewer_reviews")),
        ),
        "contact": (_flag_risk(c("sig_contact")), F.lit(t["contact"])),
        "url": (_flag_risk(c("sig_url")), F.lit(t["url"])),
        "generic_praise": (_flag_risk(c("sig_generic_praise")), F.lit(t["generic_praise"])),
        "shouting": (shouting_risk, F.lit(t["shouting"])),
    }


def _with_rules_score(b: DataFrame, cfg: FraudConfig) -> DataFrame:
    risks = risk_columns(cfg)
    b = b.withColumns({f"{_P}risk_{name}": risk for name, (risk, _) in risks.items()})
    keep = reduce(
        lambda acc, name: (
            acc * (F.lit(1.0) - F.lit(cfg.weight(name)) * F.coalesce(F.col(f"{_P}risk_{name}"), F.lit(0.0)))
        ),
        R.RISKS,
        F.lit(1.0),
    )
    items = [
        F.struct(
            (F.lit(cfg.weight(name)) * F.col(f"{_P}risk_{name}")).alias("c"),
            F.lit(-i).alias("o"),
            F.lit(name).alias("code"),
            risks[name][1].alias("t"),
        )
        for i, name in enumerate(R.RISKS)
    ]
    ranked = F.slice(
        F.sort_array(F.filter(F.array(*items), lambda x: x["c"] >= cfg.reason_min_contribution), asc=False),
        1,
        cfg.max_reasons,
    )
    b = b.withColumn(f"{_P}ranked", ranked)
    return b.withColumns(
        {
            "fraud_score": F.lit(1.0) - keep,
            "fraud_reasons": F.transform(F.col(f"{_P}ranked"), lambda x: x["t"]),
            "fraud_reason_codes": F.transform(F.col(f"{_P}ranked"), lambda x: x["code"]),
        }
    )


def _with_supervised_score(b: DataFrame, cfg: FraudConfig) -> DataFrame:
    """Logistic regression (Spark ML) of the label on the risks (missing risk -> 0) plus
    two availability indicators; fitted on rows whose label is not null, applied to all."""
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import VectorAssembler
    from pyspark.ml.functions import vector_to_array

    label = cfg.label_column
    assert label is not None  # FraudConfig enforces it when supervised
    if label not in b.columns:
        raise SchemaError(f"fraud.label_column {label!r} is not a column of the reviews; they have {sorted(b.columns)}")
    y = F.col(label).cast("double")
    feats = [f"{_P}x_{name}" for name in R.RISKS] + [f"{_P}x_has_reviewer", f"{_P}x_has_time"]
    b = b.withColumns(
        {
            **{f"{_P}x_{name}": F.coalesce(F.col(f"{_P}risk_{name}"), F.lit(0.0)) for name in R.RISKS},
            f"{_P}x_has_reviewer": F.col("reviewer_id").isNotNull().cast("double"),
            f"{_P}x_has_time": F.col(f"{_P}day").isNotNull().cast("double"),
            f"{_P}y": y,
        }
    )
    counts = {
        row[0]: row[1]
        for row in b.where(F.col(label).isNotNull()).groupBy(F.col(f"{_P}y")).count().collect()  # <= 3 rows
    }
    bad = {k: v for k, v in counts.items() if k not in (0.0, 1.0)}
    if bad:
        raise DataError(f"fraud label column {label!r} must hold 0/1 (or true/false); found values {bad}")
    n0, n1 = counts.get(0.0, 0), counts.get(1.0, 0)
    if min(n0, n1) < cfg.supervised_min_per_class:
        raise DataError(
            f"fraud label column {label!r} has {n1} fraud and {n0} genuine labelled rows; "
            f"supervised scoring needs at least {cfg.supervised_min_per_class} of each"
        )
    assembled = VectorAssembler(inputCols=feats, outputCol=f"{_P}features").transform(b)
    # materialise the training rows once: the optimiser runs one Spark job per iteration,
    # and each would otherwise re-evaluate every join above
    train = assembled.where(F.col(f"{_P}y").isNotNull()).select(f"{_P}features", f"{_P}y").localCheckpoint()
    lr = LogisticRegression(
        featuresCol=f"{_P}features",
        labelCol=f"{_P}y",
        probabilityCol=f"{_P}prob",
        rawPredictionCol=f"{_P}raw",
        predictionCol=f"{_P}pred",
        regParam=cfg.supervised_reg,
        elasticNetParam=0.0,
        maxIter=100,
    )
    model = lr.fit(train)
    log.info(
        "supervised fraud score: %d fraud / %d genuine labels; coefficients %s, intercept %.3f",
        n1,
        n0,
        dict(zip(feats, (round(v, 3) for v in model.coefficients.toArray()))),
        model.intercept,
    )
    scored = model.transform(assembled)
    return scored.withColumns(
        {
            "fraud_score_rules": F.col("fraud_score"),
            "fraud_score": vector_to_array(F.col(f"{_P}prob"))[1],
        }
    )


# --------------------------------------------------------------------------- public API


def with_fraud_signals(df: DataFrame, cfg: FraudConfig | None = None) -> DataFrame:
    """Add ``sig_*`` signal columns, ``fraud_score``, ``fraud_reasons`` and
    ``fraud_reason_codes`` (plus ``fraud_score_rules`` when supervised) to scored
    reviews. Returns exactly one row per input row, input columns first.

    Runs a few small Spark jobs itself (duplicate clustering rounds; label counts
    and the model fit when supervised); the returned DataFrame is otherwise lazy.
    Output columns the input already has (a rerun) are replaced.
    """
    cfg = cfg or FraudConfig()
    _require(df, REQUIRED_COLUMNS, "fraud input")
    stale = [col for col in df.columns if col in SIGNAL_COLUMNS or col in OUTPUT_COLUMNS]
    if stale:
        log.info("replacing existing fraud columns %s", stale)
        df = df.drop(*stale)
    clash = [col for col in df.columns if col.startswith(_P)]
    if clash:
        raise SchemaError(f"fraud input has columns {clash} with the reserved prefix {_P!r}")
    keep_cols = list(df.columns)
    b = _prepare(df, cfg)
    k = _key_frame(b)
    ps, prs = _consensus_tables(k)
    rv, per_day = _reviewer_tables(k, ps, prs, cfg)
    days = _product_burst_table(k, cfg)
    inflating = _product_inflation_table(k, cfg)
    comps, clusters, product_copies, window_copies = _duplicate_tables(b, k, cfg)
    b = _join_consensus(b, ps, prs)
    b = b.join(rv, on="reviewer_id", how="left").join(per_day, on="reviewer_id", how="left")
    b = b.join(days, on=["product_id", f"{_P}day"], how="left")
    b = b.join(inflating, on="product_id", how="left").withColumn(
        "sig_product_inflating_reviewers",
        F.when(F.col("product_id").isNotNull(), F.coalesce(F.col(f"{_P}inflating"), F.lit(0))),
    )
    b = _with_component(b, comps).join(clusters, on=f"{_P}comp", how="left")
    b = b.join(product_copies, on=[f"{_P}comp", "product_id"], how="left")
    b = b.join(window_copies, on=[f"{_P}comp", "product_id", f"{_P}day"], how="left")
    b = _with_rules_score(b, cfg)
    extra = ["fraud_score", "fraud_reasons", "fraud_reason_codes"]
    if cfg.supervised:
        b = _with_supervised_score(b, cfg)
        extra.append("fraud_score_rules")
    return b.select(*keep_cols, *SIGNAL_COLUMNS, *extra)


def _top_codes(df: DataFrame, key: str, k: int) -> DataFrame:
    """Per key: the k most frequent reason codes as 'code (n)', most frequent first."""
    counts = (
        df.select(key, F.explode("fraud_reason_codes").alias("code"))
        .groupBy(key, "code")
        .agg(F.count(F.lit(1)).alias("n"))
    )
    ranked = counts.groupBy(key).agg(
        F.sort_array(F.collect_list(F.struct((-F.col("n")).alias("neg"), "code"))).alias("r")
    )
    return ranked.select(
        key,
        F.transform(
            F.slice("r", 1, k), lambda x: F.concat(x["code"], F.lit(" ("), (-x["neg"]).cast("string"), F.lit(")"))
        ).alias("top_reasons"),
    )


def _risk_aggregate(df: DataFrame, key: str, threshold: float, k: int, extra: list[Column]) -> DataFrame:
    _require(df, [key, "product_id", "reviewer_id", "rating", "fraud_score", "fraud_reason_codes"], "fraud scores")
    known = df.where(F.col(key).isNotNull())
    flagged = F.col("fraud_score") >= threshold
    agg = known.groupBy(key).agg(
        F.count(F.lit(1)).alias("reviews"),
        F.avg("fraud_score").alias("mean_fraud_score"),
        F.max("fraud_score").alias("max_fraud_score"),
        F.sum(flagged.cast("long")).alias("reviews_flagged"),
        F.avg(flagged.cast("double")).alias("share_flagged"),
        *extra,
    )
    out = agg.join(_top_codes(known, key, k), on=key, how="left")
    return out.withColumn("top_reasons", F.coalesce(F.col("top_reasons"), F.array().cast("array<string>")))


def reviewer_risk(df_with_fraud: DataFrame, threshold: float = FraudConfig.flag_threshold, top_k: int = 3) -> DataFrame:
    """One row per known reviewer_id: reviews, mean/max fraud_score, reviews and share
    at or above ``threshold`` (flagged), the reviewer signals, and the ``top_k`` most
    frequent reason codes as 'code (n)'. Rows without reviewer_id are left out."""
    r = F.col("rating").cast("double")
    extra = [
        F.countDistinct("product_id").alias("products"),
        F.avg(F.when(r.between(1, 5), r)).alias("mean_rating"),
        F.max("sig_reviewer_extreme_share").alias("extreme_share"),
        F.max("sig_reviewer_max_per_day").alias("max_reviews_per_day"),
        F.max("sig_reviewer_consensus_dev").alias("consensus_dev"),
        F.max("sig_dup_cluster_size").alias("max_duplicate_cluster"),
    ]
    return _risk_aggregate(df_with_fraud, "reviewer_id", threshold, top_k, extra)


def product_risk(df_with_fraud: DataFrame, threshold: float = FraudConfig.flag_threshold, top_k: int = 3) -> DataFrame:
    """One row per known product_id: reviews, distinct reviewers, mean rating over all
    reviews and over reviews below ``threshold`` (what the rating would be without the
    flagged ones), mean/max fraud_score, flagged reviews and share, the busiest day and
    its burst z-score, and the ``top_k`` most frequent reason codes."""
    r = F.col("rating").cast("double")
    valid = F.when(r.between(1, 5), r)
    extra = [
        F.countDistinct("reviewer_id").alias("reviewers"),
        F.avg(valid).alias("mean_rating"),
        F.avg(F.when(F.col("fraud_score") < threshold, valid)).alias("mean_rating_unflagged"),
        F.max("sig_product_day_reviews").alias("max_day_reviews"),
        F.max("sig_product_burst_z").alias("max_burst_z"),
    ]
    return _risk_aggregate(df_with_fraud, "product_id", threshold, top_k, extra)
