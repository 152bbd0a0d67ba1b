"""Config layering and validation (pure, no JVM)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ecomine import config
from ecomine.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_layers_and_override_win_in_order():
    cfg = config.load(ROOT / "conf", "test", ["scoring.batch_size=7", "model.train.epochs=0.5"])
    assert cfg.scoring.batch_size == 7  # --set beats base.yaml's 32
    assert cfg.model.train.epochs == 0.5
    assert cfg.model.train.max_samples_per_language == 96  # test.yaml beats base.yaml's 2000
    assert cfg.spark.conf["spark.master"] == "local[2]"
    assert cfg.spark.conf["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"  # base kept under merge


def test_unknown_key_names_file_and_key(tmp_path):
    (tmp_path / "base.yaml").write_text((ROOT / "conf" / "base.yaml").read_text())
    (tmp_path / "prod.yaml").write_text("scoring:\n  batchsize: 64\n")
    with pytest.raises(ConfigError) as e:
        config.load(tmp_path, "prod")
    assert str(tmp_path / "prod.yaml") in str(e.value)
    assert "scoring.batchsize" in str(e.value)


def test_wrong_type_names_the_layer_and_key(tmp_path):
    (tmp_path / "base.yaml").write_text((ROOT / "conf" / "base.yaml").read_text())
    (tmp_path / "prod.yaml").write_text("model:\n  train:\n    batch_size: sixteen\n")
    with pytest.raises(ConfigError, match=r"prod.yaml: key 'model.train.batch_size' expected int, found str"):
        config.load(tmp_path, "prod")


def test_bool_is_not_an_int():
    with pytest.raises(ConfigError, match="scoring.batch_size"):
        config.load(ROOT / "conf", "test", ["scoring.batch_size=true"])


def test_invalid_task_is_rejected():
    with pytest.raises(ConfigError, match="kind"):
        config.load(
            ROOT / "conf",
            "test",
            ["model.tasks=[{name: x, kind: fuzzy, target: label, label_map: {}, classes: [a, b]}]"],
        )


def test_env_var_expansion(monkeypatch):
    monkeypatch.setenv("LAKE_ROOT", "/data/lake")
    cfg = config.load(ROOT / "conf", "test", ["storage.root=${LAKE_ROOT}/prod"])
    assert cfg.storage.root == "/data/lake/prod"
    assert cfg.table("reviews") == "/data/lake/prod/reviews"
    monkeypatch.delenv("LAKE_ROOT")
    with pytest.raises(ConfigError, match="LAKE_ROOT"):
        config.load(ROOT / "conf", "test", ["storage.root=${LAKE_ROOT}/prod"])


def test_table_paths_absolute_and_uri_kept():
    cfg = config.load(ROOT / "conf", "test", ["storage.root=s3://bucket/lake", "tables.catalog=/mnt/shop/catalog"])
    assert cfg.table("reviews") == "s3://bucket/lake/reviews"
    assert cfg.table("catalog") == "/mnt/shop/catalog"


def test_spark_keys_with_dots_can_be_overridden():
    cfg = config.load(
        ROOT / "conf", "test", ["spark.conf.spark.master=local[1]", "spark.conf.spark.sql.shuffle.partitions=3"]
    )
    assert cfg.spark.conf["spark.master"] == "local[1]"
    assert cfg.spark.conf["spark.sql.shuffle.partitions"] == "3"
    assert cfg.spark.conf["spark.ui.enabled"] == "false"  # the rest of the layer stays


def test_deep_merge_is_pure():
    a = {"x": {"y": 1, "z": 2}}
    b = {"x": {"y": 3}}
    assert config.deep_merge(a, b) == {"x": {"y": 3, "z": 2}}
    assert a == {"x": {"y": 1, "z": 2}}


def test_missing_env_file():
    with pytest.raises(ConfigError, match="nope.yaml"):
        config.load(ROOT / "conf", "nope")


def test_base_yaml_documents_the_code_defaults():
    """conf/base.yaml lists every key with its default: it must agree with the dataclasses."""
    from ecomine.config import ExplainConfig, FraudConfig, InsightsConfig

    cfg = config.load(ROOT / "conf", None)
    assert cfg.fraud == FraudConfig()
    assert cfg.insights == InsightsConfig()
    assert cfg.explain == ExplainConfig(n_steps=32)  # base.yaml lowers n_steps for CPU drivers
    assert cfg.scoring == config.ScoringConfig()
    assert cfg.model.train == config.TrainConfig()


def test_one_flagged_threshold_old_insights_key_says_where_it_went(tmp_path):
    """insights.fraud_threshold was a second copy of fraud.flag_threshold; a layer that still
    sets it fails and names the key to use instead."""
    (tmp_path / "base.yaml").write_text((ROOT / "conf" / "base.yaml").read_text())
    (tmp_path / "prod.yaml").write_text("insights:\n  fraud_threshold: 0.7\n")
    with pytest.raises(ConfigError) as e:
        config.load(tmp_path, "prod")
    message = str(e.value)
    assert str(tmp_path / "prod.yaml") in message
    assert "insights.fraud_threshold" in message and "fraud.flag_threshold" in message
    with pytest.raises(ConfigError, match=r"--set insights.fraud_threshold=0.7: key 'insights.fraud_threshold'"):
        config.load(ROOT / "conf", "test", ["insights.fraud_threshold=0.7"])
    assert not hasattr(config.InsightsConfig(), "fraud_threshold")
    assert config.load(ROOT / "conf", "test", ["fraud.flag_threshold=0.7"]).fraud.flag_threshold == 0.7
