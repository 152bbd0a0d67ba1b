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


def test_macro_f1_class_set_and_zero_division():
    # F1 of a class = 2tp / (2tp + fp + fn), averaged over the classes of range(n_classes)
    # that occur in the truth or the prediction
    # class 2 predicted but never true: class 0 tp1 fn1 -> 2/3, class 1 -> 1, class 2 tp0 fp1 -> 0
    assert metrics.macro_f1([0, 0, 1], [0, 2, 1], 3) == pytest.approx((2 / 3 + 1 + 0) / 3)
    # class 2 true but never predicted (precision 0/0): its F1 is 0, still averaged
    assert metrics.macro_f1([0, 1, 2], [0, 1, 1], 3) == pytest.approx((1 + 2 / 3 + 0) / 3)
    # classes 2 and 3 occur nowhere: left out of the mean, not counted as 0
    # class 0 tp1 fn1 -> 2/3, class 1 tp2 fp1 -> 4/5
    assert metrics.macro_f1([0, 0, 1, 1], [0, 1, 1, 1], 4) == pytest.approx((2 / 3 + 4 / 5) / 2)
    # an index outside range(n_classes) only counts as an error of the listed classes:
    # class 0 -> 1, class 1 tp1 fp1 (the true 2) -> 2/3
    assert metrics.macro_f1([0, 1, 2], [0, 1, 1], 2) == pytest.approx((1 + 2 / 3) / 2)
    assert metrics.macro_f1([1, 1], [1, 1], 2) == 1.0  # one class, all right
    assert metrics.macro_f1([1, 1], [0, 0], 2) == 0.0
    assert np.isnan(metrics.macro_f1([], [], 3))
    assert np.isnan(metrics.macro_f1([0, 1], [0, 1], 0))  # no class of range(0) occurs


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


def test_qwk_edge_cases():
    # one true class, two predicted: O (0,0)=1 (0,1)=1 -> sum W*O = 1; true [2,0], pred [1,1],
    # E = outer / 2 = [[1, 1], [0, 0]] -> sum W*E = 1 -> kappa 0 (chance level)
    assert metrics.quadratic_weighted_kappa([0, 0], [0, 1], 2) == pytest.approx(0.0)
    # K inferred as 1 + the largest index (3): O (0,0)=1 (2,1)=1 -> sum W*O = 1; true [1,0,1],
    # pred [1,1,0], E = outer / 2 -> sum W*E = 0.5*1 (0,1) + 0.5*4 (2,0) + 0.5*1 (2,1) = 3
    assert metrics.quadratic_weighted_kappa([0, 2], [0, 1]) == pytest.approx(1 - 1 / 3)
    assert metrics.quadratic_weighted_kappa([0, 2], [0, 1], 3) == pytest.approx(1 - 1 / 3)
    # a class with no row changes nothing: K = 5 with rows only in 0 and 2 gives the same
    assert metrics.quadratic_weighted_kappa([0, 2], [0, 1], 5) == pytest.approx(1 - 1 / 3)
    assert np.isnan(metrics.quadratic_weighted_kappa([0, 0], [0, 0], 1))  # one class: undefined
    assert np.isnan(metrics.quadratic_weighted_kappa([2, 2, 2], [2, 2, 2]))
    with pytest.raises(ValueError):
        metrics.quadratic_weighted_kappa([0, -1], [0, 1], 3)
    with pytest.raises(ValueError):
        metrics.quadratic_weighted_kappa([0, 3], [0, 1], 3)


def test_regression_metrics_against_hand_computed_values():
    y, p = [1, 2, 3, 4], [1, 2, 3, 5]
    # SS_res = 1, SS_tot = 2.25 + 0.25 + 0.25 + 2.25 = 5
    assert metrics.r2(y, p) == pytest.approx(0.8)
    assert metrics.rmse(y, p) == pytest.approx(0.5)
    assert metrics.mae(y, p) == pytest.approx(0.25)
    assert metrics.r2(y, [2.5] * 4) == pytest.approx(0.0)  # predicting the mean
    assert metrics.r2(y, [4, 3, 2, 1]) == pytest.approx(1 - 20 / 5)
    assert np.isnan(metrics.r2([3, 3], [3, 3]))
    assert metrics.rmse([0, 0], [3, 4]) == pytest.approx((12.5) ** 0.5)
    assert metrics.mae([0, 0], [3, -4]) == pytest.approx(3.5)


def test_regression_metric_edge_cases():
    assert np.isnan(metrics.r2([3, 3], [3, 4]))  # constant truth: undefined, wrong prediction or not
    assert np.isnan(metrics.r2([3.0], [3.0]))  # one row
    assert np.isnan(metrics.r2([1, 2], [1, float("nan")]))
    for fn in (metrics.r2, metrics.rmse, metrics.mae, metrics.within_one_accuracy):
        assert np.isnan(fn([], []))
    assert np.isnan(metrics.mae([1.0, 2.0], [1.0, float("inf")]))


def test_reports_against_hand_computed_values():
    truth, pred = [0, 1, 2, 2], [0, 2, 2, 1]
    # accuracy 2/4; |t - p| = 0, 1, 0, 1 -> within-one 1, MAE 0.5
    # QWK: sum W*O = 1 (1,2) + 1 (2,1) = 2; true = pred histogram [1, 1, 2], sum W*E =
    # (1*1*1 (0,1) + 4*1*2 (0,2) + 1*1*2 (1,2)) * 2 / 4 = 5.5 -> 1 - 2 / 5.5
    # F1: class 0 -> 1, class 1 tp0 fp1 fn1 -> 0, class 2 tp1 fp1 fn1 -> 0.5
    # mae_expected: class values [1, 2, 3, 3] vs expected [0.5, 1.5, 2, 1.5] -> (0.5 + 0.5 + 1 + 1.5) / 4
    got = metrics.ordinal_report(truth, pred, 3, expected=[0.5, 1.5, 2.0, 1.5], values=[1.0, 2.0, 3.0])
    want = {
        "accuracy": 0.5,
        "within_one_accuracy": 1.0,
        "mae": 0.5,
        "qwk": 1 - 2 / 5.5,
        "macro_f1": 0.5,
        "n": 4,
        "mae_expected": 0.875,
    }
    assert list(got) == list(want) and got == pytest.approx(want)
    assert metrics.classification_report([0, 1, 1], [0, 1, 0], 2) == pytest.approx(
        # class 0 tp1 fp1 -> 2/3, class 1 tp1 fn1 -> 2/3
        {"accuracy": 2 / 3, "macro_f1": 2 / 3, "n": 3}
    )
    got = metrics.regression_report([1, 2, 3, 4], [1, 2, 3, 5])
    assert list(got) == ["r2", "rmse", "mae", "n"] and got == pytest.approx(
        {"r2": 0.8, "rmse": 0.5, "mae": 0.25, "n": 4}
    )


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
    # constant truth: every resample's R^2 is NaN, so the interval is too
    assert all(np.isnan(metrics.bootstrap_ci(metrics.r2, [3, 3, 3], [1, 2, 3], n=20)))
    assert all(np.isnan(metrics.bootstrap_ci(metrics.accuracy, [], [], n=20)))
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
