"""Fine-tune the configured encoder(s) on labelled reviews from Delta and publish a model version
(it becomes current only if its held-out metrics pass the promotion rule)."""

from __future__ import annotations

import sys

from ecomine import cli, config, session
from ecomine.flows import train as training
from ecomine.io import runs


def run(spark, cfg: config.Config, run_id: str | None = None) -> dict:
    with runs.recorded(spark, cfg.table("runs"), cfg.storage.root, "train", run_id) as r:
        manifest = training.train(spark, cfg, r.run_id)
        r.model_version = manifest["model_version"]
        r.details.update(metrics=manifest["metrics"], promotion=manifest.get("promotion"))
        return manifest


def main(argv: list[str] | None = None) -> int:
    args = cli.job_parser(__doc__).parse_args(argv)
    cli.setup_logging(args.log_level)
    cfg = config.load(args.conf_dir, args.env, args.overrides)
    spark = session.build("ecomine-train", cfg.spark, storage=cfg.storage)
    try:
        manifest = run(spark, cfg, args.run_id)
    finally:
        spark.stop()
    print(f"model {manifest['model_version']} at {manifest['artifact_path']}: {manifest.get('promotion')}")
    for row in training.summarize_metrics(manifest["metrics"]):
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
