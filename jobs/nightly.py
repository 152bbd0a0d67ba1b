"""The nightly job: train when no model exists (or when asked), then score new/changed reviews
into review_scores and catalog products into catalog_scores (and their embeddings into
product_embeddings), derive the fraud, risk, insight and explanation tables, then
similar_products and recommendations, with one row per run in the runs table."""

from __future__ import annotations

import json
import sys
import time

from ecomine import cli, config, session
from ecomine.derived import report
from ecomine.flows import pipeline
from ecomine.flows import train as training
from ecomine.io import runs


def run(spark, cfg: config.Config, train: bool = False, run_id: str | None = None) -> runs.Run:
    with runs.recorded(spark, cfg.table("runs"), cfg.storage.root, "nightly", run_id) as r:
        model = pipeline.ensure_model(spark, cfg, r, force_train=train)
        pipeline.score_entities(spark, cfg, r, model)
        pipeline.derive_tables(spark, cfg, r, model)
        pipeline.derive_product_tables(spark, cfg, r)
    if r.details.get("selection") != "unchanged" or r.counts.get("rows_scored"):
        # After the ledger row is final, so the page shows the run's real status and times.
        r.details["report"] = report.write_report(
            report.render_run_report(spark, cfg.storage, cfg.tables, r.run_id),
            report.reports_dir(cfg.storage),
            r.run_id,
            spark=spark,
        )
    return r


def _summary(spark, cfg: config.Config, r: runs.Run, seconds: float) -> str:
    model = training.current_model(spark, cfg)
    lines = [
        f"nightly run {r.run_id} succeeded in {seconds:.0f}s",
        f"  rows read {r.counts.get('rows_in')}, scored {r.counts.get('rows_scored')}, "
        f"rejected {r.counts.get('rows_rejected')}, written {r.counts.get('rows_written')}",
        f"  model {r.model_version}" + (" (trained this run)" if r.details.get("trained") else " (existing)"),
    ]
    if r.details.get("promotion"):
        p = r.details["promotion"]
        lines.append(f"  model trained this run: {p['model_version']} {p['status']} ({p['reason']})")
    if model:
        for row in training.summarize_metrics(json.loads(model["metrics"])):
            lines.append(
                f"    {row['language']:<7} {row['task']:<10} {row['method']:<10} {row['metric']} {row['value']:.3f}  (n={row['n']})"
            )
    if r.details.get("catalog"):
        c = r.details["catalog"]
        lines.append(f"  catalog products scored {c['scored']}, rejected {c['rejected']}, written {c['written']}")
    product_tables = [
        f"{name} {r.details[f'{name}_written']} rows written, {r.details.get(f'{name}_deleted', 0)} removed"
        for name in ("similar_products", "recommendations")
        if f"{name}_written" in r.details
    ]
    if product_tables:
        lines.append("  " + "; ".join(product_tables))
    if r.details.get("report"):
        lines.append(f"  run report: {r.details['report']}")
    lines += [
        f"  tables under {cfg.storage.table_path('')}: reviews, catalog, review_scores, review_scores_rejects, catalog_scores, runs, models, ...",
        "  look at them: .venv/bin/pyspark ... or",
        f"    SELECT language, rating_label, sentiment_label, count(*) FROM delta.`{cfg.table('review_scores')}` GROUP BY 1,2,3",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = cli.job_parser(__doc__)
    p.add_argument("--train", action="store_true", help="train a new model version before scoring")
    args = p.parse_args(argv)
    cli.setup_logging(args.log_level)
    cfg = config.load(args.conf_dir, args.env, args.overrides)
    t0 = time.time()
    spark = session.build("ecomine-nightly", cfg.spark, storage=cfg.storage)
    try:
        r = run(spark, cfg, train=args.train, run_id=args.run_id)
        print(_summary(spark, cfg, r, time.time() - t0))
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
