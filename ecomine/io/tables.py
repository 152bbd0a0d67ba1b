"""Reading source tables: map a team's physical columns to ecomine's logical names and
check types before anything is written. Errors name the table, the column, the expected
and the found type."""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ecomine.config import CatalogColumns, Config, InteractionColumns, ReviewColumns
from ecomine.errors import SchemaError
from ecomine.io import delta_io

__all__ = [
    "CATALOG_SCHEMA",
    "INTERACTION_SCHEMA",
    "REVIEW_SCHEMA",
    "conform",
    "read_interactions",
    "read_catalog",
    "read_changes",
    "read_reviews",
    "read_source",
]

_STRINGISH = (T.StringType, T.IntegerType, T.LongType)

# logical column -> (required, allowed Spark types, cast to)
REVIEW_SCHEMA: dict[str, tuple[bool, tuple[type, ...], str]] = {
    "review_id": (True, _STRINGISH, "string"),
    "text": (True, (T.StringType,), "string"),
    "product_id": (False, _STRINGISH, "string"),
    "reviewer_id": (False, _STRINGISH, "string"),
    "rating": (
        False,
        (T.IntegerType, T.LongType, T.ShortType, T.ByteType, T.DoubleType, T.FloatType, T.DecimalType, T.StringType),
        "string",
    ),
    "label": (False, (T.StringType, T.IntegerType, T.LongType, T.BooleanType), "string"),
    "language": (False, (T.StringType,), "string"),
    "created_at": (False, (T.TimestampType, T.TimestampNTZType, T.DateType), "timestamp"),
    "source": (False, (T.StringType,), "string"),
}
CATALOG_SCHEMA: dict[str, tuple[bool, tuple[type, ...], str]] = {
    "product_id": (True, _STRINGISH, "string"),
    "name": (False, (T.StringType,), "string"),
    "category": (False, (T.StringType,), "string"),
    "brand": (False, (T.StringType,), "string"),
    "price": (False, (T.DoubleType, T.FloatType, T.DecimalType, T.IntegerType, T.LongType), "double"),
    "description": (False, (T.StringType,), "string"),
    "condition": (False, (T.StringType, T.IntegerType, T.LongType, T.ShortType, T.ByteType), "string"),
    "rating": (False, (T.DoubleType, T.FloatType, T.DecimalType, T.IntegerType, T.LongType), "double"),
    "review_count": (False, (T.DoubleType, T.FloatType, T.DecimalType, T.IntegerType, T.LongType), "double"),
    "source": (False, (T.StringType,), "string"),
}


INTERACTION_SCHEMA: dict[str, tuple[bool, tuple[type, ...], str]] = {
    "user_id": (True, _STRINGISH, "string"),
    "product_id": (True, _STRINGISH, "string"),
    "rating": (
        False,
        (T.DoubleType, T.FloatType, T.DecimalType, T.IntegerType, T.LongType, T.ShortType, T.ByteType),
        "double",
    ),
    "created_at": (False, (T.TimestampType, T.TimestampNTZType, T.DateType), "timestamp"),
    "source": (False, (T.StringType,), "string"),
}


def conform(
    df: DataFrame, table: str, mapping: ReviewColumns | CatalogColumns | InteractionColumns, schema: dict
) -> DataFrame:
    """Select the mapped physical columns under logical names with canonical types.

    Missing optional columns become typed nulls; a missing required column or a column
    of the wrong type raises ``SchemaError`` naming table, column, expected and found."""
    fields = {f.name: f.dataType for f in df.schema.fields}
    cols = []
    for logical, (required, allowed, cast) in schema.items():
        physical = getattr(mapping, logical)
        if physical not in fields:
            if required:
                raise SchemaError(
                    f"table {table} lacks required column '{physical}' (logical {logical}); it has {sorted(fields)}"
                )
            cols.append(F.lit(None).cast(cast).alias(logical))
            continue
        found = fields[physical]
        if not isinstance(found, allowed):
            expected = " or ".join(a.__name__.replace("Type", "").lower() for a in allowed)
            raise SchemaError(
                f"table {table} column '{physical}' (logical {logical}) has type {found.simpleString()}; expected {expected}"
            )
        cols.append(F.col(f"`{physical}`").cast(cast).alias(logical))
    return df.select(*cols)


def _source(cfg: Config, name: str) -> tuple[str, ReviewColumns | CatalogColumns, dict]:
    """(path, column mapping, logical schema) of the source table ``name`` (reviews or catalog)."""
    if name == "reviews":
        return cfg.table("reviews"), cfg.columns.reviews, REVIEW_SCHEMA
    if name == "catalog":
        return cfg.table("catalog"), cfg.columns.catalog, CATALOG_SCHEMA
    if name == "interactions":
        return cfg.table("interactions"), cfg.columns.interactions, INTERACTION_SCHEMA
    raise ValueError(f"unknown source table {name!r}: expected reviews, catalog or interactions")


def read_source(spark: SparkSession, cfg: Config, name: str, version: int | None = None) -> DataFrame | None:
    """The source table ``name`` at ``version`` under logical column names; None when it does not exist."""
    path, mapping, schema = _source(cfg, name)
    if not delta_io.table_exists(spark, path):
        return None
    return conform(delta_io.read(spark, path, version), f"{name} ({path})", mapping, schema)


def read_changes(spark: SparkSession, cfg: Config, name: str, start: int, end: int) -> DataFrame:
    """Rows inserted or updated in source ``name`` in versions ``start``..``end`` (Delta's
    Change Data Feed post-images) under logical column names. Raises when the feed is not
    available (CDF off, or the history vacuumed)."""
    path, mapping, schema = _source(cfg, name)
    feed = (
        spark.read.format("delta")
        .option("readChangeFeed", "true")
        .option("startingVersion", start)
        .option("endingVersion", end)
        .load(path)
        .filter(F.col("_change_type").isin("insert", "update_postimage"))
    )
    return conform(feed, f"{name} ({path}) change feed v{start}..v{end}", mapping, schema)


def read_reviews(spark: SparkSession, cfg: Config, version: int | None = None) -> DataFrame:
    df = read_source(spark, cfg, "reviews", version)
    if df is None:
        raise SchemaError(
            f"table reviews at {cfg.table('reviews')} does not exist "
            "(run jobs/load_demo_data.py or point tables.reviews at yours)"
        )
    return df


def read_catalog(spark: SparkSession, cfg: Config, version: int | None = None) -> DataFrame | None:
    return read_source(spark, cfg, "catalog", version)


def read_interactions(spark: SparkSession, cfg: Config) -> DataFrame | None:
    """Every interaction ``recommend.sources`` names, under logical columns (user_id,
    product_id, rating double, created_at, source): reviews with a reviewer and a product
    (their star rating; null when unparsable) and the ``interactions`` table when it exists.
    None when there are none."""
    parts = []
    if "reviews" in cfg.recommend.sources:
        reviews = read_source(spark, cfg, "reviews")
        if reviews is not None:
            parts.append(
                reviews.filter(F.col("reviewer_id").isNotNull() & F.col("product_id").isNotNull()).select(
                    F.col("reviewer_id").alias("user_id"),
                    "product_id",
                    F.expr("try_cast(rating AS double)").alias("rating"),
                    "created_at",
                    F.coalesce(F.col("source"), F.lit("reviews")).alias("source"),
                )
            )
    if "interactions" in cfg.recommend.sources:
        inter = read_source(spark, cfg, "interactions")
        if inter is not None:
            parts.append(inter.filter(F.col("user_id").isNotNull() & F.col("product_id").isNotNull()))
    if not parts:
        return None
    out = parts[0]
    for p in parts[1:]:
        out = out.unionByName(p)
    return out
