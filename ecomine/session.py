"""The one place a SparkSession is built. Never called at import time."""

from __future__ import annotations

import logging
import os
import sys

from ecomine.config import SparkConfig

__all__ = ["DELTA_EXTENSION", "build", "delta_maven_coordinate"]

log = logging.getLogger(__name__)

DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"


def delta_maven_coordinate() -> str:
    """``io.delta:delta-spark_<spark major.minor>_2.13:<installed delta-spark>``, as delta's pip helper asks Ivy."""
    from importlib.metadata import version

    import pyspark

    spark_mm = ".".join(pyspark.__version__.split(".")[:2])
    return f"io.delta:delta-spark_{spark_mm}_2.13:{version('delta-spark')}"


def build(app_name: str, cfg: SparkConfig, extra_conf: dict[str, str] | None = None):
    """Build (or get) the SparkSession for a job.

    Settings come from ``cfg.conf`` (config layers) and then ``extra_conf``; anything
    spark-submit already set (master, jars, resources) wins over neither because
    ``getOrCreate`` keeps a launcher-provided master. Delta's jars are added via
    ``spark.jars.packages`` unless spark-submit already supplied them or
    ``cfg.delta_package`` is empty.
    """
    from pyspark.sql import SparkSession

    # Executors and the driver must run the same interpreter (the one with torch).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)

    conf = dict(cfg.conf)
    conf.update(extra_conf or {})
    launched_by_submit = "SPARK_SUBMIT_OPTS" in os.environ or os.environ.get("ECOMINE_SUBMITTED") == "1"
    if launched_by_submit:
        # spark-submit decided master and jars; do not override them from config.
        conf.pop("spark.master", None)
    builder = SparkSession.builder.appName(app_name)
    for key, value in conf.items():
        builder = builder.config(key, str(value))
    pkg = cfg.delta_package
    if pkg and not launched_by_submit:
        coord = delta_maven_coordinate() if pkg == "auto" else pkg
        builder = builder.config("spark.jars.packages", coord)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(os.environ.get("ECOMINE_SPARK_LOG_LEVEL", "WARN"))
    log.info(
        "spark session %s: master=%s version=%s",
        app_name,
        spark.sparkContext.master,
        spark.version,
    )
    return spark
