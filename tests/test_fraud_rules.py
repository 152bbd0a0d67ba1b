"""Pure tests of ecomine.derived.fraud_rules (no JVM). Expected values are worked out by hand."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys

import pytest

from ecomine.derived import fraud_rules as R
from ecomine.derived.fraud_rules import FraudConfig
from ecomine.errors import ConfigError

CFG = FraudConfig()


def test_module_imports_no_pyspark():
    code = "import sys, ecomine.derived.fraud_rules; print('pyspark' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------- content cues


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Order here: https://cheap-stuff.example.org/x?id=1", True),
        ("visit www.bestdeals.cn now", True),
        ("cheapdeals.biz has it for less", True),
        ("我的网站 smallstonesoft.com 欢迎交流", True),
        ("Tastes great, will buy again.", False),
        ("The price was 3.50 for a 12.5 oz can", False),
        (None, None),
    ],
)
def test_has_url(text, expected):
    assert R.has_url(text) is expected


def test_internal_links_are_not_flagged_but_external_ones_are():
    internal = 'Bad. <a href="http://www.amazon.com/gp/product/B000FIXYCS">Hormel</a>'
    assert R.has_url(internal, ("amazon.com",)) is False
    assert R.has_url(internal, ()) is True
    both = internal + " better at www.rival-shop.com"
    assert R.has_url(both, ("amazon.com",)) is True


@pytest.mark.parametrize(
    "text, expected",
    [
        ("write to deals4u@mail.example.com for a coupon", True),
        ("call me at (415) 555-0134", True),
        ("call +1 415.555.0134 today", True),
        ("联系电话13812345678", True),
        ("客服热线010-51236699", True),
        ("订单号：1442083355 还没到", False),  # a bare 10-digit run is an order number
        ("加微信 abc_12345 领红包", True),
        ("WeChat: shop8888 for discounts", True),
        ("QQ 123456789", True),
        ("Bought 12 cans for 24 dollars on 2023-05-01", False),
        ("UPC 0123456789012 on the label", False),  # 13 digits: not a phone number
        ("Great coffee!", False),
        (None, None),
    ],
)
def test_has_contact(text, expected):
    assert R.has_contact(text) is expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Great product, highly recommend!!", True),
        ("非常好，五星好评！", True),
        ("Love it", True),
        ("ok", False),  # short but not praise
        (
            "Great coffee. I brew it in a French press at 94C for four minutes and the crema is thick and sweet.",
            False,  # praise, but not short
        ),
        ("", False),
        (None, None),
    ],
)
def test_generic_praise(text, expected):
    assert R.is_generic_praise(text, CFG.generic_max_chars) is expected


def test_shouting_cues():
    assert R.exclamation_count("Wow!! Best ever！") == 3
    assert R.has_repeated_chars("soooo good") is True
    assert R.has_repeated_chars("paid 10000 dollars") is False  # digits do not count
    assert R.has_repeated_chars("good") is False
    assert R.caps_share("BEST COFFEE EVER", 12) == 1.0
    assert R.caps_share("Best coffee", 12) is None  # 10 letters: too few to judge
    assert R.caps_share("ABCDEFabcdef", 12) == 0.5
    assert R.caps_share(None, 12) is None


def test_normalize_and_weighted_length():
    assert R.normalize_text("  Great -- Product!!  ") == "great product"
    assert R.normalize_text("质量很好，好评！") == "质量很好 好评"
    assert R.weighted_length("great product") == 13
    assert R.weighted_length("质量很好 好评") == 7 + 2 * 6  # 6 ideographs count 3 each, the space 1
    assert R.normalize_text(None) is None


# --------------------------------------------------------------------------- transforms


def test_ramp():
    assert R.ramp(0.5, 0.5, 0.9) == 0.0
    assert R.ramp(0.7, 0.5, 0.9) == pytest.approx(0.5)
    assert R.ramp(2.0, 0.5, 0.9) == 1.0
    assert R.ramp(None, 0.0, 1.0) is None
    assert R.ramp(float("nan"), 0.0, 1.0) is None


@pytest.mark.parametrize(
    "rating, p, gap",
    [
        (5, 0.05, 0.95),
        (1, 0.95, 0.95),
        (3, 0.5, 0.0),
        (4, 0.75, 0.0),
        (2, 0.0, 0.25),
        (9, 0.5, None),  # bad rating
        (5, 1.7, None),  # bad probability
        (5, float("nan"), None),
        (None, 0.3, None),
    ],
)
def test_rating_text_gap(rating, p, gap):
    got = R.rating_text_gap(rating, p)
    assert got == (None if gap is None else pytest.approx(gap))


def test_disagreement_risk():
    assert R.risk_disagreement(0.95, 5, CFG) == 1.0
    assert R.risk_disagreement(0.7, 5, CFG) == pytest.approx(0.5)  # halfway between 0.5 and 0.9
    assert R.risk_disagreement(0.5, 5, CFG) == 0.0
    assert R.risk_disagreement(None, 5, CFG) is None
    # 1 star on a glowing text: a scale mix-up more often than fraud -> x0.4
    assert R.risk_disagreement(0.95, 1, CFG) == pytest.approx(0.4)
    # a reviewer whose 1-2 star reviews praise 25% of the time: trust 1 - (0.25 - 0.1) / 0.3 = 0.5
    assert R.risk_disagreement(0.95, 5, CFG, deflated_share=0.25) == pytest.approx(0.5)
    assert R.risk_disagreement(0.95, 5, CFG, deflated_share=0.0) == 1.0


def test_inflated_and_deflated_reviews():
    assert R.is_inflated(5, 0.1, CFG) is True  # gap 0.9
    assert R.is_inflated(4, 0.3, CFG) is False  # gap 0.45 < 0.5
    assert R.is_inflated(1, 0.9, CFG) is False
    assert R.is_deflated(1, 0.9, CFG) is True
    assert R.is_deflated(2, 0.6, CFG) is False  # gap 0.35
    assert R.is_inflated(None, 0.1, CFG) is None
    assert R.is_deflated(7, 0.9, CFG) is None
    # share 0.5 -> (0.5 - 0.25) / 0.5 = 0.5; 2 scored -> (2 - 1) / (3 - 1) = 0.5
    assert R.risk_reviewer_inflated(0.5, 2, CFG) == pytest.approx(0.25)
    assert R.risk_reviewer_inflated(1.0, 1, CFG) == 0.0  # one review proves nothing
    assert R.risk_reviewer_inflated(1.0, 3, CFG, deflated_share=0.4) == 0.0  # reads the scale backwards
    assert R.risk_reviewer_inflated(None, None, CFG) is None


def test_duplicate_copies_and_risk():
    assert R.duplicate_copies(7, 5, 1) == 5
    assert R.duplicate_copies(4, None, 3) == 3
    assert R.duplicate_copies(3, None, None) == 3
    assert R.duplicate_copies(None, None, None) is None
    # 5 copies: (5 - 1) / (6 - 1) = 0.8; a 30-char text has full weight
    assert R.risk_duplicate(5, 30, 1, CFG) == pytest.approx(0.8)
    # a 2-ideograph text ("好评", weighted length 6) spread over the marketplace is innocent
    assert R.risk_duplicate(50, 6, 1, CFG) == 0.0
    assert R.risk_duplicate(1, 100, 1, CFG) == 0.0
    # 18 weighted chars: (18 - 6) / (30 - 6) = 0.5
    assert R.risk_duplicate(6, 18, None, CFG) == pytest.approx(0.5)
    # ... but 2 copies of it on one product in one week: pile-up (2 - 1) / (3 - 1) = 0.5
    # times ramp(6, 2, 12) = 0.4 -> 0.2, larger than the spread risk 0
    assert R.risk_duplicate(50, 6, 2, CFG) == pytest.approx(0.2)
    assert R.risk_duplicate(3, 30, 3, CFG) == 1.0
    assert R.risk_duplicate(None, 30, 3, CFG) is None


def test_reviewer_risks():
    # ratings [5, 5, 1]: share 1.0; 3 rated -> (3 - 2) / (8 - 2) = 1/6
    assert R.risk_reviewer_extremes(1.0, 3, CFG) == pytest.approx(1 / 6)
    assert R.risk_reviewer_extremes(0.9, 8, CFG) == pytest.approx(0.5)
    assert R.risk_reviewer_extremes(None, 3, CFG) is None
    assert R.risk_reviewer_burst(4, CFG) == pytest.approx(0.5)
    assert R.risk_reviewer_burst(None, CFG) is None
    # mean deviation 2.25 over 2 reviews: 0.5 * (2 / 4)
    assert R.risk_reviewer_consensus(2.25, 2, CFG) == pytest.approx(0.25)
    assert R.risk_reviewer_consensus(None, 0, CFG) is None
    assert R.risk_single_product(True, 3, CFG) == 1.0
    assert R.risk_single_product(True, 1, CFG) == 0.0
    assert R.risk_single_product(False, 5, CFG) == 0.0
    assert R.risk_single_product(None, None, CFG) is None


def test_rating_deviation_risk():
    # deviation 3.0 (full) with 2 of 5 needed other ratings -> 0.4
    assert R.risk_rating_deviation(3.0, 2, CFG) == pytest.approx(0.4)
    assert R.risk_rating_deviation(2.25, 10, CFG) == pytest.approx(0.5)
    assert R.risk_rating_deviation(4.0, 0, CFG) is None


def test_product_burst():
    # product with 3 active days: too little history -> expected 1 per day
    assert R.burst_expected(4.0, 3, CFG) == 1.0
    assert R.burst_expected(4.0, 30, CFG) == 4.0
    assert R.burst_expected(0.5, 30, CFG) == 1.0
    assert R.burst_z(20, 4.0) == pytest.approx(8.0)  # (20 - 4) / 2
    assert R.burst_z(None, 1.0) is None
    # 60 reviews over a 120-day span: 0.5 a day -> 3.5 a week; 10 over 10 days: span 30 -> 7 / 3
    assert R.burst_window_expected(60, 120, CFG) == pytest.approx(3.5)
    assert R.burst_window_expected(10, 10, CFG) == pytest.approx(7 / 3)
    assert R.burst_window_expected(1, 365, CFG) == 1.0
    # z 8 -> (8 - 3) / 7. Product at 3.0 on other days, window 1.0 star higher: share of the
    # room up to 5 stars = 1.0 / 2.0 = 0.5 -> factor 0.5 + 0.5 * (0.5 - 0.4) / 0.5 = 0.6
    assert R.burst_headroom_share(1.0, 3.0, 5, CFG) == pytest.approx(0.5)
    assert R.risk_product_burst(8.0, 1.0, 3.0, 5, CFG) == pytest.approx(0.6 * 5 / 7)
    # product at 4.6, window all 5 stars (shift 0.4): all of the room -> the whole risk
    assert R.burst_headroom_share(0.4, 4.6, 5, CFG) == pytest.approx(1.0)
    assert R.risk_product_burst(8.0, 0.4, 4.6, 5, CFG) == pytest.approx(5 / 7)
    # product at 4.9: the room is floored at 0.25 stars, so a 0.1 shift is 0.4 of it -> flat factor
    assert R.burst_headroom_share(0.1, 4.9, 5, CFG) == pytest.approx(0.4)
    assert R.risk_product_burst(8.0, 0.1, 4.9, 5, CFG) == pytest.approx(0.5 * 5 / 7)
    # a busy day with the usual ratings (shift 0): burst_flat_factor 0.5 of it
    assert R.risk_product_burst(8.0, 0.0, 3.0, 5, CFG) == pytest.approx(0.5 * 5 / 7)
    # a 1-star review in an upward burst goes against it (negative share): flat factor
    assert R.burst_headroom_share(1.0, 3.0, 1, CFG) == pytest.approx(-0.5)
    assert R.risk_product_burst(8.0, 1.0, 3.0, 1, CFG) == pytest.approx(0.5 * 5 / 7)
    # a 1-star review in a downward burst: product at 3.0, window 1.4 lower -> 1.4 / 2.0 = 0.7
    # of the room down to 1 star -> 0.5 + 0.5 * (0.7 - 0.4) / 0.5 = 0.8
    assert R.risk_product_burst(8.0, -1.4, 3.0, 1, CFG) == pytest.approx(0.8 * 5 / 7)
    # a 3-star review counts no direction: flat factor
    assert R.burst_headroom_share(1.0, 3.0, 3, CFG) == 0.0
    # no other days to compare with (or no rating): all of it
    assert R.burst_headroom_share(None, None, 5, CFG) is None
    assert R.risk_product_burst(10.0, None, None, 5, CFG) == 1.0
    assert R.risk_product_burst(10.0, 1.0, 3.0, None, CFG) == 1.0
    assert R.risk_product_burst(None, 1.0, 3.0, 5, CFG) is None


def test_shouting_risk():
    assert R.risk_shouting(4, False, None, CFG) == pytest.approx(0.5)
    assert R.risk_shouting(0, True, 0.1, CFG) == 1.0
    assert R.risk_shouting(None, None, None, CFG) is None


# --------------------------------------------------------------------------- combination and reasons


def test_noisy_or_ignores_missing_signals():
    w = {"duplicate": 0.9, "disagreement": 0.5, "url": 0.4}
    # 1 - (1 - 0.9 * 1.0) * (1 - 0.5 * 0.5) = 1 - 0.1 * 0.75
    assert R.combine_noisy_or({"duplicate": 1.0, "disagreement": 0.5, "url": None}, w) == pytest.approx(0.925)
    assert R.combine_noisy_or({"duplicate": None, "url": None}, w) == 0.0
    assert R.combine_noisy_or({}, w) == 0.0
    assert R.combine_noisy_or({"url": float("nan")}, w) == 0.0
    # a risk outside [0, 1] is clipped
    assert R.combine_noisy_or({"url": 3.0}, w) == pytest.approx(0.4)


def test_noisy_or_stays_in_unit_interval():
    risks = {name: 1.0 for name in R.RISKS}
    score = R.combine_noisy_or(risks, {name: 1.0 for name in R.RISKS})
    assert score == 1.0
    assert 0.0 <= R.combine_noisy_or(risks, R.DEFAULT_WEIGHTS) <= 1.0


def test_reason_texts():
    assert R.reason_disagreement(5, 0.04) == "5 stars but text reads negative (p=0.04)"
    assert R.reason_disagreement(1, 0.95) == "1 star but text reads positive (p=0.95)"
    assert R.reason_disagreement(2, 0.9) == "2 stars but text reads positive (p=0.90)"
    assert R.reason_duplicate(7, 5, 1) == "duplicate text x7 across 5 reviewers"
    assert R.reason_duplicate(3, None, 2) == "duplicate text x3 across 2 products"
    assert R.reason_duplicate(2, None, None) == "duplicate text x2"
    assert (
        R.REASON_TEMPLATES["product_burst"] % (25, 31, 7, 1.0)
        == "product got 25 reviews that day, 31 in 7 days (usual 1/day)"
    )


def test_top_reasons_order_threshold_and_ties():
    texts = {"duplicate": "dup", "disagreement": "dis", "url": "url", "shouting": "shout"}
    contrib = {"url": 0.4, "duplicate": 0.4, "disagreement": 0.9, "shouting": 0.05}
    # 0.9 first; the 0.4 tie keeps RISKS order (duplicate before url); 0.05 < 0.1 left out
    assert R.top_reasons(contrib, texts, 0.1, 3) == ["dis", "dup", "url"]
    assert R.top_reasons(contrib, texts, 0.1, 1) == ["dis"]
    assert R.top_reasons({"url": None}, texts, 0.1, 3) == []


# --------------------------------------------------------------------------- config


def test_config_defaults_and_validation():
    assert CFG.minhash_tables == 24
    assert CFG.weight("duplicate") == 0.98
    assert set(CFG.weights) == set(R.RISKS)
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


def test_weights_are_documented_probabilities():
    assert all(0.0 <= v <= 1.0 for v in R.DEFAULT_WEIGHTS.values())
    assert math.isclose(R.combine_noisy_or({"duplicate": 1.0}, R.DEFAULT_WEIGHTS), 0.98)


def test_coordinated_inflation_risk():
    # an inflated review (5 stars, p 0.1: gap 0.9) on a product where 1, 2, 3, 5 accounts inflate
    assert [R.risk_coordinated_inflation(n, 5, 0.1, True, CFG) for n in (1, 2, 3, 5)] == pytest.approx([0, 0.5, 1, 1])
    # a review that is not inflated (5 stars on praise, or 1 star on a complaint): 0
    assert R.risk_coordinated_inflation(4, 5, 0.9, True, CFG) == 0.0
    assert R.risk_coordinated_inflation(4, 1, 0.1, True, CFG) == 0.0
    # unknown reviewer: 0; unknown product count, rating or text score: None
    assert R.risk_coordinated_inflation(4, 5, 0.1, False, CFG) == 0.0
    assert R.risk_coordinated_inflation(None, 5, 0.1, True, CFG) is None
    assert R.risk_coordinated_inflation(4, None, 0.1, True, CFG) is None
    assert R.risk_coordinated_inflation(4, 5, None, True, CFG) is None
