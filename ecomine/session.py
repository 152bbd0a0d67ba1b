"""The one place a SparkSession is built. Never called at import time."""

from __future__ import annotations

import logging
import os
import sys

from ecomine.config import SparkConfig, StorageConfig

__all__ = ["DELTA_EXTENSION", "build", "delta_maven_coordinate", "jar_packages"]

log = logging.getLogger(__name__)

DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"


def delta_maven_coordinate() -> str:
    """``io.delta:delta-spark_<spark major.minor>_2.13:<installed delta-spark>``, as delta's pip helper asks Ivy."""
    from importlib.metadata import version

    import pyspark

    spark_mm = ".".join(pyspark.__version__.split(".")[:2])
    return f"io.delta:delta-spark_{spark_mm}_2.13:{version('delta-spark')}"


def jar_packages(cfg: SparkConfig, storage: StorageConfig | None = None) -> str:
    """``spark.jars.packages`` for a job: Delta's jar (``cfg.delta_package``; ``auto``: the
    one matching pyspark) and, when ``storage`` puts anything on ``s3a://``, the S3A
    connector matching pyspark's Hadoop (``hadoop-aws``, which brings its AWS SDK)."""
    from ecomine.io import fs

    pkg = cfg.delta_package
    delta = delta_maven_coordinate() if pkg == "auto" else pkg
    return fs.maven_packages(storage, delta) if storage is not None else delta


def build(
    app_name: str, cfg: SparkConfig, extra_conf: dict[str, str] | None = None, storage: StorageConfig | None = None
):
    """Build (or get) the SparkSession for a job.

    Settings come from ``cfg.conf`` (config layers), then the Hadoop settings of
    ``storage`` (``storage.s3`` -> ``spark.hadoop.fs.s3a.*``), then ``extra_conf``;
    anything spark-submit already set (master, jars, resources) wins because
    ``getOrCreate`` keeps a launcher-provided master. Jars (``jar_packages``: Delta, and the
    S3A connector when storage is on s3a://) are added via ``spark.jars.packages`` unless
    spark-submit already supplied them (``spark-submit.sh`` asks ``jar_packages`` too).
    """
    from pyspark.sql import SparkSession

    # Executors and the driver must run the same interpreter (the one with torch).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)

    from ecomine.io import fs

    conf = dict(cfg.conf)
    if storage is not None:
        conf.update(fs.hadoop_conf(storage))
    conf.update(extra_conf or {})
    launched_by_submit = "SPARK_SUBMIT_OPTS" in os.environ or os.environ.get("ECOMINE_SUBMITTED") == "1"
    if launched_by_submit:
        # spark-submit decided master and jars; do not override them from config.
        conf.pop("spark.master", None)
    builder = SparkSession.builder.appName(app_name)
    for key, value in conf.items():
        builder = builder.config(key, str(value))
    packages = "" if launched_by_submit else jar_packages(cfg, storage)
    if packages:
        builder = builder.config("spark.jars.packages", packages)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(os.environ.get("ECOMINE_SPARK_LOG_LEVEL", "WARN"))
    log.info(
        "spark session %s: master=%s version=%s",
        app_name,
        spark.sparkContext.master,
        spark.version,
    )
    return spark


def main(argv: list[str] | None = None) -> int:
    """``python -m ecomine.session packages JOB-ARGS...``: the ``--packages`` value
    spark-submit.sh passes for a job run with those arguments (its config decides whether
    the S3A connector is needed)."""
    from ecomine import cli, config

    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] != "packages":
        print("usage: python -m ecomine.session packages [--conf-dir D] [--env E] [--set K=V ...]", file=sys.stderr)
        return 2
    parsed, _ = cli.job_parser(None).parse_known_args(args[1:])
    cfg = config.load(parsed.conf_dir, parsed.env, parsed.overrides)
    print(jar_packages(cfg.spark, cfg.storage))
    return 0


if __name__ == "__main__":
    sys.exit(main())
