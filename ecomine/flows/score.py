"""The one scoring flow, for every scored entity (``flows/entities.py``: reviews, catalog).

This is where a row's scores are computed:

    source -> entity.prepare      (clean text, language, text reject reason: pandas UDF on text.py)
           -> with_key_checks     (null key / one key with different texts -> rejected)
           -> split_rejects       (unscorable rows -> rejects with a reason; nothing vanishes)
           -> select_changed      (incremental: only new/edited rows or a new model version)
           -> by_distinct_text    (content addressing: each distinct (language, text) once per run, and
                                   none this model version already scored: <entity>_score_cache)
           -> with_scores         (iterator pandas UDF: model loaded once per worker, length-sorted batches)
           -> entity.finish       (columns derived from the outputs, e.g. p_positive)
           -> stamp               (model_version, run_id, scored_at)

``score`` runs the steps and returns a ``Scored`` (DataFrames + stats); ``publish``
MERGEs them into Delta and records the stats in the run ledger. Which source rows a run
reads at all (Change Data Feed since the last successful run, or a full scan) is
``select_source``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from ecomine import text as textlib
from ecomine.config import Config
from ecomine.errors import DataError, SchemaError
from ecomine.io import delta_io, runs, tables
from ecomine.io.runs import Run
from ecomine.labels import parse_rating
from ecomine.model.predict import output_columns

if TYPE_CHECKING:
    from ecomine.flows.entities import Entity
    from ecomine.model.ship import ShippedModel

__all__ = [
    "PREPARED_TYPE",
    "TEXT_KEY",
    "Scored",
    "ScoreStats",
    "by_distinct_text",
    "cached_outputs",
    "publish",
    "score",
    "select_changed",
    "select_source",
    "split_rejects",
    "with_catalog_text",
    "with_key_checks",
    "with_positive_probability",
    "with_prepared_text",
    "with_scores",
]

log = logging.getLogger(__name__)

PREPARED_TYPE = (
    "clean_text string, text_cut boolean, language string, reject_reason string, rating int, rating_issue string"
)
STAMPS = ("run_id", "scored_at")  # written, but a change in them alone rewrites no row
TEXT_KEY = ("language", "text_sha256")  # what the model's outputs depend on (with model version and precision)
CACHE_KEY = ("model_version", "precision", *TEXT_KEY)


# --------------------------------------------------------------------------- prepare


def with_prepared_text(df: DataFrame, min_chars: int, languages: list[str], max_chars: int = 20000) -> DataFrame:
    """Adds ``clean_text`` (cut to ``max_chars``; ``text_cut`` says so), ``language`` (given,
    else detected), ``reject_reason``, a parsed ``rating`` (int 1-5 or null) and
    ``rating_issue``. Rows whose language has no model get ``unsupported_language``."""
    supported = set(languages)

    @F.pandas_udf(PREPARED_TYPE)
    def prepare(text: pd.Series, lang: pd.Series, rating: pd.Series) -> pd.DataFrame:
        full = [textlib.clean_text(t) if t is not None else None for t in text]
        cleaned = [c[:max_chars] if c is not None else None for c in full]
        cut = [c is not None and len(c) > max_chars for c in full]
        langs = [textlib.normalize_language(g) or textlib.detect_language(c) for g, c in zip(lang, cleaned)]
        reasons = []
        for raw, c, lg in zip(text, cleaned, langs):
            r = textlib.reject_reason(c, raw is None, min_chars)
            if r is None and lg not in supported:
                r = textlib.REJECT_LANGUAGE
            reasons.append(r)
        parsed = [parse_rating(v) for v in rating]
        return pd.DataFrame(
            {
                "clean_text": cleaned,
                "text_cut": cut,
                "language": langs,
                "reject_reason": reasons,
                "rating": pd.array([p[0] for p in parsed], dtype="Int32"),
                "rating_issue": [p[1] for p in parsed],
            }
        )

    prepared = prepare(F.col("text"), F.col("language"), F.col("rating"))
    return (
        df.withColumn("_p", prepared)
        .select(
            *[c for c in df.columns if c not in ("language", "rating")],
            F.col("rating").alias("rating_raw"),
            *[
                F.col(f"_p.{c}").alias(c)
                for c in ("clean_text", "text_cut", "language", "reject_reason", "rating", "rating_issue")
            ],
        )
        .withColumn("text_sha256", F.sha2(F.coalesce(F.col("clean_text"), F.lit("")), 256))
    )


def with_catalog_text(df: DataFrame, inputs: list[str], min_chars: int, max_chars: int = 20000) -> DataFrame:
    """Adds ``clean_text`` (the ``inputs`` columns joined by ``labels.input_texts``, cleaned
    like review text, cut to ``max_chars``), ``text_cut``, ``text_sha256``,
    ``reject_reason`` (``empty_text``/``too_short``) and ``language`` (``ANY``: the one
    catalog model reads every row)."""
    from ecomine.model.predict import ANY

    cols = list(inputs)

    @F.pandas_udf("clean_text string, text_cut boolean, reject_reason string")
    def compose(*series: pd.Series) -> pd.DataFrame:
        from ecomine.labels import input_texts

        full = input_texts(dict(zip(cols, series)), cols)
        return pd.DataFrame(
            {
                "clean_text": [c[:max_chars] for c in full],
                "text_cut": [len(c) > max_chars for c in full],
                "reject_reason": [textlib.reject_reason(c, False, min_chars) for c in full],
            }
        )

    out = df.withColumn("_c", compose(*[F.col(c) for c in cols]))
    out = out.select(*df.columns, *[F.col(f"_c.{c}").alias(c) for c in ("clean_text", "text_cut", "reject_reason")])
    return out.withColumn("text_sha256", F.sha2(F.col("clean_text"), 256)).withColumn("language", F.lit(ANY))


def with_key_checks(df: DataFrame, key: str) -> DataFrame:
    """Rows that cannot be keyed are rejected: a null key (``null_<key>``) and every copy of
    a key that appears with different texts (``duplicate_<key>``: ambiguous). Identical
    copies collapse to one row in ``split_rejects``."""
    n_texts = F.size(F.collect_set("text_sha256").over(Window.partitionBy(key)))
    return df.withColumn(
        "reject_reason",
        F.when(F.col(key).isNull(), F.lit(f"null_{key}"))
        .when(n_texts > 1, F.lit(f"duplicate_{key}"))
        .otherwise(F.col("reject_reason")),
    )


def split_rejects(df: DataFrame, key: str) -> tuple[DataFrame, DataFrame]:
    """(scorable rows, one per key) and (rejected rows, one per ``reject_key``: the key, or
    ``null-key:<text_sha256>`` for a null key; of several, the one with the smallest
    text hash and reason, so a rerun picks the same row)."""
    scorable = df.filter(F.col("reject_reason").isNull()).dropDuplicates([key])
    reject_key = F.coalesce(F.col(key), F.concat(F.lit("null-key:"), F.col("text_sha256")))
    first = Window.partitionBy("reject_key").orderBy(F.col("text_sha256").asc_nulls_first(), "reject_reason")
    rejects = (
        df.filter(F.col("reject_reason").isNotNull())
        .withColumn("reject_key", reject_key)
        .withColumn("_n", F.row_number().over(first))
        .filter(F.col("_n") == 1)
        .drop("_n")
    )
    return scorable, rejects


# --------------------------------------------------------------------------- select


def select_changed(
    scorable: DataFrame, existing: DataFrame | None, key: str, model_version: str, same_model_only: bool = True
) -> DataFrame:
    """Incremental selection: rows never scored or whose text changed; with ``same_model_only``
    also rows scored by another model version (rescore policy ``all_on_model_change``).
    Rows stored as rejected (a ``reject_reason`` in the scores table) do not count as scored."""
    if existing is None:
        return scorable
    done = existing
    if "reject_reason" in existing.columns:
        done = done.filter(F.col("reject_reason").isNull())
    if same_model_only:
        done = done.filter(F.col("model_version") == F.lit(model_version))
    return scorable.join(done.select(key, "text_sha256"), on=[key, "text_sha256"], how="left_anti")


def select_source(
    spark: SparkSession, cfg: Config, entity: Entity, model_version: str, src_version: int | None, have_scores: bool
) -> tuple[str, DataFrame]:
    """Which source rows this run reads: ('cdf', every row of a key inserted or updated since
    the last successful run's table version, read through Delta's Change Data Feed, and the
    changed rows with a null key), ('unchanged', nothing) or ('full', the whole table;
    already-scored identical rows are skipped by ``select_changed``)."""
    rows = tables.read_source(spark, cfg, entity.source, src_version)
    if rows is None:
        raise SchemaError(f"table {entity.source} at {cfg.table(entity.source)} does not exist")
    prev = runs.last_success(spark, cfg.table("runs"), ("nightly", "score"))
    prev_v = prev["source_versions"].get(entity.source) if prev else None
    if not cfg.scoring.incremental or not have_scores or prev_v is None or src_version is None:
        return "full", rows
    if prev["model_version"] != model_version and cfg.scoring.rescore == "all_on_model_change":
        log.info("%s: model changed (%s -> %s): rescoring every row", entity.name, prev["model_version"], model_version)
        return "full", rows
    if prev_v == src_version:
        return "unchanged", rows.limit(0)
    if prev_v > src_version:
        log.warning("%s table version went back (%s -> %s, restored?): full scan", entity.source, prev_v, src_version)
        return "full", rows
    try:
        changes = tables.read_changes(spark, cfg, entity.source, prev_v + 1, src_version)
        changes.limit(1).count()  # fail here, not later, when the feed is not available
    except Exception as e:  # CDF off, or history vacuumed: a full scan is always correct
        first_line = str(e).splitlines()[0][:200]
        log.warning(
            "change data feed of %s v%s..v%s unavailable (%s): full scan",
            entity.source,
            prev_v + 1,
            src_version,
            first_line,
        )
        return "full", rows
    key = entity.key
    # All rows of a changed key (also its older duplicates) so the duplicate checks stay whole.
    keyed = rows.join(changes.select(key).where(F.col(key).isNotNull()).distinct(), on=key, how="left_semi")
    # A row with a null key cannot be joined by key: take the current rows equal to a changed one.
    null_changes = changes.where(F.col(key).isNull()).distinct()
    same = [rows[c].eqNullSafe(null_changes[c]) for c in rows.columns]
    unkeyed = rows.where(F.col(key).isNull()).join(null_changes, on=same, how="left_semi")
    return "cdf", keyed.unionByName(unkeyed)


# --------------------------------------------------------------------------- score


class _Progress:
    """Rows scored by one Spark task, logged to the executor's stderr at most once a minute
    (and at the end), so a long scoring stage is never silent."""

    def __init__(self, what: str, every_s: float = 60.0):
        self._time = time.monotonic
        self.what, self.every_s, self.rows = what, every_s, 0
        self.t0 = self.last = self._time()

    def _log(self, final: bool) -> None:
        import sys

        from pyspark import TaskContext

        ctx = TaskContext.get()
        part = ctx.partitionId() if ctx is not None else "-"
        dt = max(self._time() - self.t0, 1e-9)
        sys.stderr.write(
            f"ecomine: {self.what}: partition {part}: {self.rows:,} rows {'done' if final else 'so far'} "
            f"in {dt:.0f}s ({self.rows / dt:.1f} rows/s)\n"
        )

    def add(self, n: int) -> None:
        self.rows += n
        if self._time() - self.last >= self.every_s:
            self.last = self._time()
            self._log(final=False)

    def done(self) -> None:
        if self.rows:
            self._log(final=True)


def with_scores(
    df: DataFrame,
    shipped: ShippedModel,
    tasks: list[dict],
    batch_size: int,
    device_pref: str = "auto",
    num_threads: int = 0,
    precision: str = "fp32",
    scope: str = "reviews",
    cache_size: int = 2,
    embedding: bool = False,
) -> DataFrame:
    """Adds one column per task output (``<task>_label``, ``<task>_prob``, ...) plus
    ``n_tokens``, ``truncated``, from one forward pass per row of ``clean_text`` through the
    model for ``language`` (``scope="catalog"``: the catalog model, ``tasks`` its tasks), and
    with ``embedding`` the text's L2-normalised embedding (``array<float>``).

    ``shipped``: the model registered with Spark (``ship.register``); each task finds it
    unpacked in its executor's SparkFiles, never at a driver path."""
    cols = output_columns(tasks, embedding=embedding)
    schema = ", ".join(f"{c} {t}" for c, t in cols)

    @F.pandas_udf(schema)
    def score_batches(batches: Iterator[tuple[pd.Series, pd.Series]]) -> Iterator[pd.DataFrame]:
        import sys

        from ecomine.model.device import choose_device, spark_task_cpus, spark_task_gpus
        from ecomine.model.predict import get_predictor

        gpus = spark_task_gpus()
        device = choose_device(device_pref, gpus)
        threads = num_threads or spark_task_cpus()
        sys.stderr.write(f"ecomine: {scope} scoring task: Spark assigned GPU {gpus or 'none'}; device {device}\n")
        # once per worker process: cached by get_predictor (bounded LRU)
        predictor = get_predictor(
            shipped, device=device, num_threads=threads, precision=precision, scope=scope, max_models=cache_size
        )
        progress = _Progress(f"{scope} scoring on {device}, {precision}")
        for texts, langs in batches:
            out = predictor.predict(texts.tolist(), langs.tolist(), batch_size=batch_size)
            yield out if embedding else out.drop(columns=["embedding"], errors="ignore")
            progress.add(len(texts))
        progress.done()

    scored = df.withColumn("_s", score_batches(F.col("clean_text"), F.col("language")))
    return scored.select(*df.columns, *[F.col(f"_s.{c}").alias(c) for c, _ in cols])


def cached_outputs(
    spark: SparkSession, path: str, model_version: str, precision: str, tasks: list[dict], embedding: bool = False
) -> DataFrame | None:
    """The score cache's outputs of ``model_version`` at ``precision``: one row per
    (language, text_sha256) with the model output columns (``truncated`` is the model's own
    token truncation, not the row's ``text_cut``); None when there are none to reuse."""
    if not delta_io.table_exists(spark, path):
        return None
    cache = delta_io.read(spark, path)
    outputs = [c for c, _ in output_columns(tasks, embedding=embedding)]
    if not set(outputs) <= set(cache.columns):  # written by other models' tasks (or before embeddings were kept)
        return None
    return cache.filter((F.col("model_version") == model_version) & (F.col("precision") == precision)).select(
        *TEXT_KEY, *outputs
    )


def by_distinct_text(
    todo: DataFrame, cached: DataFrame | None, partitions: int, **score_kw: Any
) -> tuple[DataFrame, DataFrame, DataFrame | None]:
    """Content-addressed scoring: the model outputs of every distinct (language, text_sha256)
    of ``todo``, each text through the encoder at most once, none that ``cached``
    (``cached_outputs``) already holds.

    Returns (outputs per text: ``TEXT_KEY`` + output columns; the texts encoded now, persisted,
    for the cache; the cache hits, or None). Join the first back to the rows on ``TEXT_KEY``.
    The outputs are those of ``with_scores`` on each row: a text's outputs depend only on its
    language, its cleaned text, the model version and the precision."""
    # One shuffle: hash-partitioned on the text key, the de-duplication needs no other exchange
    # and each partition goes straight to the encoder.
    texts = todo.select(*TEXT_KEY, "clean_text").repartition(partitions, *TEXT_KEY).dropDuplicates(list(TEXT_KEY))
    hits = None
    if cached is not None:
        hits = cached.join(texts.select(*TEXT_KEY), on=list(TEXT_KEY), how="left_semi")
        texts = texts.join(cached.select(*TEXT_KEY), on=list(TEXT_KEY), how="left_anti").repartition(
            partitions, *TEXT_KEY
        )
    fresh = texts.transform(with_scores, **score_kw).drop("clean_text").persist(StorageLevel.MEMORY_AND_DISK)
    return (fresh if hits is None else fresh.unionByName(hits)), fresh, hits


def with_positive_probability(df: DataFrame, tasks: list[dict]) -> DataFrame:
    """``p_positive``: the model's probability that the text praises (sentiment head where it
    has output, else the rating head's P(top class)); input to the fraud signals."""
    binary = sorted((t for t in tasks if t["kind"] == "binary"), key=lambda t: t["name"] != "sentiment")
    probs = [F.col(f"{t['name']}_prob") for t in binary]
    return df.withColumn("p_positive", F.coalesce(*probs) if probs else F.lit(None).cast("double"))


@dataclass
class ScoreStats:
    """What one entity's scoring did in a run (the ledger's counts and details)."""

    entity: str
    selection: str = "full"
    rows_in: int = 0
    scored: int = 0
    rejected: int = 0
    null_keys: int = 0
    unchanged: int = 0
    texts_distinct: int = 0  # distinct (language, text) among the scored rows
    texts_encoded: int = 0  # ... of which went through the encoder in this run
    texts_cached: int = 0  # ... of which took the outputs this model version gave them in an earlier run
    inserted: int = 0
    updated: int = 0
    score_seconds: float = 0.0
    wall_seconds: float = 0.0

    @property
    def written(self) -> int:
        return self.inserted + self.updated

    @property
    def rows_per_second(self) -> float:
        return round(self.scored / max(self.score_seconds, 1e-9), 2)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "written": self.written, "rows_per_second": self.rows_per_second}


@dataclass
class Scored:
    """One entity's scored rows (persisted), its rejected rows and the rows whose rejection
    ended (a fixed row that scores now), ready for ``publish``."""

    entity: Entity
    model_version: str
    scores: DataFrame
    rejects: DataFrame
    scorable_keys: DataFrame
    stats: ScoreStats
    n_rows: int
    t0: float = field(default_factory=time.time)
    _cached: list[DataFrame] = field(default_factory=list)
    encoded: DataFrame | None = None  # outputs per text encoded in this run (content addressing): for the cache
    precision: str = ""

    def release(self) -> None:
        for df in self._cached:
            df.unpersist()


def _prepared(
    spark: SparkSession, cfg: Config, run: Run, entity: Entity, section: dict, version: str, stats: ScoreStats
):
    """Source rows this run reads, prepared and key-checked (persisted), and the existing scores."""
    src_version = delta_io.table_version(spark, cfg.table(entity.source))
    run.source_versions[entity.source] = src_version
    scores_path = cfg.table(entity.scores)
    existing = delta_io.read(spark, scores_path) if delta_io.table_exists(spark, scores_path) else None
    stats.selection, rows = select_source(spark, cfg, entity, version, src_version, existing is not None)
    prepared = (
        rows.transform(entity.prepare, scoring=cfg.scoring, section=section)
        .transform(with_key_checks, key=entity.key)
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    stats.rows_in = prepared.count()
    if stats.rows_in == 0 and stats.selection == "full":
        raise DataError(
            f"table {entity.source} at {cfg.table(entity.source)} (version {src_version}) is empty: nothing to score"
        )
    stats.null_keys = prepared.filter(F.col(entity.key).isNull()).count()
    log.info(
        "%s read: %d rows (%s), %d with a null %s",
        entity.name,
        stats.rows_in,
        stats.selection,
        stats.null_keys,
        entity.key,
    )
    return prepared, existing


def _stamps(version: str, run_id: str, now: datetime) -> list[Column]:
    return [
        F.lit(version).alias("model_version"),
        F.lit(run_id).alias("run_id"),
        F.lit(now).cast("timestamp").alias("scored_at"),
    ]


def score(
    spark: SparkSession, cfg: Config, run: Run, entity: Entity, shipped: ShippedModel, manifest: dict[str, Any]
) -> Scored | None:
    """Score the new and changed rows of ``entity`` with the model Spark ships to the
    executors (``shipped``, whose artifact has ``manifest``); None when the model has no
    sub-model for the entity."""
    section = entity.section(manifest)
    if section is None:
        log.info("model %s has no %s model: %s not written", manifest["model_version"], entity.name, entity.scores)
        return None
    version, sc, tasks = manifest["model_version"], cfg.scoring, section["tasks"]
    stats, t0 = ScoreStats(entity.name), time.time()
    prepared, existing = _prepared(spark, cfg, run, entity, section, version, stats)
    scorable, rejects = split_rejects(prepared, entity.key)
    todo = select_changed(scorable, existing, entity.key, version, same_model_only=sc.rescore == "all_on_model_change")
    # Few, even partitions of work: each task loads the model once and streams Arrow batches.
    partitions = max(spark.sparkContext.defaultParallelism, 1)
    score_kw: dict[str, Any] = dict(
        shipped=shipped,
        tasks=tasks,
        batch_size=sc.batch_size,
        device_pref=sc.device,
        num_threads=sc.num_threads,
        precision=sc.precision,
        scope=entity.name,
        cache_size=sc.model_cache_size,
        embedding=entity.embeddings is not None,
    )
    encoded = hits = None
    if sc.content_addressed:
        cached = cached_outputs(
            spark, cfg.table(entity.cache), version, sc.precision, tasks, embedding=entity.embeddings is not None
        )
        per_text, encoded, hits = by_distinct_text(todo, cached, partitions, **score_kw)
        with_outputs = todo.join(per_text, on=list(TEXT_KEY), how="left")  # a row without outputs fails below
    else:
        with_outputs = todo.repartition(partitions, entity.key).transform(with_scores, **score_kw)
    now = datetime.now(timezone.utc)
    outputs = [c for c, _ in output_columns(tasks) if c != "truncated"]
    scored = with_outputs.transform(entity.finish, spark=spark, cfg=cfg, tasks=tasks).select(
        entity.key,
        *entity.carry,
        *outputs,
        (F.col("truncated") | F.col("text_cut")).alias("truncated"),
        *entity.extra,
        *(["embedding"] if entity.embeddings else []),  # split off into its own table by publish
        *_stamps(version, run.run_id, now),
    )
    rejects = rejects.select(
        "reject_key",
        entity.key,
        "reject_reason",
        "text_sha256",
        "clean_text",
        "language",
        *_stamps(version, run.run_id, now),
    )
    if entity.rejects is None:  # rejected rows live in the scores table: null outputs and the reason
        scored = scored.unionByName(entity.inline_rejects(rejects, tasks), allowMissingColumns=False)
    scored = scored.persist(StorageLevel.MEMORY_AND_DISK)
    t_score = time.time()
    n_rows = scored.count()  # scoring happens here, once; MERGE reads the persisted result
    stats.score_seconds = round(time.time() - t_score, 2)
    stats.rejected = rejects.filter(F.col(entity.key).isNotNull() | F.lit(entity.rejects is not None)).count()
    stats.scored = n_rows - (stats.rejected if entity.rejects is None else 0)
    stats.unchanged = scorable.count() - stats.scored
    if encoded is not None:
        stats.texts_encoded = encoded.count()  # persisted: no second encoder pass
        stats.texts_cached = hits.count() if hits is not None else 0
        stats.texts_distinct = stats.texts_encoded + stats.texts_cached
        lost = F.col("n_tokens").isNull()  # every scored row has outputs; only inline rejects have none
        if "reject_reason" in scored.columns:
            lost = lost & F.col("reject_reason").isNull()
        n_lost = scored.filter(lost).count()  # persisted: no recomputation
        if n_lost:  # a bug, never a silent drop
            raise RuntimeError(f"{entity.name}: {n_lost} rows found no outputs by (language, text_sha256)")
    else:
        stats.texts_encoded = stats.texts_distinct = stats.scored
    log.info(
        "%s: %d scored in %.1fs (%.1f rows/s; %d distinct texts, %d encoded, %d from %s), %d rejected, %d unchanged",
        entity.name, stats.scored, stats.score_seconds, stats.rows_per_second, stats.texts_distinct,
        stats.texts_encoded, stats.texts_cached, entity.cache, stats.rejected, stats.unchanged,
    )  # fmt: skip
    keys = scorable.select(F.col(entity.key).alias("reject_key"))
    cached_dfs = [scored, prepared] + ([encoded] if encoded is not None else [])
    return Scored(
        entity, version, scored, rejects, keys, stats, n_rows, t0, cached_dfs, encoded=encoded, precision=sc.precision
    )


# --------------------------------------------------------------------------- publish


def publish(spark: SparkSession, cfg: Config, run: Run, scored: Scored) -> ScoreStats:
    """MERGE the scores (and the rejects, when the entity keeps them in a table of their own)
    into Delta, then record the stats in the run ledger. Idempotent: a rerun of the same
    rows changes nothing and makes no commit."""
    entity, stats = scored.entity, scored.stats
    meta = {"run_id": run.run_id, "model_version": scored.model_version, "job": run.job}
    scores_path = cfg.table(entity.scores)
    if scored.encoded is not None:
        _publish_cache(spark, cfg.table(entity.cache), scored, run, meta)
    scores = scored.scores
    if entity.embeddings:
        _publish_embeddings(spark, cfg.table(entity.embeddings), scored, run, meta, cfg.scoring.rescore)
        scores = scores.drop("embedding")
    if scored.n_rows or not delta_io.table_exists(spark, scores_path):
        compare = [c for c in scores.columns if c not in STAMPS]
        txn = (f"ecomine:{scores_path}", runs.txn_version(run.run_id))
        m = delta_io.merge_into(spark, scores_path, scores, [entity.key], compare=compare, metadata=meta, txn=txn)
        stats.inserted, stats.updated = m["inserted"], m["updated"]
    if entity.rejects is not None:
        _publish_rejects(spark, cfg.table(entity.rejects), scored, run, meta)
    stats.wall_seconds = round(time.time() - scored.t0, 1)
    _record(run, stats, primary=entity.primary)
    scored.release()
    return stats


def _publish_cache(spark: SparkSession, path: str, scored: Scored, run: Run, meta: dict[str, Any]) -> None:
    """The texts encoded in this run into the score cache (an append: their keys were not in
    the cache when this run, holding the lock, looked; a retried run's append is skipped by
    its Delta transaction id), then the rows of other model versions out (nothing reads them again; a model
    change rescores and refills). A derived table: losing it costs encoder time, not data."""
    assert scored.encoded is not None
    rows = scored.encoded.select(
        F.lit(scored.model_version).alias("model_version"),
        F.lit(scored.precision).alias("precision"),
        *scored.encoded.columns,
        F.lit(run.run_id).alias("run_id"),
        F.lit(datetime.now(timezone.utc)).cast("timestamp").alias("scored_at"),
    )
    if scored.stats.texts_encoded:  # keys not in the cache (anti-joined while scoring, under the run lock)
        txn = (f"ecomine:{path}", runs.txn_version(run.run_id))
        delta_io.append_rows(spark, path, rows, metadata=meta, txn=txn)
    delta_io.delete_where(spark, path, F.col("model_version") != F.lit(scored.model_version), metadata=meta)


def _publish_embeddings(
    spark: SparkSession, path: str, scored: Scored, run: Run, meta: dict[str, Any], rescore: str
) -> None:
    """Each scored row's embedding into ``path`` (e.g. ``product_embeddings``: key, model_version,
    text_sha256, dim, embedding, run_id, embedded_at), keyed by (key, model_version). A row
    rejected now loses its row. When a new model version rescores everything
    (``rescore: all_on_model_change``), rows of other versions leave: embeddings of two
    encoders are not comparable, so the table holds one model version's vectors."""
    key = scored.entity.key
    rows = scored.scores.filter(F.col("embedding").isNotNull()).select(
        key,
        "model_version",
        "text_sha256",
        F.size("embedding").alias("dim"),
        "embedding",
        "run_id",
        F.col("scored_at").alias("embedded_at"),
    )
    if scored.n_rows or not delta_io.table_exists(spark, path):
        txn = (f"ecomine:{path}", runs.txn_version(run.run_id))
        delta_io.merge_into(
            spark, path, rows, [key, "model_version"], compare=["text_sha256", "embedding"], metadata=meta, txn=txn
        )
    rejected = scored.scores.filter(F.col("embedding").isNull()).select(key)
    delta_io.delete_keys(spark, path, rejected, key, metadata=meta)
    if rescore == "all_on_model_change":
        delta_io.delete_where(spark, path, F.col("model_version") != F.lit(scored.model_version), metadata=meta)


def _publish_rejects(spark: SparkSession, path: str, scored: Scored, run: Run, meta: dict[str, Any]) -> None:
    """The rejects table: one row per reject key with reason and detail; a row rejected
    before and scorable now leaves it."""
    rows = scored.rejects.select(
        F.col("reject_key").alias("review_key"),
        F.col(scored.entity.key),
        F.col("reject_reason").alias("reason"),
        F.concat_ws(
            " ",
            F.lit("language="),
            F.coalesce(F.col("language"), F.lit("?")),
            F.lit("chars="),
            F.coalesce(F.length("clean_text"), F.lit(0)).cast("string"),
        ).alias("detail"),
        "text_sha256",
        "model_version",
        "run_id",
        F.col("scored_at").alias("rejected_at"),
    )
    if scored.stats.rejected or not delta_io.table_exists(spark, path):
        txn = (f"ecomine:{path}", runs.txn_version(run.run_id))
        delta_io.merge_into(
            spark, path, rows, ["review_key"], compare=["reason", "detail", "text_sha256"], metadata=meta, txn=txn
        )
    delta_io.delete_keys(
        spark, path, scored.scorable_keys.withColumnRenamed("reject_key", "review_key"), "review_key", metadata=meta
    )


def _record(run: Run, stats: ScoreStats, primary: bool) -> None:
    """Stats into the ledger: every entity under ``details[<entity>]``; the primary entity
    (reviews) also fills the run's headline counts."""
    run.details[stats.entity] = stats.as_dict()
    if primary:
        run.counts.update(
            rows_in=stats.rows_in, rows_scored=stats.scored, rows_rejected=stats.rejected, rows_written=stats.written
        )
        run.details.update(
            selection=stats.selection,
            score_seconds=stats.score_seconds,
            rows_per_second=stats.rows_per_second,
            scores_inserted=stats.inserted,
            scores_updated=stats.updated,
            wall_seconds=stats.wall_seconds,
        )
