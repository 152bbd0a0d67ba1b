"""The product tables (``similar_products``, ``recommendations``, ``product_embeddings``,
``catalog_label_rejects``, the ``interactions`` source) as the nightly job writes them.

* ``derive_product_tables`` on a small lakehouse: hand-made unit embeddings whose nearest
  neighbours are worked out here with numpy, real MovieLens ratings of a few users as
  interactions, plus one brand-new product. Checked: neighbours equal numpy's cosine
  top-k; no recommendation of an already-rated product; a rerun with unchanged inputs
  commits nothing; a new interaction recomputes the recommendations (and removes the
  product the user now rated) but not the neighbours.
* docs/tables.md "Product tables": every column with its type, and every example query
  answering what is computed here independently (numpy, delta-rs reads).
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from deltalake import DeltaTable as RsTable
from doc_tables import doc_columns, doc_sql, product_tables

from ecomine import config
from ecomine.flows import pipeline
from ecomine.flows import train as training
from ecomine.io import movielens, runs

ROOT = Path(__file__).resolve().parents[1]
K = 3

# Seven products on a circle in the first two dimensions (angles in degrees) plus a
# product off the circle: cosine = cos(angle difference), so the neighbours are obvious.
ANGLES = {"p1": 0, "p2": 10, "p3": 25, "p4": 50, "p5": 90, "p6": 140, "p7": 180}


def _vectors() -> dict[str, np.ndarray]:
    out = {p: np.array([np.cos(np.radians(a)), np.sin(np.radians(a)), 0.0, 0.0]) for p, a in ANGLES.items()}
    out["p8"] = np.array([0.6, 0.0, 0.8, 0.0])  # closest to p1 (cos 0.6), then p2
    return out


def _exact(vectors: dict[str, np.ndarray], k: int) -> dict[str, list[tuple[str, float]]]:
    """numpy cosine top-k per product (ties by id): all products, in one block (no category)."""
    ids = sorted(vectors)
    out = {}
    for a in ids:
        sims = [(b, round(float(vectors[a] @ vectors[b]), 6)) for b in ids if b != a]
        out[a] = sorted(sims, key=lambda x: (-x[1], x[0]))[:k]
    return out


@pytest.fixture(scope="module")
def lake(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("products")
    cfg = config.load(
        ROOT / "conf",
        "test",
        [
            f"storage.root={root}",
            f"storage.artifacts={root}/_artifacts",
            f"similar.k={K}",
            "recommend.k=5",
            "recommend.min_history=3",
        ],
    )
    vectors = _vectors()
    catalog = pd.DataFrame({"product_id": sorted(vectors), "name": [f"Product {p}" for p in sorted(vectors)]})
    emb = pd.DataFrame(
        {
            "product_id": sorted(vectors),
            "model_version": "v1",
            "text_sha256": "x",
            "dim": 4,
            "embedding": [vectors[p].astype(np.float32).tolist() for p in sorted(vectors)],
            "run_id": "r0",
            "embedded_at": datetime(2026, 12, 1, tzinfo=timezone.utc),
        }
    )
    # interactions: real MovieLens ratings of 6 users, mapped onto p1..p7 by movie popularity
    # (so the numbers are real people's ratings), plus a user with one rating (popular source).
    ml = movielens.movielens_interactions(limit_users=6)
    top = ml["product_id"].value_counts().sort_index(kind="stable").sort_values(ascending=False, kind="stable")
    mapping = {m: f"p{i + 1}" for i, m in enumerate(top.index[:7])}
    inter = ml[ml["product_id"].isin(list(mapping))].assign(product_id=lambda d: d["product_id"].map(mapping))
    inter = pd.concat(
        [
            inter,
            pd.DataFrame(
                {
                    "user_id": ["newbie"],
                    "product_id": ["p1"],
                    "rating": [5.0],
                    "created_at": [pd.Timestamp("2016-01-01", tz="UTC")],
                    "source": ["test"],
                }
            ),
        ],
        ignore_index=True,
    )[["user_id", "product_id", "rating", "created_at", "source"]]
    spark.createDataFrame(catalog).write.format("delta").save(cfg.table("catalog"))
    spark.createDataFrame(
        emb,
        "product_id string, model_version string, text_sha256 string, dim int, embedding array<float>, "
        "run_id string, embedded_at timestamp",
    ).write.format("delta").save(cfg.table("product_embeddings"))
    spark.createDataFrame(
        inter, "user_id string, product_id string, rating double, created_at timestamp, source string"
    ).write.format("delta").save(cfg.table("interactions"))

    def nightly():
        with runs.recorded(spark, cfg.table("runs"), cfg.storage.root, "nightly") as r:
            r.details["selection"] = "test"
            pipeline.derive_product_tables(spark, cfg, r)
        return r

    first = nightly()
    return cfg, vectors, inter, nightly, first


def _pd(cfg, name: str) -> pd.DataFrame:
    return RsTable(cfg.table(name)).to_pandas()


def test_neighbours_equal_numpy_cosine_top_k(lake):
    cfg, vectors, _, _, _ = lake
    got = _pd(cfg, "similar_products").sort_values(["product_id", "rank"])
    want = _exact(vectors, K)
    for p, rows in got.groupby("product_id"):
        assert list(rows["rank"]) == list(range(1, len(rows) + 1))
        assert [(r.similar_product_id, pytest.approx(r.similarity, abs=1e-6)) for r in rows.itertuples()] == [
            (b, s) for b, s in want[p]
        ], p
    assert set(got["product_id"]) == {p for p, w in want.items() if w}
    assert (got["model_version"] == "v1").all()


def test_recommendations_skip_rated_products_and_serve_every_user(lake):
    cfg, _, inter, _, first = lake
    recs = _pd(cfg, "recommendations")
    assert set(recs["user_id"]) == set(inter["user_id"])
    rated = set(zip(inter["user_id"], inter["product_id"]))
    assert not [(u, p) for u, p in zip(recs["user_id"], recs["product_id"]) if (u, p) in rated]
    for _, rows in recs.groupby("user_id"):
        assert sorted(rows["rank"]) == list(range(1, len(rows) + 1)) and len(rows) <= 5
        assert rows["product_id"].is_unique
    assert set(recs.loc[recs["user_id"] == "newbie", "source"]) == {"popular"}  # one rating < min_history
    # p8 has no interactions at all: only its embedding (nearest to p1) can bring it in
    p8 = recs[recs["product_id"] == "p8"]
    assert len(p8) and set(p8["source"]) <= {"content", "popular"}
    assert first.details["recommendations_written"] == len(recs)


def test_rerun_commits_nothing_and_a_new_interaction_recomputes_only_recommendations(spark, lake):
    cfg, _, inter, nightly, _ = lake
    v_sim, v_rec = RsTable(cfg.table("similar_products")).version(), RsTable(cfg.table("recommendations")).version()
    again = nightly()
    assert RsTable(cfg.table("similar_products")).version() == v_sim
    assert RsTable(cfg.table("recommendations")).version() == v_rec
    assert "recommendations_written" not in again.details and "similar_products_written" not in again.details

    recs = _pd(cfg, "recommendations")
    user = sorted(set(inter["user_id"]) - {"newbie"})[0]
    top = recs[(recs["user_id"] == user) & (recs["rank"] == 1)]["product_id"].iloc[0]
    spark.createDataFrame(
        [(user, top, 4.5, datetime(2026, 12, 2, tzinfo=timezone.utc), "test")],
        "user_id string, product_id string, rating double, created_at timestamp, source string",
    ).write.format("delta").mode("append").save(cfg.table("interactions"))
    third = nightly()
    assert RsTable(cfg.table("similar_products")).version() == v_sim
    after = _pd(cfg, "recommendations")
    assert top not in set(after.loc[after["user_id"] == user, "product_id"])
    assert third.details["recommendations_written"] + third.details["recommendations_deleted"] > 0
    assert set(after["run_id"]) <= {third.run_id, *set(recs["run_id"])}


# --------------------------------------------------------------------------- docs/tables.md


@pytest.fixture(scope="module")
def views(spark, lake):
    cfg = lake[0]
    rejects = training.catalog_label_rejects(
        pd.DataFrame(
            {"product_id": ["p1", "p2", "p3"], "rating": [4.5, 7.0, float("inf")], "review_count": [3, 1.56e38, -1]}
        ),
        [t for t in cfg.model.catalog_tasks if t.valid_range is not None]
        or [t for t in config.load(ROOT / "conf", "local", []).model.catalog_tasks if t.valid_range is not None],
    )
    training.write_label_rejects(spark, cfg, rejects, "r-test")
    names = [
        "interactions",
        "product_embeddings",
        "similar_products",
        "recommendations",
        "catalog_label_rejects",
        "catalog",
    ]
    for name in names:
        spark.read.format("delta").load(cfg.table(name)).createOrReplaceTempView(name)
    yield cfg, rejects
    for name in names:
        spark.catalog.dropTempView(name)


def test_every_product_table_column_is_documented_with_its_type(spark, views):
    documented = doc_columns(product_tables())
    assert sorted(documented) == sorted(
        ["interactions", "product_embeddings", "similar_products", "recommendations", "catalog_label_rejects"]
    )
    problems = []
    for table, docs in documented.items():
        actual = [(f.name, f.dataType.simpleString()) for f in spark.table(table).schema.fields]
        want = {c: t.replace(" ", "") for c, t in docs}
        problems += [f"{table}.{c} ({t}) not documented as such" for c, t in actual if want.get(c) != t]
        problems += [f"{table}.{c} documented, not produced" for c in sorted(set(want) - {c for c, _ in actual})]
    assert not problems, "\n".join(problems)


def test_every_product_query_answers_right(spark, views, lake):
    cfg, rejects = views
    vectors = lake[1]
    queries = doc_sql(product_tables())
    assert set(queries) == {
        "similar_to_product",
        "embedding_cosine",
        "recommendations_for_user",
        "recommendation_sources",
        "label_rejects_by_reason",
    }
    rows = spark.sql(queries["similar_to_product"]).collect()
    assert [(r["similar_product_id"], r["name"]) for r in rows] == [
        (b, f"Product {b}") for b, _ in _exact(vectors, K)["p1"]
    ]
    (row,) = spark.sql(queries["embedding_cosine"]).collect()
    assert row["cosine"] == pytest.approx(float(vectors["p1"] @ vectors["p2"]), abs=1e-6)

    recs = _pd(cfg, "recommendations")
    u1 = spark.sql(queries["recommendations_for_user"].replace("'u1'", "'newbie'")).collect()
    want = recs[recs["user_id"] == "newbie"].sort_values("rank")
    assert [(r["product_id"], r["name"]) for r in u1] == [(p, f"Product {p}") for p in want["product_id"]]
    got = {r["source"]: (r["users"], r["rows"]) for r in spark.sql(queries["recommendation_sources"]).collect()}
    assert got == {s: (g["user_id"].nunique(), len(g)) for s, g in recs.groupby("source")}

    got = [(r["task"], r["reason"], r["products"]) for r in spark.sql(queries["label_rejects_by_reason"]).collect()]
    # by hand: rating 7.0 > 5, rating inf not finite, review_count 1.56e38 > 1e7, review_count -1 < 0
    assert got == [
        ("popularity", "above_valid_range", 1),
        ("popularity", "below_valid_range", 1),
        ("product_rating", "above_valid_range", 1),
        ("product_rating", "not_finite", 1),
    ]
    assert len(rejects) == 4


def test_console_shows_a_products_neighbours_and_a_users_recommendations(lake, capsys):
    from ecomine import cli

    cfg, vectors = lake[0], lake[1]
    where = ["--conf-dir", str(ROOT / "conf"), "--env", "test", "--set", f"storage.root={cfg.storage.root}"]
    assert cli.console_main(["product", "p1", *where]) == 0
    out = capsys.readouterr().out
    for rank, (b, sim) in enumerate(_exact(vectors, K)["p1"], start=1):
        assert f"{rank:>2}. {sim:.3f}  {b}  Product {b}" in out
    recs = _pd(cfg, "recommendations").query("user_id == 'newbie'").sort_values("rank")
    assert cli.console_main(["recommend", "newbie", *where]) == 0
    out = capsys.readouterr().out
    assert [line.split()[3] for line in out.splitlines()[1:]] == list(recs["product_id"])
    assert cli.console_main(["recommend", "nobody", *where]) == 1
    assert "user 'nobody' has no rows in recommendations" in capsys.readouterr().err
