"""One writer at a time: an exclusive lock file next to the tables (``<root>/_locks``).

Created with ``fs.create_new``: ``os.open(O_CREAT | O_EXCL)`` locally (atomic on local and
POSIX network file systems), Hadoop ``createFile().overwrite(false)`` on other file systems
(atomic on HDFS and ABFS, and on S3A through a conditional PUT, ``If-None-Match: *``; an
S3-compatible store without conditional writes makes it check-then-write, so there also
schedule one instance at a time, e.g. Airflow ``max_active_runs=1``). Of two runs started at once one gets the
lock; the other fails fast with ``ConcurrentRunError`` naming the holder. A lock left by a
process that died (same host, pid gone) is taken over and reported.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ecomine.errors import ConcurrentRunError
from ecomine.io import fs

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["exclusive"]

log = logging.getLogger(__name__)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def exclusive(root: str, name: str, run_id: str, spark: SparkSession | None = None) -> Iterator[dict | None]:
    """Hold ``<root>/_locks/<name>.lock`` for the block. Yields the stale holder's info when a
    dead run's lock was taken over (so the caller can mark that run failed), else None.
    ``spark`` is needed for a ``root`` on a Hadoop file system (s3a://, abfss://, hdfs://)."""
    uri = fs.join(fs.qualify_local(root), "_locks", f"{name}.lock")
    me = {"run_id": run_id, "pid": os.getpid(), "host": socket.gethostname()}
    stale = None
    for _ in range(2):
        if fs.create_new(spark, uri, json.dumps(me)):
            break
        try:
            holder = json.loads(fs.read_text(spark, uri) or "{}")
        except (OSError, ValueError):
            holder = {}
        if holder.get("host") == me["host"] and holder.get("pid") and not _alive(int(holder["pid"])):
            log.warning(
                "taking over lock %s left by dead run %s (pid %s)", uri, holder.get("run_id"), holder.get("pid")
            )
            stale = holder
            fs.delete(spark, uri)
            continue
        raise ConcurrentRunError(
            f"another ecomine run holds {uri}: run {holder.get('run_id')} (pid {holder.get('pid')} on "
            f"{holder.get('host')}); not starting. Remove the file only if that run is certainly dead."
        ) from None
    try:
        yield stale
    finally:
        try:
            if json.loads(fs.read_text(spark, uri)).get("run_id") == run_id:
                fs.delete(spark, uri)
        except Exception:  # the lock file vanished or the store is unreachable: nothing to release
            log.warning("could not release lock %s", uri)
