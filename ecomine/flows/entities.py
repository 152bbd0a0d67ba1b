"""What ecomine scores: one small spec per entity, read by the one scoring flow
(``flows/score.py``) and the one training flow (``flows/train.py``).

A new scored entity is a new ``Entity`` here (its key, tables, how its model text is
built, which columns it carries), not a copy of the flow.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from ecomine.config import Config, ScoringConfig
from ecomine.flows import score
from ecomine.io import tables
from ecomine.model.predict import CATALOG, REVIEWS, output_columns

__all__ = ["CATALOG_ENTITY", "ENTITIES", "REVIEWS_ENTITY", "Entity"]


@dataclass(frozen=True)
class Entity:
    """A kind of row the model scores.

    ``name`` is also the predictor scope (which sub-models of the artifact read it);
    ``key`` keys the source rows and the scores table; ``rejects`` names a rejects table of
    its own, or None when rejected rows are kept in the scores table (a ``reject_reason``
    and null outputs); ``cache`` names the table of model outputs per (model version,
    precision, language, text hash) that content-addressed scoring reuses; ``embeddings`` names
    the table that gets each row's text embedding (keyed by the entity key and model version),
    or None when the entity's embeddings are not kept. ``prepare(df, scoring=, section=)`` adds ``clean_text``,
    ``text_cut``, ``text_sha256``, ``language`` and a text ``reject_reason``; ``section``
    is the artifact manifest's part for this entity (``section(manifest)``). ``finish``
    adds the columns derived from the outputs. The scores table's columns are the key,
    ``carry``, the task outputs, ``truncated``, ``extra`` and the stamps."""

    name: str
    key: str
    source: str
    scores: str
    rejects: str | None
    cache: str
    primary: bool
    embeddings: str | None
    carry: tuple[str, ...]
    extra: tuple[str, ...]
    section: Callable[[dict[str, Any]], dict[str, Any] | None]
    prepare: Callable[..., DataFrame]
    finish: Callable[..., DataFrame]

    def inline_rejects(self, rejects: DataFrame, tasks: list[dict[str, Any]]) -> DataFrame:
        """Rejected rows as scores-table rows: null outputs and the reason (keyed rows only)."""
        cols = output_columns(tasks, embedding=self.embeddings is not None)
        outputs = [F.lit(None).cast(t).alias(c) for c, t in cols if c not in ("truncated", "embedding")]
        return rejects.filter(F.col(self.key).isNotNull()).select(
            self.key,
            *self.carry,
            *outputs,
            F.lit(None).cast("boolean").alias("truncated"),
            *self.extra,
            *([F.lit(None).cast("array<float>").alias("embedding")] if self.embeddings else []),
            "model_version",
            "run_id",
            "scored_at",
        )


# --------------------------------------------------------------------------- reviews


def _review_section(manifest: dict[str, Any]) -> dict[str, Any]:
    return {"tasks": manifest["tasks"], "languages": sorted(manifest["languages"])}


def _prepare_reviews(df: DataFrame, scoring: ScoringConfig, section: dict[str, Any]) -> DataFrame:
    return score.with_prepared_text(
        df, min_chars=scoring.min_text_chars, languages=list(section["languages"]), max_chars=scoring.max_text_chars
    )


def _finish_reviews(df: DataFrame, spark: SparkSession, cfg: Config, tasks: list[dict[str, Any]]) -> DataFrame:
    """``p_positive`` and the product's name and category from the catalog (null without one)."""
    df = score.with_positive_probability(df, tasks)
    catalog = tables.read_catalog(spark, cfg)
    if catalog is None:
        return df.withColumn("product_name", F.lit(None).cast("string")).withColumn(
            "product_category", F.lit(None).cast("string")
        )
    products = catalog.select(
        "product_id", F.col("name").alias("product_name"), F.col("category").alias("product_category")
    ).dropDuplicates(["product_id"])
    return df.join(products, on="product_id", how="left")


REVIEWS_ENTITY = Entity(
    name=REVIEWS,
    key="review_id",
    source="reviews",
    scores="review_scores",
    rejects="review_scores_rejects",
    cache="review_score_cache",
    primary=True,
    embeddings=None,
    carry=("product_id", "language", "text_sha256", "rating", "rating_issue"),
    extra=("p_positive", "product_name", "product_category"),
    section=_review_section,
    prepare=_prepare_reviews,
    finish=_finish_reviews,
)


# --------------------------------------------------------------------------- catalog


def _catalog_section(manifest: dict[str, Any]) -> dict[str, Any] | None:
    return manifest.get(CATALOG) or None


def _prepare_catalog(df: DataFrame, scoring: ScoringConfig, section: dict[str, Any]) -> DataFrame:
    return score.with_catalog_text(
        df, inputs=list(section["inputs"]), min_chars=scoring.min_text_chars, max_chars=scoring.max_text_chars
    )


def _finish_catalog(df: DataFrame, spark: SparkSession, cfg: Config, tasks: list[dict[str, Any]]) -> DataFrame:
    return df


CATALOG_ENTITY = Entity(
    name=CATALOG,
    key="product_id",
    source="catalog",
    scores="catalog_scores",
    rejects=None,
    cache="catalog_score_cache",
    primary=False,
    embeddings="product_embeddings",
    carry=("text_sha256",),
    extra=("reject_reason",),
    section=_catalog_section,
    prepare=_prepare_catalog,
    finish=_finish_catalog,
)

ENTITIES = (REVIEWS_ENTITY, CATALOG_ENTITY)
