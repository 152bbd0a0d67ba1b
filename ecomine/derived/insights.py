"""Insight tables for people downstream: per product, per category level, per reviewer.

Spark transforms only: every function returns a DataFrame and writes nothing (the
nightly job MERGEs the results through :mod:`ecomine.io.delta_io`). Column meanings and
null semantics are documented in ``docs/tables.md``; the short version:

* The population is the rows of ``review_scores`` (scored reviews). Rejected reviews
  have no predictions and are not counted. ``reviewer_id`` and ``created_at`` come
  from ``reviews`` (left join on review_id), ``fraud_score`` from ``review_fraud``
  (left join), catalog fields from ``catalog`` (left join on product_id).
* Stated ratings are the parsed ``review_scores.rating`` (int 1-5); anything else is
  treated as null. NaN probabilities are treated as null.
* Every mean ignores nulls and is null when the group has no non-null value.
* Fraud: a review is *flagged* when ``fraud_score >= flag_threshold`` (the project's
  one flagged threshold, ``fraud.flag_threshold``). The
  ``fraud_adjusted_rating`` is the mean stated rating over the reviews that are not
  flagged (a review without a fraud score counts as not flagged). Without a fraud
  table every fraud column is null.
* Trends compare a window with the whole history: ``trend_<d>d_p_positive`` = mean
  ``p_positive`` of the reviews created in ``(now - d days, now]`` minus the group's
  mean over all its reviews (dated or not). Null when no review of the group falls in
  the window (so always null for data without ``created_at``).

Per-task columns are discovered from the task list (``model.tasks`` of the config or the
model manifest's ``tasks``) and from the score columns (``<task>_label``, ``<task>_prob``,
``<task>_expected``, ``<task>_value``), never hard-coded.

Settings come in typed: ``settings`` is the config's ``insights`` section and
``flag_threshold`` is ``fraud.flag_threshold``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from ecomine.config import InsightsConfig, TaskSpec
from ecomine.errors import SchemaError

__all__ = [
    "KEYS",
    "STAMP_COLUMNS",
    "TaskOutputs",
    "category_insights",
    "category_paths",
    "insight_tables",
    "product_insights",
    "review_facts",
    "reviewer_profiles",
    "safe_name",
    "task_outputs",
]

#: MERGE keys of each insight table.
KEYS: dict[str, tuple[str, ...]] = {
    "product_insights": ("product_id",),
    "category_insights": ("level", "category"),
    "reviewer_profiles": ("reviewer_id",),
}
#: Stamp columns: written on insert/update, excluded from the MERGE change comparison.
STAMP_COLUMNS: tuple[str, ...] = ("insights_run_id", "computed_at")

_OUTPUT_SUFFIXES = ("label", "prob", "expected", "value")
_TASK_COLUMN = re.compile(r"^([a-z][a-z0-9_]*?)_(label|prob|expected|value)$")
_INTERNAL = "_ins_"  # prefix of internal columns


# --------------------------------------------------------------------------- task discovery


@dataclass(frozen=True)
class TaskOutputs:
    """The score columns one task has in a frame (None where absent)."""

    name: str
    kind: str | None = None
    classes: tuple[str, ...] = ()
    label: str | None = None
    prob: str | None = None
    expected: str | None = None
    value: str | None = None


def _task_dict(task: TaskSpec) -> dict[str, Any]:
    if isinstance(task, Mapping):
        return {"name": task["name"], "kind": task.get("kind"), "classes": tuple(task.get("classes") or ())}
    return {"name": task.name, "kind": task.kind, "classes": tuple(task.classes)}


def task_outputs(columns: Sequence[str], tasks: Iterable[TaskSpec] | None = None) -> list[TaskOutputs]:
    """Tasks and their output columns present in ``columns``.

    ``tasks`` (manifest task dicts or ``TaskConfig`` objects) give names, kinds and class
    lists; tasks of the list with no output column in ``columns`` are dropped. Without
    ``tasks``, tasks are discovered from column names ``<task>_(label|prob|expected|value)``
    (then class lists are unknown and no label shares can be computed)."""
    cols = set(columns)
    if tasks is not None:
        specs = [_task_dict(t) for t in tasks]
    else:
        names: list[str] = []
        for column in columns:
            match = _TASK_COLUMN.match(column)
            if match and match.group(1) not in names:
                names.append(match.group(1))
        specs = [{"name": name, "kind": None, "classes": ()} for name in names]
    out = []
    for spec in specs:
        found = {
            suffix: (f"{spec['name']}_{suffix}" if f"{spec['name']}_{suffix}" in cols else None)
            for suffix in _OUTPUT_SUFFIXES
        }
        if any(found.values()):
            out.append(TaskOutputs(name=spec["name"], kind=spec["kind"], classes=spec["classes"], **found))
    return out


def safe_name(text: str) -> str:
    """A class name as a column-name fragment: lower case, runs of other characters -> '_'."""
    s = re.sub(r"[^a-z0-9]+", "_", str(text).lower()).strip("_")
    return s or "x"


# --------------------------------------------------------------------------- per-review facts


def _num(column: Column) -> Column:
    """A double column with NaN turned into null (avg over a NaN would be NaN)."""
    as_double = column.cast("double")
    return F.when(~F.isnan(as_double), as_double)


def _require(df: DataFrame, cols: Sequence[str], what: str) -> None:
    missing = sorted(set(cols) - set(df.columns))
    if missing:
        raise SchemaError(f"{what} lacks columns {missing}; it has {sorted(df.columns)}")


def _score_columns(scores: DataFrame, outputs: Sequence[TaskOutputs]) -> list[Column]:
    """The columns review_facts keeps of review_scores (internal names for the shared ones)."""

    def stamped(name: str) -> Column:
        return F.col(name) if name in scores.columns else F.lit(None).cast("string")

    rating = F.col("rating").cast("double")
    cols: list[Column] = [
        F.col("review_id"),
        F.col("product_id").cast("string").alias("product_id"),
        F.when(rating.isin(1.0, 2.0, 3.0, 4.0, 5.0), rating).alias(f"{_INTERNAL}rating"),
        _num(F.col("p_positive")).alias(f"{_INTERNAL}p"),
        stamped("product_name").alias(f"{_INTERNAL}sname"),
        stamped("product_category").alias(f"{_INTERNAL}scat"),
    ]
    for task in outputs:
        if task.label:
            cols.append(F.col(task.label).cast("string").alias(task.label))
        for column in (task.prob, task.expected, task.value):
            if column:
                cols.append(_num(F.col(column)).alias(column))
    return cols


def _with_reviewer_and_date(facts: DataFrame, reviews: DataFrame | None) -> DataFrame:
    """Adds ``reviewer_id`` and ``_ins_created`` from one row per review_id of ``reviews``."""
    if reviews is None:
        return facts.withColumns(
            {"reviewer_id": F.lit(None).cast("string"), f"{_INTERNAL}created": F.lit(None).cast("timestamp")}
        )
    _require(reviews, ["review_id", "reviewer_id", "created_at"], "reviews")
    per_review = (
        reviews.where(F.col("review_id").isNotNull())
        .groupBy(F.col("review_id").cast("string").alias("review_id"))
        .agg(
            F.min(F.col("reviewer_id").cast("string")).alias("reviewer_id"),
            F.min(F.col("created_at").cast("timestamp")).alias(f"{_INTERNAL}created"),
        )
    )
    return facts.join(per_review, on="review_id", how="left")


def _with_fraud_score(facts: DataFrame, fraud: DataFrame | None) -> DataFrame:
    """Adds ``_ins_fraud``: the highest fraud_score of the review in ``fraud``."""
    if fraud is None:
        return facts.withColumn(f"{_INTERNAL}fraud", F.lit(None).cast("double"))
    _require(fraud, ["review_id", "fraud_score"], "review_fraud")
    per_review = (
        fraud.where(F.col("review_id").isNotNull())
        .groupBy("review_id")
        .agg(F.max(_num(F.col("fraud_score"))).alias(f"{_INTERNAL}fraud"))
    )
    return facts.join(per_review, on="review_id", how="left")


def review_facts(
    scores: DataFrame,
    reviews: DataFrame | None,
    fraud: DataFrame | None,
    outputs: Sequence[TaskOutputs],
) -> DataFrame:
    """One row per scored review: key columns, valid stated rating, p_positive, task
    outputs, reviewer_id / created_at (from ``reviews``), fraud_score (from ``fraud``).

    ``reviews`` and ``fraud`` are reduced to one row per review_id first (reviews: the
    smallest reviewer_id and created_at; fraud: the highest fraud_score), so a duplicate
    there cannot multiply a review."""
    _require(scores, ["review_id", "product_id", "rating", "p_positive"], "review_scores")
    facts = scores.where(F.col("review_id").isNotNull()).select(*_score_columns(scores, outputs))
    return _with_fraud_score(_with_reviewer_and_date(facts, reviews), fraud)


# --------------------------------------------------------------------------- aggregates


def _share(cond: Column, among: Column) -> Column:
    """Share of rows where ``cond`` among rows where ``among`` is not null; null if none."""
    n = F.count(among)
    return F.when(n > 0, F.sum(F.when(among.isNotNull(), cond.cast("double"))) / n)


def _fraud_aggs(flag_threshold: float, has_fraud: bool) -> list[Column]:
    """Fraud columns; all typed nulls when there is no fraud table."""
    fraud_score = F.col(f"{_INTERNAL}fraud")
    flagged = fraud_score >= F.lit(flag_threshold)
    null_double, null_long = F.lit(None).cast("double"), F.lit(None).cast("long")
    return [
        (F.count(fraud_score) if has_fraud else null_long).alias("n_fraud_scored"),
        (F.count(F.when(flagged, F.lit(1))) if has_fraud else null_long).alias("n_flagged"),
        (_share(flagged, fraud_score) if has_fraud else null_double).alias("share_flagged"),
        (F.avg(fraud_score) if has_fraud else null_double).alias("mean_fraud_score"),
        (F.max(fraud_score) if has_fraud else null_double).alias("max_fraud_score"),
    ]


def _rating_aggs(flag_threshold: float, has_fraud: bool) -> list[Column]:
    rating, fraud_score = F.col(f"{_INTERNAL}rating"), F.col(f"{_INTERNAL}fraud")
    unflagged = F.coalesce(fraud_score, F.lit(0.0)) < F.lit(flag_threshold)
    return [
        F.count(F.lit(1)).alias("n_reviews"),
        F.count(rating).alias("n_rated"),
        F.avg(rating).alias("mean_rating"),
        F.avg(F.col(f"{_INTERNAL}p")).alias("mean_p_positive"),
        *_fraud_aggs(flag_threshold, has_fraud),
        (F.avg(F.when(unflagged, rating)) if has_fraud else F.lit(None).cast("double")).alias("fraud_adjusted_rating"),
    ]


def _task_aggs(outputs: Sequence[TaskOutputs]) -> list[Column]:
    aggs: list[Column] = []
    for task in outputs:
        for column in (task.prob, task.expected, task.value):
            if column:
                aggs.append(F.avg(F.col(column)).alias(f"mean_{column}"))
        if task.label:
            label = F.col(task.label)
            aggs.append(F.count(label).alias(f"n_{task.name}_labelled"))
            for cls in task.classes:
                aggs.append(_share(label == F.lit(cls), label).alias(f"share_{task.name}_{safe_name(cls)}"))
    return aggs


def _window_aggs(trend_windows_days: Sequence[int], now: datetime) -> list[Column]:
    created = F.col(f"{_INTERNAL}created")
    p_positive, rating = F.col(f"{_INTERNAL}p"), F.col(f"{_INTERNAL}rating")
    has_date = F.count(created) > 0
    aggs: list[Column] = [F.min(created).alias("first_review_at"), F.max(created).alias("last_review_at")]
    for days in trend_windows_days:
        start = F.lit(now - timedelta(days=int(days))).cast("timestamp")
        end = F.lit(now).cast("timestamp")
        inside = (created > start) & (created <= end)
        window_p = F.avg(F.when(inside, p_positive))
        window_rating = F.avg(F.when(inside, rating))
        aggs += [
            F.when(has_date, F.sum(inside.cast("long"))).alias(f"n_reviews_{days}d"),
            window_p.alias(f"mean_p_positive_{days}d"),
            (window_p - F.avg(p_positive)).alias(f"trend_{days}d_p_positive"),
            (window_rating - F.avg(rating)).alias(f"trend_{days}d_rating"),
        ]
    return aggs


def _stamps(df: DataFrame, insights_run_id: str | None, computed_at: datetime) -> DataFrame:
    return df.withColumns(
        {
            "insights_run_id": F.lit(insights_run_id).cast("string"),
            "computed_at": F.lit(computed_at).cast("timestamp"),
        }
    )


def _catalog_by_product(catalog: DataFrame) -> DataFrame:
    """One row per product_id (the greatest (name, category, brand, price) if a product
    appears twice, so the choice is deterministic)."""
    _require(catalog, ["product_id"], "catalog")

    def col(name: str, typ: str) -> Column:
        return (F.col(name) if name in catalog.columns else F.lit(None)).cast(typ).alias(name)

    pick = F.max(
        F.struct(col("name", "string"), col("category", "string"), col("brand", "string"), col("price", "double"))
    )
    return (
        catalog.where(F.col("product_id").isNotNull())
        .groupBy(F.col("product_id").cast("string").alias("product_id"))
        .agg(pick.alias(f"{_INTERNAL}cat"))
        .select(
            "product_id",
            *[F.col(f"{_INTERNAL}cat.{c}").alias(f"{_INTERNAL}c_{c}") for c in ("name", "category", "brand", "price")],
        )
    )


def _with_catalog(facts: DataFrame, catalog: DataFrame | None) -> DataFrame:
    """Adds ``_ins_c_name/_category/_brand/_price`` per review: the catalog's values,
    else (name, category) as stamped into review_scores at scoring time."""
    if catalog is not None:
        facts = facts.join(_catalog_by_product(catalog), on="product_id", how="left")
    else:
        facts = facts.withColumns(
            {
                f"{_INTERNAL}c_name": F.lit(None).cast("string"),
                f"{_INTERNAL}c_category": F.lit(None).cast("string"),
                f"{_INTERNAL}c_brand": F.lit(None).cast("string"),
                f"{_INTERNAL}c_price": F.lit(None).cast("double"),
            }
        )
    return facts.withColumns(
        {
            f"{_INTERNAL}c_name": F.coalesce(F.col(f"{_INTERNAL}c_name"), F.col(f"{_INTERNAL}sname")),
            f"{_INTERNAL}c_category": F.coalesce(F.col(f"{_INTERNAL}c_category"), F.col(f"{_INTERNAL}scat")),
        }
    )


def _prepare(
    scores: DataFrame,
    reviews: DataFrame | None,
    fraud: DataFrame | None,
    catalog: DataFrame | None,
    tasks: Iterable[TaskSpec] | None,
) -> tuple[DataFrame, list[TaskOutputs]]:
    outputs = task_outputs(scores.columns, tasks)
    facts = _with_catalog(review_facts(scores, reviews, fraud, outputs), catalog)
    return facts, outputs


# --------------------------------------------------------------------------- public transforms


def product_insights(
    scores: DataFrame,
    reviews: DataFrame | None,
    fraud: DataFrame | None,
    catalog: DataFrame | None,
    now: datetime,
    settings: InsightsConfig,
    *,
    flag_threshold: float,
    tasks: Iterable[TaskSpec] | None = None,
    insights_run_id: str | None = None,
    computed_at: datetime | None = None,
) -> DataFrame:
    """One row per product_id (reviews without product_id are left out).

    Columns: ``product_id``, ``product_name``, ``category``, ``brand``, ``price``
    (catalog; name/category fall back to the values stamped into review_scores), review
    counts, ``mean_rating``, ``mean_p_positive``, ``mean_<task>_prob`` /
    ``_expected`` / ``_value``, ``n_<task>_labelled`` and ``share_<task>_<class>`` per
    task, fraud columns (``n_fraud_scored``, ``n_flagged``, ``share_flagged``,
    ``mean_fraud_score``, ``max_fraud_score``, ``fraud_adjusted_rating``), dated-window
    columns per trend window (``settings.trend_windows_days``), and the stamps
    ``insights_run_id`` / ``computed_at`` (default ``now``). ``now`` should be
    timezone-aware (UTC). ``tasks`` name the task columns and their classes; without
    them tasks are discovered from the column names (no class shares then)."""
    facts, outputs = _prepare(scores, reviews, fraud, catalog, tasks)
    agg = (
        facts.where(F.col("product_id").isNotNull())
        .groupBy("product_id")
        .agg(
            F.max(f"{_INTERNAL}c_name").alias("product_name"),
            F.max(_normalized_path(F.col(f"{_INTERNAL}c_category"))).alias("category"),
            F.max(f"{_INTERNAL}c_brand").alias("brand"),
            F.max(f"{_INTERNAL}c_price").alias("price"),
            *_rating_aggs(flag_threshold, fraud is not None),
            *_task_aggs(outputs),
            *_window_aggs(settings.trend_windows_days, now),
        )
    )
    return _stamps(agg, insights_run_id, computed_at or now)


def _path_parts(category: Column) -> Column:
    """array<string>: the trimmed, non-empty segments of a "/"-separated path (null -> [])."""
    return F.filter(F.transform(F.split(F.coalesce(category, F.lit("")), "/"), lambda x: F.trim(x)), lambda x: x != "")


def _normalized_path(category: Column) -> Column:
    """ " Home / Kitchen//Mugs " -> "Home/Kitchen/Mugs"; null when no segment is left."""
    parts = _path_parts(category)
    return F.when(F.size(parts) > 0, F.array_join(parts, "/"))


def category_paths(category: Column, levels: int) -> Column:
    """array<struct<level int, category string>>: the path prefixes of a "/"-separated
    category up to ``levels`` deep ("A / B/C" -> (1, "A"), (2, "A/B"), (3, "A/B/C")).
    Segments are trimmed and empty segments dropped; a null or empty category gives []."""
    parts = _path_parts(category)
    items = [
        F.struct(
            F.lit(level).alias("level"),
            F.when(F.size(parts) >= level, F.array_join(F.slice(parts, 1, level), "/")).alias("category"),
        )
        for level in range(1, levels + 1)
    ]
    return F.filter(F.array(*items), lambda x: x["category"].isNotNull())


def category_insights(
    scores: DataFrame,
    reviews: DataFrame | None,
    fraud: DataFrame | None,
    catalog: DataFrame | None,
    now: datetime,
    settings: InsightsConfig,
    *,
    flag_threshold: float,
    tasks: Iterable[TaskSpec] | None = None,
    insights_run_id: str | None = None,
    computed_at: datetime | None = None,
) -> DataFrame:
    """One row per (level, category) for levels 1..``settings.category_levels``:
    ``category`` is the path prefix ("Women", "Women/Tops & Blouses", ...),
    ``category_name`` its last segment. Metrics are the product_insights metrics computed
    over all the reviews of the category's products (review-weighted, not a mean of
    product means), plus ``n_products`` (distinct products with at least one scored
    review). Reviews whose product has no category are left out; so are levels deeper
    than a product's path."""
    facts, outputs = _prepare(scores, reviews, fraud, catalog, tasks)
    paths = category_paths(F.col(f"{_INTERNAL}c_category"), settings.category_levels)
    exploded = facts.withColumn(f"{_INTERNAL}lv", F.explode(paths))
    exploded = exploded.withColumns(
        {"level": F.col(f"{_INTERNAL}lv.level"), "category": F.col(f"{_INTERNAL}lv.category")}
    )
    agg = exploded.groupBy("level", "category").agg(
        F.countDistinct("product_id").alias("n_products"),
        *_rating_aggs(flag_threshold, fraud is not None),
        *_task_aggs(outputs),
        *_window_aggs(settings.trend_windows_days, now),
    )
    agg = agg.withColumn("category_name", F.element_at(F.split(F.col("category"), "/"), -1))
    first = ["level", "category", "category_name"]
    agg = agg.select(*first, *[c for c in agg.columns if c not in first])
    return _stamps(agg, insights_run_id, computed_at or now)


def reviewer_profiles(
    scores: DataFrame,
    reviews: DataFrame | None,
    fraud: DataFrame | None,
    now: datetime,
    *,
    flag_threshold: float,
    insights_run_id: str | None = None,
    computed_at: datetime | None = None,
) -> DataFrame:
    """One row per known reviewer_id (reviews without one are left out; with no
    ``reviews`` table the result is empty): ``n_reviews``, ``n_products`` (distinct known
    product ids), ``n_rated``, ``mean_rating``, ``extreme_share`` (share of the rated
    reviews rated 1 or 5; null when none rated), ``mean_p_positive``, fraud columns as
    in product_insights (``n_fraud_scored``, ``n_flagged``, ``share_flagged``,
    ``mean_fraud_score``, ``max_fraud_score``), ``first_review_at``/``last_review_at``
    and the stamps. ``now`` is only the default of ``computed_at``."""
    facts = review_facts(scores, reviews, fraud, [])
    rating = F.col(f"{_INTERNAL}rating")
    agg = (
        facts.where(F.col("reviewer_id").isNotNull())
        .groupBy("reviewer_id")
        .agg(
            F.count(F.lit(1)).alias("n_reviews"),
            F.countDistinct("product_id").alias("n_products"),
            F.count(rating).alias("n_rated"),
            F.avg(rating).alias("mean_rating"),
            _share(rating.isin(1.0, 5.0), rating).alias("extreme_share"),
            F.avg(F.col(f"{_INTERNAL}p")).alias("mean_p_positive"),
            *_fraud_aggs(flag_threshold, fraud is not None),
            F.min(f"{_INTERNAL}created").alias("first_review_at"),
            F.max(f"{_INTERNAL}created").alias("last_review_at"),
        )
    )
    return _stamps(agg, insights_run_id, computed_at or now)


def insight_tables(
    scores: DataFrame,
    reviews: DataFrame | None,
    fraud: DataFrame | None,
    catalog: DataFrame | None,
    now: datetime,
    settings: InsightsConfig,
    *,
    flag_threshold: float,
    tasks: Iterable[TaskSpec] | None = None,
    run_id: str | None = None,
) -> dict[str, DataFrame]:
    """The three insight tables by name (the keys of :data:`KEYS`), stamped with ``run_id``
    as ``insights_run_id`` and ``now`` as ``computed_at``: what the nightly job MERGEs."""
    return {
        "product_insights": product_insights(
            scores,
            reviews,
            fraud,
            catalog,
            now,
            settings,
            flag_threshold=flag_threshold,
            tasks=tasks,
            insights_run_id=run_id,
        ),
        "category_insights": category_insights(
            scores,
            reviews,
            fraud,
            catalog,
            now,
            settings,
            flag_threshold=flag_threshold,
            tasks=tasks,
            insights_run_id=run_id,
        ),
        "reviewer_profiles": reviewer_profiles(
            scores, reviews, fraud, now, flag_threshold=flag_threshold, insights_run_id=run_id
        ),
    }
