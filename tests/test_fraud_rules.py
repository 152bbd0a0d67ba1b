"""Tests of the fraud rule declarations (ecomine.derived.fraud_rules) and of the matching
text helpers (ecomine.text).

Each rule's Spark columns are evaluated on small hand-built DataFrames; every expected
value is worked out by hand in the comments, never recomputed with the code under test.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Mapping

import pytest
from pyspark.sql import functions as F

from ecomine import text as textlib
from ecomine.config import FRAUD_DEFAULT_WEIGHTS, FraudConfig
from ecomine.derived import fraud_rules as R
from ecomine.derived.fraud import SIGNAL_COLUMNS
from ecomine.errors import ConfigError, SchemaError

CFG = FraudConfig()

#: Every column a rule reads, with its type in the fraud job.
INPUT_TYPES = {
    "sig_dup_cluster_size": "long",
    "sig_dup_cluster_reviewers": "long",
    "sig_dup_cluster_products": "long",
    "sig_dup_product_window_copies": "long",
    "sig_dup_product_copies": "long",
    R.WEIGHTED_LENGTH: "int",
    "sig_rating_text_gap": "double",
    R.RATING: "int",
    R.P_POSITIVE: "double",
    "sig_reviewer_deflated_share": "double",
    "sig_product_burst_z": "double",
    "sig_product_window_rating_shift": "double",
    "sig_product_other_days_rating": "double",
    "sig_product_day_reviews": "long",
    "sig_product_window_reviews": "long",
    "sig_product_expected_daily": "double",
    "sig_reviewer_inflated_share": "double",
    "sig_reviewer_scored": "long",
    "sig_product_inflating_reviewers": "long",
    "reviewer_id": "string",
    "sig_reviewer_extreme_share": "double",
    "sig_reviewer_rated": "long",
    "sig_reviewer_consensus_dev": "double",
    "sig_reviewer_consensus_n": "long",
    "sig_reviewer_max_per_day": "long",
    "sig_rating_deviation": "double",
    "sig_product_consensus_n": "long",
    "sig_product_consensus": "double",
    "sig_reviewer_single_product": "boolean",
    "sig_reviewer_reviews": "long",
    "sig_contact": "boolean",
    "sig_url": "boolean",
    "sig_generic_praise": "boolean",
    "sig_exclamations": "int",
    "sig_repeated_chars": "boolean",
    "sig_caps_share": "double",
}


def inputs_frame(spark, rows: list[Mapping[str, object]]):
    """A DataFrame with a row number ``row`` and every rule input column (null unless a
    row sets it)."""
    schema = "row int, " + ", ".join(f"`{name}` {kind}" for name, kind in INPUT_TYPES.items())
    unknown = {key for row in rows for key in row} - set(INPUT_TYPES)
    assert not unknown, unknown
    data = [(i, *(row.get(name) for name in INPUT_TYPES)) for i, row in enumerate(rows)]
    return spark.createDataFrame(data, schema)


def evaluate(spark, name: str, rows: list[Mapping[str, object]], cfg: FraudConfig = CFG) -> list[tuple]:
    """(risk, reason) of rule ``name`` for each row, in row order."""
    risk, reason = R.risk_columns(cfg)[name]
    out = inputs_frame(spark, rows).select("row", risk.alias("risk"), reason.alias("reason")).orderBy("row")
    return [(r["risk"], r["reason"]) for r in out.collect()]


def risks(spark, name: str, rows: list[Mapping[str, object]], cfg: FraudConfig = CFG) -> list[float | None]:
    return [risk for risk, _ in evaluate(spark, name, rows, cfg)]


# --------------------------------------------------------------------------- declarations (no JVM)


def test_text_module_imports_no_pyspark():
    code = "import sys, ecomine.text, ecomine.config; print('pyspark' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_every_rule_is_declared_once_with_its_weight_and_thresholds():
    names = [rule.name for rule in R.RULES]
    assert len(names) == len(set(names)) == 14
    # the config's default weights name exactly these risks, in combination order
    assert tuple(FRAUD_DEFAULT_WEIGHTS) == R.RISKS == tuple(names)
    fields = {f.name for f in dataclasses.fields(FraudConfig)}
    internal = {R.RATING, R.P_POSITIVE, R.WEIGHTED_LENGTH, "reviewer_id"}
    for rule in R.RULES:
        assert set(rule.thresholds) <= fields, rule.name
        assert set(rule.inputs) <= set(SIGNAL_COLUMNS) | internal, rule.name
    assert {name for rule in R.RULES for name in rule.inputs} == set(INPUT_TYPES)


def test_a_rule_sees_only_what_it_declares(spark):  # column objects need a session
    sneaky = R.Rule("url", ("sig_url",), (), lambda cols, _th: cols["sig_contact"], lambda _c, _t: F.lit(""))
    with pytest.raises(KeyError, match="sig_contact"):
        R.rule_columns(sneaky, CFG)
    greedy = R.Rule(
        "url", ("sig_url",), (), lambda cols, th: R.ramp(cols["sig_url"], th["caps_lo"], 1.0), lambda _c, _t: F.lit("")
    )
    with pytest.raises(KeyError, match="caps_lo"):
        R.rule_columns(greedy, CFG)


def test_config_defaults_and_validation():
    assert CFG.minhash_tables == 24
    assert CFG.weight("duplicate") == 0.98
    assert set(CFG.weights) == set(R.RISKS)
    assert all(0.0 <= w <= 1.0 for w in FRAUD_DEFAULT_WEIGHTS.values())
    with pytest.raises(ConfigError, match="unknown signals"):
        FraudConfig(weights={"typo": 0.5})
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        FraudConfig(weights={"url": 1.5})
    with pytest.raises(ConfigError, match="burst_z_lo"):
        FraudConfig(burst_z_lo=10.0, burst_z_hi=3.0)
    with pytest.raises(ConfigError, match="label_column"):
        FraudConfig(supervised=True)
    with pytest.raises(ConfigError, match="jaccard"):
        FraudConfig(jaccard_threshold=0.0)
    with pytest.raises(ConfigError, match="burst_window_days"):
        FraudConfig(burst_window_days=4)
    with pytest.raises(ConfigError, match="burst_flat_factor"):
        FraudConfig(burst_flat_factor=1.5)
    assert FraudConfig(weights={"url": 0.0}).weight("duplicate") == 0.0  # left out -> 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        CFG.max_reasons = 5  # type: ignore[misc]


# --------------------------------------------------------------------------- matching text (no JVM)


def test_normalize_weighted_length_and_shingles():
    assert textlib.normalize_for_matching("  Great -- Product!!  ") == "great product"
    assert textlib.normalize_for_matching("质量很好，好评！") == "质量很好 好评"
    assert textlib.normalize_for_matching("snake_case\tand\nlines") == "snake case and lines"
    assert textlib.normalize_for_matching(None) is None
    assert textlib.weighted_length("great product") == 13
    assert textlib.weighted_length("质量很好 好评") == 7 + 2 * 6  # 6 ideographs count 3 each, the space 1
    assert textlib.is_mostly_han("质量很好 好评") is True  # 6 of 7
    assert textlib.is_mostly_han("ok 好评") is False  # 2 of 5
    assert textlib.shingles("abcabc", 3) == ["abc", "bca", "cab"]  # the second "abc" only once
    assert textlib.shingles("ab", 5) == ["ab"]  # shorter than a shingle: itself


# --------------------------------------------------------------------------- per-row inputs (Spark)

MATCHING_TEXTS = [
    "Order at www.cheap-snacks.biz now!!",
    "质量很好，好评！！！！",
    "  Great -- Product!!  ",
    "ΟΔΟΣ καλός — Straße İstanbul café",
    "ｆｕｌｌ ｗｉｄｔｈ ＡＢＣ １２３ ١٢٣ Ⅻ ½",
    "tab\tand\nnewline and_underscore 👍👍",
    "!!!",
    "",
]


def test_spark_matching_text_agrees_with_the_text_module(spark):
    rows = [(i, t) for i, t in enumerate(MATCHING_TEXTS)] + [(len(MATCHING_TEXTS), None)]
    df = spark.createDataFrame(rows, "i int, text string").withColumn("norm", R.matching_text(F.col("text")))
    out = df.select(
        "i",
        "text",
        "norm",
        R.weighted_length(F.col("norm")).alias("wlen"),
        R.mostly_han(F.col("norm")).alias("han"),
        F.lit(3).alias("size"),
    ).withColumn("shingles", R.shingles("norm", "size"))
    got = out.orderBy("i").collect()
    assert got[2]["norm"] == "great product"  # by hand; the rest against the text module
    for row in got:
        norm = textlib.normalize_for_matching(row["text"])
        assert row["norm"] == norm, row["text"]
        assert row["wlen"] == textlib.weighted_length(norm), row["text"]
        if norm is not None:
            assert row["han"] == textlib.is_mostly_han(norm), row["text"]
            assert row["shingles"] == textlib.shingles(norm, 3), row["text"]


def test_valid_inputs_and_rating_text_gap(spark):
    rows = [(5, 0.05), (1, 0.95), (3, 0.5), (2, 0.0), (9, 0.5), (5, 1.7), (5, float("nan")), (None, 0.3), (0, 0.2)]
    df = spark.createDataFrame(rows, "rating int, p double")
    rating, p = R.valid_rating(F.col("rating")), R.valid_probability(F.col("p"))
    got = df.select(rating.alias("r"), p.alias("p"), R.rating_text_gap(rating, p).alias("gap")).collect()
    assert [(g["r"], g["p"]) for g in got] == [
        (5, 0.05),
        (1, 0.95),
        (3, 0.5),
        (2, 0.0),
        (None, 0.5),  # rating 9
        (5, None),  # p 1.7
        (5, None),  # NaN
        (None, 0.3),
        (None, 0.2),  # rating 0
    ]
    # |(r - 1) / 4 - p|: 5 stars, p 0.05 -> 0.95; 1 star, p 0.95 -> 0.95; 3, 0.5 -> 0; 2, 0 -> 0.25
    assert [g["gap"] for g in got[:4]] == pytest.approx([0.95, 0.95, 0.0, 0.25])
    assert all(g["gap"] is None for g in got[4:])


def test_inflated_and_deflated(spark):
    # gap 0.9 (5 stars, p 0.1) inflated; 0.45 (4 stars, p 0.3) not; 1 star, p 0.9 deflated
    rows = [(5, 0.9), (4, 0.45), (1, 0.9), (2, 0.35), (3, 0.5)]
    df = spark.createDataFrame(rows, "rating int, gap double")
    got = df.select(
        R.is_inflated(F.col("rating"), F.col("gap"), 0.5).alias("up"),
        R.is_deflated(F.col("rating"), F.col("gap"), 0.5).alias("down"),
    ).collect()
    assert [(g["up"], g["down"]) for g in got] == [
        (True, False),
        (False, False),
        (False, True),
        (False, False),
        (False, False),
    ]


CUE_TEXTS = {
    # text: (url, contact, generic praise)
    "Order here: https://cheap-stuff.example.org/x?id=1": (True, False, False),
    "visit www.bestdeals.cn now": (True, False, False),
    "cheapdeals.biz has it for less": (True, False, False),
    "我的网站 smallstonesoft.com 欢迎交流": (True, False, False),
    'Bad. <a href="http://www.amazon.com/gp/product/B000FIXYCS">Hormel</a>': (False, False, False),  # internal link
    'Bad. <a href="http://www.amazon.com/gp/B0">H</a> better at www.rival-shop.com': (True, False, False),
    "The price was 3.50 for a 12.5 oz can": (False, False, False),
    "write to deals4u@mail.example.com for a coupon": (True, True, False),  # the mail domain reads as a link
    "call me at (415) 555-0134": (False, True, False),
    "call +1 415.555.0134 today": (False, True, False),
    "联系电话13812345678": (False, True, False),
    "客服热线010-51236699": (False, True, False),
    "订单号：1442083355 还没到": (False, False, False),  # a bare 10-digit run is an order number
    "加微信 abc_12345 领红包": (False, True, False),
    "WeChat: shop8888 for discounts": (False, True, False),
    "QQ 123456789": (False, True, False),
    "Bought 12 cans for 24 dollars on 2023-05-01": (False, False, False),
    "UPC 0123456789012 on the label": (False, False, False),  # 13 digits: not a phone number
    "Great product, highly recommend!!": (False, False, True),
    "非常好，五星好评！": (False, False, True),
    "Love it": (False, False, True),
    "ok": (False, False, False),  # short but not praise
    "Great coffee. I brew it in a French press at 94C for four minutes and the crema is thick and sweet.": (
        False,
        False,
        False,  # praise, but not short
    ),
    "": (False, False, False),
}


def _cues(spark, texts: list[str | None], cfg: FraudConfig = CFG) -> list:
    df = spark.createDataFrame([(i, t) for i, t in enumerate(texts)], "i int, text string")
    text = F.col("text")
    cues = R.text_cue_columns(text, R.weighted_length(R.matching_text(text)), cfg)
    return df.select("i", *[column.alias(name) for name, column in cues.items()]).orderBy("i").collect()


def test_link_contact_and_praise_cues(spark):
    texts = list(CUE_TEXTS)
    got = _cues(spark, [*texts, None])
    for text, row in zip(texts, got):
        assert (row["sig_url"], row["sig_contact"], row["sig_generic_praise"]) == CUE_TEXTS[text], text
    null_text = got[-1].asDict()
    assert null_text.pop("i") == len(texts) and set(null_text.values()) == {None}
    # without internal domains the marketplace's own link counts
    plain = _cues(
        spark, ['<a href="http://www.amazon.com/gp/product/B000FIXYCS">x</a>'], FraudConfig(internal_link_domains=())
    )
    assert plain[0]["sig_url"] is True


def test_shouting_cues(spark):
    got = _cues(
        spark,
        ["Wow!! Best ever！", "soooo good", "paid 10000 dollars", "BEST COFFEE EVER", "Best coffee", "ABCDEFabcdef"],
    )
    assert got[0]["sig_exclamations"] == 3
    assert [g["sig_repeated_chars"] for g in got[1:3]] == [True, False]  # digits do not count
    assert got[3]["sig_caps_share"] == 1.0
    assert got[4]["sig_caps_share"] is None  # 10 letters: too few to judge
    assert got[5]["sig_caps_share"] == 0.5
    assert [g["sig_text_chars"] for g in got[:2]] == [16, 10]


# --------------------------------------------------------------------------- risks (Spark)


def test_ramp(spark):
    df = spark.createDataFrame([(0, 0.5), (1, 0.7), (2, 2.0), (3, None), (4, 0.1)], "i int, x double")
    got = [r[0] for r in df.orderBy("i").select(R.ramp(F.col("x"), 0.5, 0.9)).collect()]
    assert got[0] == 0.0 and got[1] == pytest.approx(0.5) and got[2] == 1.0 and got[3] is None and got[4] == 0.0


def test_disagreement(spark):
    g = R.P_POSITIVE
    rows = [
        {"sig_rating_text_gap": 0.95, R.RATING: 5, g: 0.05},  # full risk
        {"sig_rating_text_gap": 0.7, R.RATING: 5, g: 0.3},  # halfway between 0.5 and 0.9
        {"sig_rating_text_gap": 0.5, R.RATING: 5, g: 0.5},
        {"sig_rating_text_gap": None, R.RATING: 5, g: None},
        # 1 star on a glowing text: a scale mix-up more often than fraud -> x0.4
        {"sig_rating_text_gap": 0.95, R.RATING: 1, g: 0.95},
        # a reviewer whose 1-2 star reviews praise 25% of the time: trust 1 - (0.25 - 0.1) / 0.3 = 0.5
        {"sig_rating_text_gap": 0.95, R.RATING: 5, g: 0.05, "sig_reviewer_deflated_share": 0.25},
        {"sig_rating_text_gap": 0.95, R.RATING: 5, g: 0.05, "sig_reviewer_deflated_share": 0.0},
        {"sig_rating_text_gap": 0.65, R.RATING: 2, g: 0.9},  # (0.65 - 0.5) / 0.4 = 0.375, x0.4
    ]
    got = evaluate(spark, "disagreement", rows)
    assert [r for r, _ in got[:3]] == pytest.approx([1.0, 0.5, 0.0])
    assert got[3][0] is None
    assert [r for r, _ in got[4:]] == pytest.approx([0.4, 0.5, 1.0, 0.15])
    assert got[0][1] == "5 stars but text reads negative (p=0.05)"
    assert got[4][1] == "1 star but text reads positive (p=0.95)"
    assert got[7][1] == "2 stars but text reads positive (p=0.90)"


def test_duplicate(spark):
    dup = lambda size, reviewers, products, wlen, on_product=None, in_window=None: {  # noqa: E731
        "sig_dup_cluster_size": size,
        "sig_dup_cluster_reviewers": reviewers,
        "sig_dup_cluster_products": products,
        R.WEIGHTED_LENGTH: wlen,
        "sig_dup_product_copies": on_product,
        "sig_dup_product_window_copies": in_window,
    }
    got = evaluate(
        spark,
        "duplicate",
        [
            dup(7, 5, 1, 30, 1),  # 5 copies: (5 - 1) / (6 - 1) = 0.8; 30 weighted chars: full weight
            dup(50, 50, 50, 6, 1),  # "好评" (weighted length 6) spread over the marketplace: innocent
            dup(1, 1, 1, 100, 1),  # one copy
            dup(6, 6, None, 18),  # (18 - 6) / (30 - 6) = 0.5; no product: no pile-up
            # 2 copies on one product in one week: pile-up (2 - 1) / (3 - 1) = 0.5 times
            # ramp(6, 2, 12) = 0.4 -> 0.2, larger than the spread risk 0
            dup(50, 50, 50, 6, 9, 2),
            dup(3, 3, 3, 30, 3),  # 3 copies spread: 0.4; 3 on the product: pile-up 1
            dup(4, None, None, 30, None),  # no ids known: copies = size 4 -> 0.6
            dup(None, None, None, 30, 3),  # no text: unknown
        ],
    )
    assert [r for r, _ in got[:7]] == pytest.approx([0.8, 0.0, 0.0, 0.5, 0.2, 1.0, 0.6])
    assert got[7][0] is None
    assert got[0][1] == "duplicate text x7 across 5 reviewers"
    assert got[3][1] == "duplicate text x6 across 6 reviewers"
    assert got[6][1] == "duplicate text x4"
    products_only = evaluate(spark, "duplicate", [{**dup(3, None, 2, 30), "reviewer_id": None}])
    assert products_only[0][1] == "duplicate text x3 across 2 products"


def test_product_burst(spark):
    def burst(z, shift, other, rating):
        return {
            "sig_product_burst_z": z,
            "sig_product_window_rating_shift": shift,
            "sig_product_other_days_rating": other,
            R.RATING: rating,
            "sig_product_day_reviews": 25,
            "sig_product_window_reviews": 31,
            "sig_product_expected_daily": 1.0,
        }

    full = 5 / 7  # z 8 -> (8 - 3) / (10 - 3)
    got = evaluate(
        spark,
        "product_burst",
        [
            # product at 3.0 on other days, window 1.0 star higher: share of the room up to
            # 5 stars = 1.0 / 2.0 = 0.5 -> factor 0.5 + 0.5 * (0.5 - 0.4) / 0.5 = 0.6
            burst(8.0, 1.0, 3.0, 5),
            burst(8.0, 0.4, 4.6, 5),  # product at 4.6, shift 0.4: all of the room -> whole risk
            burst(8.0, 0.1, 4.9, 5),  # room floored at 0.25 stars: 0.1 is 0.4 of it -> flat factor
            burst(8.0, 0.0, 3.0, 5),  # a busy day with the usual ratings: flat factor 0.5
            burst(8.0, 1.0, 3.0, 1),  # a 1-star review in an upward burst: flat factor
            burst(8.0, -1.4, 3.0, 1),  # downward 1.4 of 2.0 -> 0.7 -> 0.5 + 0.5 * 0.3 / 0.5 = 0.8
            burst(8.0, 1.0, 3.0, 3),  # a 3-star review counts no direction: flat factor
            burst(10.0, None, None, 5),  # no other days: all of it
            burst(10.0, 1.0, 3.0, None),  # no rating: all of it
            burst(None, 1.0, 3.0, 5),
        ],
    )
    expected = [0.6 * full, full, 0.5 * full, 0.5 * full, 0.5 * full, 0.8 * full, 0.5 * full, 1.0, 1.0]
    assert [r for r, _ in got[:9]] == pytest.approx(expected)
    assert got[9][0] is None
    assert got[0][1] == "product got 25 reviews that day, 31 in 7 days (usual 1/day)"


def test_reviewer_inflated_and_coordinated(spark):
    inflated = risks(
        spark,
        "reviewer_inflated",
        [
            # share 0.5 -> (0.5 - 0.25) / 0.5 = 0.5; 2 scored -> (2 - 1) / (3 - 1) = 0.5
            {"sig_reviewer_inflated_share": 0.5, "sig_reviewer_scored": 2},
            {"sig_reviewer_inflated_share": 1.0, "sig_reviewer_scored": 1},  # one review proves nothing
            # reads the scale backwards: deflated share 0.4 -> trust 0
            {"sig_reviewer_inflated_share": 1.0, "sig_reviewer_scored": 3, "sig_reviewer_deflated_share": 0.4},
            {"sig_reviewer_inflated_share": None, "sig_reviewer_scored": None},
        ],
    )
    assert inflated == pytest.approx([0.25, 0.0, 0.0, None])
    reason = evaluate(spark, "reviewer_inflated", [{"sig_reviewer_inflated_share": 2 / 3, "sig_reviewer_scored": 3}])
    assert reason[0][1] == "reviewer gave 4-5 stars to 2 of 3 texts that read negative"

    def coordinated(accounts, rating, gap, reviewer="U1"):
        return {
            "sig_product_inflating_reviewers": accounts,
            R.RATING: rating,
            "sig_rating_text_gap": gap,
            "reviewer_id": reviewer,
        }

    # an inflated review (5 stars, gap 0.9) on a product where 1, 2, 3, 5 accounts inflate
    rows = [coordinated(n, 5, 0.9, f"U{n}") for n in (1, 2, 3, 5)]
    rows += [
        coordinated(4, 5, 0.1, "V1"),  # 5 stars on praise: not inflated
        coordinated(4, 1, 0.9, "V2"),  # 1 star on praise: deflated, not inflated
        coordinated(4, 5, 0.9, None),  # unknown reviewer
        coordinated(None, 5, 0.9, "V4"),  # unknown product count
        coordinated(4, 5, None, "V5"),  # unknown rating or text score
    ]
    got = evaluate(spark, "coordinated_inflation", rows)
    assert [r for r, _ in got[:4]] == pytest.approx([0.0, 0.5, 1.0, 1.0])
    assert [r for r, _ in got[4:]] == [0.0, 0.0, 0.0, None, None]
    assert got[1][1] == "2 accounts gave 4-5 stars to texts that read negative on this product"


def test_reviewer_risks(spark):
    extremes = evaluate(
        spark,
        "reviewer_extremes",
        [
            # ratings [5, 5, 1]: share 1.0; 3 rated -> (3 - 2) / (8 - 2) = 1/6
            {"sig_reviewer_extreme_share": 1.0, "sig_reviewer_rated": 3},
            {"sig_reviewer_extreme_share": 0.9, "sig_reviewer_rated": 8},  # (0.9 - 0.8) / 0.2 = 0.5
            {"sig_reviewer_extreme_share": None, "sig_reviewer_rated": 3},
        ],
    )
    assert [r for r, _ in extremes] == pytest.approx([1 / 6, 0.5, None])
    assert extremes[0][1] == "reviewer rates only extremes (3 of 3 ratings are 1 or 5 stars)"
    burst = evaluate(spark, "reviewer_burst", [{"sig_reviewer_max_per_day": 4}, {}])
    assert burst[0] == (pytest.approx(0.5), "reviewer posted 4 reviews in one day")  # (4 - 2) / (6 - 2)
    assert burst[1][0] is None
    consensus = evaluate(
        spark,
        "reviewer_consensus",
        [
            # mean deviation 2.25 over 2 reviews: 0.5 * (2 / 4)
            {"sig_reviewer_consensus_dev": 2.25, "sig_reviewer_consensus_n": 2},
            {"sig_reviewer_consensus_dev": None, "sig_reviewer_consensus_n": 0},
            {"sig_reviewer_consensus_dev": 3.0, "sig_reviewer_consensus_n": 0},
            {"sig_reviewer_consensus_dev": 2.4, "sig_reviewer_consensus_n": 4},  # (2.4 - 1.5) / 1.5
        ],
    )
    assert [r for r, _ in consensus] == pytest.approx([0.25, None, None, 0.6])
    assert consensus[3][1] == "reviewer is 2.4 stars off product consensus on average"
    single = risks(
        spark,
        "single_product_account",
        [
            {"sig_reviewer_single_product": True, "sig_reviewer_reviews": 3},
            {"sig_reviewer_single_product": True, "sig_reviewer_reviews": 1},
            {"sig_reviewer_single_product": False, "sig_reviewer_reviews": 5},
            {},
        ],
    )
    assert single == [1.0, 0.0, 0.0, None]


def test_rating_deviation(spark):
    got = evaluate(
        spark,
        "rating_deviation",
        [
            # deviation 3.0 (full) with 2 of the 5 other ratings needed -> 0.4
            {"sig_rating_deviation": 3.0, "sig_product_consensus_n": 2, R.RATING: 5, "sig_product_consensus": 2.0},
            # (2.25 - 1.5) / 1.5 = 0.5 with 10 others
            {"sig_rating_deviation": 2.25, "sig_product_consensus_n": 10, R.RATING: 1, "sig_product_consensus": 3.25},
            {"sig_rating_deviation": 4.0, "sig_product_consensus_n": 0},
        ],
    )
    assert [r for r, _ in got] == pytest.approx([0.4, 0.5, None])
    assert got[0][1] == "rated 5 vs product consensus 2.0"


def test_content_and_shouting_risks(spark):
    assert risks(spark, "contact", [{"sig_contact": True}, {"sig_contact": False}, {}]) == [1.0, 0.0, None]
    assert evaluate(spark, "url", [{"sig_url": True}])[0] == (1.0, "link in text")
    assert evaluate(spark, "generic_praise", [{"sig_generic_praise": True}])[0] == (1.0, "very short generic praise")
    shouting = evaluate(
        spark,
        "shouting",
        [
            {"sig_exclamations": 4, "sig_repeated_chars": False},  # (4 - 2) / (6 - 2)
            {"sig_exclamations": 0, "sig_repeated_chars": True, "sig_caps_share": 0.1},
            {"sig_exclamations": 0, "sig_repeated_chars": False, "sig_caps_share": 0.825},  # halfway 0.7-0.95
            {},
        ],
    )
    assert [r for r, _ in shouting] == pytest.approx([0.5, 1.0, 0.5, None])
    assert shouting[0][1] == "shouting (!!!, repeated characters or all caps)"


# --------------------------------------------------------------------------- combination (Spark)


def test_noisy_or_score_and_reasons(spark):
    rows = [
        # risks (x weight): duplicate 1 (x 0.98), disagreement 1 (x 0.8), contact 1 (x 0.8), url 1
        # (x 0.4), shouting 0.5 (x 0.2 = 0.1); every other risk unknown
        {
            **{"sig_dup_cluster_size": 6, "sig_dup_cluster_reviewers": 6, "sig_dup_cluster_products": 6},
            **{R.WEIGHTED_LENGTH: 30, "sig_rating_text_gap": 0.9, R.RATING: 5, R.P_POSITIVE: 0.1},
            **{"sig_contact": True, "sig_url": True, "sig_exclamations": 4},
        },
        {"sig_contact": False},  # every other risk unknown: score 0, no reasons
        {},
    ]
    got = R.with_rules_score(inputs_frame(spark, rows), CFG).collect()
    assert got[0]["fraud_score"] == pytest.approx(1 - 0.02 * 0.2 * 0.2 * 0.6 * 0.9)
    # 0.98 first; the 0.8 tie keeps RULES order (disagreement before contact); 3 reasons at most
    assert got[0]["fraud_reason_codes"] == ["duplicate", "disagreement", "contact"]
    assert got[0]["fraud_reasons"] == [
        "duplicate text x6 across 6 reviewers",
        "5 stars but text reads negative (p=0.10)",
        "contact details in text",
    ]
    assert [(g["fraud_score"], g["fraud_reasons"]) for g in got[1:]] == [(0.0, []), (0.0, [])]
    fewer = R.with_rules_score(inputs_frame(spark, rows[:1]), FraudConfig(max_reasons=1, reason_min_contribution=0.5))
    assert fewer.first()["fraud_reason_codes"] == ["duplicate"]
    with pytest.raises(SchemaError, match="sig_url"):
        R.with_rules_score(inputs_frame(spark, rows).drop("sig_url"), CFG)
