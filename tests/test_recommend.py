"""Recommendations on a real MovieLens slice (Spark) and the ranking metrics (pure)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ecomine.derived import recommend as rec

# --------------------------------------------------------------------------- pure metrics


def test_ndcg_three_items_by_hand():
    # relevant a and c at positions 1 and 3: DCG = 1 + 1/log2(4); ideal = 1 + 1/log2(3)
    assert rec.ndcg_at_k(["a", "b", "c"], {"a", "c"}, 3) == pytest.approx(1.5 / (1 + 1 / math.log2(3)))
    assert rec.ndcg_at_k(["b", "a"], {"a"}, 1) == 0.0
    assert math.isnan(rec.ndcg_at_k(["a"], set(), 10))


def test_recall_coverage_rmse_by_hand():
    assert rec.recall_at_k(["a", "b", "c"], {"a", "c", "d", "e"}, 2) == 0.25
    assert rec.catalog_coverage(["a", "b", "a"], 8) == 0.25
    assert rec.rmse([1.0, 2.0], [2.0, 4.0]) == pytest.approx(math.sqrt(2.5))
    assert math.isnan(rec.rmse([], []))


def test_ranking_metrics_frame():
    recs = pd.DataFrame({"user_id": ["u", "u", "v"], "product_id": ["b", "a", "x"], "rank": [2, 1, 1]})
    rel = pd.DataFrame({"user_id": ["u", "w"], "product_id": ["b", "z"]})
    m = rec.ranking_metrics(recs, rel, 10).set_index("user_id")
    assert m.loc["u", "ndcg"] == pytest.approx(1 / math.log2(3)) and m.loc["u", "recall"] == 1.0
    assert m.loc["w", "ndcg"] == 0.0 and "v" not in m.index  # no relevant items: not scored


def test_bootstrap_users():
    assert rec.bootstrap_users([0.5, 0.5, 0.5], n=50) == (0.5, 0.5, 0.5)
    # weighted RMSE: users with MSE 1 (3 rows) and 4 (1 row) pool to sqrt(7/4)
    v, lo, hi = rec.bootstrap_users([1.0, 4.0, np.nan], [3, 1, 5], n=200, seed=1, transform=math.sqrt)
    assert v == pytest.approx(math.sqrt(7 / 4)) and 1.0 <= lo <= v <= hi <= 2.0
    a = rec.bootstrap_users(np.arange(100.0), n=300, seed=7)
    assert a == rec.bootstrap_users(np.arange(100.0), n=300, seed=7) and a[1] < 49.5 < a[2]


# --------------------------------------------------------------------------- Spark

PARAMS = {"rank": 8, "reg": 0.1, "max_iter": 5, "seed": 7, "min_history": 3, "min_item_ratings": 3}


@pytest.fixture(scope="module")
def ratings() -> pd.DataFrame:
    """First 40 MovieLens users (real) plus a user with two ratings and a null-rating event."""
    from ecomine.io.movielens import movielens_interactions

    df = movielens_interactions(limit_users=40)[["user_id", "product_id", "rating", "created_at"]]
    t = df["created_at"].max()
    extra = pd.DataFrame(
        {
            "user_id": ["newbie", "newbie", "ml-u1"],
            "product_id": ["ml-m1", "ml-m2", "ml-m1"],
            "rating": [5.0, 4.0, None],
            "created_at": [t, t, t],
        }
    )
    return pd.concat([df, extra], ignore_index=True)


@pytest.fixture(scope="module")
def sdf(spark, ratings):
    return spark.createDataFrame(ratings, "user_id string, product_id string, rating double, created_at timestamp")


def _liked(ratings: pd.DataFrame) -> tuple[str, str]:
    """A (user, movie) the user rated 5, user with long history."""
    r = ratings[(ratings["user_id"] == "ml-u15") & (ratings["rating"] == 5.0)].sort_values("product_id")
    return "ml-u15", r["product_id"].iloc[0]


def test_hybrid_invariants_and_new_product_by_content(spark, sdf, ratings):
    user, movie = _liked(ratings)
    nb = spark.createDataFrame(
        [("brand-new", movie, 0.99)], "product_id string, similar_product_id string, similarity double"
    )
    out = rec.recommend(sdf, nb, 10, weights=rec.HybridWeights(content=4.0), **PARAMS).toPandas()
    assert set(out["user_id"]) == set(ratings["user_id"])
    rated = set(zip(ratings["user_id"], ratings["product_id"]))
    assert not any((u, p) in rated for u, p in zip(out["user_id"], out["product_id"]))
    for _, g in out.groupby("user_id"):
        assert sorted(g["rank"]) == list(range(1, len(g) + 1)) and len(g) == 10
        assert g.sort_values("rank")["score"].is_monotonic_decreasing
    new = out[out["product_id"] == "brand-new"]
    likers = set(ratings[(ratings["product_id"] == movie) & (ratings["rating"] >= 4)]["user_id"])
    assert user in set(new["user_id"]) and set(new["user_id"]) <= likers
    assert set(new["source"]) == {"content"}


def test_short_history_gets_popular_products(sdf, ratings):
    out = rec.recommend(sdf, None, 5, **PARAMS).toPandas()
    got = out[out["user_id"] == "newbie"].sort_values("rank")
    # independent popularity: damped mean x log1p(count) on deduplicated ratings (null -> 4.0)
    r = ratings.copy()
    r["rating"] = r["rating"].fillna(4.0)
    r = r.sort_values(["created_at", "rating"]).drop_duplicates(["user_id", "product_id"], keep="last")
    mu = r["rating"].mean()
    g = r.groupby("product_id")["rating"].agg(["sum", "size"])
    pop = ((g["sum"] + 10 * mu) / (g["size"] + 10) * np.log1p(g["size"])).round(9)
    pop = pop.drop(["ml-m1", "ml-m2"]).reset_index().sort_values([0, "product_id"], ascending=[False, True])
    assert got["product_id"].tolist() == pop["product_id"].head(5).tolist()
    assert set(got["source"]) == {"popular"}


def test_als_scores_match_factors(spark, sdf, ratings):
    clean = rec.clean_interactions(sdf)
    fit = rec.fit_als(clean, rank=8, reg=0.1, max_iter=5, seed=7)
    uf = {r["user_id"]: np.array(r["features"], dtype=np.float64) for r in fit.user_factors().collect()}
    vf = {r["product_id"]: np.array(r["features"], dtype=np.float64) for r in fit.item_factors().collect()}
    pairs = spark.createDataFrame(
        [("ml-u15", "ml-m1"), ("ml-u2", "ml-m50"), ("ml-u7", "ml-m296")], "user_id string, product_id string"
    )
    for r in fit.predict(pairs).collect():
        assert r["prediction"] == pytest.approx(float(uf[r["user_id"]] @ vf[r["product_id"]]), abs=1e-4)
    # the collaborative-only ranking of a user is the factor dot-product order over unrated,
    # often-enough-rated products (same seed and input: same factors)
    out = rec.recommend(sdf, None, 5, weights=rec.HybridWeights(content=0.0, popular=0.0), **PARAMS).toPandas()
    user = "ml-u15"
    counts = ratings.drop_duplicates(["user_id", "product_id"]).groupby("product_id").size()
    seen = set(ratings[ratings["user_id"] == user]["product_id"])
    cands = [p for p in vf if counts.get(p, 0) >= 3 and p not in seen]
    scores = sorted((-round(float(uf[user] @ vf[p]), 6), p) for p in cands)[:5]
    got = out[out["user_id"] == user].sort_values("rank")
    assert got["product_id"].tolist() == [p for _, p in scores]
    assert set(got["source"]) == {"collaborative"}


def test_deterministic(sdf):
    a = rec.recommend(sdf, None, 5, **PARAMS).toPandas().sort_values(["user_id", "rank"]).reset_index(drop=True)
    b = rec.recommend(sdf, None, 5, **PARAMS).toPandas().sort_values(["user_id", "rank"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)


def test_new_products_take_the_reserved_last_places(spark, sdf, ratings):
    """Products nobody rated get ``new_slots`` places at the end of the lists of users who
    liked a neighbour, best similarity first; the blend's own list fills the rest."""
    user, movie = _liked(ratings)
    nb = spark.createDataFrame(
        [("new-a", movie, 0.5), ("new-b", movie, 0.9), ("new-c", movie, 0.7)],
        "product_id string, similar_product_id string, similarity double",
    )
    slotted = rec.recommend(sdf, nb, 10, weights=rec.HybridWeights(new_slots=2), **PARAMS).toPandas()
    plain = rec.recommend(sdf, nb, 10, weights=rec.HybridWeights(new_slots=0), **PARAMS).toPandas()
    # a missing rating counts as 4 (implicit); users with mixed events on the movie are skipped
    on_movie = ratings[ratings["product_id"] == movie].assign(liked=lambda d: d["rating"].fillna(4.0) >= 4)
    verdict = on_movie.groupby("user_id")["liked"].agg(["all", "any"])
    likers, mixed = set(verdict.index[verdict["all"]]), set(verdict.index[verdict["any"] & ~verdict["all"]])
    hist = ratings.groupby("user_id")["product_id"].nunique()
    new = {"new-a", "new-b", "new-c"}
    assert user in likers
    for u, g in slotted.groupby("user_id"):
        g = g.sort_values("rank")
        assert g["rank"].tolist() == list(range(1, 11)) and g["score"].is_monotonic_decreasing
        if u in mixed:
            continue
        if u in likers and hist[u] >= PARAMS["min_history"]:
            last = g.tail(2)
            assert last["product_id"].tolist() == ["new-b", "new-c"]  # by similarity 0.9, 0.7
            assert set(last["source"]) == {"content"} and (last["score"] == 0.0).all()
            head = plain[(plain["user_id"] == u) & ~plain["product_id"].isin(["new-b", "new-c"])].sort_values("rank")
            assert g.head(8)["product_id"].tolist() == head["product_id"].head(8).tolist()
        else:
            assert not set(g["product_id"]) & new


def test_no_interactions_no_recommendations(spark):
    """A shop whose reviews carry no reviewer or product id: an empty table, not a crash."""
    empty = spark.createDataFrame(
        [("u", None, 5.0, None)], "user_id string, product_id string, rating double, created_at timestamp"
    )
    out = rec.recommend(empty, None, 10, **PARAMS)
    assert out.columns == ["user_id", "product_id", "rank", "score", "source"] and out.count() == 0
