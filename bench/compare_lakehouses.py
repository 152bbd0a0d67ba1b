"""Are two lakehouses' tables equal? Read with delta-rs (no Spark), compared row by row.

Used to show that a refactoring changed no output: run ``make run`` (load_demo_data +
nightly, from an empty lakehouse) on the commit before and on the commit after, then

    python bench/compare_lakehouses.py BEFORE_DIR AFTER_DIR --out bench/results/redesign_equal.json

What differs between any two runs is left out of the comparison and listed in the
result: run stamps (``run_id``, ``scored_at``, ``computed_at``, ``rejected_at``, ...),
the model version string (it embeds the training time) and durations (``*seconds*``,
``*per_second*`` keys inside the JSON columns of ``runs`` and ``models``). Everything
else must be equal: strings and integers exactly, floats to ``--atol``. Model artifacts
are compared by the sha256 of every weight file their manifests list.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from deltalake import DeltaTable

__all__ = ["compare_lakehouses", "main"]

STAMPS = {
    "run_id",
    "scored_at",
    "computed_at",
    "explained_at",
    "rejected_at",
    "created_at",
    "started_at",
    "ended_at",
    "insights_run_id",
    "model_version",
    "artifact_path",
    "report",
    "current_model",
}
TIMING = ("seconds", "per_second", "_at", "report", "history", "run_id", "model_version", "trained", "artifact")


def _tables(root: Path) -> dict[str, Path]:
    return {p.parent.name: p.parent for p in sorted(root.glob("*/_delta_log")) if p.is_dir()}


def _strip(obj):
    """A JSON value without run-dependent keys (stamps and durations), recursively."""
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if not any(t in k for t in TIMING)}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def _canonical(df: pd.DataFrame, root: Path) -> pd.DataFrame:
    """Stamps dropped, the lakehouse's own location written as ``<root>``, JSON columns
    stripped of timings, rows in a fixed order."""
    df = df.drop(columns=[c for c in df.columns if c in STAMPS])
    for c in df.columns:
        if df[c].dtype == object:
            df[c] = df[c].map(lambda v: v.replace(str(root), "<root>") if isinstance(v, str) else v)
        if _is_json(df[c]):
            df[c] = df[c].map(lambda v: json.dumps(_strip(json.loads(v)), sort_keys=True) if isinstance(v, str) else v)
    keys = [c for c in df.columns if not pd.api.types.is_float_dtype(df[c]) and not _is_vector(df[c])]
    as_text = df[keys].astype(str).to_numpy().tolist()
    order = ["\x1f".join(row) for row in as_text] if keys else list(range(len(df)))
    return df.assign(_o=order).sort_values("_o").drop(columns="_o").reset_index(drop=True)


def _compare_table(a: pd.DataFrame, b: pd.DataFrame, atol: float) -> dict:
    out: dict = {"rows": [len(a), len(b)], "columns_compared": sorted(a.columns)}
    if sorted(a.columns) != sorted(b.columns):
        return out | {"equal": False, "why": f"columns differ: {sorted(set(a.columns) ^ set(b.columns))}"}
    if len(a) != len(b):
        return out | {"equal": False, "why": "row counts differ"}
    worst, bad, json_diffs = 0.0, [], {}
    for c in a.columns:
        x, y = a[c], b[c]
        if pd.api.types.is_float_dtype(x) and pd.api.types.is_float_dtype(y):
            xv, yv = x.to_numpy(dtype=float), y.to_numpy(dtype=float)
            same_nan = np.isnan(xv) == np.isnan(yv)
            diff = np.where(np.isnan(xv) | np.isnan(yv), 0.0, np.abs(xv - yv))
            worst = max(worst, float(diff.max()) if len(diff) else 0.0)
            if not same_nan.all() or (diff > atol).any():
                bad.append(c)
        elif _is_vector(x) and _is_vector(y):  # array<float> (embeddings): element-wise, same tolerance
            d = _vector_diff(x, y)
            worst = max(worst, d)
            if d > atol:
                bad.append(c)
        elif _is_json(x) or _is_json(y):
            json_diffs[c] = _json_diff(x, y, atol)
            if any(json_diffs[c].values()):
                bad.append(c)
        elif not x.astype(str).equals(y.astype(str)):
            bad.append(c)
    only_added = bool(bad) and all(
        c in json_diffs and not json_diffs[c]["only_before"] and not json_diffs[c]["changed"] for c in bad
    )
    return out | {
        "equal": not bad,
        "equal_but_added_json_keys": only_added,
        "max_abs_float_diff": worst,
        "columns_differing": bad,
        "json_differences": {c: d for c, d in json_diffs.items() if any(d.values())},
    }


def _is_vector(col: pd.Series) -> bool:
    """An object column whose non-null values are arrays of floats (``array<float>`` read by delta-rs)."""
    values = col.dropna()
    return (
        col.dtype == object
        and len(values) > 0
        and all(isinstance(v, (list, np.ndarray)) and np.asarray(v).dtype.kind == "f" for v in values)
    )


def _vector_diff(x: pd.Series, y: pd.Series) -> float:
    """Largest element-wise difference of two vector columns (inf when lengths or nulls differ)."""
    worst = 0.0
    for u, v in zip(x, y):
        if (u is None) != (v is None):
            return float("inf")
        if u is None:
            continue
        u, v = np.asarray(u, dtype=float), np.asarray(v, dtype=float)
        if u.shape != v.shape:
            return float("inf")
        worst = max(worst, float(np.abs(u - v).max()) if u.size else 0.0)
    return worst


def _parses(v) -> bool:
    try:
        return isinstance(json.loads(v), (dict, list))
    except (TypeError, ValueError):
        return False


def _is_json(col: pd.Series) -> bool:
    """A string column whose every non-null value is a JSON object or array (ledger details, metrics)."""
    values = col.dropna()
    return col.dtype == object and len(values) > 0 and bool(values.map(_parses).all())


def _paths(obj, prefix: str = "") -> dict[str, object]:
    """Leaf values of a JSON value by their path (``a.b.c``)."""
    if isinstance(obj, dict):
        out: dict[str, object] = {}
        for k, v in obj.items():
            out |= _paths(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    return {prefix: obj}


def _same(u, v, atol: float) -> bool:
    if isinstance(u, float) and isinstance(v, float):
        return abs(u - v) <= atol or (u != u and v != v)
    return u == v


def _json_diff(x: pd.Series, y: pd.Series, atol: float) -> dict[str, list[str]]:
    """Over all rows of a JSON column: the paths only before, only after, or with other
    values (numbers to ``atol``)."""
    only_before, only_after, changed = set(), set(), set()
    for u, v in zip(x, y, strict=True):
        pu = _paths(json.loads(u)) if isinstance(u, str) else {}
        pv = _paths(json.loads(v)) if isinstance(v, str) else {}
        only_before |= pu.keys() - pv.keys()
        only_after |= pv.keys() - pu.keys()
        changed |= {k for k in pu.keys() & pv.keys() if not _same(pu[k], pv[k], atol)}
    return {"only_before": sorted(only_before), "only_after": sorted(only_after), "changed": sorted(changed)}


def _artifact_files(artifacts: Path) -> dict[str, dict[str, str]]:
    """Per artifact under ``artifacts`` (by its sub-model folders), the sha256 of each file its manifest lists."""
    out = {}
    for manifest in sorted(artifacts.glob("*/manifest.json")):
        m = json.loads(manifest.read_text())
        files = m.get("files") or m.get("checksums") or {}
        out[manifest.parent.name] = {k: (v["sha256"] if isinstance(v, dict) else v) for k, v in files.items()}
    return out


def compare_lakehouses(
    before: Path, after: Path, atol: float = 1e-9, artifacts: tuple[Path | None, Path | None] = (None, None)
) -> dict:
    """Table by table and artifact by artifact; ``artifacts``: where each side's model
    artifacts live when not under ``<lakehouse>/_artifacts``."""
    ta, tb = _tables(before), _tables(after)
    result: dict = {"tables": {}, "only_before": sorted(set(ta) - set(tb)), "only_after": sorted(set(tb) - set(ta))}
    for name in sorted(set(ta) & set(tb)):
        a = _canonical(DeltaTable(str(ta[name])).to_pandas(), before.resolve())
        b = _canonical(DeltaTable(str(tb[name])).to_pandas(), after.resolve())
        result["tables"][name] = _compare_table(a, b, atol)
    fa = _artifact_files(artifacts[0] or before / "_artifacts")
    fb = _artifact_files(artifacts[1] or after / "_artifacts")
    weights_a = sorted(sorted(v.values()) for v in fa.values())
    weights_b = sorted(sorted(v.values()) for v in fb.values())
    result["artifacts"] = {"count": [len(fa), len(fb)], "weights_equal": weights_a == weights_b}
    result["equal_but_added_json_keys"] = result["artifacts"]["weights_equal"] and all(
        t["equal"] or t.get("equal_but_added_json_keys") for t in result["tables"].values()
    )
    result["equal"] = (
        not result["only_before"]
        and not result["only_after"]
        and all(t["equal"] for t in result["tables"].values())
        and result["artifacts"]["weights_equal"]
    )
    return result


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("before", type=Path)
    p.add_argument("after", type=Path)
    p.add_argument("--atol", type=float, default=1e-9)
    p.add_argument("--out", type=Path)
    p.add_argument("--label", default="", help="what the two lakehouses are (commits), stored with the result")
    args = p.parse_args(argv)
    result = compare_lakehouses(args.before, args.after, args.atol)
    result |= {
        "label": args.label,
        "atol": args.atol,
        "ignored_columns": sorted(STAMPS),
        "ignored_json_keys_containing": list(TIMING),
        "machine": _cpu(),
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    for name, t in result["tables"].items():
        print(f"{name:<28} rows {t['rows']} equal={t['equal']} {t.get('why') or t.get('columns_differing') or ''}")
    print(f"artifacts {result['artifacts']}; only before {result['only_before']}; only after {result['only_after']}")
    verdict = "EQUAL" if result["equal"] else "DIFFERENT"
    if not result["equal"] and result["equal_but_added_json_keys"]:
        added = {n: t["json_differences"] for n, t in result["tables"].items() if not t["equal"]}
        verdict = f"EQUAL but for JSON keys the after side adds: {json.dumps(added)}"
    print(verdict)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return 0 if result["equal"] or result["equal_but_added_json_keys"] else 1


if __name__ == "__main__":
    sys.exit(main())
