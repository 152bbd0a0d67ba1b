"""Score new and changed reviews with the current model and MERGE them into review_scores."""

from __future__ import annotations

import sys

from ecomine import cli, config, pipeline, session, training
from ecomine.errors import ModelArtifactError
from ecomine.runs import Run


def run(spark, cfg: config.Config) -> dict:
    r = Run(spark, cfg.table("runs"), job="score").start()
    try:
        model = training.current_model(spark, cfg)
        if model is None:
            raise ModelArtifactError(f"no current model in {cfg.table('models')}; run jobs/train.py first")
        counts = pipeline.score_reviews(spark, cfg, r, model)
    except BaseException as e:
        r.fail(e)
        raise
    r.succeed()
    return counts


def main(argv: list[str] | None = None) -> int:
    args = cli.job_parser(__doc__).parse_args(argv)
    cli.setup_logging(args.log_level)
    cfg = config.load(args.conf_dir, args.env, args.overrides)
    spark = session.build("ecomine-score", cfg.spark)
    try:
        counts = run(spark, cfg)
    finally:
        spark.stop()
    print(f"scored: {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
