"""Score new and changed reviews (review_scores) and catalog products (catalog_scores) with the current model."""

from __future__ import annotations

import sys

from ecomine import cli, config, session
from ecomine.errors import ModelArtifactError
from ecomine.flows import pipeline
from ecomine.flows import train as training
from ecomine.io import runs


def run(spark, cfg: config.Config, run_id: str | None = None) -> runs.Run:
    with runs.recorded(spark, cfg.table("runs"), cfg.storage.root, "score", run_id) as r:
        model = training.current_model(spark, cfg)
        if model is None:
            raise ModelArtifactError(f"no current model in {cfg.table('models')}; run jobs/train.py first")
        pipeline.score_entities(spark, cfg, r, model)
        return r


def main(argv: list[str] | None = None) -> int:
    args = cli.job_parser(__doc__).parse_args(argv)
    cli.setup_logging(args.log_level)
    cfg = config.load(args.conf_dir, args.env, args.overrides)
    spark = session.build("ecomine-score", cfg.spark, storage=cfg.storage)
    try:
        r = run(spark, cfg, args.run_id)
    finally:
        spark.stop()
    print(f"run {r.run_id}: {r.counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
