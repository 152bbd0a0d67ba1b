"""The only module that writes Delta tables.

Every write is keyed and idempotent:

* ``merge_into`` de-duplicates the source on the key (failing loudly on conflicting
  duplicates is the caller's job: see ``scoring.split_duplicates``), then MERGEs:
  new keys are inserted, existing keys are updated only when a compared column
  actually changed, so re-running the same input changes nothing.
* Each commit carries ``userMetadata`` (run id, model version) and, when a run id
  is given, Delta's idempotent-write marker (``txnAppId``/``txnVersion``): a retried
  run whose write already committed is skipped by Delta itself.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

__all__ = [
    "append_rows",
    "delete_keys",
    "delete_where",
    "last_operation_metrics",
    "merge_into",
    "overwrite_small",
    "read",
    "sync_into",
    "table_exists",
    "table_version",
    "upsert_rows",
    "with_literal_stamps",
]

log = logging.getLogger(__name__)


def table_exists(spark: SparkSession, path: str) -> bool:
    from delta.tables import DeltaTable

    return DeltaTable.isDeltaTable(spark, path)


def table_version(spark: SparkSession, path: str) -> int | None:
    """Latest committed version of a Delta table, None if there is no table."""
    if not table_exists(spark, path):
        return None
    from delta.tables import DeltaTable

    row = DeltaTable.forPath(spark, path).history(1).select("version").first()
    return int(row["version"]) if row else None


@contextmanager
def _commit_context(spark: SparkSession, metadata: dict | None, txn: tuple[str, int] | None) -> Iterator[None]:
    keys = {
        "spark.databricks.delta.commitInfo.userMetadata": json.dumps(metadata, sort_keys=True) if metadata else None,
        "spark.databricks.delta.write.txnAppId": txn[0] if txn else None,
        "spark.databricks.delta.write.txnVersion": str(txn[1]) if txn else None,
    }
    old = {k: spark.conf.get(k, None) for k in keys}
    try:
        for k, v in keys.items():
            if v is None:
                spark.conf.unset(k)
            else:
                spark.conf.set(k, v)
        yield
    finally:
        for k, v in old.items():
            if v is None:
                spark.conf.unset(k)
            else:
                spark.conf.set(k, v)


def _create_if_missing(spark: SparkSession, path: str, df: DataFrame, partition_by: Sequence[str] = ()) -> None:
    if table_exists(spark, path):
        return
    writer = df.limit(0).write.format("delta").option("delta.enableChangeDataFeed", "true")
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    try:
        writer.mode("errorifexists").save(path)
        log.info("created Delta table %s", path)
    except Exception as e:  # another writer created it first: fine, MERGE below handles it
        if not table_exists(spark, path):
            raise
        log.info("table %s appeared concurrently (%s)", path, type(e).__name__)


def merge_into(
    spark: SparkSession,
    path: str,
    source: DataFrame,
    keys: Sequence[str],
    *,
    compare: Sequence[str] | None = None,
    metadata: dict | None = None,
    txn: tuple[str, int] | None = None,
) -> dict[str, int]:
    """MERGE ``source`` into the Delta table at ``path`` on ``keys``.

    ``compare``: columns whose change triggers an update of an existing row (default:
    all non-key columns). Columns outside ``compare`` (e.g. ``run_id``, ``scored_at``)
    are written on insert and on update but do not by themselves cause an update, so
    a rerun that produces the same values leaves the table untouched.

    Columns of ``source`` that the table lacks (a new version of ecomine added them) are
    added to the table's schema by this MERGE (Delta schema evolution); every existing
    row is then updated once, since its stored value of the new column (null) is not the
    computed one. Columns the table has and ``source`` lacks stay; rows this MERGE
    inserts get null there.

    Returns Delta's operation metrics (inserted/updated rows) for the run ledger.
    """
    from delta.tables import DeltaTable

    source = source.dropDuplicates(list(keys))
    _create_if_missing(spark, path, source)
    target = DeltaTable.forPath(spark, path)
    cols = source.columns
    existing = set(target.toDF().columns)
    added = [c for c in cols if c not in existing]
    compare = [c for c in (compare if compare is not None else cols) if c not in keys]
    # Only rows that are new or differ in a compared column go to MERGE; when there are
    # none, no commit is made at all (a rerun leaves the table version unchanged).
    present = [c for c in compare if c in existing]
    if any(c in added for c in compare):
        log.info("MERGE into %s adds columns %s: every existing row is updated once", path, added)
    else:
        current = target.toDF().select(*[F.col(f"`{c}`").alias(f"__t_{c}") for c in [*keys, *present]])
        cond = [source[f"`{c}`"].eqNullSafe(current[f"`__t_{c}`"]) for c in [*keys, *present]]
        source = source.join(current, on=cond, how="left_anti")
        if source.limit(1).count() == 0:
            log.info("MERGE into %s skipped: no new or changed rows", path)
            return {"inserted": 0, "updated": 0, "deleted": 0}
    on = " AND ".join(f"t.`{k}` = s.`{k}`" for k in keys)
    changed = " OR ".join(f"NOT (t.`{c}` <=> s.`{c}`)" if c in existing else "true" for c in compare) or "false"
    assignments = {f"`{c}`": f"s.`{c}`" for c in cols}
    with _commit_context(spark, metadata, txn):
        builder = (
            target.alias("t")
            .merge(source.alias("s"), on)
            .whenMatchedUpdate(condition=changed, set=assignments)
            .whenNotMatchedInsert(values=assignments)
        )
        if added:
            builder = builder.withSchemaEvolution()
        builder.execute()
    return last_operation_metrics(spark, path)


def sync_into(
    spark: SparkSession,
    path: str,
    source: DataFrame,
    keys: Sequence[str],
    *,
    compare: Sequence[str] | None = None,
    metadata: dict | None = None,
) -> dict[str, int]:
    """Make the table at ``path`` hold exactly ``source``'s keys: MERGE the new and changed rows
    (``merge_into``), then delete the rows whose keys ``source`` lacks (one MERGE ... DELETE
    commit, none when nothing is stale). For derived tables recomputed whole (neighbour and
    recommendation lists), so a rerun with the same result commits nothing.
    Returns inserted/updated/deleted row counts."""
    from delta.tables import DeltaTable

    source = source.persist()
    try:
        m = merge_into(spark, path, source, keys, compare=compare, metadata=metadata)
        target = DeltaTable.forPath(spark, path)
        stale = target.toDF().select(*keys).join(source.select(*keys), on=list(keys), how="left_anti").persist()
        n = stale.count()
        if n:
            on = " AND ".join(f"t.`{k}` = s.`{k}`" for k in keys)
            with _commit_context(spark, metadata, None):
                target.alias("t").merge(stale.alias("s"), on).whenMatchedDelete().execute()
        stale.unpersist()
    finally:
        source.unpersist()
    return {"inserted": m.get("inserted", 0), "updated": m.get("updated", 0), "deleted": n}


def last_operation_metrics(spark: SparkSession, path: str) -> dict[str, int]:
    from delta.tables import DeltaTable

    row = DeltaTable.forPath(spark, path).history(1).select("operation", "operationMetrics").first()
    m = dict(row["operationMetrics"] or {}) if row else {}
    return {
        "inserted": int(m.get("numTargetRowsInserted", m.get("numOutputRows", 0)) or 0),
        "updated": int(m.get("numTargetRowsUpdated", 0) or 0),
        "deleted": int(m.get("numTargetRowsDeleted", 0) or 0),
    }


def upsert_rows(
    spark: SparkSession, path: str, rows: list[dict], schema: str, keys: Sequence[str], metadata: dict | None = None
) -> None:
    """Small driver-side upsert (run ledger, model registry): a handful of rows at most."""
    df = spark.createDataFrame(rows, schema=schema)
    merge_into(spark, path, df, keys, metadata=metadata)


def overwrite_small(spark: SparkSession, path: str, df: DataFrame, metadata: dict | None = None) -> None:
    """Replace a derived table atomically (one Delta commit); readers see old or new, never half."""
    with _commit_context(spark, metadata, None):
        df.write.format("delta").mode("overwrite").option("overwriteSchema", "true").save(path)


def read(spark: SparkSession, path: str, version: int | None = None) -> DataFrame:
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    return reader.load(path)


def with_literal_stamps(df: DataFrame, **stamps: object) -> DataFrame:
    """Add constant stamp columns (model_version, run_id, ...)."""
    for name, value in stamps.items():
        df = df.withColumn(name, F.lit(value))
    return df


def delete_keys(spark: SparkSession, path: str, keys_df: DataFrame, key: str, metadata: dict | None = None) -> None:
    """Delete rows of the table whose ``key`` appears in ``keys_df`` (one MERGE ... DELETE commit;
    no commit at all when nothing matches)."""
    if not table_exists(spark, path):
        return
    from delta.tables import DeltaTable

    target = DeltaTable.forPath(spark, path)
    present = keys_df.select(key).distinct().join(target.toDF().select(key), on=key, how="left_semi")
    if present.limit(1).count() == 0:
        return
    with _commit_context(spark, metadata, None):
        target.alias("t").merge(present.alias("s"), f"t.`{key}` = s.`{key}`").whenMatchedDelete().execute()


def append_rows(
    spark: SparkSession, path: str, df: DataFrame, metadata: dict | None = None, txn: tuple[str, int] | None = None
) -> None:
    """Append ``df`` in one commit (creating the table when missing; columns it lacks are added).
    For rows whose keys the caller knows are new (no MERGE join with the target). With
    ``txn`` a retried run's append is skipped (Delta idempotent writes), so it never doubles."""
    with _commit_context(spark, metadata, txn):
        df.write.format("delta").mode("append").option("mergeSchema", "true").save(path)


def delete_where(spark: SparkSession, path: str, condition: Column, metadata: dict | None = None) -> None:
    """Delete the rows matching ``condition`` (one DELETE commit; none when nothing matches)."""
    if not table_exists(spark, path):
        return
    from delta.tables import DeltaTable

    target = DeltaTable.forPath(spark, path)
    if target.toDF().filter(condition).limit(1).count() == 0:
        return
    with _commit_context(spark, metadata, None):
        target.delete(condition)
