"""One-time set-up step run by `make setup`: fetch Delta's jars (Ivy cache) and build model caches.

Idempotent: a second call finds everything cached and returns in seconds."""

from __future__ import annotations

import logging
import sys
import time

__all__ = ["main"]


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("ecomine.setup")
    t0 = time.time()
    from ecomine import config, session

    # Resolves Delta's jar and the S3A connector (hadoop-aws + AWS SDK, for s3a:// storage and
    # the object-storage test) through Ivy once; later sessions find them in the Ivy cache.
    cfg = config.load("conf", "test", ["storage.root=s3a://ecomine-setup/lake"])
    spark = session.build("ecomine-setup", cfg.spark, storage=cfg.storage)
    spark.range(1).count()
    spark.stop()
    log.info("Delta and S3A connector jars ready (%.0fs)", time.time() - t0)
    try:
        from ecomine.tools import e5_convert
    except ImportError:
        return 0
    t1 = time.time()
    path = e5_convert.ensure_converted()
    log.info("multilingual-e5-small checkpoint ready at %s (%.0fs)", path, time.time() - t1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
