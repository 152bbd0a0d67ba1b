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
    [(5, (5, None)), ("3", (3, None)), (4.0, (4, None)), (0, (None, "rating_out_of_range")), (6, (None, "rating_out_of_range")),
     (3.5, (None, "rating_out_of_range")), ("five", (None, "rating_not_a_number")), (None, (None, None)), (float("nan"), (None, None))],
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
