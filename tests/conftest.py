"""Shared fixtures: one session-scoped local[2] SparkSession with real Delta."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def warehouse(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("lakehouse")


@pytest.fixture(scope="session")
def base_cfg(warehouse):
    from ecomine import config

    return config.load(
        ROOT / "conf", "test", [f"storage.root={warehouse}", f"storage.artifacts={warehouse}/_artifacts"]
    )


@pytest.fixture(scope="session")
def spark(base_cfg, tmp_path_factory):
    from ecomine import session

    extra = {
        "spark.sql.warehouse.dir": str(tmp_path_factory.mktemp("warehouse")),
        "spark.driver.extraJavaOptions": f"-Dderby.system.home={tmp_path_factory.mktemp('derby')}",
    }
    s = session.build("ecomine-tests", base_cfg.spark, extra)
    yield s
    s.stop()
