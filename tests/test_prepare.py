"""Source conformance and pre-scoring checks on tiny inline frames (real Spark)."""

from __future__ import annotations

import hashlib

import pytest
from pyspark.sql import functions as F

from ecomine.config import ReviewColumns
from ecomine.errors import SchemaError
from ecomine.flows import score as scoring
from ecomine.io import tables

SRC = "rid string, body string, lang string, stars string, pid string"
ROWS = [
    ("1", "Great coffee, would buy again", None, "5", "p1"),
    ("2", None, "en", "4", "p1"),  # null text
    ("3", "   \t  ", "en", "3", "p1"),  # whitespace only
    ("4", "\x00\x01\x02", "en", "1", "p1"),  # control characters only
    ("5", "x", "en", "2", "p1"),  # too short
    ("6", "Très bon café", "fr", "5", "p2"),  # no model for French
    ("7", "这个咖啡很好喝", None, "9", "p2"),  # detected zh; rating out of range
    ("8", "ok tea", "EN", "five", "p2"),  # rating not a number
    ("9", "first text", "en", "5", "p3"),
    ("9", "second text", "en", "1", "p3"),  # conflicting duplicate id
    ("10", "same text", "en", "4", "p3"),
    ("10", "same text", "en", "4", "p3"),  # identical duplicate collapses
    (None, "a review without key", "en", "3", "p3"),
]
MAPPING = ReviewColumns(review_id="rid", text="body", language="lang", rating="stars", product_id="pid")


@pytest.fixture(scope="module")
def prepared(spark):
    df = spark.createDataFrame(ROWS, SRC)
    conformed = tables.conform(df, "reviews", MAPPING, tables.REVIEW_SCHEMA)
    out = conformed.transform(scoring.with_prepared_text, min_chars=2, languages=["en", "zh"]).transform(
        scoring.with_key_checks, key="review_id"
    )
    return out.cache()


def test_every_row_is_scorable_or_rejected_with_reason(prepared):
    scorable, rejects = scoring.split_rejects(prepared, "review_id")
    got = {(r["review_id"], r["reject_reason"]) for r in rejects.collect()}
    assert got == {
        ("2", "null_text"),
        ("3", "empty_text"),
        ("4", "empty_text"),
        ("5", "too_short"),
        ("6", "unsupported_language"),
        ("9", "duplicate_review_id"),
        (None, "null_review_id"),
    }
    assert sorted(r["review_id"] for r in scorable.collect()) == ["1", "10", "7", "8"]
    # one reject row per key: review 9's two texts give one row, the one with the smaller
    # text hash (so a rerun keeps the same row); the null key is keyed by its text hash
    assert rejects.count() == 7
    first = min(hashlib.sha256(t.encode()).hexdigest() for t in ("first text", "second text"))
    assert rejects.filter(F.col("review_id") == "9").first()["text_sha256"] == first
    null_key = rejects.filter(F.col("review_id").isNull()).first()
    assert null_key["reject_key"] == "null-key:" + hashlib.sha256(b"a review without key").hexdigest()


def test_language_and_rating_parsing(prepared):
    rows = {r["review_id"]: r for r in prepared.filter(F.col("review_id").isin("1", "7", "8")).collect()}
    assert rows["1"]["language"] == "en" and rows["1"]["rating"] == 5
    assert (
        rows["7"]["language"] == "zh"
        and rows["7"]["rating"] is None
        and rows["7"]["rating_issue"] == "rating_out_of_range"
    )
    assert rows["8"]["language"] == "en" and rows["8"]["rating_issue"] == "rating_not_a_number"
    assert rows["8"]["rating_raw"] == "five"


def test_missing_required_column_names_table_and_column(spark):
    df = spark.createDataFrame([("1", "t")], "rid string, words string")
    with pytest.raises(SchemaError, match=r"table reviews lacks required column 'body' \(logical text\)"):
        tables.conform(df, "reviews", MAPPING, tables.REVIEW_SCHEMA)


def test_wrong_type_names_expected_and_found(spark):
    df = spark.createDataFrame([("1", 3.5)], "rid string, body double")
    with pytest.raises(SchemaError, match=r"column 'body' \(logical text\) has type double; expected string"):
        tables.conform(df, "reviews", MAPPING, tables.REVIEW_SCHEMA)


def test_optional_columns_become_typed_nulls(spark):
    df = spark.createDataFrame([(1, "t")], "rid int, body string")
    out = tables.conform(df, "reviews", MAPPING, tables.REVIEW_SCHEMA)
    assert dict(out.dtypes) == {
        "review_id": "string",
        "text": "string",
        "product_id": "string",
        "reviewer_id": "string",
        "rating": "string",
        "label": "string",
        "language": "string",
        "created_at": "timestamp",
        "source": "string",
    }
    assert out.first()["review_id"] == "1" and out.first()["reviewer_id"] is None
