"""Spark tests of ecomine.derived.fraud on tiny hand-built marketplaces.

Every expected value below is worked out by hand from the rows (see the comments), not
recomputed with the code under test. One module-scoped run of ``with_fraud_signals``
serves most tests; a few scenarios need their own small run.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from ecomine.config import FraudConfig
from ecomine.derived.fraud import SIGNAL_COLUMNS, product_risk, reviewer_risk, with_fraud_signals
from ecomine.errors import DataError, SchemaError

SCHEMA = (
    "review_id string, product_id string, reviewer_id string, rating int, text string, "
    "language string, created_at timestamp, p_positive double"
)


def ts(day: str, hour: int = 12) -> datetime:
    return datetime.fromisoformat(day) + timedelta(hours=hour)


BURST_TEXTS = [
    "The blender crushes ice in seconds and the jug feels sturdy",
    "Motor is strong enough for frozen fruit smoothies every morning",
    "Cleaning the blades takes a minute under warm running water",
    "It sits firmly on the counter thanks to the rubber feet underneath",
    "The lid seals tightly so nothing splashes while it runs at full speed",
    "Pulse mode gives me control when chopping onions for salsa",
    "Arrived in two days, well packed, with a printed recipe booklet",
    "Makes nut butter without overheating, which surprised me",
    "The glass jar is heavy but it does not hold any smells",
    "Three speed settings cover everything from soup to crushed ice",
]
HISTORY_TEXTS = [
    "Works as described although the cord could be longer",
    "Average blender, a bit noisy at the highest setting",
    "Does the job for soups but struggles with whole carrots",
    "The jug has measurement marks that fade after washing",
    "Middle of the road appliance for the price we paid",
    "Ok for daily use, nothing special about the design",
]
HISTORY_DAYS = ["2025-01-01", "2025-01-10", "2025-01-20", "2025-01-30", "2025-02-09", "2025-02-19"]


def _jaccard5(a: str, b: str) -> float:
    """Independent check of the test's premise: Jaccard of 5-character shingles."""

    def sh(t: str) -> set[str]:
        t = re.sub(r"[\W_]+", " ", t.lower()).strip()
        return {t[i : i + 5] for i in range(max(len(t) - 5, 0) + 1)}

    x, y = sh(a), sh(b)
    return len(x & y) / len(x | y)


CHAIN = [
    "the almond butter spreads easily on warm toast and tastes of roasted nuts with a hint of sea salt",
    "the almond butter spreads easily on warm toast and tastes of roasted nuts with a pinch of brown sugar",
    "my peanut paste spreads easily on warm toast and tastes of roasted nuts with a pinch of brown sugar",
    "the delivery van was late twice and the driver left the parcel in the rain",
]


#: More bands than the default so that a pair at Jaccard 0.68 is missed with p < 1e-4.
CFG = FraudConfig(minhash_bands=16, minhash_rows=2)


def marketplace_rows() -> list[tuple]:
    rows = [
        # duplicates: d1 and d2 are the same text after normalisation (case, punctuation)
        (
            "d1",
            "PD1",
            "UA",
            5,
            "This cereal is the best breakfast I have ever had and my kids love it too",
            "en",
            ts("2025-03-01"),
            0.97,
        ),
        (
            "d2",
            "PD2",
            "UB",
            5,
            "THIS cereal is the best breakfast I have ever had, and my kids love it too!!",
            "en",
            ts("2025-03-02"),
            0.97,
        ),
        (
            "d3",
            "PD3",
            "UC",
            4,
            "Arrived quickly and the box was intact; flavour is mild but pleasant",
            "en",
            ts("2025-03-03"),
            0.8,
        ),
        # reviewer UX: ratings [5, 5, 1] on 3 products, two of them on 2025-04-01
        (
            "x1",
            "PR1",
            "UX",
            5,
            "Solid coffee with a nutty aftertaste, fair value for the price",
            "en",
            ts("2025-04-01", 10),
            0.9,
        ),
        (
            "x2",
            "PR2",
            "UX",
            5,
            "Crunchy granola clusters, not too sweet, I eat it every morning",
            "en",
            ts("2025-04-01", 11),
            0.9,
        ),
        (
            "x3",
            "PR3",
            "UX",
            1,
            "The tea bags tore open and the leaves spilled everywhere, very messy",
            "en",
            ts("2025-04-05"),
            0.1,
        ),
        # other reviewers of PR1: ratings 3 and 1 -> consensus for x1 = (3 + 1) / 2 = 2.0
        ("y1", "PR1", "UY", 3, "Decent coffee but a little bitter for my taste", "en", ts("2025-04-02"), 0.5),
        ("y2", "PR1", "UZ", 1, "Stale beans, tasted like cardboard, would not buy again", "en", ts("2025-04-03"), 0.05),
        # a single-product account: two reviews, both on PR2
        ("s1", "PR2", "US", 4, "Bought a second bag of this granola for the office", "en", ts("2025-04-06"), 0.85),
        ("s2", "PR2", "US", 4, "Still eating this granola a month later with yoghurt", "en", ts("2025-05-06"), 0.85),
        # content cues
        (
            "c1",
            "PC",
            "UC1",
            4,
            "Order it cheaper at www.cheap-snacks.biz before it sells out",
            "en",
            ts("2025-06-01"),
            0.7,
        ),
        (
            "c2",
            "PC",
            "UC2",
            4,
            "Fine tea. Add me on WeChat: teashop888 for wholesale prices",
            "en",
            ts("2025-06-02"),
            0.7,
        ),
        ("c3", "PC", "UC3", 5, "AMAZING PRODUCT!!! LOVE IT", "en", ts("2025-06-03"), 0.99),
        ("c4", "PC", "UC4", 5, "质量很好，好评！！！！", "zh", ts("2025-06-04"), 0.99),
        # rating/text disagreement; g2 has no reviewer id (and so no reviewer signals)
        (
            "g1",
            "PG",
            "UG1",
            5,
            "The jar arrived cracked and the sauce tasted sour and spoiled",
            "en",
            ts("2025-07-01"),
            0.02,
        ),
        (
            "g2",
            "PG",
            None,
            1,
            "Absolutely delicious, the hottest sauce I have tried in years",
            "en",
            ts("2025-07-02"),
            0.95,
        ),
        # a null row and a bad row (rating 9, empty text, p_positive 1.7)
        ("n1", None, None, None, None, "en", None, None),
        ("b1", "PBAD", "UBAD", 9, "", "en", ts("2025-08-01"), 1.7),
    ]
    # product PB: one 3-star review on each of 6 quiet days, then ten 5-star reviews on 2025-03-01
    for i, (day, text) in enumerate(zip(HISTORY_DAYS, HISTORY_TEXTS)):
        rows.append((f"h{i}", "PB", f"UH{i}", 3, text, "en", ts(day), 0.5))
    for i, text in enumerate(BURST_TEXTS):
        rows.append((f"k{i}", "PB", f"UK{i}", 5, text, "en", ts("2025-03-01", 8 + i), 0.9))
    # a chain of near-duplicates (A~B, B~C, not A~C) and an unrelated text, no timestamps
    for i, text in enumerate(CHAIN):
        rows.append((f"t{i}", f"PT{i}", f"UT{i}", 5, text, "en", None, 0.9))
    # like the demo data: no reviewer ids, no timestamps; product ids and ratings only
    vanilla = "Tastes like real vanilla and the bottle lasts for months"
    rows += [
        ("a1", "PN1", None, 5, vanilla, "en", None, 0.9),
        ("a2", "PN1", None, 1, vanilla, "en", None, 0.9),
        ("a3", "PN2", None, 5, "The lid broke on arrival and half the oil leaked into the box", "en", None, 0.05),
    ]
    return rows


@pytest.fixture(scope="module")
def scored(spark):
    df = spark.createDataFrame(marketplace_rows(), SCHEMA)
    out = with_fraud_signals(df, CFG).cache()
    yield out
    out.unpersist()


def one(scored, review_id: str):
    return scored.where(F.col("review_id") == review_id).first()


# --------------------------------------------------------------------------- shape


def test_one_row_per_review_and_every_review_scored(scored):
    n = len(marketplace_rows())
    assert scored.count() == n
    assert scored.select("review_id").distinct().count() == n
    assert scored.where(F.col("fraud_score").isNull()).count() == 0
    assert scored.where((F.col("fraud_score") < 0) | (F.col("fraud_score") > 1)).count() == 0
    assert scored.where(F.col("fraud_reasons").isNull()).count() == 0
    assert scored.columns[:8] == [
        "review_id",
        "product_id",
        "reviewer_id",
        "rating",
        "text",
        "language",
        "created_at",
        "p_positive",
    ]
    assert set(SIGNAL_COLUMNS) <= set(scored.columns)
    assert dict(scored.dtypes)["fraud_reasons"] == "array<string>"


def test_missing_input_column_is_a_schema_error(spark):
    df = spark.createDataFrame([("r1", "t")], "review_id string, text string")
    with pytest.raises(SchemaError, match="p_positive"):
        with_fraud_signals(df, FraudConfig())


# --------------------------------------------------------------------------- duplicates


def test_duplicate_clusters(scored, spark):
    # d1/d2: same text, 2 reviewers, 2 products; d3 unrelated -> 1; null and empty text -> null
    got = scored.where(F.col("review_id").isin("d1", "d2", "d3", "n1", "b1")).select(
        "review_id", "sig_dup_cluster_size", "sig_dup_cluster_reviewers", "sig_dup_cluster_products"
    )
    expected = spark.createDataFrame(
        [("d1", 2, 2, 2), ("d2", 2, 2, 2), ("d3", 1, 1, 1), ("n1", None, None, None), ("b1", None, None, None)],
        "review_id string, sig_dup_cluster_size long, sig_dup_cluster_reviewers long, sig_dup_cluster_products long",
    )
    assertDataFrameEqual(got, expected)
    assert "duplicate text x2 across 2 reviewers" in one(scored, "d1")["fraud_reasons"]


def test_near_duplicates_are_clustered_transitively(scored):
    # premise: A~B and B~C pass the 0.6 threshold, A~C does not
    assert _jaccard5(CHAIN[0], CHAIN[1]) >= 0.6
    assert _jaccard5(CHAIN[1], CHAIN[2]) >= 0.6
    assert _jaccard5(CHAIN[0], CHAIN[2]) < 0.6
    got = {r["review_id"]: r["sig_dup_cluster_size"] for r in scored.where("review_id LIKE 't%'").collect()}
    assert got == {"t0": 3, "t1": 3, "t2": 3, "t3": 1}


# --------------------------------------------------------------------------- reviewer and product


def test_reviewer_signals(scored, spark):
    got = scored.where(F.col("reviewer_id").isin("UX", "US")).select(
        "review_id",
        "sig_reviewer_reviews",
        "sig_reviewer_products",
        "sig_reviewer_single_product",
        "sig_reviewer_extreme_share",
        "sig_reviewer_max_per_day",
    )
    expected = spark.createDataFrame(
        [
            # UX: [5, 5, 1] -> all extreme; 3 products; two reviews on 2025-04-01
            ("x1", 3, 3, False, 1.0, 2),
            ("x2", 3, 3, False, 1.0, 2),
            ("x3", 3, 3, False, 1.0, 2),
            # US: [4, 4] on one product, on different days
            ("s1", 2, 1, True, 0.0, 1),
            ("s2", 2, 1, True, 0.0, 1),
        ],
        "review_id string, sig_reviewer_reviews long, sig_reviewer_products long, "
        "sig_reviewer_single_product boolean, sig_reviewer_extreme_share double, sig_reviewer_max_per_day long",
    )
    assertDataFrameEqual(got, expected)
    assert "account posted 2 reviews, all on this product" in one(scored, "s1")["fraud_reasons"]


def test_consensus_leaves_the_reviewer_out(scored):
    x1, y1, y2 = one(scored, "x1"), one(scored, "y1"), one(scored, "y2")
    # PR1 ratings: UX 5, UY 3, UZ 1
    assert (x1["sig_product_consensus"], x1["sig_product_consensus_n"], x1["sig_rating_deviation"]) == (2.0, 2, 3.0)
    assert (y1["sig_product_consensus"], y1["sig_rating_deviation"]) == (3.0, 0.0)
    assert (y2["sig_product_consensus"], y2["sig_rating_deviation"]) == (4.0, 3.0)
    # UX's deviations: x1 3.0 (vs 2.0); x2 vs US's two 4s -> 1.0; x3 alone on PR3 -> none
    assert x1["sig_reviewer_consensus_dev"] == pytest.approx(2.0)
    assert x1["sig_reviewer_consensus_n"] == 2


def test_null_reviewer_gets_null_reviewer_signals_but_a_score(scored):
    g2 = one(scored, "g2")
    for col in SIGNAL_COLUMNS:
        if col.startswith("sig_reviewer_"):
            assert g2[col] is None, col
    assert g2["fraud_score"] is not None
    # 1 star, p=0.95: gap 0.95 -> risk 1 * low-rating factor 0.4 -> contribution 0.8 * 0.4 = 0.32
    assert g2["fraud_reasons"][0] == "1 star but text reads positive (p=0.95)"


def test_product_burst(scored):
    k0 = one(scored, "k0")
    # PB: 7 active days (6 x 1 review, then 10) -> median 1; z_day = (10 - 1) / 1 = 9
    # window: 16 reviews over a 60-day span -> 16 / 60 * 7 = 1.87 expected; (10 - 1.87) / 1.37 = 5.95 < 9
    assert k0["sig_product_day_reviews"] == 10
    assert k0["sig_product_window_reviews"] == 10
    assert k0["sig_product_expected_daily"] == 1.0
    assert k0["sig_product_burst_z"] == pytest.approx(9.0)
    # window mean 5.0 vs other days' 3.0
    assert k0["sig_product_window_rating_shift"] == pytest.approx(2.0)
    assert k0["sig_product_other_days_rating"] == pytest.approx(3.0)
    # only risk: burst ramp((9 - 3) / (10 - 3)) = 6/7 at full direction factor (the window
    # closes 2.0 of the 2.0 stars of room up to 5), weight 0.98
    assert k0["fraud_score"] == pytest.approx(0.98 * 6 / 7)
    assert k0["fraud_reasons"] == ["product got 10 reviews that day, 10 in 7 days (usual 1/day)"]
    assert k0["fraud_reason_codes"] == ["product_burst"]
    h0 = one(scored, "h0")
    assert h0["sig_product_day_reviews"] == 1
    assert h0["sig_product_burst_z"] == pytest.approx(0.0)
    assert h0["fraud_reasons"] == []


def test_product_burst_on_a_product_already_rated_high(spark):
    """The direction factor counts the share of the room left on the scale that the window's
    ratings close, computed here by hand."""
    # product PQ: a 4-star review on each of 6 quiet days, then a day with 5 five-star and
    # 5 four-star reviews (the same distinct texts as PB's burst, on another product)
    rows = [
        (f"q{i}", "PQ", f"UQ{i}", 4, text, "en", ts(day), 0.75)
        for i, (day, text) in enumerate(zip(HISTORY_DAYS, HISTORY_TEXTS))
    ]
    rows += [
        (f"r{i}", "PQ", f"UR{i}", 5 if i < 5 else 4, text, "en", ts("2025-03-01", 8 + i), 0.95 if i < 5 else 0.75)
        for i, text in enumerate(BURST_TEXTS)
    ]
    out = {r["review_id"]: r for r in with_fraud_signals(spark.createDataFrame(rows, SCHEMA), CFG).collect()}
    r0, r9 = out["r0"], out["r9"]
    # window mean (5 * 5 + 5 * 4) / 10 = 4.5 against 4.0 on the other days: 0.5 stars of the
    # 1.0 star of room up to 5 -> share 0.5 -> factor 0.5 + 0.5 * (0.5 - 0.4) / (0.9 - 0.4) = 0.6
    assert r0["sig_product_window_rating_shift"] == pytest.approx(0.5)
    assert r0["sig_product_other_days_rating"] == pytest.approx(4.0)
    assert r0["sig_product_burst_z"] == pytest.approx(9.0)
    expected = 0.98 * (6 / 7) * 0.6
    # no other risk: one review per account, ratings near consensus, texts agree with ratings
    assert r0["fraud_score"] == pytest.approx(expected)
    assert r9["fraud_score"] == pytest.approx(expected)  # a 4-star review counts the upward shift too
    assert r0["fraud_reason_codes"] == ["product_burst"]
    # the quiet days are no burst
    assert out["q0"]["sig_product_burst_z"] == pytest.approx(0.0) and out["q0"]["fraud_score"] == pytest.approx(0.0)


def test_coordinated_inflation(spark):
    """Two accounts giving 5 stars to complaints on one product: each such review carries
    ramp(2, 1, 3) = 0.5 coordinated-inflation risk; a review that is not inflated none."""
    rows = [
        ("x1", "PX", "UX1", 5, "The kettle leaks at the seam and the handle got too hot", "en", ts("2025-01-01"), 0.05),
        ("x2", "PX", "UX2", 5, "Stopped heating after a week and support never answered", "en", ts("2025-02-01"), 0.05),
        ("x3", "PX", "UX3", 2, "Slow to boil and the lid is hard to open with one hand", "en", ts("2025-03-01"), 0.1),
        ("y1", "PY", "UY1", 5, "Rust spots inside the kettle after the very first boil", "en", ts("2025-01-01"), 0.05),
    ]
    out = {r["review_id"]: r for r in with_fraud_signals(spark.createDataFrame(rows, SCHEMA), CFG).collect()}
    assert [out[k]["sig_product_inflating_reviewers"] for k in ("x1", "x2", "x3", "y1")] == [2, 2, 2, 1]
    # x1: disagreement gap 0.95 -> 1 x 0.8; coordinated 0.5 x 0.5; consensus of the others
    # (5 + 2) / 2 = 3.5 is 1.5 away: no deviation risk; nothing else
    assert out["x1"]["fraud_score"] == pytest.approx(1 - (1 - 0.8) * (1 - 0.5 * 0.5))
    assert out["x1"]["fraud_reasons"] == [
        "5 stars but text reads negative (p=0.05)",
        "2 accounts gave 4-5 stars to texts that read negative on this product",
    ]
    assert "coordinated_inflation" not in out["x3"]["fraud_reason_codes"]
    # y1 is alone on its product: an accident, not a campaign (disagreement only)
    assert out["y1"]["fraud_score"] == pytest.approx(0.8)


# --------------------------------------------------------------------------- text


def test_disagreement(scored):
    g1 = one(scored, "g1")
    assert g1["sig_rating_text_gap"] == pytest.approx(0.98)
    # risks: disagreement 1 (weight 0.8); reviewer consensus |5 - 1| = 4 over 1 review ->
    # 1 * 1/4 (weight 0.6 -> 0.15); rating deviation 4 with 1 other rating -> 1 * 1/5
    # (weight 0.25 -> 0.05, below the 0.1 needed for a reason)
    assert g1["fraud_score"] == pytest.approx(1 - (1 - 0.8) * (1 - 0.15) * (1 - 0.05))
    assert g1["fraud_reasons"] == [
        "5 stars but text reads negative (p=0.02)",
        "reviewer is 4.0 stars off product consensus on average",
    ]
    assert one(scored, "d1")["sig_rating_text_gap"] == pytest.approx(0.03)


def test_content_cues(scored, spark):
    got = scored.where(F.col("review_id").isin("c1", "c2", "c3", "c4", "d3", "b1")).select(
        "review_id", "sig_url", "sig_contact", "sig_generic_praise", "sig_exclamations", "sig_repeated_chars"
    )
    expected = spark.createDataFrame(
        [
            ("c1", True, False, False, 0, False),
            ("c2", False, True, False, 0, False),
            ("c3", False, False, True, 3, False),  # "!!!" is 3, not 4 repeats
            ("c4", False, False, True, 4, True),  # "！！！！"
            ("d3", False, False, False, 0, False),
            ("b1", False, False, False, 0, False),  # empty text: known, nothing in it
        ],
        "review_id string, sig_url boolean, sig_contact boolean, sig_generic_praise boolean, "
        "sig_exclamations int, sig_repeated_chars boolean",
    )
    assertDataFrameEqual(got, expected)
    c3 = one(scored, "c3")
    assert c3["sig_caps_share"] == 1.0
    assert "very short generic praise" in c3["fraud_reasons"]
    assert "link in text" in one(scored, "c1")["fraud_reasons"]
    assert one(scored, "c2")["fraud_reasons"][0] == "contact details in text"


def test_null_and_bad_rows(scored):
    n1 = one(scored, "n1")
    assert all(n1[c] is None for c in SIGNAL_COLUMNS)
    assert n1["fraud_score"] == 0.0 and n1["fraud_reasons"] == []
    b1 = one(scored, "b1")
    assert b1["sig_rating_text_gap"] is None  # rating 9 and p 1.7 are not usable
    assert b1["sig_product_consensus_n"] == 0
    assert b1["sig_reviewer_rated"] == 0 and b1["sig_reviewer_extreme_share"] is None
    assert b1["sig_text_chars"] == 0
    assert b1["fraud_score"] == 0.0


def test_rows_without_reviewer_or_time(scored):
    got = {r["review_id"]: r for r in scored.where(F.col("review_id").isin("a1", "a2", "a3")).collect()}
    for r in got.values():
        assert r["fraud_score"] is not None
        assert r["sig_reviewer_reviews"] is None and r["sig_reviewer_max_per_day"] is None
        assert r["sig_product_burst_z"] is None and r["sig_product_day_reviews"] is None
    # the text still clusters: 2 copies on one product, no reviewer ids -> reviewers null
    assert got["a1"]["sig_dup_cluster_size"] == 2
    assert got["a1"]["sig_dup_cluster_reviewers"] is None
    assert got["a1"]["sig_dup_product_copies"] == 2
    assert got["a1"]["fraud_reasons"][0] == "duplicate text x2 across 1 products"
    assert got["a1"]["sig_product_consensus"] == 1.0  # a2's rating
    assert got["a3"]["fraud_reasons"][0] == "5 stars but text reads negative (p=0.05)"


def test_rerun_in_exact_only_mode(scored):
    # a rerun on its own output replaces the fraud columns; without MinHash only exact
    # (normalised) duplicates cluster, so the near-duplicate chain falls apart
    again = with_fraud_signals(scored.drop("fraud_reason_codes"), FraudConfig(minhash_bands=0))
    assert again.columns == scored.columns
    assert again.count() == scored.count()
    got = {r["review_id"]: r["sig_dup_cluster_size"] for r in again.where("review_id IN ('t0', 't1', 'd1')").collect()}
    assert got == {"t0": 1, "t1": 1, "d1": 2}


# --------------------------------------------------------------------------- aggregates


def test_reviewer_risk(scored):
    rr = {r["reviewer_id"]: r for r in reviewer_risk(scored).collect()}
    assert None not in rr
    ux = rr["UX"]
    assert (ux["reviews"], ux["products"], ux["extreme_share"], ux["max_reviews_per_day"]) == (3, 3, 1.0, 2)
    assert ux["mean_rating"] == pytest.approx(11 / 3)
    us = rr["US"]
    assert us["top_reasons"] == ["single_product_account (2)"]
    assert rr["UG1"]["reviews_flagged"] == 1 and rr["UG1"]["share_flagged"] == 1.0


def test_product_risk(scored):
    pr = {r["product_id"]: r for r in product_risk(scored).collect()}
    pb = pr["PB"]
    # 16 reviews: 6 x 3 stars, 10 x 5 stars; the 10 burst reviews score 0.9 * 6/7 = 0.77 >= 0.5
    assert (pb["reviews"], pb["reviewers"], pb["reviews_flagged"]) == (16, 16, 10)
    assert pb["mean_rating"] == pytest.approx(68 / 16)
    assert pb["mean_rating_unflagged"] == pytest.approx(3.0)
    assert pb["share_flagged"] == pytest.approx(10 / 16)
    assert pb["max_day_reviews"] == 10
    assert pb["top_reasons"] == ["product_burst (10)"]
    assert pr["PBAD"]["mean_rating"] is None  # rating 9 is not a rating


def test_risk_sources(spark):
    # a hand-built scored frame (fraud columns given, not computed) with a source column:
    # each key lists the sorted distinct non-null sources of its own reviews
    schema = (
        "review_id string, product_id string, reviewer_id string, rating int, fraud_score double, "
        "fraud_reason_codes array<string>, sig_reviewer_extreme_share double, sig_reviewer_max_per_day bigint, "
        "sig_reviewer_consensus_dev double, sig_dup_cluster_size bigint, sig_product_day_reviews bigint, "
        "sig_product_burst_z double, source string"
    )
    sim = "simulated_marketplace:copy_paste"
    rows = [
        ("r1", "P1", "U1", 5, 0.9, ["duplicate"], 1.0, 2, 0.5, 2, 2, 1.5, "b"),
        ("r2", "P2", "U1", 4, 0.1, [], 1.0, 2, 0.5, 1, 1, 0.0, "a"),
        ("r3", "P1", "U1", 5, 0.8, ["duplicate"], 1.0, 2, 0.5, 2, 2, 1.5, "b"),
        ("r4", "P2", "U2", 3, 0.2, [], 0.0, 1, None, 1, 1, 0.0, None),
        ("r5", "P2", "U3", 5, 0.7, ["product_burst"], 1.0, 1, 1.0, 1, 1, 0.0, sim),
        ("r6", "P3", None, 1, 0.0, [], None, None, None, 1, None, None, "a"),
    ]
    df = spark.createDataFrame(rows, schema)
    by_reviewer = {r["reviewer_id"]: r["sources"] for r in reviewer_risk(df).collect()}
    assert by_reviewer == {"U1": ["a", "b"], "U2": [], "U3": [sim]}
    by_product = {r["product_id"]: r["sources"] for r in product_risk(df).collect()}
    assert by_product == {"P1": ["b"], "P2": ["a", sim], "P3": ["a"]}
    # without a source column the column is still there, as an empty array<string>
    plain = df.drop("source")
    for table, key, keys in (
        (reviewer_risk(plain), "reviewer_id", ["U1", "U2", "U3"]),
        (product_risk(plain), "product_id", ["P1", "P2", "P3"]),
    ):
        assert table.columns[-1] == "sources"
        assert table.schema["sources"].dataType.simpleString() == "array<string>"
        assert sorted((r[key], r["sources"]) for r in table.collect()) == [(k, []) for k in keys]


# --------------------------------------------------------------------------- supervised


def _labelled(spark, n_fraud: int):
    rows = []
    for i in range(12):
        fraud = i < n_fraud
        text = f"Review {i}: " + ("the lid leaked and the taste was off, sadly" if fraud else "tasty and fresh")
        p = 0.05 if fraud else 0.9
        rows.append(
            (f"r{i}", f"P{i % 3}", f"U{i}", 5, text, "en", ts("2025-01-01") + timedelta(days=i), p, 1 if fraud else 0)
        )
    rows.append(
        ("u1", "P9", "V1", 5, "Unlabelled: the box was crushed and the chips were stale", "en", None, 0.04, None)
    )
    rows.append(("u2", "P9", "V2", 5, "Unlabelled: crisp chips with a lot of flavour", "en", None, 0.93, None))
    return spark.createDataFrame(rows, SCHEMA + ", is_fake int")


def test_supervised_score(spark):
    cfg = FraudConfig(label_column="is_fake", supervised=True, supervised_min_per_class=3, minhash_bands=0)
    out = with_fraud_signals(_labelled(spark, 6), cfg)
    got = {r["review_id"]: r for r in out.collect()}
    assert "fraud_score_rules" in out.columns
    assert all(0.0 <= r["fraud_score"] <= 1.0 for r in got.values())
    # labels follow the 5-star/negative-text pattern, so an unlabelled review with it ranks higher
    assert got["u1"]["fraud_score"] > got["u2"]["fraud_score"]
    assert got["u1"]["fraud_score_rules"] == pytest.approx(0.8)  # disagreement alone, weight 0.8


def test_supervised_needs_both_classes(spark):
    cfg = FraudConfig(label_column="is_fake", supervised=True, supervised_min_per_class=3, minhash_bands=0)
    with pytest.raises(DataError, match="fraud and 12 genuine"):
        with_fraud_signals(_labelled(spark, 0), cfg)
    with pytest.raises(SchemaError, match="label_column 'missing'"):
        with_fraud_signals(_labelled(spark, 6), FraudConfig(label_column="missing", supervised=True))
