"""Pure helpers: text cleanup, language, rejects, split hashing, labels, metrics (no JVM)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from ecomine import labels, metrics, split, text
from ecomine.config import TaskConfig


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("  good\t\tcoffee \n", "good coffee"),
        ("bad\x00\x07 bytes\x1b here", "bad bytes here"),
        ("broken \ufffd utf8", "broken utf8"),
        ("lone \ud800 surrogate", "lone surrogate"),
        ("emoji 😀 and 中文 stay", "emoji 😀 and 中文 stay"),
        ("Cafe\u0301", "Café"),  # NFC
        (None, None),
    ],
)
def test_clean_text(raw, expected):
    assert text.clean_text(raw) == expected


def test_detect_language():
    assert text.detect_language("This tea is lovely") == "en"
    assert text.detect_language("这个茶很好喝，推荐") == "zh"
    assert text.detect_language("iPhone 很好用") == "zh"  # 3 CJK of 9 letters = 33%
    assert text.detect_language("1234 !!!") is None
    assert text.normalize_language(" EN-us ") == "en"
    assert text.normalize_language("") is None


def test_reject_reason():
    assert text.reject_reason(None, True, 2) == "null_text"
    assert text.reject_reason("", False, 2) == "empty_text"
    assert text.reject_reason("a", False, 2) == "too_short"
    assert text.reject_reason("ok", False, 2) is None


def test_split_is_stable_and_proportional():
    keys = [f"r{i}" for i in range(20000)]
    a = [split.assign(k, "s", 0.1, 0.1) for k in keys]
    assert a == [split.assign(k, "s", 0.1, 0.1) for k in keys]
    share = {s: a.count(s) / len(a) for s in ("train", "validation", "test")}
    assert abs(share["test"] - 0.1) < 0.01 and abs(share["validation"] - 0.1) < 0.01
    # independent recomputation of one bucket
    d = hashlib.sha256(b"s|r7").digest()
    assert split.bucket("r7", "s") == int.from_bytes(d[:8], "big") / 2**64
    # another salt gives another split
    assert a != [split.assign(k, "t", 0.1, 0.1) for k in keys]


RATING = TaskConfig(
    name="rating",
    kind="binary",
    target="label",
    label_map={"great": "five_star", "other": "one_to_four", "5": "five_star"},
    classes=("one_to_four", "five_star"),
    positive="five_star",
)


def test_label_mapping():
    assert labels.class_indices(RATING, ["great", "Other ", None, "meh", 5.0, "5"]).tolist() == [1, 0, -1, -1, 1, 1]


@pytest.mark.parametrize(
    "value,expected",
    [
        (5, (5, None)),
        ("3", (3, None)),
        (4.0, (4, None)),
        (0, (None, "rating_out_of_range")),
        (6, (None, "rating_out_of_range")),
        (3.5, (None, "rating_out_of_range")),
        ("five", (None, "rating_not_a_number")),
        (None, (None, None)),
        (float("nan"), (None, None)),
    ],
)
def test_parse_rating(value, expected):
    assert labels.parse_rating(value) == expected


def test_metrics_against_hand_computed_values():
    y = [0, 0, 1, 1, 1, 2]
    p = [0, 1, 1, 1, 0, 2]
    # class 0: tp1 fp1 fn1 -> 0.5; class 1: tp2 fp1 fn1 -> 4/6; class 2: tp1 -> 1.0
    assert metrics.macro_f1(y, p, 3) == pytest.approx((0.5 + 4 / 6 + 1.0) / 3)
    assert metrics.accuracy(y, p) == pytest.approx(4 / 6)
    assert np.isnan(metrics.accuracy([], []))


def test_ordinal_metrics_against_hand_computed_values():
    # |t - p| = 0, 2, 0, 2
    assert metrics.within_one_accuracy([1, 2, 3, 5], [1, 4, 3, 3]) == pytest.approx(0.5)
    assert metrics.mae([1, 2, 3, 5], [1, 4, 3, 3]) == pytest.approx(1.0)
    # confusion O: (0,0)=1 (0,1)=1 (1,1)=1 (2,1)=1; weights (i-j)^2/4 -> sum W*O = 0.25 + 0.25 = 0.5
    # histograms true [2,1,1], pred [1,3,0]; E = outer / 4 -> sum W*E = 0.375 + 0.0625 + 0.25 + 0.1875 = 0.875
    assert metrics.quadratic_weighted_kappa([0, 0, 1, 2], [0, 1, 1, 1], 3) == pytest.approx(1 - 0.5 / 0.875)
    # complete reversal of 3 balanced classes: sum W*O = 2, sum W*E = 3 * (1/3) = 1 -> kappa -1
    assert metrics.quadratic_weighted_kappa([0, 1, 2], [2, 1, 0], 3) == pytest.approx(-1.0)
    assert metrics.quadratic_weighted_kappa([0, 1, 2, 2], [0, 1, 2, 2], 3) == pytest.approx(1.0)
    assert np.isnan(metrics.quadratic_weighted_kappa([1, 1], [1, 1], 3))  # no spread: undefined
    assert np.isnan(metrics.quadratic_weighted_kappa([], [], 3))


def test_qwk_agrees_with_sklearn():
    from sklearn.metrics import cohen_kappa_score

    rng = np.random.default_rng(3)
    t = rng.integers(0, 5, 300)
    p = np.clip(t + rng.integers(-2, 3, 300), 0, 4)
    assert metrics.quadratic_weighted_kappa(t, p, 5) == pytest.approx(cohen_kappa_score(t, p, weights="quadratic"))


def test_regression_metrics_against_hand_computed_values():
    y, p = [1, 2, 3, 4], [1, 2, 3, 5]
    # SS_res = 1, SS_tot = 2.25 + 0.25 + 0.25 + 2.25 = 5
    assert metrics.r2(y, p) == pytest.approx(0.8)
    assert metrics.rmse(y, p) == pytest.approx(0.5)
    assert metrics.mae(y, p) == pytest.approx(0.25)
    assert metrics.r2(y, [2.5] * 4) == pytest.approx(0.0)  # predicting the mean
    assert metrics.r2(y, [4, 3, 2, 1]) == pytest.approx(1 - 20 / 5)
    assert np.isnan(metrics.r2([3, 3], [3, 3]))


def test_bootstrap_ci():
    # a 0/1 "correct" vector with mean 0.5 over 400 rows: the normal approximation gives
    # 0.5 +- 1.96 * sqrt(0.25 / 400) = 0.5 +- 0.049
    correct = np.array([1, 0] * 200)
    low, high = metrics.bootstrap_ci(metrics.accuracy, correct, np.ones(400), n=2000, seed=1)
    assert low == pytest.approx(0.451, abs=0.012) and high == pytest.approx(0.549, abs=0.012)
    assert metrics.bootstrap_ci(metrics.accuracy, correct, np.ones(400), n=200, seed=1) == metrics.bootstrap_ci(
        metrics.accuracy, correct, np.ones(400), n=200, seed=1
    )  # seeded: reproducible
    assert metrics.bootstrap_ci(metrics.accuracy, [1, 1, 1], [1, 1, 1], n=50) == (1.0, 1.0)
    with pytest.raises(ValueError):
        metrics.bootstrap_ci(metrics.accuracy, [1, 2], [1], n=10)


def test_regression_and_ordinal_targets():
    cond = TaskConfig(name="condition", kind="ordinal", target="condition", classes=("1", "2", "3", "4", "5"))
    assert labels.task_targets(cond, [1, "5", 3.0, None, 7, float("nan")]).tolist() == [0, 4, 2, -1, -1, -1]
    assert labels.ordinal_values(("1", "2", "5")).tolist() == [1.0, 2.0, 5.0]
    assert labels.ordinal_values(("poor", "good", "new")).tolist() == [0.0, 1.0, 2.0]
    price = TaskConfig(name="price", kind="regression", target="price", log=True)
    got = labels.task_targets(price, [10, "2.5", None, "n/a", float("inf")])
    assert got[:2].tolist() == [10.0, 2.5] and np.isnan(got[2:]).all()
    got = labels.compose_text({"a": ["x", None, " y  z "], "b": ["1", "2", float("nan")]}, ["a", "b"])
    assert got == ["x | 1", "2", "y z"]
