"""What each fraud signal is: one declaration per rule, from which the Spark columns are built.

:mod:`ecomine.derived.fraud` computes the raw ``sig_*`` columns (joins, aggregates,
duplicate clusters) and hands every row to this module, which holds each formula once,
as a Spark column expression:

* the per-row inputs: a valid rating and ``p_positive``, the rating/text gap, which
  reviews are inflated or deflated, and the content cues read from the text (links,
  contact details, generic praise, shouting) with their regular expressions;
* the matching form of a text for duplicate detection (:func:`matching_text`,
  :func:`weighted_length`, :func:`shingles`): the Spark forms of
  :func:`ecomine.text.normalize_for_matching` and its neighbours, built from the same
  patterns;
* :data:`RULES`: one :class:`Rule` per risk, naming the columns it reads, the
  :class:`~ecomine.config.FraudConfig` thresholds it reads, its risk formula (a value in
  [0, 1] or null) and its reason text. Its weight is ``cfg.weight(rule.name)`` (defaults
  in :data:`ecomine.config.FRAUD_DEFAULT_WEIGHTS`);
* :func:`with_rules_score`: the noisy-OR of the weighted risks into ``fraud_score`` and
  the strongest reasons.

A rule's formula sees only the columns and thresholds it declares (anything else is a
``KeyError`` when the columns are built), so the declaration cannot fall behind the
formula. The risk transforms are hand-set, documented guesses of how suspicious a raw
value is, not fitted probabilities; see ``docs/fraud.md``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import reduce
from types import MappingProxyType

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from ecomine import text as textlib
from ecomine.config import FraudConfig
from ecomine.errors import SchemaError

__all__ = [
    "EMAIL_PATTERN",
    "EXCLAMATION_PATTERN",
    "MESSENGER_PATTERN",
    "PHONE_PATTERN",
    "PRAISE_PATTERN",
    "P_POSITIVE",
    "PREFIX",
    "RATING",
    "REPEAT_PATTERN",
    "RISKS",
    "RULES",
    "Rule",
    "URL_PATTERN",
    "WEIGHTED_LENGTH",
    "flag_risk",
    "internal_link_pattern",
    "is_deflated",
    "is_inflated",
    "matching_text",
    "mostly_han",
    "nonzero",
    "ramp",
    "rating_text_gap",
    "risk_column",
    "risk_columns",
    "rule_columns",
    "shingles",
    "text_cue_columns",
    "valid_probability",
    "valid_rating",
    "weighted_length",
    "with_rules_score",
]

#: Prefix of the fraud job's internal columns (all dropped before it returns).
PREFIX = "_fr_"
#: Internal input columns the rules read besides ``sig_*`` and ``reviewer_id``.
RATING = f"{PREFIX}rating"  # the star rating 1-5 as int, null when not a valid rating
P_POSITIVE = f"{PREFIX}p"  # p_positive when it lies in [0, 1], else null
WEIGHTED_LENGTH = f"{PREFIX}wlen"  # weighted_length of the matching text

# --------------------------------------------------------------------------- regexes
# Java regex syntax (Spark's rlike / regexp_replace).

#: Links: a scheme or www., or a bare domain with a common TLD.
URL_PATTERN = (
    r"(?i)(?:https?://|www\.)[^\s<>\"']+"
    r"|\b[a-z0-9][a-z0-9-]{1,62}\.(?:com|net|org|cn|io|co|info|biz|shop|top|xyz|ly|me)\b"
)
#: Email addresses.
EMAIL_PATTERN = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"
#: Phone numbers, never inside a longer digit run: North-American 3-3-4 digits with
#: separators or a bracketed area code (optional +country code), a Chinese mobile
#: number (11 digits starting 13-19) or a Chinese landline (0xx-xxxxxxxx). A bare run
#: of 10 digits is not matched: in reviews it is far more often an order number.
PHONE_PATTERN = (
    r"(?<![0-9])(?:(?:\+[0-9]{1,3}[ .-]?)?(?:\([0-9]{3}\)[ .-]?|[0-9]{3}[ .-])[0-9]{3}[ .-][0-9]{4}"
    r"|1[3-9][0-9]{9}|0[0-9]{2,3}-[0-9]{7,8})(?![0-9])"
)
#: Messenger handles: WeChat / QQ / WhatsApp / Telegram followed by an id of 5+ characters.
MESSENGER_PATTERN = (
    r"(?i)(?:\b(?:wechat|weixin|whatsapp|telegram|wx|vx|qq)|微信|薇信|威信|扣扣|加微|v信)"
    r"[ \t]*(?:id|号)?[ \t]*[:：]?[ \t]*[A-Za-z0-9_-]{5,}"
)
#: Generic praise vocabulary (English words, Chinese phrases).
PRAISE_PATTERN = (
    r"(?i)\b(?:great|good|love|loved|loves|awesome|amazing|excellent|perfect|best|recommend|recommended"
    r"|fantastic|wonderful|super|nice|five stars|5 stars|must buy|buy again|highly)\b"
    r"|好评|不错|很好|非常好|推荐|满意|超赞|很棒|五星|给力|好用|喜欢|划算|值得|完美|物超所值"
)
#: The same character (not a digit or whitespace) four or more times in a row.
REPEAT_PATTERN = r"([^0-9\s])\1{3,}"
#: Exclamation marks, ASCII and full-width.
EXCLAMATION_PATTERN = r"[!！]"
_NOT_HAN = "[^" + textlib.HAN_CLASS[1:]


def internal_link_pattern(domains: Sequence[str]) -> str | None:
    """Regex matching links into the marketplace's own domains (removed before the URL
    cue is tested, so a review linking to the product page is not flagged); None if none."""
    if not domains:
        return None
    alternatives = "|".join(re.escape(domain.lower()) for domain in domains)
    return rf"(?i)(?:https?://)?(?:[a-z0-9-]+\.)*(?:{alternatives})(?:/[^\s<>\"']*)?"


# --------------------------------------------------------------------------- transforms


def ramp(x: Column, lo: float, hi: float) -> Column:
    """0 at or below ``lo``, 1 at or above ``hi``, linear between; null stays null
    (``least``/``greatest`` alone would skip it)."""
    scaled = (x.cast("double") - F.lit(float(lo))) / F.lit(float(hi - lo))
    return F.when(x.isNotNull(), F.least(F.greatest(scaled, F.lit(0.0)), F.lit(1.0)))


def flag_risk(flag: Column) -> Column:
    """A boolean cue as a risk: true -> 1, false -> 0, null -> null."""
    return F.when(flag.isNotNull(), F.when(flag, F.lit(1.0)).otherwise(F.lit(0.0)))


def nonzero(x: Column) -> Column:
    """The value when it is > 0, else null (a count of no known ids is unknown)."""
    return F.when(x > 0, x)


def _discounted(x: Column, count: Column, lo: float, hi: float, full: int) -> Column:
    """ramp(x, lo, hi) * min(count / full, 1): a deviation judged on ``count`` values,
    trusted fully from ``full`` of them; null when x is null or count is not > 0."""
    return F.when(
        x.isNotNull() & (count > 0),
        ramp(x, lo, hi) * F.least(count / F.lit(float(full)), F.lit(1.0)),
    )


# --------------------------------------------------------------------------- per-row inputs


def valid_rating(rating: Column) -> Column:
    """A star rating 1-5 as int; anything else (null, 0, 7, 3.5) is null."""
    as_double = rating.cast("double")
    return F.when(as_double.isin(1.0, 2.0, 3.0, 4.0, 5.0), as_double.cast("int"))


def valid_probability(p: Column) -> Column:
    """A probability in [0, 1] as double; anything else (NaN, 1.7) is null."""
    as_double = p.cast("double")
    return F.when(~F.isnan(as_double) & (as_double >= 0.0) & (as_double <= 1.0), as_double)


def rating_text_gap(rating: Column, p_positive: Column) -> Column:
    """|stars mapped to [0, 1] - p_positive| of a valid rating and probability: 5 stars with
    p=0.05 -> 0.95; 3 stars -> at most 0.5."""
    return F.abs((rating - F.lit(1)) / F.lit(4.0) - p_positive)


def is_inflated(rating: Column, gap: Column, disagreement_lo: float) -> Column:
    """4-5 stars on a text that reads negative (rating/text gap >= disagreement_lo)."""
    return (rating >= 4) & (gap >= disagreement_lo)


def is_deflated(rating: Column, gap: Column, disagreement_lo: float) -> Column:
    """1-2 stars on a text that reads positive (rating/text gap >= disagreement_lo)."""
    return (rating <= 2) & (gap >= disagreement_lo)


def matching_text(text: Column) -> Column:
    """Spark form of :func:`ecomine.text.normalize_for_matching` (Spark's ``trim`` strips
    only spaces, which is all the replacement can leave at either end)."""
    return F.trim(F.regexp_replace(F.lower(text), textlib.NON_WORD_JAVA, " "))


def _han_chars(text: Column) -> Column:
    return F.length(F.regexp_replace(text, _NOT_HAN, ""))


def weighted_length(normalized: Column) -> Column:
    """Spark form of :func:`ecomine.text.weighted_length` (each ideograph counts 3)."""
    return F.length(normalized) + 2 * _han_chars(normalized)


def mostly_han(normalized: Column) -> Column:
    """Spark form of :func:`ecomine.text.is_mostly_han`."""
    return 2 * _han_chars(normalized) > F.length(normalized)


def shingles(normalized: str, size: str) -> Column:
    """Spark form of :func:`ecomine.text.shingles`, on the columns named ``normalized``
    (the matching text) and ``size`` (the shingle length)."""
    return F.expr(
        f"array_distinct(transform(sequence(0, greatest(length({normalized}) - {size}, 0)),"
        f" i -> substring({normalized}, i + 1, {size})))"
    )


def _count_matches(text: Column, pattern: str) -> Column:
    """Characters matched by a one-character pattern."""
    return F.length(text) - F.length(F.regexp_replace(text, pattern, ""))


def text_cue_columns(text: Column, weighted_len: Column, cfg: FraudConfig) -> dict[str, Column]:
    """The content-cue signal columns of one text (``weighted_len``: its weighted length)."""
    internal = internal_link_pattern(cfg.internal_link_domains)
    text_for_url = F.regexp_replace(text, internal, " ") if internal else text
    letters = F.length(F.regexp_replace(text, "[^A-Za-z]", ""))
    upper = F.length(F.regexp_replace(text, "[^A-Z]", ""))
    return {
        "sig_text_chars": F.length(text),
        "sig_generic_praise": F.when(
            text.isNotNull(),
            (weighted_len > 0) & (weighted_len <= cfg.generic_max_chars) & text.rlike(PRAISE_PATTERN),
        ),
        "sig_url": text_for_url.rlike(URL_PATTERN),
        "sig_contact": text.rlike(EMAIL_PATTERN) | text.rlike(PHONE_PATTERN) | text.rlike(MESSENGER_PATTERN),
        "sig_exclamations": _count_matches(text, EXCLAMATION_PATTERN),
        "sig_repeated_chars": text.rlike(REPEAT_PATTERN),
        "sig_caps_share": F.when(letters >= cfg.caps_min_letters, upper / letters),
    }


# --------------------------------------------------------------------------- rules

Inputs = Mapping[str, Column]
Thresholds = Mapping[str, float]


@dataclass(frozen=True)
class Rule:
    """One fraud risk.

    ``name``: the risk's name (its reason code and its key in ``FraudConfig.weights``).
    ``inputs``: the columns it reads. ``thresholds``: the ``FraudConfig`` fields it reads.
    ``risk(inputs, thresholds)``: its risk in [0, 1], null when unknown.
    ``reason(inputs, thresholds)``: the reader's text for it (shown when it is among the
    strongest contributions).
    """

    name: str
    inputs: tuple[str, ...]
    thresholds: tuple[str, ...]
    risk: Callable[[Inputs, Thresholds], Column]
    reason: Callable[[Inputs, Thresholds], Column]


def _fixed(text: str) -> Callable[[Inputs, Thresholds], Column]:
    return lambda _inputs, _thresholds: F.lit(text)


def _formatted(template: str, *columns: str) -> Callable[[Inputs, Thresholds], Column]:
    """A printf template (Spark ``format_string``) filled with input columns."""
    return lambda inputs, _thresholds: F.format_string(template, *(inputs[name] for name in columns))


def _scale_trust(deflated_share: Column, th: Thresholds) -> Column:
    """1 - ramp(the reviewer's share of 1-2 star reviews on texts that read positive,
    scale_confusion_lo, scale_confusion_hi); 1 when unknown (no reviewer id). An account
    whose disagreements go both ways is confused about the scale, not paid."""
    return F.when(deflated_share.isNull(), F.lit(1.0)).otherwise(
        F.lit(1.0) - ramp(deflated_share, th["scale_confusion_lo"], th["scale_confusion_hi"])
    )


def _duplicate_risk(cols: Inputs, th: Thresholds) -> Column:
    """The larger of

    * spread: ramp(copies, 1, duplicate_copies_hi) * ramp(weighted length,
      duplicate_len_lo, duplicate_len_hi), copies = the larger of distinct reviewers and
      distinct products in the cluster (its size when neither is known): one copy is no
      risk, and very short texts ("good", "好评") are duplicated innocently;
    * pile-up: ramp(copies of the text on this product within the burst window (all time
      without a timestamp), product_copies_lo, product_copies_hi) * ramp(weighted length,
      product_copies_len_lo, product_copies_len_hi): three identical short reviews on one
      product in one week are not innocent.
    """
    size = cols["sig_dup_cluster_size"]
    copies = F.when(
        size.isNotNull(),
        F.coalesce(
            F.greatest(nonzero(cols["sig_dup_cluster_reviewers"]), nonzero(cols["sig_dup_cluster_products"])), size
        ),
    )
    length = cols[WEIGHTED_LENGTH]
    spread = ramp(copies, 1, th["duplicate_copies_hi"]) * ramp(length, th["duplicate_len_lo"], th["duplicate_len_hi"])
    pile_copies = F.coalesce(cols["sig_dup_product_window_copies"], cols["sig_dup_product_copies"])
    pile = ramp(pile_copies, th["product_copies_lo"], th["product_copies_hi"]) * ramp(
        length, th["product_copies_len_lo"], th["product_copies_len_hi"]
    )
    return F.when(spread.isNotNull(), F.greatest(spread, pile))  # greatest skips a null pile


def _duplicate_reason(cols: Inputs, _th: Thresholds) -> Column:
    size, reviewers, products = (
        cols["sig_dup_cluster_size"],
        cols["sig_dup_cluster_reviewers"],
        cols["sig_dup_cluster_products"],
    )
    return (
        F.when(reviewers > 0, F.format_string("duplicate text x%d across %d reviewers", size, reviewers))
        .when(products > 0, F.format_string("duplicate text x%d across %d products", size, products))
        .otherwise(F.format_string("duplicate text x%d", size))
    )


def _disagreement_risk(cols: Inputs, th: Thresholds) -> Column:
    """ramp(gap, disagreement_lo, disagreement_hi), times disagreement_low_factor for a 1-2
    star rating (a positive text with a low rating: usually a scale mix-up), times the
    reviewer's scale trust."""
    low_factor = F.when(cols[RATING] <= 2, F.lit(th["disagreement_low_factor"])).otherwise(F.lit(1.0))
    gap_risk = ramp(cols["sig_rating_text_gap"], th["disagreement_lo"], th["disagreement_hi"])
    return gap_risk * low_factor * _scale_trust(cols["sig_reviewer_deflated_share"], th)


def _disagreement_reason(cols: Inputs, _th: Thresholds) -> Column:
    rating, p = cols[RATING], cols[P_POSITIVE]
    return F.when(rating >= 3, F.format_string("%d stars but text reads negative (p=%.2f)", rating, p)).otherwise(
        F.format_string("%d star%s but text reads positive (p=%.2f)", rating, F.when(rating == 1, "").otherwise("s"), p)
    )


def _burst_direction(cols: Inputs, th: Thresholds) -> Column:
    """How much of a burst's risk a review keeps: burst_flat_factor plus the rest in
    proportion to ramp(share of the room left on the scale that the window's rating shift
    closes in this review's direction, burst_shift_lo, burst_shift_hi). A 4-5 star review
    counts an upward shift against the room up to 5 stars, a 1-2 star review a downward one
    against the room down to 1, a 3-star review nothing; the room is at least
    burst_min_headroom stars. Unknown shift, other days' rating or rating: all of it."""
    rating = cols[RATING]
    shift, other = cols["sig_product_window_rating_shift"], cols["sig_product_other_days_rating"]
    floor = F.lit(th["burst_min_headroom"])
    aligned = (
        F.when(rating >= 4, shift / F.greatest(F.lit(5.0) - other, floor))
        .when(rating <= 2, -shift / F.greatest(other - F.lit(1.0), floor))
        .otherwise(F.lit(0.0))
    )
    flat = th["burst_flat_factor"]
    return F.when(shift.isNull() | other.isNull() | rating.isNull(), F.lit(1.0)).otherwise(
        F.lit(flat) + F.lit(1.0 - flat) * ramp(aligned, th["burst_shift_lo"], th["burst_shift_hi"])
    )


def _product_burst_risk(cols: Inputs, th: Thresholds) -> Column:
    """ramp(burst z-score, burst_z_lo, burst_z_hi) * the burst direction factor."""
    return ramp(cols["sig_product_burst_z"], th["burst_z_lo"], th["burst_z_hi"]) * _burst_direction(cols, th)


def _product_burst_reason(cols: Inputs, th: Thresholds) -> Column:
    return F.format_string(
        "product got %d reviews that day, %d in %d days (usual %.0f/day)",
        cols["sig_product_day_reviews"],
        cols["sig_product_window_reviews"],
        F.lit(th["burst_window_days"]),
        cols["sig_product_expected_daily"],
    )


def _reviewer_inflated_risk(cols: Inputs, th: Thresholds) -> Column:
    """ramp(share of inflated reviews, inflated_share_lo, inflated_share_hi) * ramp(reviews
    with rating and p_positive, inflated_min_scored, inflated_full_scored) * scale trust:
    an account that keeps giving top marks to texts that complain (incentivised reviews)."""
    share, scored = cols["sig_reviewer_inflated_share"], cols["sig_reviewer_scored"]
    return F.when(
        share.isNotNull(),
        ramp(share, th["inflated_share_lo"], th["inflated_share_hi"])
        * ramp(scored, th["inflated_min_scored"], th["inflated_full_scored"])
        * _scale_trust(cols["sig_reviewer_deflated_share"], th),
    )


def _reviewer_inflated_reason(cols: Inputs, _th: Thresholds) -> Column:
    share, scored = cols["sig_reviewer_inflated_share"], cols["sig_reviewer_scored"]
    return F.format_string(
        "reviewer gave 4-5 stars to %d of %d texts that read negative", F.round(share * scored).cast("long"), scored
    )


def _coordinated_inflation_risk(cols: Inputs, th: Thresholds) -> Column:
    """For an inflated review by a known reviewer: ramp(distinct reviewers with an inflated
    review on this product, coordinated_lo, coordinated_hi); 0 for any other review with a
    rating and text score; null when the product or the rating/text gap is unknown. One
    account reading the scale backwards is an accident; several on one product a campaign."""
    inflating, gap = cols["sig_product_inflating_reviewers"], cols["sig_rating_text_gap"]
    inflated_by_known = cols["reviewer_id"].isNotNull() & is_inflated(cols[RATING], gap, th["disagreement_lo"])
    return F.when(
        inflating.isNotNull() & gap.isNotNull(),
        F.when(inflated_by_known, ramp(inflating, th["coordinated_lo"], th["coordinated_hi"])).otherwise(F.lit(0.0)),
    )


def _reviewer_extremes_risk(cols: Inputs, th: Thresholds) -> Column:
    """ramp(share of 1/5-star ratings, extreme_share_lo, 1) * ramp(rated reviews,
    extreme_min_rated, extreme_full_rated)."""
    share, rated = cols["sig_reviewer_extreme_share"], cols["sig_reviewer_rated"]
    return F.when(
        share.isNotNull(),
        ramp(share, th["extreme_share_lo"], 1.0) * ramp(rated, th["extreme_min_rated"], th["extreme_full_rated"]),
    )


def _reviewer_extremes_reason(cols: Inputs, _th: Thresholds) -> Column:
    share, rated = cols["sig_reviewer_extreme_share"], cols["sig_reviewer_rated"]
    return F.format_string(
        "reviewer rates only extremes (%d of %d ratings are 1 or 5 stars)", F.round(share * rated).cast("long"), rated
    )


def _single_product_risk(cols: Inputs, th: Thresholds) -> Column:
    """1 for an account whose reviews (at least single_product_min_reviews) are all on one
    product, else 0."""
    single, reviews = cols["sig_reviewer_single_product"], cols["sig_reviewer_reviews"]
    return F.when(
        single.isNotNull() & reviews.isNotNull(),
        F.when(single & (reviews >= th["single_product_min_reviews"]), F.lit(1.0)).otherwise(F.lit(0.0)),
    )


def _shouting_risk(cols: Inputs, th: Thresholds) -> Column:
    """The strongest of: many exclamation marks, a character repeated 4+ times, mostly capitals."""
    return F.greatest(
        ramp(cols["sig_exclamations"], th["exclamation_lo"], th["exclamation_hi"]),
        flag_risk(cols["sig_repeated_chars"]),
        ramp(cols["sig_caps_share"], th["caps_lo"], th["caps_hi"]),
    )


_DUPLICATE_INPUTS = (
    "sig_dup_cluster_size",
    "sig_dup_cluster_reviewers",
    "sig_dup_cluster_products",
    "sig_dup_product_window_copies",
    "sig_dup_product_copies",
    WEIGHTED_LENGTH,
)
_BURST_INPUTS = (
    "sig_product_burst_z",
    "sig_product_window_rating_shift",
    "sig_product_other_days_rating",
    RATING,
    "sig_product_day_reviews",
    "sig_product_window_reviews",
    "sig_product_expected_daily",
)
_BURST_THRESHOLDS = (
    "burst_z_lo",
    "burst_z_hi",
    "burst_min_headroom",
    "burst_flat_factor",
    "burst_shift_lo",
    "burst_shift_hi",
    "burst_window_days",
)

#: Every risk, in the order they are combined (also the order of ties between equally
#: strong reasons).
RULES: tuple[Rule, ...] = (
    Rule(
        "duplicate",
        _DUPLICATE_INPUTS,
        (
            "duplicate_copies_hi",
            "duplicate_len_lo",
            "duplicate_len_hi",
            "product_copies_lo",
            "product_copies_hi",
            "product_copies_len_lo",
            "product_copies_len_hi",
        ),
        _duplicate_risk,
        _duplicate_reason,
    ),
    Rule(
        "disagreement",
        ("sig_rating_text_gap", RATING, P_POSITIVE, "sig_reviewer_deflated_share"),
        ("disagreement_lo", "disagreement_hi", "disagreement_low_factor", "scale_confusion_lo", "scale_confusion_hi"),
        _disagreement_risk,
        _disagreement_reason,
    ),
    Rule("product_burst", _BURST_INPUTS, _BURST_THRESHOLDS, _product_burst_risk, _product_burst_reason),
    Rule(
        "reviewer_inflated",
        ("sig_reviewer_inflated_share", "sig_reviewer_scored", "sig_reviewer_deflated_share"),
        (
            "inflated_share_lo",
            "inflated_share_hi",
            "inflated_min_scored",
            "inflated_full_scored",
            "scale_confusion_lo",
            "scale_confusion_hi",
        ),
        _reviewer_inflated_risk,
        _reviewer_inflated_reason,
    ),
    Rule(
        "coordinated_inflation",
        ("sig_product_inflating_reviewers", "sig_rating_text_gap", "reviewer_id", RATING),
        ("disagreement_lo", "coordinated_lo", "coordinated_hi"),
        _coordinated_inflation_risk,
        _formatted(
            "%d accounts gave 4-5 stars to texts that read negative on this product", "sig_product_inflating_reviewers"
        ),
    ),
    Rule(
        "reviewer_extremes",
        ("sig_reviewer_extreme_share", "sig_reviewer_rated"),
        ("extreme_share_lo", "extreme_min_rated", "extreme_full_rated"),
        _reviewer_extremes_risk,
        _reviewer_extremes_reason,
    ),
    Rule(
        "reviewer_consensus",
        ("sig_reviewer_consensus_dev", "sig_reviewer_consensus_n"),
        ("consensus_lo", "consensus_hi", "consensus_full_reviews"),
        # a reviewer's mean |rating - product consensus|, trusted fully from consensus_full_reviews reviews
        lambda cols, th: _discounted(
            cols["sig_reviewer_consensus_dev"],
            cols["sig_reviewer_consensus_n"],
            th["consensus_lo"],
            th["consensus_hi"],
            th["consensus_full_reviews"],
        ),
        _formatted("reviewer is %.1f stars off product consensus on average", "sig_reviewer_consensus_dev"),
    ),
    Rule(
        "reviewer_burst",
        ("sig_reviewer_max_per_day",),
        ("reviewer_burst_lo", "reviewer_burst_hi"),
        lambda cols, th: ramp(cols["sig_reviewer_max_per_day"], th["reviewer_burst_lo"], th["reviewer_burst_hi"]),
        _formatted("reviewer posted %d reviews in one day", "sig_reviewer_max_per_day"),
    ),
    Rule(
        "rating_deviation",
        ("sig_rating_deviation", "sig_product_consensus_n", RATING, "sig_product_consensus"),
        ("deviation_lo", "deviation_hi", "deviation_full_others"),
        # rating far from the mean of the product's other reviewers, trusted fully from
        # deviation_full_others other ratings
        lambda cols, th: _discounted(
            cols["sig_rating_deviation"],
            cols["sig_product_consensus_n"],
            th["deviation_lo"],
            th["deviation_hi"],
            th["deviation_full_others"],
        ),
        _formatted("rated %d vs product consensus %.1f", RATING, "sig_product_consensus"),
    ),
    Rule(
        "single_product_account",
        ("sig_reviewer_single_product", "sig_reviewer_reviews"),
        ("single_product_min_reviews",),
        _single_product_risk,
        _formatted("account posted %d reviews, all on this product", "sig_reviewer_reviews"),
    ),
    Rule(
        "contact",
        ("sig_contact",),
        (),
        lambda cols, _th: flag_risk(cols["sig_contact"]),
        _fixed("contact details in text"),
    ),
    Rule("url", ("sig_url",), (), lambda cols, _th: flag_risk(cols["sig_url"]), _fixed("link in text")),
    Rule(
        "generic_praise",
        ("sig_generic_praise",),
        (),
        lambda cols, _th: flag_risk(cols["sig_generic_praise"]),
        _fixed("very short generic praise"),
    ),
    Rule(
        "shouting",
        ("sig_exclamations", "sig_repeated_chars", "sig_caps_share"),
        ("exclamation_lo", "exclamation_hi", "caps_lo", "caps_hi"),
        _shouting_risk,
        _fixed("shouting (!!!, repeated characters or all caps)"),
    ),
)

#: The risk names, in :data:`RULES` order.
RISKS: tuple[str, ...] = tuple(rule.name for rule in RULES)


# --------------------------------------------------------------------------- columns and score


def rule_columns(rule: Rule, cfg: FraudConfig) -> tuple[Column, Column]:
    """(risk, reason text) of one rule; its formulas see only what it declares."""
    inputs = MappingProxyType({name: F.col(name) for name in rule.inputs})
    thresholds = MappingProxyType({name: getattr(cfg, name) for name in rule.thresholds})
    return rule.risk(inputs, thresholds), rule.reason(inputs, thresholds)


def risk_columns(cfg: FraudConfig) -> dict[str, tuple[Column, Column]]:
    """Per risk name, in :data:`RULES` order: (risk in [0, 1] or null, reason text)."""
    return {rule.name: rule_columns(rule, cfg) for rule in RULES}


def risk_column(name: str) -> str:
    """The internal column :func:`with_rules_score` holds a rule's risk in."""
    return f"{PREFIX}risk_{name}"


def with_rules_score(df: DataFrame, cfg: FraudConfig) -> DataFrame:
    """Adds every risk (``_fr_risk_<name>``), ``fraud_score`` = 1 - prod(1 - weight * risk)
    over the known risks (noisy-OR: one strong signal flags a review on its own,
    independent weak ones add up, a missing one is left out so every review gets a score),
    and ``fraud_reasons`` / ``fraud_reason_codes``: the texts and names of the
    ``max_reasons`` largest contributions (weight * risk) of at least
    ``reason_min_contribution``, ties in :data:`RULES` order."""
    missing = sorted({name for rule in RULES for name in rule.inputs} - set(df.columns))
    if missing:
        raise SchemaError(f"fraud rules lack input columns {missing}; the frame has {sorted(df.columns)}")
    risks = risk_columns(cfg)
    out = df.withColumns({risk_column(name): risk for name, (risk, _) in risks.items()})
    keep = reduce(
        lambda acc, name: (
            acc * (F.lit(1.0) - F.lit(cfg.weight(name)) * F.coalesce(F.col(risk_column(name)), F.lit(0.0)))
        ),
        RISKS,
        F.lit(1.0),
    )
    items = [
        F.struct(
            (F.lit(cfg.weight(name)) * F.col(risk_column(name))).alias("c"),
            F.lit(-position).alias("o"),
            F.lit(name).alias("code"),
            risks[name][1].alias("t"),
        )
        for position, name in enumerate(RISKS)
    ]
    strongest = F.filter(F.array(*items), lambda item: item["c"] >= cfg.reason_min_contribution)
    out = out.withColumn(f"{PREFIX}ranked", F.slice(F.sort_array(strongest, asc=False), 1, cfg.max_reasons))
    return out.withColumns(
        {
            "fraud_score": F.lit(1.0) - keep,
            "fraud_reasons": F.transform(F.col(f"{PREFIX}ranked"), lambda item: item["t"]),
            "fraud_reason_codes": F.transform(F.col(f"{PREFIX}ranked"), lambda item: item["code"]),
        }
    )
