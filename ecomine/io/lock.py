"""One writer at a time: an exclusive lock file next to the tables.

``os.open(O_CREAT | O_EXCL)`` is atomic on local and POSIX network file systems, so of two
runs started at once exactly one gets the lock; the other fails fast with
``ConcurrentRunError`` naming the holder. A lock left by a process that died (same host,
pid gone) is taken over and reported. Object stores (s3://, abfss://) have no atomic
create-if-absent through this path: there, rely on the scheduler running one instance
(e.g. Airflow ``max_active_runs=1``) and Delta's own optimistic concurrency; the lock is
skipped with a warning.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ecomine.errors import ConcurrentRunError

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
def exclusive(root: str, name: str, run_id: str) -> Iterator[dict | None]:
    """Hold ``<root>/_locks/<name>.lock`` for the block. Yields the stale holder's info when a
    dead run's lock was taken over (so the caller can mark that run failed), else None."""
    if "://" in root and not root.startswith("file:"):
        log.warning("no lock on %s (object store); make sure the scheduler runs one instance at a time", root)
        yield None
        return
    d = Path(root.replace("file://", "").replace("file:", "")) / "_locks"
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{name}.lock"
    me = {"run_id": run_id, "pid": os.getpid(), "host": socket.gethostname()}
    stale = None
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = json.loads(path.read_text() or "{}")
            except (OSError, json.JSONDecodeError):
                holder = {}
            if holder.get("host") == me["host"] and holder.get("pid") and not _alive(int(holder["pid"])):
                log.warning(
                    "taking over lock %s left by dead run %s (pid %s)", path, holder.get("run_id"), holder.get("pid")
                )
                stale = holder
                path.unlink(missing_ok=True)
                continue
            raise ConcurrentRunError(
                f"another ecomine run holds {path}: run {holder.get('run_id')} (pid {holder.get('pid')} on "
                f"{holder.get('host')}); not starting. Remove the file only if that run is certainly dead."
            ) from None
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        break
    try:
        yield stale
    finally:
        try:
            if json.loads(path.read_text()).get("run_id") == run_id:
                path.unlink()
        except (OSError, json.JSONDecodeError):
            pass
