"""The run ledger: one row per run in the ``runs`` Delta table, MERGEd on run_id.

A run is written as ``running`` when it starts and updated to ``succeeded`` or
``failed`` (with the error) when it ends, so an operator sees crashed runs too (a run
killed hard stays ``running`` with no end time)."""

from __future__ import annotations

import json
import logging
import traceback
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from pyspark.sql import SparkSession

from ecomine.io import delta_io

__all__ = ["RUNS_DDL", "Run", "last_success", "mark_abandoned", "new_run_id", "recorded", "txn_version"]

log = logging.getLogger(__name__)

RUNS_DDL = (
    "run_id string, job string, status string, started_at timestamp, ended_at timestamp, "
    "model_version string, rows_in long, rows_scored long, rows_rejected long, rows_written long, "
    "source_versions string, details string, error string"
)


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]


@dataclass
class Run:
    spark: SparkSession
    path: str
    job: str
    run_id: str = field(default_factory=new_run_id)
    started_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    counts: dict[str, int] = field(default_factory=dict)
    model_version: str | None = None
    source_versions: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    def _row(self, status: str, ended: datetime | None, error: str | None) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "job": self.job,
            "status": status,
            "started_at": self.started_at,
            "ended_at": ended,
            "model_version": self.model_version,
            "rows_in": self.counts.get("rows_in"),
            "rows_scored": self.counts.get("rows_scored"),
            "rows_rejected": self.counts.get("rows_rejected"),
            "rows_written": self.counts.get("rows_written"),
            "source_versions": json.dumps(self.source_versions, sort_keys=True),
            "details": json.dumps(self.details, sort_keys=True, default=str),
            "error": error,
        }

    def _write(self, status: str, ended: datetime | None = None, error: str | None = None) -> None:
        delta_io.upsert_rows(self.spark, self.path, [self._row(status, ended, error)], RUNS_DDL, ["run_id"])

    def start(self) -> Run:
        self._write("running")
        log.info("run %s (%s) started", self.run_id, self.job)
        return self

    def succeed(self) -> None:
        self._write("succeeded", datetime.now(timezone.utc))
        log.info("run %s succeeded: %s", self.run_id, self.counts)

    def fail(self, exc: BaseException) -> None:
        err = f"{type(exc).__name__}: {exc}\n" + "".join(traceback.format_tb(exc.__traceback__)[-3:])
        try:
            self._write("failed", datetime.now(timezone.utc), err[:4000])
        except Exception:  # the ledger must never hide the original error
            log.exception("could not record failure of run %s", self.run_id)
        log.error("run %s failed: %s", self.run_id, exc)


def last_success(spark: SparkSession, path: str, jobs: tuple[str, ...]) -> dict[str, Any] | None:
    """The latest succeeded run of one of ``jobs``, with ``source_versions`` parsed."""
    if not delta_io.table_exists(spark, path):
        return None
    from pyspark.sql import functions as F

    row = (
        delta_io.read(spark, path)
        .filter((F.col("status") == "succeeded") & F.col("job").isin(*jobs))
        .orderBy(F.col("ended_at").desc())
        .first()
    )
    if row is None:
        return None
    out = row.asDict()
    out["source_versions"] = json.loads(out["source_versions"] or "{}")
    return out


def mark_abandoned(spark: SparkSession, path: str, run_id: str, reason: str) -> None:
    """Record a run whose process died (it stayed 'running') as failed."""
    if not delta_io.table_exists(spark, path):
        return
    from pyspark.sql import functions as F

    row = delta_io.read(spark, path).filter((F.col("run_id") == run_id) & (F.col("status") == "running")).first()
    if row is None:
        return
    d = row.asDict()
    d.update(status="failed", ended_at=datetime.now(timezone.utc), error=reason)
    delta_io.upsert_rows(spark, path, [d], RUNS_DDL, ["run_id"])
    log.warning("run %s marked failed: %s", run_id, reason)


def txn_version(run_id: str) -> int:
    """Delta txnVersion for a run: its start time as YYYYMMDDHHMMSS (increases run to run;
    a retry that reuses the run id reuses the number, so Delta skips a write already committed)."""
    return int(run_id.split("-", 1)[0].replace("T", ""))


@contextmanager
def recorded(spark: SparkSession, runs_path: str, lock_root: str, job: str, run_id: str | None = None) -> Iterator[Run]:
    """Run a job under the writer lock with a ledger row: 'running' at start, then
    'succeeded', or 'failed' with the error (re-raised). A run found dead while holding the
    lock is marked failed first."""
    from ecomine.io import lock

    rid = run_id or new_run_id()
    with lock.exclusive(lock_root, "writer", rid, spark=spark) as stale:
        if stale and stale.get("run_id"):
            mark_abandoned(spark, runs_path, stale["run_id"], "abandoned: its process died while holding the lock")
        r = Run(spark, runs_path, job=job, run_id=rid).start()
        try:
            yield r
        except BaseException as e:
            r.fail(e)
            raise
        r.succeed()
