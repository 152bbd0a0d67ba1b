"""The simulated marketplace (ecomine/io/simulated_marketplace.py): pure pandas, no JVM.

Everything checked here is SIMULATED except the texts: the tests pin what each campaign
family is defined to be (so the fraud evaluation measures what docs/fraud.md says it
measures) and that the demo layer never touches or trains on the real rows."""

from __future__ import annotations

import pandas as pd
import pytest

from ecomine.io import demo_data
from ecomine.io import simulated_marketplace as sm


@pytest.fixture(scope="module")
def real():
    return sm.texts_from_reviews(demo_data.demo_reviews(600, 1200))


@pytest.fixture(scope="module")
def market(real):
    # shares raised so that every family has several instances on a small text set
    shares = {kind: 0.03 for kind in sm.CAMPAIGNS}
    return sm.build_marketplace(sm.MarketSpec(seed=101, **shares), texts=real)


def _instances(market, kind):
    return [g for _, g in market[market["campaign"] == kind].groupby("campaign_id")]


def test_every_family_is_present_and_labelled(market):
    assert set(market["campaign"]) == {"none", *sm.CAMPAIGNS}
    assert (market["is_fraud"] == (market["campaign"] != "none")).all()
    assert market["review_id"].is_unique
    for kind in sm.CAMPAIGNS:
        assert len(_instances(market, kind)) >= 2, kind


def test_campaign_sizes_straddle_the_detector_ramps(market):
    # duplicate risk saturates at 6 copies and starts above 1; burst z needs volume: the
    # generator must also draw campaigns below where the ramps start
    copies = [len(g) for g in _instances(market, "copy_paste")]
    assert min(copies) < 6 and max(copies) >= 6, copies
    bursts = [len(g) for g in _instances(market, "burst")]
    assert min(bursts) < 10 <= max(bursts), bursts
    accounts = [g["reviewer_id"].nunique() for g in _instances(market, "contradiction")]
    assert min(accounts) < 3 <= max(accounts), accounts


def test_copy_paste_reuses_one_real_text(market, real):
    texts = set(real["text"])
    for g in _instances(market, "copy_paste"):
        assert g["product_id"].nunique() == 1
        assert g["text"].str.lower().str.strip(" !:)").nunique() == 1
        base = g["text"].iloc[0]
        assert any(t.strip(" !:)").lower() == base.strip(" !:)").lower() for t in texts)


def test_slow_drip_is_spread_out(market):
    for g in _instances(market, "slow_drip"):
        assert g["product_id"].nunique() == 1 and (g["rating"] >= 4).all()
        assert g["text"].is_unique
        per_day = g["created_at"].dt.floor("D").value_counts()
        days = (g["created_at"].max() - g["created_at"].min()).days
        # 5-30 reviews over a span drawn from 21-150 days: never most of them on one day
        assert per_day.max() <= max(2, len(g) // 2), (per_day.max(), len(g), days)


def test_review_ring_members_praise_each_others_products(market):
    for g in _instances(market, "review_ring"):
        assert (g["rating"] == 5).all()
        members = g["reviewer_id"].nunique()
        assert 3 <= members <= 8
        assert g.groupby("reviewer_id")["product_id"].nunique().between(1, 4).all()
        # products are owned by members (two each at most) and nobody reviews their own:
        # so no product collects a review from every member
        assert (g.groupby("product_id")["reviewer_id"].nunique() < members).all()


def test_incentivised_texts_disclose_and_keep_a_real_text(market, real):
    texts = set(real["text"])
    notes = {lang: sm._DISCLOSURES[lang] for lang in ("en", "zh")}
    for _, row in market[market["campaign"] == "incentivised"].iterrows():
        t = row["text"]
        lang_notes = notes[row["language"]]
        hit = [n for n in lang_notes if n in t or n.rstrip("，") in t]
        assert hit, t
        assert any(r in t for r in texts if len(r) > 3), t


def test_same_seed_same_marketplace(real):
    a = sm.build_marketplace(sm.MarketSpec(seed=5), texts=real)
    b = sm.build_marketplace(sm.MarketSpec(seed=5), texts=real)
    pd.testing.assert_frame_equal(a, b)
    c = sm.build_marketplace(sm.MarketSpec(seed=6), texts=real)
    assert not a["review_id"].equals(c["review_id"])


def test_demo_layer_rows_are_marked_and_never_train(real):
    reviews = demo_data.demo_reviews(300, 300)
    layer = sm.demo_layer(reviews, sm.MarketSpec(seed=7))
    assert list(layer.columns) == demo_data.REVIEW_COLUMNS
    for col in ("review_id", "product_id", "reviewer_id"):
        assert layer[col].str.startswith("sim-").all(), col
    assert layer["label"].isna().all()  # no model trains on a simulated row
    assert set(layer["source"]) == {sm.SOURCE, *(f"{sm.SOURCE}:{k}" for k in sm.CAMPAIGNS)}
    assert not set(layer["review_id"]) & set(reviews["review_id"])
    # genuine simulated rows reuse a real demo text byte for byte (scoring reuses its outputs)
    genuine = layer[layer["source"] == sm.SOURCE]
    assert genuine["text"].isin(set(reviews["text"])).all()
    assert layer["rating"].between(1, 5).all() and layer["created_at"].notna().all()
    again = sm.demo_layer(reviews, sm.MarketSpec(seed=7))
    pd.testing.assert_frame_equal(layer, again)  # a reload merges nothing new
