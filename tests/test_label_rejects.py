"""Catalog target validation in training: ``valid_range`` masks and reports bad regression labels.

Pure functions (``labels.task_targets``, ``train.catalog_label_rejects``,
``train.label_reject_counts``) on small inline frames with a null row and bad rows; no JVM.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ecomine.config import ConfigError, TaskConfig
from ecomine.flows.train import LABEL_REJECTS_COLUMNS, catalog_label_rejects, label_reject_counts
from ecomine.labels import task_targets

INPUTS = ("name", "brand", "category", "description")
RATING = TaskConfig(name="product_rating", kind="regression", target="rating", valid_range=(0.0, 5.0), inputs=INPUTS)
POPULARITY = TaskConfig(
    name="popularity", kind="regression", target="review_count", log=True, valid_range=(0.0, 1e7), inputs=INPUTS
)
PRICE = TaskConfig(name="price", kind="regression", target="price", log=True, inputs=INPUTS)  # no valid_range


@pytest.fixture()
def rows() -> pd.DataFrame:
    nan, inf = float("nan"), float("inf")
    return pd.DataFrame(
        {
            "product_id": ["p1", "p2", "p3", "p4", "p5", "p6"],
            "rating": [4.5, 5.0, 0.0, -1.0, 7.5, nan],
            "review_count": [12.0, 1.56e38, nan, 0.0, inf, 3.0],
            "price": [10.0, -5.0, inf, 3.0, 1e12, nan],
        }
    )


def test_task_targets_mask_values_outside_the_valid_range(rows):
    nan = float("nan")
    got = task_targets(RATING, rows["rating"].tolist())
    np.testing.assert_array_equal(got, [4.5, 5.0, 0.0, nan, nan, nan])  # bounds are valid
    got = task_targets(POPULARITY, rows["review_count"].tolist())
    np.testing.assert_array_equal(got, [12.0, nan, nan, 0.0, nan, 3.0])
    # Without valid_range nothing changes: only non-finite values are no label.
    np.testing.assert_array_equal(task_targets(PRICE, rows["price"].tolist()), [10.0, -5.0, nan, 3.0, 1e12, nan])


def test_catalog_label_rejects_lists_each_bad_target_with_its_reason(rows):
    got = catalog_label_rejects(rows, (RATING, POPULARITY, PRICE))
    expected = pd.DataFrame(
        [
            ("p2", "popularity", "review_count", "1.56e+38", "above_valid_range"),
            ("p5", "popularity", "review_count", "inf", "not_finite"),
            ("p4", "product_rating", "rating", "-1", "below_valid_range"),
            ("p5", "product_rating", "rating", "7.5", "above_valid_range"),
        ],
        columns=LABEL_REJECTS_COLUMNS,
    )
    pd.testing.assert_frame_equal(got, expected)
    assert label_reject_counts(got) == {
        "popularity": {"above_valid_range": 1, "not_finite": 1},
        "product_rating": {"above_valid_range": 1, "below_valid_range": 1},
    }


def test_rejects_and_training_targets_agree(rows):
    """Every reject is a row the task does not train on, and every row it drops despite a value is a reject."""
    rejects = catalog_label_rejects(rows, (RATING, POPULARITY))
    for task in (RATING, POPULARITY):
        y = task_targets(task, rows[task.target].tolist())
        has_value = rows[task.target].map(lambda v: not (isinstance(v, float) and math.isnan(v)))
        dropped = set(rows.loc[has_value.to_numpy() & np.isnan(y), "product_id"])
        assert dropped == set(rejects.loc[rejects["task"] == task.name, "product_id"])


def test_no_valid_range_no_rejects(rows):
    got = catalog_label_rejects(rows, (PRICE,))
    assert got.empty and list(got.columns) == LABEL_REJECTS_COLUMNS
    assert label_reject_counts(got) == {}


def test_non_numbers_are_rejected_not_crashed():
    rows = pd.DataFrame({"product_id": ["a", "b", "c"], "rating": ["4.0", "n/a", None]})
    got = catalog_label_rejects(rows, (RATING,))
    assert got[["product_id", "value", "reason"]].values.tolist() == [["b", "n/a", "not_a_number"]]
    np.testing.assert_array_equal(task_targets(RATING, rows["rating"].tolist()), [4.0, float("nan"), float("nan")])


def test_missing_target_column_is_an_error_that_names_it():
    with pytest.raises(KeyError, match="review_count"):
        catalog_label_rejects(pd.DataFrame({"product_id": ["a"], "rating": [1.0]}), (POPULARITY,))


def test_valid_range_only_on_regression_tasks():
    with pytest.raises(ConfigError, match="valid_range"):
        TaskConfig(name="cond", kind="ordinal", target="condition", classes=("1", "2"), valid_range=(1.0, 2.0))


def test_write_label_rejects_merges_once(spark, base_cfg, rows):
    """Spark: the rejects MERGE into catalog_label_rejects on (product_id, task); a rerun commits nothing."""
    from ecomine.flows.train import write_label_rejects
    from ecomine.io import delta_io

    rejects = catalog_label_rejects(rows, (RATING, POPULARITY))
    assert write_label_rejects(spark, base_cfg, rejects, "run-1")["inserted"] == 4
    path = base_cfg.table("catalog_label_rejects")
    version = delta_io.table_version(spark, path)
    assert write_label_rejects(spark, base_cfg, rejects, "run-2") == {"inserted": 0, "updated": 0, "deleted": 0}
    assert delta_io.table_version(spark, path) == version
    got = delta_io.read(spark, path).orderBy("task", "product_id").toPandas()
    assert got[["product_id", "task", "value", "reason"]].values.tolist() == [
        ["p2", "popularity", "1.56e+38", "above_valid_range"],
        ["p5", "popularity", "inf", "not_finite"],
        ["p4", "product_rating", "-1", "below_valid_range"],
        ["p5", "product_rating", "7.5", "above_valid_range"],
    ]
    assert set(got["run_id"]) == {"run-1"}
