"""Pure rules behind ecomine's fraud signals (no pyspark; unit-tested without a JVM).

`ecomine.derived.fraud` computes raw signal columns (``sig_*``) in Spark and turns them into a
score with native column expressions. This module is the single written-down version
of everything in that chain that is not a Spark join or aggregate:

* the regular expressions for content cues (written in the subset of syntax that
  Python ``re`` and Java ``java.util.regex`` read the same way, so Spark's ``rlike``
  and the Python twins below agree: ASCII classes such as ``[0-9]`` instead of ``\\d``);
* the fixed risk transforms that map each raw signal to a risk in [0, 1];
* the noisy-OR combination of risks into ``fraud_score``;
* the reason texts (printf templates that Python ``%`` and Spark ``format_string`` both
  render) and how the top reasons are chosen;
* :class:`FraudConfig` (now in :mod:`ecomine.config`), every threshold and weight.

The Spark code in :mod:`ecomine.derived.fraud` builds its expressions from the same constants
and config fields, and the Spark tests check both sides on hand-computed values.

The risk transforms are hand-set, documented guesses of how suspicious a raw value
is, not fitted probabilities; see ``docs/fraud.md``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

from ecomine.config import FRAUD_DEFAULT_WEIGHTS as DEFAULT_WEIGHTS  # noqa: F401 (re-exported)
from ecomine.config import FraudConfig

# --------------------------------------------------------------------------- signals

#: Every risk that enters the combination, in a fixed order (also the order of ties
#: between equally strong reasons).
RISKS: tuple[str, ...] = (
    "duplicate",
    "disagreement",
    "product_burst",
    "reviewer_inflated",
    "coordinated_inflation",
    "reviewer_extremes",
    "reviewer_consensus",
    "reviewer_burst",
    "rating_deviation",
    "single_product_account",
    "contact",
    "url",
    "generic_praise",
    "shouting",
)

# --------------------------------------------------------------------------- regexes
# Shared by Python (re) and Spark (Java regex). Keep to the common syntax.

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
#: Ideographs (CJK unified + extension A + compatibility), as in ecomine.text.
HAN_PATTERN = r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]"
#: What text normalisation removes: anything that is not a letter or digit. Spark
#: uses the Java form, Python the ``re`` form (``\\W`` is Unicode-aware there).
NON_WORD_JAVA = r"[^\p{L}\p{N}]+"
NON_WORD_PY = r"[\W_]+"

_URL = re.compile(URL_PATTERN)
_EMAIL = re.compile(EMAIL_PATTERN)
_PHONE = re.compile(PHONE_PATTERN)
_MESSENGER = re.compile(MESSENGER_PATTERN)
_PRAISE = re.compile(PRAISE_PATTERN)
_REPEAT = re.compile(REPEAT_PATTERN)
_EXCL = re.compile(EXCLAMATION_PATTERN)
_HAN = re.compile(HAN_PATTERN)
_NON_WORD = re.compile(NON_WORD_PY)


def internal_link_pattern(domains: Sequence[str]) -> str | None:
    """Regex matching links into the marketplace's own domains (removed before the URL
    cue is tested, so a review linking to the product page is not flagged); None if none."""
    if not domains:
        return None
    alts = "|".join(re.escape(d.lower()) for d in domains)
    return rf"(?i)(?:https?://)?(?:[a-z0-9-]+\.)*(?:{alts})(?:/[^\s<>\"']*)?"


def has_url(text: str | None, internal_domains: Sequence[str] = ()) -> bool | None:
    """True when the text links outside the marketplace (None for a null text)."""
    if text is None:
        return None
    pat = internal_link_pattern(internal_domains)
    if pat:
        text = re.sub(pat, " ", text)
    return _URL.search(text) is not None


def has_contact(text: str | None) -> bool | None:
    """True when the text carries an email, a phone number or a messenger id."""
    if text is None:
        return None
    return any(p.search(text) is not None for p in (_EMAIL, _PHONE, _MESSENGER))


def normalize_text(text: str | None) -> str | None:
    """Lower-case, every run of non-letters/digits to one space, trimmed (Python twin of
    the Spark normalisation used for duplicate detection)."""
    if text is None:
        return None
    return _NON_WORD.sub(" ", text.lower()).strip()


def han_count(text: str | None) -> int | None:
    if text is None:
        return None
    return len(_HAN.findall(text))


def weighted_length(normalized: str | None) -> int | None:
    """Length of a normalised text where each ideograph counts 3 (an ideograph carries
    about as much as a short English word): used to discount very short texts."""
    if normalized is None:
        return None
    return len(normalized) + 2 * len(_HAN.findall(normalized))


def is_generic_praise(text: str | None, max_weighted_chars: int) -> bool | None:
    """Very short text that contains generic praise vocabulary."""
    if text is None:
        return None
    wl = weighted_length(normalize_text(text)) or 0
    return 0 < wl <= max_weighted_chars and _PRAISE.search(text) is not None


def exclamation_count(text: str | None) -> int | None:
    if text is None:
        return None
    return len(_EXCL.findall(text))


def has_repeated_chars(text: str | None) -> bool | None:
    if text is None:
        return None
    return _REPEAT.search(text) is not None


def caps_share(text: str | None, min_letters: int) -> float | None:
    """Share of upper-case among ASCII letters; None below ``min_letters`` letters."""
    if text is None:
        return None
    letters = sum(1 for c in text if "A" <= c <= "Z" or "a" <= c <= "z")
    if letters < min_letters:
        return None
    return sum(1 for c in text if "A" <= c <= "Z") / letters


# --------------------------------------------------------------------------- config


# --------------------------------------------------------------------------- transforms


def ramp(x: float | None, lo: float, hi: float) -> float | None:
    """0 at or below ``lo``, 1 at or above ``hi``, linear between; None stays None."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return None
    return min(max((float(x) - lo) / (hi - lo), 0.0), 1.0)


def valid_rating(rating: float | None) -> int | None:
    """A star rating 1-5 as int; anything else (null, 0, 7, 3.5) is None."""
    if rating is None or isinstance(rating, bool):
        return None
    try:
        r = float(rating)
    except (TypeError, ValueError):
        return None
    return int(r) if r in (1.0, 2.0, 3.0, 4.0, 5.0) else None


def valid_probability(p: float | None) -> float | None:
    if p is None:
        return None
    p = float(p)
    return p if 0.0 <= p <= 1.0 else None  # NaN fails both comparisons


def rating_text_gap(rating: float | None, p_positive: float | None) -> float | None:
    """|stars mapped to [0, 1] - p_positive|: 5 stars with p=0.05 -> 0.95; 3 stars -> at most 0.5."""
    r, p = valid_rating(rating), valid_probability(p_positive)
    if r is None or p is None:
        return None
    return abs((r - 1) / 4.0 - p)


def scale_trust(deflated_share: float | None, cfg: FraudConfig) -> float:
    """1 - ramp(the reviewer's share of 1-2 star reviews on texts that read positive,
    scale_confusion_lo, scale_confusion_hi); 1 when unknown (no reviewer id)."""
    if deflated_share is None:
        return 1.0
    return 1.0 - ramp(deflated_share, cfg.scale_confusion_lo, cfg.scale_confusion_hi)


def risk_disagreement(
    gap: float | None, rating: int | None, cfg: FraudConfig, deflated_share: float | None = None
) -> float | None:
    """ramp(gap, disagreement_lo, disagreement_hi), times disagreement_low_factor for a
    1-2 star rating (a positive text with a low rating: usually a scale mix-up), times
    scale_trust(the reviewer's deflated share)."""
    base = ramp(gap, cfg.disagreement_lo, cfg.disagreement_hi)
    if base is None:
        return None
    low = cfg.disagreement_low_factor if valid_rating(rating) in (1, 2) else 1.0
    return base * low * scale_trust(deflated_share, cfg)


def risk_rating_deviation(deviation: float | None, others: int | None, cfg: FraudConfig) -> float | None:
    """Rating far from the consensus of the product's other reviewers, discounted when
    few others exist (``others / deviation_full_others``, capped at 1)."""
    if deviation is None or not others:
        return None
    return ramp(deviation, cfg.deviation_lo, cfg.deviation_hi) * min(others / cfg.deviation_full_others, 1.0)


def duplicate_copies(size: int | None, reviewers: int | None, products: int | None) -> int | None:
    """How many independent places a text appears: the larger of distinct reviewers and
    distinct products in its cluster; the cluster size when neither is known."""
    if size is None:
        return None
    known = [v for v in (reviewers, products) if v]
    return max(known) if known else size


def risk_duplicate(
    copies: int | None, weighted_len: int | None, product_copies: int | None, cfg: FraudConfig
) -> float | None:
    """The larger of

    * spread: ramp(copies, 1, duplicate_copies_hi) * ramp(weighted length,
      duplicate_len_lo, duplicate_len_hi): one copy is no risk, and very short texts
      ("good", "好评") are duplicated innocently across a marketplace;
    * pile-up: ramp(copies of the text on this same product within the burst window
      (all time when the review has no timestamp), product_copies_lo, product_copies_hi)
      * ramp(weighted length, product_copies_len_lo, product_copies_len_hi): three
      identical short reviews on one product in one week are not innocent.
    """
    if copies is None or weighted_len is None:
        return None
    spread = ramp(copies, 1, cfg.duplicate_copies_hi) * ramp(weighted_len, cfg.duplicate_len_lo, cfg.duplicate_len_hi)
    if product_copies is None:
        return spread
    pile = ramp(product_copies, cfg.product_copies_lo, cfg.product_copies_hi) * ramp(
        weighted_len, cfg.product_copies_len_lo, cfg.product_copies_len_hi
    )
    return max(spread, pile)


def risk_reviewer_burst(max_per_day: int | None, cfg: FraudConfig) -> float | None:
    return ramp(max_per_day, cfg.reviewer_burst_lo, cfg.reviewer_burst_hi)


def is_inflated(rating: float | None, p_positive: float | None, cfg: FraudConfig) -> bool | None:
    """4-5 stars on a text that reads negative (rating/text gap >= disagreement_lo)."""
    r, gap = valid_rating(rating), rating_text_gap(rating, p_positive)
    if r is None or gap is None:
        return None
    return r >= 4 and gap >= cfg.disagreement_lo


def risk_coordinated_inflation(
    inflating_reviewers: int | None,
    rating: float | None,
    p_positive: float | None,
    reviewer_known: bool,
    cfg: FraudConfig,
) -> float | None:
    """For a review that is itself inflated (:func:`is_inflated`) by a known reviewer:
    ramp(distinct reviewers with an inflated review on this product, coordinated_lo,
    coordinated_hi); 0 for any other review with a rating and text score; None when the
    product, the rating or the text score is unknown. One account reading the scale
    backwards is an accident; several doing it on the same product is a campaign."""
    inflated = is_inflated(rating, p_positive, cfg)
    if inflated is None or inflating_reviewers is None:
        return None
    if not (inflated and reviewer_known):
        return 0.0
    return ramp(inflating_reviewers, cfg.coordinated_lo, cfg.coordinated_hi)


def is_deflated(rating: float | None, p_positive: float | None, cfg: FraudConfig) -> bool | None:
    """1-2 stars on a text that reads positive (rating/text gap >= disagreement_lo)."""
    r, gap = valid_rating(rating), rating_text_gap(rating, p_positive)
    if r is None or gap is None:
        return None
    return r <= 2 and gap >= cfg.disagreement_lo


def risk_reviewer_inflated(
    share: float | None, scored: int | None, cfg: FraudConfig, deflated_share: float | None = None
) -> float | None:
    """ramp(share of inflated reviews, inflated_share_lo, inflated_share_hi) *
    ramp(reviews with rating and p_positive, inflated_min_scored, inflated_full_scored)
    * scale_trust(deflated share): an account that keeps giving top marks to texts
    that complain (incentivised reviews) and is not simply reading the scale backwards."""
    if share is None or scored is None:
        return None
    return (
        ramp(share, cfg.inflated_share_lo, cfg.inflated_share_hi)
        * ramp(scored, cfg.inflated_min_scored, cfg.inflated_full_scored)
        * scale_trust(deflated_share, cfg)
    )


def risk_reviewer_extremes(share: float | None, rated: int | None, cfg: FraudConfig) -> float | None:
    """ramp(share of 1/5-star ratings, extreme_share_lo, 1) * ramp(rated, extreme_min_rated, extreme_full_rated)."""
    if share is None or rated is None:
        return None
    return ramp(share, cfg.extreme_share_lo, 1.0) * ramp(rated, cfg.extreme_min_rated, cfg.extreme_full_rated)


def risk_reviewer_consensus(mean_dev: float | None, n: int | None, cfg: FraudConfig) -> float | None:
    """A reviewer's mean |rating - product consensus|, discounted below consensus_full_reviews reviews."""
    if mean_dev is None or not n:
        return None
    return ramp(mean_dev, cfg.consensus_lo, cfg.consensus_hi) * min(n / cfg.consensus_full_reviews, 1.0)


def risk_single_product(single: bool | None, reviews: int | None, cfg: FraudConfig) -> float | None:
    """1 for an account whose 2+ reviews are all on one product, else 0."""
    if single is None or reviews is None:
        return None
    return 1.0 if single and reviews >= cfg.single_product_min_reviews else 0.0


def burst_expected(median_daily: float | None, active_days: int | None, cfg: FraudConfig) -> float | None:
    """The product's usual reviews per active day: its median daily count (at least 1), or
    1 when it has fewer than ``burst_min_history_days`` active days."""
    if median_daily is None or active_days is None:
        return None
    if active_days < cfg.burst_min_history_days:
        return 1.0
    return max(float(median_daily), 1.0)


def burst_window_expected(total: int | None, span_days: int | None, cfg: FraudConfig) -> float | None:
    """Expected reviews in a ``burst_window_days`` window: the product's average daily
    rate over its span (first to last review day, at least ``burst_min_span_days``)
    times the window length, at least 1."""
    if total is None or span_days is None:
        return None
    rate = total / max(span_days, cfg.burst_min_span_days)
    return max(1.0, rate * cfg.burst_window_days)


def burst_z(count: int | None, expected: float | None) -> float | None:
    """(count - expected) / sqrt(expected): a Poisson-style z-score."""
    if count is None or expected is None:
        return None
    return (count - expected) / math.sqrt(expected)


def burst_headroom_share(
    shift: float | None, other: float | None, rating: int | None, cfg: FraudConfig
) -> float | None:
    """Share of the room left on the scale that the window's rating shift closes, in this
    review's direction. ``shift`` = mean rating in the window minus ``other``, the
    product's mean on its other days. A 4-5 star review counts an upward shift against
    the room up to 5 stars, a 1-2 star review a downward one against the room down to 1,
    a 3-star review nothing (0). The room is at least ``burst_min_headroom`` stars.
    None when shift, other or rating is unknown.

    Relative, not in stars: a campaign of 5-star reviews on a product already rated 4.6
    can lift the window's mean by 0.4 stars at most, yet that is all of the room there
    is; a promotion day on the same product moves the mean by chance, in either direction."""
    r = valid_rating(rating)
    if shift is None or other is None or r is None:
        return None
    if r >= 4:
        return shift / max(5.0 - other, cfg.burst_min_headroom)
    if r <= 2:
        return -shift / max(other - 1.0, cfg.burst_min_headroom)
    return 0.0


def burst_direction_factor(shift: float | None, other: float | None, rating: int | None, cfg: FraudConfig) -> float:
    """How much of a burst's risk a review keeps: burst_flat_factor plus the rest in
    proportion to ramp(burst_headroom_share, burst_shift_lo, burst_shift_hi). Unknown
    share (no other days rated, or no rating): the whole risk."""
    share = burst_headroom_share(shift, other, rating, cfg)
    if share is None:
        return 1.0
    return cfg.burst_flat_factor + (1.0 - cfg.burst_flat_factor) * ramp(share, cfg.burst_shift_lo, cfg.burst_shift_hi)


def risk_product_burst(
    z: float | None, shift: float | None, other: float | None, rating: int | None, cfg: FraudConfig
) -> float | None:
    """ramp(z, burst_z_lo, burst_z_hi) * burst_direction_factor(shift, other, rating)."""
    base = ramp(z, cfg.burst_z_lo, cfg.burst_z_hi)
    if base is None:
        return None
    return base * burst_direction_factor(shift, other, rating, cfg)


def risk_flag(flag: bool | None) -> float | None:
    """A boolean cue as a risk: True -> 1, False -> 0, None -> None."""
    if flag is None:
        return None
    return 1.0 if flag else 0.0


def risk_shouting(
    exclamations: int | None, repeated: bool | None, caps: float | None, cfg: FraudConfig
) -> float | None:
    """The strongest of: many exclamation marks, a character repeated 4+ times, mostly capitals."""
    parts = [
        ramp(exclamations, cfg.exclamation_lo, cfg.exclamation_hi),
        risk_flag(repeated),
        ramp(caps, cfg.caps_lo, cfg.caps_hi),
    ]
    known = [p for p in parts if p is not None]
    return max(known) if known else None


# --------------------------------------------------------------------------- combination


def combine_noisy_or(risks: Mapping[str, float | None], weights: Mapping[str, float]) -> float:
    """fraud_score = 1 - prod(1 - w_i * r_i) over the risks that are known.

    Each weight is the probability that its signal alone, at full risk, marks a fake;
    missing signals (None) are left out, so a review with no usable signal scores 0 and
    every review gets a score. Noisy-OR lets one strong signal flag a review on its own
    and lets independent weak signals add up, without a weighted mean diluting them.
    """
    keep = 1.0
    for name, r in risks.items():
        if r is None or (isinstance(r, float) and math.isnan(r)):
            continue
        keep *= 1.0 - float(weights.get(name, 0.0)) * min(max(float(r), 0.0), 1.0)
    return 1.0 - keep


# --------------------------------------------------------------------------- reasons

#: printf templates rendered by Python ``%`` and by Spark ``format_string`` alike.
REASON_TEMPLATES: dict[str, str] = {
    "disagreement_high": "%d stars but text reads negative (p=%.2f)",
    "disagreement_low": "%d star%s but text reads positive (p=%.2f)",
    "duplicate_reviewers": "duplicate text x%d across %d reviewers",
    "duplicate_products": "duplicate text x%d across %d products",
    "duplicate": "duplicate text x%d",
    "product_burst": "product got %d reviews that day, %d in %d days (usual %.0f/day)",
    "reviewer_inflated": "reviewer gave 4-5 stars to %d of %d texts that read negative",
    "coordinated_inflation": "%d accounts gave 4-5 stars to texts that read negative on this product",
    "reviewer_extremes": "reviewer rates only extremes (%d of %d ratings are 1 or 5 stars)",
    "reviewer_consensus": "reviewer is %.1f stars off product consensus on average",
    "reviewer_burst": "reviewer posted %d reviews in one day",
    "rating_deviation": "rated %d vs product consensus %.1f",
    "single_product_account": "account posted %d reviews, all on this product",
    "contact": "contact details in text",
    "url": "link in text",
    "generic_praise": "very short generic praise",
    "shouting": "shouting (!!!, repeated characters or all caps)",
}


def reason_disagreement(rating: int, p_positive: float) -> str:
    if rating >= 3:
        return REASON_TEMPLATES["disagreement_high"] % (rating, p_positive)
    return REASON_TEMPLATES["disagreement_low"] % (rating, "" if rating == 1 else "s", p_positive)


def reason_duplicate(size: int, reviewers: int | None, products: int | None) -> str:
    if reviewers:
        return REASON_TEMPLATES["duplicate_reviewers"] % (size, reviewers)
    if products:
        return REASON_TEMPLATES["duplicate_products"] % (size, products)
    return REASON_TEMPLATES["duplicate"] % (size,)


def top_reasons(
    contributions: Mapping[str, float | None],
    texts: Mapping[str, str],
    min_contribution: float,
    k: int,
) -> list[str]:
    """Texts of the ``k`` largest contributions (weight * risk) at or above
    ``min_contribution``; ties keep the order of :data:`RISKS`."""
    order = {name: i for i, name in enumerate(RISKS)}
    ranked = sorted(
        ((c, name) for name, c in contributions.items() if c is not None and c >= min_contribution),
        key=lambda t: (-t[0], order.get(t[1], len(order))),
    )
    return [texts[name] for _, name in ranked[:k]]
