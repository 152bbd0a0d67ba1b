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
* ``fraud_score`` in [0, 1]: each signal mapped to a risk by the rules declared in
  :mod:`ecomine.derived.fraud_rules` and combined by noisy-OR over the known risks
  (missing signals are ignored, so every review gets a score). With ``cfg.supervised``
  and a label column, a logistic regression on the risks replaces the noisy-OR and the
  rules score is kept as ``fraud_score_rules``.
* ``fraud_reasons`` (readable texts of the strongest rule contributions, at most
  ``cfg.max_reasons``) and ``fraud_reason_codes`` (the same, as risk names).

This module holds the tables (joins, aggregates, duplicate clusters); every per-row
formula (input validation, text cues, the matching form of a text, the risks) lives in
:mod:`ecomine.derived.fraud_rules`.

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

from pyspark.ml.classification import LogisticRegression
from pyspark.ml.feature import HashingTF, MinHashLSH, VectorAssembler
from pyspark.ml.functions import vector_to_array
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from ecomine.config import FraudConfig
from ecomine.derived import fraud_rules as R
from ecomine.derived.fraud_rules import P_POSITIVE, PREFIX, RATING, WEIGHTED_LENGTH
from ecomine.errors import DataError, SchemaError

log = logging.getLogger(__name__)

__all__ = ["FraudConfig", "SIGNAL_COLUMNS", "product_risk", "reviewer_risk", "with_fraud_signals"]

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

# internal columns (all dropped before returning)
DAY = f"{PREFIX}day"  # the review's date, null without a timestamp
NORM_RAW = f"{PREFIX}norm_raw"  # the matching text ("" for a text with no letters or digits)
NORM = f"{PREFIX}norm"  # ... null when empty
NODE = f"{PREFIX}node"  # hash of the matching text: one duplicate-graph node per distinct text
COMP = f"{PREFIX}comp"  # the duplicate cluster: the smallest node of the text's component


def _col(suffix: str) -> str:
    """An internal column name."""
    return f"{PREFIX}{suffix}"


def _require(df: DataFrame, columns: tuple[str, ...] | list[str], what: str) -> None:
    missing = sorted(set(columns) - set(df.columns))
    if missing:
        raise SchemaError(f"{what} lacks columns {missing}; it has {sorted(df.columns)}")


def _day_number(day: Column) -> Column:
    return F.datediff(day, F.lit("1970-01-01"))


# --------------------------------------------------------------------------- preparation


def _prepare(df: DataFrame, cfg: FraudConfig) -> DataFrame:
    """Validated copies of the inputs, the matching text and the per-row text signals."""
    text = F.col("text").cast("string")
    out = df.withColumns(
        {
            RATING: R.valid_rating(F.col("rating")),
            P_POSITIVE: R.valid_probability(F.col("p_positive")),
            DAY: F.to_date(F.col("created_at")),
            NORM_RAW: R.matching_text(text),
        }
    )
    out = out.withColumns(
        {
            NORM: F.when(F.col(NORM_RAW) != "", F.col(NORM_RAW)),
            WEIGHTED_LENGTH: R.weighted_length(F.col(NORM_RAW)),
        }
    )
    return out.withColumns(
        {
            NODE: F.when(F.col(NORM).isNotNull(), F.xxhash64(F.col(NORM))),
            "sig_rating_text_gap": R.rating_text_gap(F.col(RATING), F.col(P_POSITIVE)),
            **R.text_cue_columns(text, F.col(WEIGHTED_LENGTH), cfg),
        }
    )


# --------------------------------------------------------------------------- product / reviewer
# Every aggregate is computed from the narrow key frame (one materialised copy of
# product_id, reviewer_id, rating, p_positive, day and text hash per review) and joined
# back onto the reviews once: chaining "aggregate the already-joined frame" would
# re-evaluate the whole plan once per branch, multiplying with every join.


def _key_frame(reviews: DataFrame) -> DataFrame:
    """The per-review columns the aggregates need, materialised once (localCheckpoint)."""
    return reviews.select("product_id", "reviewer_id", RATING, P_POSITIVE, DAY, NODE).localCheckpoint()


def _consensus_tables(keys: DataFrame) -> tuple[DataFrame, DataFrame]:
    """Per product: sum and count of valid ratings; per (product, reviewer): the same."""
    rating = F.col(RATING)
    product_ratings = (
        keys.where(F.col("product_id").isNotNull())
        .groupBy("product_id")
        .agg(F.sum(rating).alias(_col("product_sum")), F.count(rating).alias(_col("product_n")))
    )
    own_ratings = (
        keys.where(F.col("product_id").isNotNull() & F.col("reviewer_id").isNotNull())
        .groupBy("product_id", "reviewer_id")
        .agg(F.sum(rating).alias(_col("own_sum")), F.count(rating).alias(_col("own_n")))
    )
    return product_ratings, own_ratings


def _join_consensus(rows: DataFrame, product_ratings: DataFrame, own_ratings: DataFrame) -> DataFrame:
    """Leave-reviewer-out consensus: the mean rating of the product's *other* reviewers
    (all of this reviewer's ratings on the product are left out; for a row without a
    reviewer id, only the row itself). Adds sig_product_consensus(_n) and sig_rating_deviation."""
    rating = F.col(RATING)
    out = rows.join(product_ratings, on="product_id", how="left").join(
        own_ratings, on=["product_id", "reviewer_id"], how="left"
    )
    has_reviewer = F.col("reviewer_id").isNotNull()
    own_n = F.when(has_reviewer, F.coalesce(F.col(_col("own_n")), F.lit(0))).otherwise(
        F.when(rating.isNotNull(), 1).otherwise(0)
    )
    own_sum = F.when(has_reviewer, F.coalesce(F.col(_col("own_sum")), F.lit(0))).otherwise(F.coalesce(rating, F.lit(0)))
    others_n = F.col(_col("product_n")) - own_n
    out = out.withColumns(
        {
            "sig_product_consensus_n": others_n,
            "sig_product_consensus": F.when(others_n > 0, (F.col(_col("product_sum")) - own_sum) / others_n),
        }
    )
    out = out.withColumn("sig_rating_deviation", F.abs(rating - F.col("sig_product_consensus")))
    return out.drop(_col("product_sum"), _col("product_n"), _col("own_sum"), _col("own_n"))


def _reviewer_tables(
    keys: DataFrame, product_ratings: DataFrame, own_ratings: DataFrame, cfg: FraudConfig
) -> tuple[DataFrame, DataFrame]:
    """Per known reviewer: counts, extreme share, share of inflated ratings (4-5 stars on
    a text that reads negative) and of deflated ones, mean deviation from consensus; and
    the most reviews it posted on one day (only over rows with a timestamp)."""
    rating = F.col(RATING)
    known = keys.where(F.col("reviewer_id").isNotNull())
    with_deviation = _join_consensus(known, product_ratings, own_ratings)
    gap = R.rating_text_gap(rating, F.col(P_POSITIVE))
    inflated = F.when(gap.isNotNull(), R.is_inflated(rating, gap, cfg.disagreement_lo).cast("double"))
    deflated = F.when(gap.isNotNull(), R.is_deflated(rating, gap, cfg.disagreement_lo).cast("double"))
    products = _col("reviewer_products")
    reviewers = with_deviation.groupBy("reviewer_id").agg(
        F.count(gap).alias("sig_reviewer_scored"),
        F.avg(inflated).alias("sig_reviewer_inflated_share"),
        F.avg(deflated).alias("sig_reviewer_deflated_share"),
        F.count(F.lit(1)).alias("sig_reviewer_reviews"),
        F.countDistinct("product_id").alias(products),
        F.count(rating).alias("sig_reviewer_rated"),
        F.avg(F.when(rating.isNotNull(), rating.isin(1, 5).cast("double"))).alias("sig_reviewer_extreme_share"),
        F.avg("sig_rating_deviation").alias("sig_reviewer_consensus_dev"),
        F.count("sig_rating_deviation").alias("sig_reviewer_consensus_n"),
    )
    reviewers = reviewers.withColumns(
        {
            "sig_reviewer_products": R.nonzero(F.col(products)),
            "sig_reviewer_single_product": F.when(F.col(products) > 0, F.col(products) == 1),
        }
    ).drop(products)
    busiest_day = (
        known.where(F.col(DAY).isNotNull())
        .groupBy("reviewer_id", DAY)
        .agg(F.count(F.lit(1)).alias(_col("day_reviews")))
        .groupBy("reviewer_id")
        .agg(F.max(_col("day_reviews")).alias("sig_reviewer_max_per_day"))
    )
    return reviewers, busiest_day


def _product_inflation_table(keys: DataFrame, cfg: FraudConfig) -> DataFrame:
    """Per product: distinct known reviewers with at least one inflated review on it (4-5
    stars on a text that reads negative), ``_fr_inflating``."""
    rating = F.col(RATING)
    gap = R.rating_text_gap(rating, F.col(P_POSITIVE))
    return (
        keys.where(F.col("product_id").isNotNull() & F.col("reviewer_id").isNotNull())
        .where(R.is_inflated(rating, gap, cfg.disagreement_lo))
        .groupBy("product_id")
        .agg(F.countDistinct("reviewer_id").alias(_col("inflating")))
    )


def _product_days(keys: DataFrame, cfg: FraudConfig) -> DataFrame:
    """Per (product, day): reviews and the sum and count of valid ratings that day and
    in the centred ``burst_window_days`` window around it."""
    rating = F.col(RATING)
    days = (
        keys.where(F.col("product_id").isNotNull() & F.col(DAY).isNotNull())
        .groupBy("product_id", DAY)
        .agg(
            F.count(F.lit(1)).alias("sig_product_day_reviews"),
            F.sum(rating).alias(_col("day_rating_sum")),
            F.count(rating).alias(_col("day_rated")),
        )
        .withColumn(_col("day_number"), _day_number(F.col(DAY)))
    )
    half = cfg.burst_window_days // 2
    window = Window.partitionBy("product_id").orderBy(_col("day_number")).rangeBetween(-half, half)
    return days.withColumns(
        {
            "sig_product_window_reviews": F.sum("sig_product_day_reviews").over(window),
            _col("window_rating_sum"): F.sum(_col("day_rating_sum")).over(window),
            _col("window_rated"): F.sum(_col("day_rated")).over(window),
        }
    )


def _product_history(days: DataFrame, cfg: FraudConfig) -> DataFrame:
    """Per product: its usual reviews per active day, the reviews expected in a burst
    window, and the sum and count of all its valid ratings."""
    history = days.groupBy("product_id").agg(
        F.median("sig_product_day_reviews").alias(_col("median_daily")),
        F.count(F.lit(1)).alias(_col("active_days")),
        F.sum("sig_product_day_reviews").alias(_col("total")),
        (F.max(_col("day_number")) - F.min(_col("day_number")) + 1).alias(_col("span_days")),
        F.sum(_col("day_rating_sum")).alias(_col("rating_sum")),
        F.sum(_col("day_rated")).alias(_col("rated")),
    )
    # the median daily count (at least 1), or 1 with fewer than burst_min_history_days active days
    expected = F.when(
        F.col(_col("active_days")) >= cfg.burst_min_history_days,
        F.greatest(F.col(_col("median_daily")).cast("double"), F.lit(1.0)),
    ).otherwise(F.lit(1.0))
    # the average daily rate over the span (at least burst_min_span_days) times the window
    rate = F.col(_col("total")) / F.greatest(F.col(_col("span_days")), F.lit(cfg.burst_min_span_days))
    return history.select(
        "product_id",
        expected.alias("sig_product_expected_daily"),
        F.greatest(F.lit(1.0), rate * cfg.burst_window_days).alias(_col("window_expected")),
        _col("rating_sum"),
        _col("rated"),
    )


def _product_burst_table(keys: DataFrame, cfg: FraudConfig) -> DataFrame:
    """Per (product, day): reviews that day and in the centred ``burst_window_days``
    window, the product's usual daily count, the burst z-score (the larger of the day's
    and the window's Poisson-style (count - expected) / sqrt(expected)) and the window's
    rating shift against the product's other days."""
    days = _product_days(keys, cfg)
    days = days.join(_product_history(days, cfg), on="product_id", how="inner")
    expected_daily, window_expected = F.col("sig_product_expected_daily"), F.col(_col("window_expected"))
    z_day = (F.col("sig_product_day_reviews") - expected_daily) / F.sqrt(expected_daily)
    z_window = (F.col("sig_product_window_reviews") - window_expected) / F.sqrt(window_expected)
    window_sum, window_rated = F.col(_col("window_rating_sum")), F.col(_col("window_rated"))
    other_rated = F.col(_col("rated")) - window_rated
    other = F.when(other_rated > 0, (F.col(_col("rating_sum")) - window_sum) / other_rated)
    shift = F.when((window_rated > 0) & (other_rated > 0), window_sum / window_rated - other)
    return days.select(
        "product_id",
        DAY,
        "sig_product_day_reviews",
        "sig_product_window_reviews",
        "sig_product_expected_daily",
        F.greatest(z_day, z_window).alias("sig_product_burst_z"),
        shift.alias("sig_product_window_rating_shift"),
        other.alias("sig_product_other_days_rating"),
    )


# --------------------------------------------------------------------------- duplicates


def _shingled(nodes: DataFrame, cfg: FraudConfig) -> DataFrame:
    """Per node: its set of character shingles (``shingle_chars_cjk`` long for texts that
    are mostly ideographs, else ``shingle_chars``), materialised (read three times)."""
    size = F.when(R.mostly_han(F.col(NORM)), F.lit(cfg.shingle_chars_cjk)).otherwise(F.lit(cfg.shingle_chars))
    shingled = nodes.withColumn(_col("size"), size).withColumn(_col("shingles"), R.shingles(NORM, _col("size")))
    return shingled.select(NODE, _col("shingles")).localCheckpoint()


def _band_keys(shingled: DataFrame, cfg: FraudConfig) -> DataFrame:
    """Per (node, LSH band): a hash of the band's ``minhash_rows`` MinHash values, kept
    only for buckets of 2 to ``max_bucket_size`` nodes (larger ones are skipped, with a
    warning)."""
    tf = HashingTF(inputCol=_col("shingles"), outputCol=_col("vec"), numFeatures=cfg.hash_features, binary=True)
    vectors = tf.transform(shingled)
    lsh = MinHashLSH(
        inputCol=_col("vec"), outputCol=_col("hashes"), numHashTables=cfg.minhash_tables, seed=cfg.minhash_seed
    ).fit(vectors)
    hashed = lsh.transform(vectors).select(NODE, F.posexplode(_col("hashes")).alias("pos", "h"))
    hashed = hashed.select(
        NODE,
        F.floor(F.col("pos") / cfg.minhash_rows).alias("band"),
        F.struct(F.col("pos"), vector_to_array(F.col("h"))[0].alias("v")).alias("pv"),
    )
    keys = (
        hashed.groupBy(NODE, "band")
        .agg(F.xxhash64(F.array_sort(F.collect_list("pv"))).alias("key"))
        .localCheckpoint()  # read by the bucket sizes, the oversized count and the pair join
    )
    sizes = keys.groupBy("band", "key").agg(F.count(F.lit(1)).alias("bucket"))
    oversized = sizes.where(F.col("bucket") > cfg.max_bucket_size).count()
    if oversized:
        log.warning("near-duplicates: skipped %d LSH buckets larger than %d texts", oversized, cfg.max_bucket_size)
    return keys.join(sizes.where((F.col("bucket") >= 2) & (F.col("bucket") <= cfg.max_bucket_size)), ["band", "key"])


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
    shingled = _shingled(nodes, cfg)
    keys = _band_keys(shingled, cfg)
    left, right = keys.alias("a"), keys.alias("b")
    candidates = (
        left.join(right, (F.col("a.band") == F.col("b.band")) & (F.col("a.key") == F.col("b.key")))
        .where(F.col(f"a.{NODE}") < F.col(f"b.{NODE}"))
        .select(F.col(f"a.{NODE}").alias("a"), F.col(f"b.{NODE}").alias("b"))
        .distinct()
    )
    shingles_a = shingled.select(F.col(NODE).alias("a"), F.col(_col("shingles")).alias("sa"))
    shingles_b = shingled.select(F.col(NODE).alias("b"), F.col(_col("shingles")).alias("sb"))
    jaccard = F.size(F.array_intersect("sa", "sb")) / F.size(F.array_union("sa", "sb"))
    edges = candidates.join(shingles_a, "a").join(shingles_b, "b").where(jaccard >= cfg.jaccard_threshold)
    return edges.select("a", "b").localCheckpoint()


def _components(edges: DataFrame, cfg: FraudConfig) -> DataFrame:
    """Connected components of an undirected edge list by min-label propagation:
    every node repeatedly takes the smallest label among itself and its neighbours.
    Stops when no label changes or after ``cfg.max_component_iterations`` rounds (then
    a long chain may stay split; a warning says so). Returns ``(_fr_node, _fr_comp)``
    for nodes that have at least one edge."""
    both_ways = edges.select(F.col("a").alias("src"), F.col("b").alias("dst")).unionByName(
        edges.select(F.col("b").alias("src"), F.col("a").alias("dst"))
    )
    labels = both_ways.groupBy("src").agg(F.least(F.first("src"), F.min("dst")).alias("label"))
    labels = labels.select(F.col("src").alias("node"), "label").localCheckpoint()
    for round_number in range(1, cfg.max_component_iterations + 1):
        # column names are disjoint across the joined sides: no self-join ambiguity
        neighbours = (
            both_ways.join(labels, F.col("dst") == F.col("node"))
            .groupBy("src")
            .agg(F.min("label").alias("neighbour_min"))
        )
        step = (
            labels.join(neighbours, F.col("node") == F.col("src"), "left")
            .select(
                "node",
                F.least(F.col("label"), F.coalesce(F.col("neighbour_min"), F.col("label"))).alias("label"),
                F.col("label").alias("old"),
            )
            .localCheckpoint()
        )
        changed = step.where(F.col("label") < F.col("old")).count()
        labels = step.select("node", "label")
        log.debug("duplicate components: round %d, %d labels changed", round_number, changed)
        if changed == 0:
            break
    else:
        log.warning(
            "duplicate components: not converged after %d rounds; some clusters may be split",
            cfg.max_component_iterations,
        )
    return labels.select(F.col("node").alias(NODE), F.col("label").alias(COMP))


def _with_component(rows: DataFrame, components: DataFrame | None) -> DataFrame:
    """Component id of each row: its near-duplicate component, else its own text hash."""
    if components is None:
        return rows.withColumn(COMP, F.col(NODE))
    return rows.join(components, on=NODE, how="left").withColumn(COMP, F.coalesce(F.col(COMP), F.col(NODE)))


def _duplicate_tables(
    reviews: DataFrame, keys: DataFrame, cfg: FraudConfig
) -> tuple[DataFrame | None, DataFrame, DataFrame, DataFrame]:
    """(node -> component for texts with a near-duplicate, or None without MinHash;
    per component: size, distinct reviewers, distinct products; per component and
    product: reviews of the cluster on that product; per component, product and day:
    those within the centred ``burst_window_days`` window). A cluster is exact
    normalised-text duplicates plus MinHash near-duplicate pairs, closed transitively.
    Size counts reviews; reviewers/products count distinct known ids (null when none)."""
    components = None
    if cfg.minhash_bands > 0:
        nodes = reviews.where(F.col(NODE).isNotNull()).select(NODE, NORM).dropDuplicates([NODE])
        components = _components(_near_duplicate_edges(nodes, cfg), cfg)
    rows = _with_component(keys.where(F.col(NODE).isNotNull()), components)
    per_product = (
        rows.where(F.col("product_id").isNotNull())
        .groupBy(COMP, "product_id")
        .agg(F.count(F.lit(1)).alias("sig_dup_product_copies"))
    )
    half = cfg.burst_window_days // 2
    per_day = (
        rows.where(F.col("product_id").isNotNull() & F.col(DAY).isNotNull())
        .groupBy(COMP, "product_id", DAY)
        .agg(F.count(F.lit(1)).alias(_col("copies")))
        .withColumn(_col("day_number"), _day_number(F.col(DAY)))
    )
    window = Window.partitionBy(COMP, "product_id").orderBy(_col("day_number")).rangeBetween(-half, half)
    per_window = per_day.select(
        COMP, "product_id", DAY, F.sum(_col("copies")).over(window).alias("sig_dup_product_window_copies")
    )
    cluster_stats = rows.groupBy(COMP).agg(
        F.count(F.lit(1)).alias("sig_dup_cluster_size"),
        F.countDistinct("reviewer_id").alias(_col("cluster_reviewers")),
        F.countDistinct("product_id").alias(_col("cluster_products")),
    )
    clusters = cluster_stats.select(
        COMP,
        "sig_dup_cluster_size",
        R.nonzero(F.col(_col("cluster_reviewers"))).alias("sig_dup_cluster_reviewers"),
        R.nonzero(F.col(_col("cluster_products"))).alias("sig_dup_cluster_products"),
    )
    return components, clusters, per_product, per_window


# --------------------------------------------------------------------------- supervised score


def _label_counts(frame: DataFrame, label: str, cfg: FraudConfig) -> tuple[int, int]:
    """(genuine, fraud) labelled rows; a DataError for labels other than 0/1 or too few of a class."""
    counts = {
        row[0]: row[1]
        for row in frame.where(F.col(label).isNotNull()).groupBy(F.col(_col("y"))).count().collect()  # <= 3 rows
    }
    bad = {value: n for value, n in counts.items() if value not in (0.0, 1.0)}
    if bad:
        raise DataError(f"fraud label column {label!r} must hold 0/1 (or true/false); found values {bad}")
    genuine, fraud = counts.get(0.0, 0), counts.get(1.0, 0)
    if min(genuine, fraud) < cfg.supervised_min_per_class:
        raise DataError(
            f"fraud label column {label!r} has {fraud} fraud and {genuine} genuine labelled rows; "
            f"supervised scoring needs at least {cfg.supervised_min_per_class} of each"
        )
    return genuine, fraud


def _with_supervised_score(scored: DataFrame, cfg: FraudConfig) -> DataFrame:
    """Logistic regression (Spark ML) of the label on the risks (missing risk -> 0) plus
    two availability indicators; fitted on rows whose label is not null, applied to all."""
    label = cfg.label_column
    assert label is not None  # FraudConfig enforces it when supervised
    if label not in scored.columns:
        raise SchemaError(
            f"fraud.label_column {label!r} is not a column of the reviews; they have {sorted(scored.columns)}"
        )
    features = [_col(f"x_{name}") for name in R.RISKS] + [_col("x_has_reviewer"), _col("x_has_time")]
    frame = scored.withColumns(
        {
            **{_col(f"x_{name}"): F.coalesce(F.col(R.risk_column(name)), F.lit(0.0)) for name in R.RISKS},
            _col("x_has_reviewer"): F.col("reviewer_id").isNotNull().cast("double"),
            _col("x_has_time"): F.col(DAY).isNotNull().cast("double"),
            _col("y"): F.col(label).cast("double"),
        }
    )
    genuine, fraud = _label_counts(frame, label, cfg)
    assembled = VectorAssembler(inputCols=features, outputCol=_col("features")).transform(frame)
    # materialise the training rows once: the optimiser runs one Spark job per iteration,
    # and each would otherwise re-evaluate every join above
    train = assembled.where(F.col(_col("y")).isNotNull()).select(_col("features"), _col("y")).localCheckpoint()
    regression = LogisticRegression(
        featuresCol=_col("features"),
        labelCol=_col("y"),
        probabilityCol=_col("prob"),
        rawPredictionCol=_col("raw"),
        predictionCol=_col("pred"),
        regParam=cfg.supervised_reg,
        elasticNetParam=0.0,
        maxIter=100,
    )
    model = regression.fit(train)
    log.info(
        "supervised fraud score: %d fraud / %d genuine labels; coefficients %s, intercept %.3f",
        fraud,
        genuine,
        dict(zip(features, (round(v, 3) for v in model.coefficients.toArray()))),
        model.intercept,
    )
    return model.transform(assembled).withColumns(
        {
            "fraud_score_rules": F.col("fraud_score"),
            "fraud_score": vector_to_array(F.col(_col("prob")))[1],
        }
    )


# --------------------------------------------------------------------------- public API


def _checked_input(df: DataFrame) -> DataFrame:
    """The input without fraud columns of an earlier run; a SchemaError for missing
    columns or columns with the reserved prefix."""
    _require(df, REQUIRED_COLUMNS, "fraud input")
    stale = [name for name in df.columns if name in SIGNAL_COLUMNS or name in OUTPUT_COLUMNS]
    if stale:
        log.info("replacing existing fraud columns %s", stale)
        df = df.drop(*stale)
    clash = [name for name in df.columns if name.startswith(PREFIX)]
    if clash:
        raise SchemaError(f"fraud input has columns {clash} with the reserved prefix {PREFIX!r}")
    return df


def with_fraud_signals(df: DataFrame, cfg: FraudConfig | None = None) -> DataFrame:
    """Add ``sig_*`` signal columns, ``fraud_score``, ``fraud_reasons`` and
    ``fraud_reason_codes`` (plus ``fraud_score_rules`` when supervised) to scored
    reviews. Returns exactly one row per input row, input columns first.

    Runs a few small Spark jobs itself (duplicate clustering rounds; label counts
    and the model fit when supervised); the returned DataFrame is otherwise lazy.
    Output columns the input already has (a rerun) are replaced.
    """
    cfg = cfg or FraudConfig()
    df = _checked_input(df)
    input_columns = list(df.columns)
    reviews = _prepare(df, cfg)
    keys = _key_frame(reviews)
    product_ratings, own_ratings = _consensus_tables(keys)
    reviewers, busiest_day = _reviewer_tables(keys, product_ratings, own_ratings, cfg)
    product_days = _product_burst_table(keys, cfg)
    inflating = _product_inflation_table(keys, cfg)
    components, clusters, product_copies, window_copies = _duplicate_tables(reviews, keys, cfg)
    out = _join_consensus(reviews, product_ratings, own_ratings)
    out = out.join(reviewers, on="reviewer_id", how="left").join(busiest_day, on="reviewer_id", how="left")
    out = out.join(product_days, on=["product_id", DAY], how="left")
    out = out.join(inflating, on="product_id", how="left").withColumn(
        "sig_product_inflating_reviewers",
        F.when(F.col("product_id").isNotNull(), F.coalesce(F.col(_col("inflating")), F.lit(0))),
    )
    out = _with_component(out, components).join(clusters, on=COMP, how="left")
    out = out.join(product_copies, on=[COMP, "product_id"], how="left")
    out = out.join(window_copies, on=[COMP, "product_id", DAY], how="left")
    out = R.with_rules_score(out, cfg)
    extra = ["fraud_score", "fraud_reasons", "fraud_reason_codes"]
    if cfg.supervised:
        out = _with_supervised_score(out, cfg)
        extra.append("fraud_score_rules")
    return out.select(*input_columns, *SIGNAL_COLUMNS, *extra)


# --------------------------------------------------------------------------- aggregates


def _top_codes(df: DataFrame, key: str, top_k: int) -> DataFrame:
    """Per key: the ``top_k`` most frequent reason codes as 'code (n)', most frequent first."""
    counts = (
        df.select(key, F.explode("fraud_reason_codes").alias("code"))
        .groupBy(key, "code")
        .agg(F.count(F.lit(1)).alias("n"))
    )
    ranked = counts.groupBy(key).agg(
        F.sort_array(F.collect_list(F.struct((-F.col("n")).alias("neg"), "code"))).alias("ranked")
    )
    return ranked.select(
        key,
        F.transform(
            F.slice("ranked", 1, top_k),
            lambda item: F.concat(item["code"], F.lit(" ("), (-item["neg"]).cast("string"), F.lit(")")),
        ).alias("top_reasons"),
    )


#: Optional input column: where a review comes from; the aggregates list its distinct values.
SOURCE = "source"


def _sources(df: DataFrame) -> Column:
    """Aggregate: the sorted distinct non-null ``source`` values of the group; an empty
    array when the input has no ``source`` column (the output schema stays the same)."""
    if SOURCE not in df.columns:
        return F.array().cast("array<string>").alias("sources")
    return F.array_sort(F.collect_set(F.col(SOURCE).cast("string"))).alias("sources")


def _risk_aggregate(df: DataFrame, key: str, threshold: float, top_k: int, extra: list[Column]) -> DataFrame:
    _require(df, [key, "product_id", "reviewer_id", "rating", "fraud_score", "fraud_reason_codes"], "fraud scores")
    known = df.where(F.col(key).isNotNull())
    flagged = F.col("fraud_score") >= threshold
    aggregated = known.groupBy(key).agg(
        F.count(F.lit(1)).alias("reviews"),
        F.avg("fraud_score").alias("mean_fraud_score"),
        F.max("fraud_score").alias("max_fraud_score"),
        F.sum(flagged.cast("long")).alias("reviews_flagged"),
        F.avg(flagged.cast("double")).alias("share_flagged"),
        *extra,
        _sources(known),
    )
    out = aggregated.join(_top_codes(known, key, top_k), on=key, how="left")
    out = out.withColumn("top_reasons", F.coalesce(F.col("top_reasons"), F.array().cast("array<string>")))
    return out.select(*[c for c in out.columns if c != "sources"], "sources")


def reviewer_risk(df_with_fraud: DataFrame, threshold: float = FraudConfig.flag_threshold, top_k: int = 3) -> DataFrame:
    """One row per known reviewer_id: reviews, mean/max fraud_score, reviews and share
    at or above ``threshold`` (flagged), the reviewer signals, the ``top_k`` most
    frequent reason codes as 'code (n)', and ``sources``: the sorted distinct non-null
    values of the input's ``source`` column (empty without one). Rows without
    reviewer_id are left out."""
    rating = F.col("rating").cast("double")
    extra = [
        F.countDistinct("product_id").alias("products"),
        F.avg(F.when(rating.between(1, 5), rating)).alias("mean_rating"),
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
    its burst z-score, the ``top_k`` most frequent reason codes, and ``sources`` (as in
    :func:`reviewer_risk`)."""
    rating = F.col("rating").cast("double")
    valid = F.when(rating.between(1, 5), rating)
    extra = [
        F.countDistinct("reviewer_id").alias("reviewers"),
        F.avg(valid).alias("mean_rating"),
        F.avg(F.when(F.col("fraud_score") < threshold, valid)).alias("mean_rating_unflagged"),
        F.max("sig_product_day_reviews").alias("max_day_reviews"),
        F.max("sig_product_burst_z").alias("max_burst_z"),
    ]
    return _risk_aggregate(df_with_fraud, "product_id", threshold, top_k, extra)
