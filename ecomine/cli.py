"""Command-line parsing shared by the jobs, and the ``ecomine`` console entry point."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path


def job_parser(description: str | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--conf-dir", default=os.environ.get("ECOMINE_CONF_DIR", "conf"), help="folder with base.yaml and <env>.yaml")
    p.add_argument("--env", default=os.environ.get("ECOMINE_ENV", "local"), help="config layer on top of base.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a config key (repeatable)")
    p.add_argument("--log-level", default=os.environ.get("ECOMINE_LOG_LEVEL", "INFO"))
    p.add_argument("--run-id", default=None, help="reuse a run id to retry a run: its Delta writes are skipped if already committed")
    return p


def setup_logging(level: str) -> None:
    """Called from job ``main`` only (never at import)."""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("py4j", "urllib3", "filelock", "transformers.modeling_utils"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def console_main(argv: list[str] | None = None) -> int:
    """``ecomine`` console entry point (on-call views of the lakehouse)."""
    p = argparse.ArgumentParser(prog="ecomine", description="ecomine: look at runs, models and scores")
    p.add_argument("command", choices=["runs", "models"])
    p.add_argument("--conf-dir", default=str(Path(os.environ.get("ECOMINE_CONF_DIR", "conf"))))
    p.add_argument("--env", default=os.environ.get("ECOMINE_ENV", "local"))
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("-n", type=int, default=10)
    args = p.parse_args(argv)
    from ecomine import config, delta_io, session

    cfg = config.load(args.conf_dir, args.env, args.overrides)
    spark = session.build("ecomine-cli", cfg.spark)
    try:
        table = {"runs": "runs", "models": "models"}[args.command]
        df = delta_io.read(spark, cfg.table(table))
        order = "started_at" if table == "runs" else "created_at"
        cols = (
            ["run_id", "job", "status", "started_at", "ended_at", "model_version", "rows_in", "rows_scored", "rows_rejected", "error"]
            if table == "runs"
            else ["model_version", "status", "created_at", "base_models", "metrics"]
        )
        df.orderBy(df[order].desc()).select(*cols).show(args.n, truncate=60)
    finally:
        spark.stop()
    return 0
