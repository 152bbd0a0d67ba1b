"""Command-line parsing shared by the jobs, and the ``ecomine`` console entry point."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path


def job_parser(description: str | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--conf-dir", default=os.environ.get("ECOMINE_CONF_DIR", "conf"), help="folder with base.yaml and <env>.yaml"
    )
    p.add_argument("--env", default=os.environ.get("ECOMINE_ENV", "local"), help="config layer on top of base.yaml")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key (repeatable)",
    )
    p.add_argument("--log-level", default=os.environ.get("ECOMINE_LOG_LEVEL", "INFO"))
    p.add_argument(
        "--run-id",
        default=None,
        help="reuse a run id to retry a run: its Delta writes are skipped if already committed",
    )
    return p


def setup_logging(level: str) -> None:
    """Called from job ``main`` only (never at import)."""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("py4j", "urllib3", "filelock", "transformers.modeling_utils"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


# --------------------------------------------------------------------------- the `ecomine` console


def _console_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--conf-dir", default=os.environ.get("ECOMINE_CONF_DIR", "conf"), help="folder with base.yaml and <env>.yaml"
    )
    common.add_argument(
        "--env", default=os.environ.get("ECOMINE_ENV", "local"), help="config layer on top of base.yaml"
    )
    common.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key (repeatable), e.g. --set storage.root=s3://bucket/lake",
    )
    p = argparse.ArgumentParser(
        prog="ecomine",
        description="ecomine: look at runs, models and a review's scores in the lakehouse (read-only, no Spark).",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="{runs,models,show}")
    r = sub.add_parser("runs", parents=[common], help="the last runs from the runs table")
    r.add_argument("-n", type=int, default=10, help="how many runs (newest first)")
    r.add_argument("--job", default=None, help="only runs of this job (nightly, score, train, ...)")
    m = sub.add_parser("models", parents=[common], help="model versions, their held-out metrics, which one is current")
    m.add_argument("-n", type=int, default=5, help="how many model versions (newest first)")
    s = sub.add_parser("show", parents=[common], help="one review: text, scores, fraud reasons, explanation")
    s.add_argument("review_id")
    return p


def _location(cfg, logical: str) -> str:
    return cfg.table(logical) if hasattr(cfg.tables, logical) else cfg.storage.table_path(logical)


def _open(cfg, logical: str):
    """delta-rs table for a logical name, or None when there is no Delta table there."""
    from deltalake import DeltaTable

    path = _location(cfg, logical)
    if "://" not in path and not Path(path, "_delta_log").is_dir():
        return None
    try:
        return DeltaTable(path)
    except Exception:  # TableNotFoundError and friends: no table is a normal state here
        return None


def _rows(table, filters=None, columns=None) -> list[dict]:
    """Rows as dicts, scanned on the calling thread.

    Arrow's threaded dataset scan leaves reader threads behind that can abort the process
    at interpreter exit ("terminate called without an active exception", apache/arrow#39862);
    these tables are small, so a single-threaded scan costs nothing measurable."""
    if table is None:
        return []
    from pyarrow.parquet import filters_to_expression

    expr = filters_to_expression(filters) if filters else None
    return table.to_pyarrow_dataset().to_table(columns=columns, filter=expr, use_threads=False).to_pylist()


def _by_key(table, column: str, value: str) -> list[dict]:
    """Rows whose ``column`` equals ``value`` (compared as the column's type: integer keys work)."""
    if table is None:
        return []
    import pyarrow as pa

    arrow_schema = table.to_pyarrow_dataset().schema
    if column not in arrow_schema.names:
        return []
    typ = arrow_schema.field(column).type
    probe: object = value
    if pa.types.is_integer(typ):
        try:
            probe = int(value)
        except ValueError:
            return []
    return _rows(table, filters=[(column, "=", probe)])


def _v(v, digits: int = 3) -> str:
    """A value as plain text: timestamps to the second (UTC), floats rounded, None as '-'."""
    from datetime import datetime, timezone

    if v is None:
        return "-"
    if isinstance(v, float):
        return "-" if v != v else f"{v:.{digits}f}"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, datetime):
        if v.tzinfo is not None:
            v = v.astimezone(timezone.utc).replace(tzinfo=None)
        return v.strftime("%Y-%m-%d %H:%M:%S")
    return str(v)


def _text_table(headers: list[str], rows: list[list[str]], right: set[int] = frozenset()) -> str:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        out = [c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(cells)]
        return "  ".join(out).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def _json_dict(text) -> dict:
    import json

    try:
        v = json.loads(text) if text else {}
    except (TypeError, ValueError):
        return {}
    return v if isinstance(v, dict) else {}


def _ts(v) -> float:
    """Sort key of a timestamp that may be null (nulls first in ascending order)."""
    return v.timestamp() if v is not None else float("-inf")


def _first_line(text, limit: int = 70) -> str:
    if not text:
        return ""
    s = str(text).strip().splitlines()[0]
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _cmd_runs(cfg, args) -> str:
    t = _open(cfg, "runs")
    if t is None:
        raise FileNotFoundError(f"no runs table at {_location(cfg, 'runs')}")
    rows = _rows(t)
    if args.job:
        rows = [r for r in rows if r["job"] == args.job]
    rows.sort(key=lambda r: (_ts(r["started_at"]), r["run_id"]), reverse=True)
    rows = rows[: args.n]
    out = []
    for r in rows:
        d = _json_dict(r.get("details"))
        dur = (r["ended_at"] - r["started_at"]).total_seconds() if r.get("ended_at") and r.get("started_at") else None
        rps = d.get("rows_per_second")
        out.append(
            [
                r["run_id"],
                r["job"] or "-",
                r["status"] or "-",
                _v(r["started_at"]),
                _v(dur, 1),
                r.get("model_version") or "-",
                _v(r.get("rows_in")),
                _v(r.get("rows_scored")),
                _v(r.get("rows_rejected")),
                _v(r.get("rows_written")),
                _v(float(rps) if isinstance(rps, (int, float)) else None, 1),
                _first_line(r.get("error")),
            ]
        )
    head = f"runs in {_location(cfg, 'runs')} (newest first, times UTC)"
    if not out:
        return head + "\n(no runs)"
    return (
        head
        + "\n"
        + _text_table(
            [
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
            ],
            out,
            right={4, 6, 7, 8, 9, 10},
        )
    )


def _cmd_models(cfg, args) -> str:
    t = _open(cfg, "models")
    if t is None:
        raise FileNotFoundError(f"no models table at {_location(cfg, 'models')}")
    rows = _rows(t)
    # the one the nightly job scores with: newest 'current' (training.current_model's rule)
    current = max(
        (r for r in rows if r["status"] == "current"),
        key=lambda r: (_ts(r["created_at"]), r["model_version"]),
        default=None,
    )
    rows.sort(key=lambda r: (_ts(r["created_at"]), r["model_version"]), reverse=True)
    rows = rows[: args.n]
    head = [
        [
            "*" if current is not None and r["model_version"] == current["model_version"] else " ",
            r["model_version"],
            r["status"] or "-",
            _v(r["created_at"]),
            r.get("run_id") or "-",
            ", ".join(f"{k}={v}" for k, v in sorted(_json_dict(r.get("base_models")).items())) or "-",
        ]
        for r in rows
    ]
    parts = [f"models in {_location(cfg, 'models')} (newest first, times UTC; * = the model scoring now)"]
    parts.append(_text_table(["", "model_version", "status", "created", "trained by run", "base models"], head))
    for r in rows:
        metrics = _json_dict(r.get("metrics"))
        lines = []
        for lang in sorted(metrics):
            per = metrics[lang] or {}
            for method, label in (("finetuned", "fine-tuned"), ("tfidf_logreg", "tf-idf+logreg")):
                for task, m in sorted((per.get(method) or {}).items()):
                    if not isinstance(m, dict):
                        continue
                    lines.append([lang, task, label] + [_v(m.get(k)) for k in ("accuracy", "macro_f1", "n")])
        parts.append("")
        parts.append(f"{r['model_version']}: held-out test metrics")
        if lines:
            parts.append(
                _indent(
                    _text_table(["language", "task", "method", "accuracy", "macro_f1", "n"], lines, right={3, 4, 5})
                )
            )
        else:
            parts.append("  (none recorded)")
    return "\n".join(parts)


def _indent(text: str, pad: str = "  ") -> str:
    return "\n".join(pad + line if line else line for line in text.splitlines())


def _cmd_show(cfg, args) -> str | None:
    import textwrap

    rid = args.review_id
    rc = cfg.columns.reviews
    reviews = _by_key(_open(cfg, "reviews"), rc.review_id, rid)
    scores = _by_key(_open(cfg, "review_scores"), "review_id", rid)
    rejects = _by_key(_open(cfg, "review_scores_rejects"), "review_id", rid)
    fraud = _by_key(_open(cfg, "review_fraud"), "review_id", rid)
    explained = _by_key(_open(cfg, "review_explanations"), "review_id", rid)
    if not (reviews or scores or rejects):
        return None
    out = [f"review {rid}"]
    src = reviews[0] if reviews else {}
    sc = scores[0] if scores else {}

    def get(logical: str):
        return src.get(getattr(rc, logical))

    product = sc.get("product_id") or get("product_id")
    name = sc.get("product_name")
    cat = sc.get("product_category")
    facts = [
        ("product", " ".join(x for x in [_v(product), f"{name}" if name else "", f"({cat})" if cat else ""] if x)),
        ("reviewer", _v(get("reviewer_id"))),
        ("stated rating", _v(get("rating")) + (f"  [{sc['rating_issue']}]" if sc.get("rating_issue") else "")),
        ("label", _v(get("label"))),
        ("language", _v(sc.get("language") or get("language"))),
        ("created at", _v(get("created_at"))),
        ("source", _v(get("source"))),
    ]
    w = max(len(k) for k, _ in facts)
    out += [f"  {k.ljust(w)}  {v}" for k, v in facts]
    if len(reviews) > 1:
        out.append(f"  note: {len(reviews)} rows in reviews share this id")
    text = get("text")
    out.append("")
    out.append("text:")
    out.append(textwrap.fill(text, width=88, initial_indent="  ", subsequent_indent="  ") if text else "  (no text)")
    out.append("")
    if sc:
        from ecomine.derived.insights import task_outputs

        out.append(
            f"scores (model {sc.get('model_version')}, run {sc.get('run_id')}, scored {_v(sc.get('scored_at'))} UTC):"
        )
        lines = []
        for t in task_outputs(list(sc)):
            label = sc.get(t.label) if t.label else None
            vals = [
                f"{suf} {_v(sc.get(c))}"
                for suf, c in (("p", t.prob), ("expected", t.expected), ("value", t.value))
                if c
            ]
            if label is None and all(sc.get(c) is None for c in (t.prob, t.expected, t.value) if c):
                lines.append([t.name, "-", "(no output for this language)"])
            else:
                lines.append([t.name, _v(label), "  ".join(vals)])
        lines.append(["p_positive", _v(sc.get("p_positive")), ""])
        out.append(_indent(_text_table(["task", "predicted", ""], lines)))
        if sc.get("n_tokens") is not None:
            out.append(f"  tokens {sc['n_tokens']}{' (truncated)' if sc.get('truncated') else ''}")
    else:
        out.append("scores: not scored")
    for rj in rejects:
        out.append(f"rejected: {rj.get('reason')} ({rj.get('detail')}), recorded by run {rj.get('run_id')}")
    out.append("")
    if fraud:
        f = fraud[0]
        score = f.get("fraud_score")
        threshold = float(getattr(getattr(cfg, "fraud", None), "flag_threshold", 0.5))
        flagged = isinstance(score, float) and score >= threshold
        out.append(f"fraud: score {_v(score)}" + (f" (flagged: >= {threshold:g})" if flagged else ""))
        reasons = f.get("fraud_reasons") or []
        out += [f"  - {x}" for x in reasons] or ["  (no reasons)"]
    else:
        out.append(
            "fraud: no fraud score" + ("" if _open(cfg, "review_fraud") is not None else " (no review_fraud table)")
        )
    out.append("")
    if explained:
        out.append("explanation (words that pushed the prediction; + towards it, - against):")
        for e in sorted(explained, key=lambda e: e["task"]):
            what = (
                f"{e.get('predicted_label')} (p {_v(e.get('prob'))})"
                if e.get("predicted_label") is not None
                else f"value {_v(e.get('value'))}"
            )
            out.append(f"  {e['task']}: {what}, picked for {e.get('selection_reason')}, model {e.get('model_version')}")
            for tok in e.get("top_tokens") or []:
                out.append(f"    {tok['attribution']:+.4f}  {tok['token']}")
    else:
        out.append("explanation: none (only a sample of each run's reviews is explained)")
    return "\n".join(out)


def console_main(argv: list[str] | None = None) -> int:
    """``ecomine`` console entry point: read-only views of a lakehouse for people on call.

    ``ecomine runs [-n N] [--job JOB]``, ``ecomine models [-n N]``, ``ecomine show REVIEW_ID``,
    each with ``--conf-dir``/``--env``/``--set key=value`` to pick the lakehouse (default:
    ``conf``, env ``local``). Reads Delta tables with delta-rs (no JVM, starts in about a
    second). Exit status: 0 ok, 1 review not found, 2 configuration or table error."""
    from ecomine import config
    from ecomine.errors import EcomineError

    args = _console_parser().parse_args(argv)
    try:
        cfg = config.load(args.conf_dir, args.env, args.overrides)
        handler = {"runs": _cmd_runs, "models": _cmd_models, "show": _cmd_show}[args.command]
        text = handler(cfg, args)
    except (EcomineError, FileNotFoundError) as e:
        print(f"ecomine {args.command}: {e}", file=sys.stderr)
        return 2
    if text is None:
        print(
            f"ecomine show: review {args.review_id!r} is not in reviews, review_scores or review_scores_rejects "
            f"under {cfg.storage.table_path('')}",
            file=sys.stderr,
        )
        return 1
    print(text)
    return 0
