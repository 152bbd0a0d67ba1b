"""Command-line parsing shared by the jobs, and the ``ecomine`` console entry point."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deltalake import DeltaTable

    from ecomine.config import Config, ReviewColumns

__all__ = ["console_main", "job_parser", "setup_logging"]


def _add_config_arguments(parser: argparse.ArgumentParser, set_help: str) -> None:
    """``--conf-dir``, ``--env`` and the repeatable ``--set KEY=VALUE`` (config.load's arguments)."""
    parser.add_argument(
        "--conf-dir", default=os.environ.get("ECOMINE_CONF_DIR", "conf"), help="folder with base.yaml and <env>.yaml"
    )
    parser.add_argument(
        "--env", default=os.environ.get("ECOMINE_ENV", "local"), help="config layer on top of base.yaml"
    )
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=set_help)


def job_parser(description: str | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_config_arguments(p, "override a config key (repeatable)")
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
    _add_config_arguments(common, "override a config key (repeatable), e.g. --set storage.root=s3://bucket/lake")
    parser = argparse.ArgumentParser(
        prog="ecomine",
        description="ecomine: look at runs, models and a review's scores in the lakehouse (read-only, no Spark).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{runs,models,show,product,recommend}")
    runs = sub.add_parser("runs", parents=[common], help="the last runs from the runs table")
    runs.add_argument("-n", type=int, default=10, help="how many runs (newest first)")
    runs.add_argument("--job", default=None, help="only runs of this job (nightly, score, train, ...)")
    models = sub.add_parser(
        "models", parents=[common], help="model versions, their held-out metrics, which one is current"
    )
    models.add_argument("-n", type=int, default=5, help="how many model versions (newest first)")
    show = sub.add_parser("show", parents=[common], help="one review: text, scores, fraud reasons, explanation")
    show.add_argument("review_id")
    product = sub.add_parser("product", parents=[common], help="one catalog product: listing, scores, similar products")
    product.add_argument("product_id")
    recommend = sub.add_parser("recommend", parents=[common], help="one user's recommendations, with product names")
    recommend.add_argument("user_id")
    return parser


def _open(path: str, options: dict[str, str] | None = None) -> DeltaTable | None:
    """delta-rs table at ``path``, or None when there is no Delta table there. ``options``:
    delta-rs storage options (``fs.delta_rs_options``: the same endpoint/region settings
    the Spark jobs use, for s3a:// lakehouses)."""
    from deltalake import DeltaTable

    if "://" not in path and not Path(path, "_delta_log").is_dir():
        return None
    try:
        return DeltaTable(path, storage_options=options or None)
    except Exception:  # TableNotFoundError and friends: no table is a normal state here
        return None


def _rows(table: DeltaTable | None, filters: list[tuple[str, str, Any]] | None = None) -> list[dict[str, Any]]:
    """Rows as dicts, scanned on the calling thread.

    Arrow's threaded dataset scan leaves reader threads behind that can abort the process
    at interpreter exit ("terminate called without an active exception", apache/arrow#39862);
    these tables are small, so a single-threaded scan costs nothing measurable."""
    if table is None:
        return []
    from pyarrow.parquet import filters_to_expression

    expr = filters_to_expression(filters) if filters else None
    return table.to_pyarrow_dataset().to_table(filter=expr, use_threads=False).to_pylist()


def _by_key(table: DeltaTable | None, column: str, value: str) -> list[dict[str, Any]]:
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


def _v(v: Any, digits: int = 3) -> str:
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


def _json_dict(text: str | None) -> dict[str, Any]:
    import json

    try:
        v = json.loads(text) if text else {}
    except (TypeError, ValueError):
        return {}
    return v if isinstance(v, dict) else {}


def _ts(v: Any) -> float:
    """Sort key of a timestamp that may be null (nulls first in ascending order)."""
    return v.timestamp() if v is not None else float("-inf")


def _first_line(text: str | None, limit: int = 70) -> str:
    if not text:
        return ""
    s = str(text).strip().splitlines()[0]
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _indent(text: str, pad: str = "  ") -> str:
    return "\n".join(pad + line if line else line for line in text.splitlines())


# --------------------------------------------------------------------------- ecomine runs

_RUN_HEADERS = [
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


def _run_cells(run: dict[str, Any]) -> list[str]:
    details = _json_dict(run.get("details"))
    seconds = None
    if run.get("ended_at") and run.get("started_at"):
        seconds = (run["ended_at"] - run["started_at"]).total_seconds()
    rows_per_second = details.get("rows_per_second")
    return [
        run["run_id"],
        run["job"] or "-",
        run["status"] or "-",
        _v(run["started_at"]),
        _v(seconds, 1),
        run.get("model_version") or "-",
        _v(run.get("rows_in")),
        _v(run.get("rows_scored")),
        _v(run.get("rows_rejected")),
        _v(run.get("rows_written")),
        _v(float(rows_per_second) if isinstance(rows_per_second, (int, float)) else None, 1),
        _first_line(run.get("error")),
    ]


def _cmd_runs(runs_path: str, job: str | None, n: int, options: dict[str, str] | None = None) -> str:
    table = _open(runs_path, options)
    if table is None:
        raise FileNotFoundError(f"no runs table at {runs_path}")
    rows = _rows(table)
    if job:
        rows = [r for r in rows if r["job"] == job]
    rows.sort(key=lambda r: (_ts(r["started_at"]), r["run_id"]), reverse=True)
    lines = [_run_cells(r) for r in rows[:n]]
    head = f"runs in {runs_path} (newest first, times UTC)"
    if not lines:
        return head + "\n(no runs)"
    return head + "\n" + _text_table(_RUN_HEADERS, lines, right={4, 6, 7, 8, 9, 10})


# --------------------------------------------------------------------------- ecomine models


def _metric_lines(metrics_json: str | None) -> list[list[str]]:
    """language, task, method, headline metric (QWK for ordinal, R^2 for regression, macro-F1
    otherwise: ``promotion.headline_metric``), its value, accuracy and n per held-out metric
    set of a model row."""
    from ecomine.promotion import headline_metric

    metrics = _json_dict(metrics_json)
    lines = []
    for lang in sorted(metrics):
        per_method = metrics[lang] or {}
        for method, label in (("hybrid", "hybrid"), ("finetuned", "fine-tuned"), ("tfidf_logreg", "tf-idf+linear")):
            for task, values in sorted((per_method.get(method) or {}).items()):
                if not isinstance(values, dict):
                    continue
                try:
                    head = headline_metric(values)
                except KeyError:
                    head = None
                value = values.get(head) if head else None
                lines.append(
                    [lang, task, label, head or "-", _v(value), _v(values.get("accuracy")), _v(values.get("n"))]
                )
    return lines


def _cmd_models(models_path: str, n: int, options: dict[str, str] | None = None) -> str:
    table = _open(models_path, options)
    if table is None:
        raise FileNotFoundError(f"no models table at {models_path}")
    rows = _rows(table)
    # the one the nightly job scores with: newest 'current' (training.current_model's rule)
    current = max(
        (r for r in rows if r["status"] == "current"),
        key=lambda r: (_ts(r["created_at"]), r["model_version"]),
        default=None,
    )
    rows.sort(key=lambda r: (_ts(r["created_at"]), r["model_version"]), reverse=True)
    rows = rows[:n]
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
    parts = [f"models in {models_path} (newest first, times UTC; * = the model scoring now)"]
    parts.append(_text_table(["", "model_version", "status", "created", "trained by run", "base models"], head))
    for r in rows:
        lines = _metric_lines(r.get("metrics"))
        parts.append("")
        parts.append(f"{r['model_version']}: held-out test metrics")
        if lines:
            headers = ["language", "task", "method", "headline", "value", "accuracy", "n"]
            parts.append(_indent(_text_table(headers, lines, right={4, 5, 6})))
        else:
            parts.append("  (none recorded)")
    return "\n".join(parts)


# --------------------------------------------------------------------------- ecomine show


def _show_facts(review: dict[str, Any], score: dict[str, Any], columns: ReviewColumns) -> list[str]:
    """The review's product, reviewer, rating, label, language, date and source, aligned."""
    product = score.get("product_id") or review.get(columns.product_id)
    name, category = score.get("product_name"), score.get("product_category")
    rating_issue = f"  [{score['rating_issue']}]" if score.get("rating_issue") else ""
    facts = [
        (
            "product",
            " ".join(x for x in [_v(product), f"{name}" if name else "", f"({category})" if category else ""] if x),
        ),
        ("reviewer", _v(review.get(columns.reviewer_id))),
        ("stated rating", _v(review.get(columns.rating)) + rating_issue),
        ("label", _v(review.get(columns.label))),
        ("language", _v(score.get("language") or review.get(columns.language))),
        ("created at", _v(review.get(columns.created_at))),
        ("source", _v(review.get(columns.source))),
    ]
    width = max(len(k) for k, _ in facts)
    return [f"  {k.ljust(width)}  {v}" for k, v in facts]


def _show_scores(score: dict[str, Any]) -> list[str]:
    from ecomine.derived.insights import task_outputs

    if not score:
        return ["scores: not scored"]
    out = [
        f"scores (model {score.get('model_version')}, run {score.get('run_id')}, "
        f"scored {_v(score.get('scored_at'))} UTC):"
    ]
    lines = []
    for task in task_outputs(list(score)):
        label = score.get(task.label) if task.label else None
        outputs = [(suffix, c) for suffix, c in (("p", task.prob), ("expected", task.expected), ("value", task.value))]
        values = [f"{suffix} {_v(score.get(c))}" for suffix, c in outputs if c]
        if label is None and all(score.get(c) is None for _, c in outputs if c):
            lines.append([task.name, "-", "(no output for this language)"])
        else:
            lines.append([task.name, _v(label), "  ".join(values)])
    lines.append(["p_positive", _v(score.get("p_positive")), ""])
    out.append(_indent(_text_table(["task", "predicted", ""], lines)))
    if score.get("n_tokens") is not None:
        out.append(f"  tokens {score['n_tokens']}{' (truncated)' if score.get('truncated') else ''}")
    return out


def _show_fraud(fraud: list[dict[str, Any]], flag_threshold: float, has_table: bool) -> list[str]:
    if not fraud:
        return ["fraud: no fraud score" + ("" if has_table else " (no review_fraud table)")]
    score = fraud[0].get("fraud_score")
    flagged = isinstance(score, float) and score >= flag_threshold
    out = [f"fraud: score {_v(score)}" + (f" (flagged: >= {flag_threshold:g})" if flagged else "")]
    reasons = fraud[0].get("fraud_reasons") or []
    return out + ([f"  - {x}" for x in reasons] or ["  (no reasons)"])


def _show_explanations(explained: list[dict[str, Any]]) -> list[str]:
    if not explained:
        return ["explanation: none (only a sample of each run's reviews is explained)"]
    out = ["explanation (words that pushed the prediction; + towards it, - against):"]
    for row in sorted(explained, key=lambda e: e["task"]):
        what = (
            f"{row.get('predicted_label')} (p {_v(row.get('prob'))})"
            if row.get("predicted_label") is not None
            else f"value {_v(row.get('value'))}"
        )
        out.append(
            f"  {row['task']}: {what}, picked for {row.get('selection_reason')}, model {row.get('model_version')}"
        )
        out += [f"    {tok['attribution']:+.4f}  {tok['token']}" for tok in row.get("top_tokens") or []]
    return out


def _cmd_show(cfg: Config, review_id: str) -> str | None:
    """Everything the lakehouse knows about one review; None when no table has it."""
    import textwrap

    from ecomine.io import fs

    columns = cfg.columns.reviews
    opts = fs.delta_rs_options(cfg.storage)
    reviews = _by_key(_open(cfg.table("reviews"), opts), columns.review_id, review_id)
    scores = _by_key(_open(cfg.table("review_scores"), opts), "review_id", review_id)
    rejects = _by_key(_open(cfg.table("review_scores_rejects"), opts), "review_id", review_id)
    fraud_table = _open(cfg.table("review_fraud"), opts)
    fraud = _by_key(fraud_table, "review_id", review_id)
    explained = _by_key(_open(cfg.table("review_explanations"), opts), "review_id", review_id)
    if not (reviews or scores or rejects):
        return None
    review = reviews[0] if reviews else {}
    out = [f"review {review_id}", *_show_facts(review, scores[0] if scores else {}, columns)]
    if len(reviews) > 1:
        out.append(f"  note: {len(reviews)} rows in reviews share this id")
    text = review.get(columns.text)
    out += ["", "text:"]
    out.append(textwrap.fill(text, width=88, initial_indent="  ", subsequent_indent="  ") if text else "  (no text)")
    out += ["", *_show_scores(scores[0] if scores else {})]
    out += [f"rejected: {r.get('reason')} ({r.get('detail')}), recorded by run {r.get('run_id')}" for r in rejects]
    out += ["", *_show_fraud(fraud, cfg.fraud.flag_threshold, fraud_table is not None)]
    out += ["", *_show_explanations(explained)]
    return "\n".join(out)


def _names(cfg: Config, opts: dict[str, str], ids: list[str]) -> dict[str, str]:
    """product_id -> name from the catalog, for ``ids``."""
    if not ids:
        return {}
    table = _open(cfg.table("catalog"), opts)
    key, name = cfg.columns.catalog.product_id, cfg.columns.catalog.name
    return {str(r[key]): r.get(name) for r in _rows(table, [(key, "in", ids)])}


def _cmd_product(cfg: Config, product_id: str) -> str | None:
    """One product: its listing, catalog scores and nearest neighbours; None when unknown."""
    from ecomine.io import fs

    opts = fs.delta_rs_options(cfg.storage)
    key = cfg.columns.catalog.product_id
    listing = _by_key(_open(cfg.table("catalog"), opts), key, product_id)
    scores = _by_key(_open(cfg.table("catalog_scores"), opts), "product_id", product_id)
    similar = sorted(
        _by_key(_open(cfg.table("similar_products"), opts), "product_id", product_id), key=lambda r: r["rank"]
    )
    if not (listing or scores):
        return None
    row = listing[0] if listing else {}
    out = [f"product {product_id}"]
    out += [
        f"  {c}: {row[c]}"
        for c in ("name", "brand", "category", "price", "rating", "review_count", "source")
        if row.get(c) is not None
    ]
    if scores:
        sc = scores[0]
        skip = {"product_id", "text_sha256", "run_id", "scored_at"}
        out += ["", f"catalog scores (model {sc.get('model_version')}):"]
        out += [f"  {c}: {_fmt(v)}" for c, v in sc.items() if c not in skip | {"model_version"} and v is not None]
    names = _names(cfg, opts, [r["similar_product_id"] for r in similar])
    out += ["", "similar products:" if similar else "similar products: none (no similar_products row)"]
    out += [
        f"  {r['rank']:>2}. {r['similarity']:.3f}  {r['similar_product_id']}  {names.get(r['similar_product_id']) or ''}"
        for r in similar
    ]
    return "\n".join(out)


def _cmd_recommend(cfg: Config, user_id: str) -> str | None:
    """One user's recommendations with product names; None when the user has none."""
    from ecomine.io import fs

    opts = fs.delta_rs_options(cfg.storage)
    recs = sorted(_by_key(_open(cfg.table("recommendations"), opts), "user_id", user_id), key=lambda r: r["rank"])
    if not recs:
        return None
    names = _names(cfg, opts, [r["product_id"] for r in recs])
    out = [f"recommendations for {user_id} (model {recs[0].get('model_version')}, run {recs[0].get('run_id')}):"]
    out += [
        f"  {r['rank']:>2}. {r['score']:.4f}  {r['source']:<13} {r['product_id']}  {names.get(r['product_id']) or ''}"
        for r in recs
    ]
    return "\n".join(out)


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def console_main(argv: list[str] | None = None) -> int:
    """``ecomine`` console entry point: read-only views of a lakehouse for people on call.

    ``ecomine runs [-n N] [--job JOB]``, ``ecomine models [-n N]``, ``ecomine show REVIEW_ID``,
    ``ecomine product PRODUCT_ID``, ``ecomine recommend USER_ID``,
    each with ``--conf-dir``/``--env``/``--set key=value`` to pick the lakehouse (default:
    ``conf``, env ``local``). Reads Delta tables with delta-rs (no JVM, starts in about a
    second). Exit status: 0 ok, 1 review not found, 2 configuration or table error."""
    from ecomine import config
    from ecomine.errors import EcomineError
    from ecomine.io import fs

    args = _console_parser().parse_args(argv)
    try:
        cfg = config.load(args.conf_dir, args.env, args.overrides)
        opts = fs.delta_rs_options(cfg.storage)
        if args.command == "runs":
            text = _cmd_runs(cfg.table("runs"), args.job, args.n, opts)
        elif args.command == "models":
            text = _cmd_models(cfg.table("models"), args.n, opts)
        elif args.command == "product":
            text = _cmd_product(cfg, args.product_id)
        elif args.command == "recommend":
            text = _cmd_recommend(cfg, args.user_id)
        else:
            text = _cmd_show(cfg, args.review_id)
    except (EcomineError, FileNotFoundError) as e:
        print(f"ecomine {args.command}: {e}", file=sys.stderr)
        return 2
    if text is None:
        missing = {
            "show": f"review {getattr(args, 'review_id', '')!r} is not in reviews, review_scores or review_scores_rejects",
            "product": f"product {getattr(args, 'product_id', '')!r} is not in catalog or catalog_scores",
            "recommend": f"user {getattr(args, 'user_id', '')!r} has no rows in recommendations",
        }[args.command]
        print(f"ecomine {args.command}: {missing} under {cfg.storage.table_path('')}", file=sys.stderr)
        return 1
    print(text)
    return 0
