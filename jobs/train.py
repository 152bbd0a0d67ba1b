"""Fine-tune the configured encoder(s) on labelled reviews from Delta and publish a model version."""

from __future__ import annotations

import sys

from ecomine import cli, config, session, training
from ecomine.runs import Run


def run(spark, cfg: config.Config) -> dict:
    r = Run(spark, cfg.table("runs"), job="train").start()
    try:
        manifest = training.train(spark, cfg, r.run_id)
        r.model_version = manifest["model_version"]
        r.details["metrics"] = manifest["metrics"]
    except BaseException as e:
        r.fail(e)
        raise
    r.succeed()
    return manifest


def main(argv: list[str] | None = None) -> int:
    args = cli.job_parser(__doc__).parse_args(argv)
    cli.setup_logging(args.log_level)
    cfg = config.load(args.conf_dir, args.env, args.overrides)
    spark = session.build("ecomine-train", cfg.spark)
    try:
        manifest = run(spark, cfg)
    finally:
        spark.stop()
    print(f"model {manifest['model_version']} at {manifest['artifact_path']}")
    for row in training.summarize_metrics(manifest["metrics"]):
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
