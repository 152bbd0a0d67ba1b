"""A self-contained HTML report of one run, for people who look rather than query.

``render_run_report(spark, cfg, run_id)`` reads the lakehouse (small, bounded reads:
aggregates of at most a few dozen rows reach the driver) and returns one HTML string:
inline CSS, charts as hand-written inline SVG, no scripts, no external URLs, so it
renders the same offline, from a file, in a mail client's sandbox or in CI.

Sections (each an element with that ``id``):

* ``summary``: the run's ledger row (status, times, rows in / scored / rejected /
  written, model version, source table versions, error).
* ``rejects``: reject reasons: rejects recorded or changed by this run, next to all
  reviews currently rejected.
* ``model``: the run's model version, its status, and its held-out test metrics next to
  the TF-IDF + logistic regression baseline on the same rows.
* ``drift``: per probability column (``p_positive`` and every ``<task>_prob``), the
  histogram of the rows this run scored against the rows the previous run scored, and
  the population stability index (PSI, see :func:`psi`). "Rows a run scored" are read
  from the ``review_scores`` version that run committed (Delta time travel via the
  commit's ``userMetadata.run_id``), so rows re-scored later still count for the run
  that scored them; when that commit is not in the table's history any more, the rows
  that still carry the run's ``run_id`` are used, and the section says so. The previous
  run is the latest earlier succeeded run of a scoring job (``nightly``/``score``) that
  scored at least one row.
* ``fraud``: the riskiest reviewers and products from ``reviewer_risk`` /
  ``product_risk`` (most flagged reviews first, then the highest mean fraud score), or
  a "not available" note when those tables do not exist.
* ``explanations``: the words that drove a few of this run's predictions, from
  ``review_explanations`` (when present).
* ``throughput``: rows per second of scoring (``runs.details.rows_per_second``) for this
  run and the last runs of the same job.

``write_report(html, dir, run_id)`` writes ``<dir>/<run_id>.html``; ``reports_dir(cfg)``
is ``<storage.root>/_reports``. The reading (:func:`collect`) and the rendering
(:func:`render`) are separate, so the rendering is tested without Spark.
"""

from __future__ import annotations

import html
import json
import logging
import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SCORING_JOBS = ("nightly", "score")
PSI_EPSILON = 1e-4


# --------------------------------------------------------------------------- pure helpers


def psi(reference: list[int], current: list[int], eps: float = PSI_EPSILON) -> float | None:
    """Population stability index of two histograms over the same bins:
    ``sum((c_i - r_i) * ln(c_i / r_i))`` with ``r_i``, ``c_i`` the bin shares, a share of 0
    replaced by ``eps`` (no renormalisation). None when either histogram is empty.
    Rule of thumb: < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 large shift."""
    nr, nc = sum(reference), sum(current)
    if nr == 0 or nc == 0 or len(reference) != len(current):
        return None
    total = 0.0
    for r, c in zip(reference, current, strict=True):
        pr, pc = max(r / nr, eps), max(c / nc, eps)
        total += (pc - pr) * math.log(pc / pr)
    return total


def psi_label(value: float | None) -> str:
    if value is None:
        return "n/a"
    if value < 0.1:
        return "stable"
    if value < 0.25:
        return "moderate shift"
    return "large shift"


def _e(v: Any) -> str:
    return html.escape("" if v is None else str(v), quote=True)


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if math.isnan(v):
            return "–"
        return f"{v:,.{digits}f}"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, datetime):
        return v.strftime("%Y-%m-%d %H:%M:%S")
    return str(v)


def _table(headers: list[str], rows: list[list[Any]], numeric: set[int] | None = None, cls: str = "") -> str:
    numeric = numeric or set()
    head = "".join(f"<th{' class=num' if i in numeric else ''}>{_e(h)}</th>" for i, h in enumerate(headers))
    body = []
    for row in rows:
        cells = []
        for i, v in enumerate(row):
            raw = v[1] if isinstance(v, tuple) and len(v) == 2 and v[0] == "html" else None
            text = raw if raw is not None else _e(_fmt(v))
            cells.append(f"<td{' class=num' if i in numeric else ''}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    c = f' class="{cls}"' if cls else ""
    return f"<table{c}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _svg_open(
    title: str, width: int, height: int, pad_l: int, pad_t: int, plot_w: float, plot_h: float, top: float, tick_fmt: str
) -> list[str]:
    """Opening of a chart: the <svg> element, its title and four horizontal grid lines
    with y-axis labels from 0 to ``top`` (formatted with ``tick_fmt``)."""
    parts = [
        f'<svg role="img" aria-label="{_e(title)}" width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
        f"<title>{_e(title)}</title>",
        f'<text x="{pad_l}" y="14" class="ct">{_e(title)}</text>',
    ]
    for k in range(0, 5):
        y = pad_t + plot_h - plot_h * k / 4
        parts.append(f'<line x1="{pad_l}" x2="{pad_l + plot_w}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        parts.append(
            f'<text x="{pad_l - 4}" y="{y + 4:.1f}" class="ax" text-anchor="end">{format(top * k / 4, tick_fmt)}</text>'
        )
    return parts


def histogram_svg(
    edges: list[float], current: list[int], reference: list[int] | None, title: str, width: int = 520, height: int = 190
) -> str:
    """Two-series bar chart (reference grey, current blue) of bin shares, as inline SVG."""
    n_bins = len(current)
    pad_l, pad_r, pad_t, pad_b = 40, 10, 22, 34
    plot_w, plot_h = width - pad_l - pad_r, height - pad_t - pad_b
    nc = sum(current) or 1
    nr = sum(reference or []) or 1
    shares_c = [c / nc for c in current]
    shares_r = [r / nr for r in reference] if reference else []
    top = max(shares_c + shares_r + [0.01])
    top = math.ceil(top * 10) / 10
    group = plot_w / n_bins
    bar = group * (0.4 if reference else 0.8)
    parts = _svg_open(title, width, height, pad_l, pad_t, plot_w, plot_h, top, ".0%")
    for i in range(n_bins):
        x0 = pad_l + i * group + group * 0.1
        if reference:
            h = plot_h * shares_r[i] / top
            parts.append(
                f'<rect x="{x0:.1f}" y="{pad_t + plot_h - h:.1f}" width="{bar:.1f}" height="{h:.1f}" class="ref">'
                f"<title>previous run, {edges[i]:.1f}-{edges[i + 1]:.1f}: {reference[i]} rows ({shares_r[i]:.1%})</title></rect>"
            )
            x0 += bar
        h = plot_h * shares_c[i] / top
        parts.append(
            f'<rect x="{x0:.1f}" y="{pad_t + plot_h - h:.1f}" width="{bar:.1f}" height="{h:.1f}" class="cur">'
            f"<title>this run, {edges[i]:.1f}-{edges[i + 1]:.1f}: {current[i]} rows ({shares_c[i]:.1%})</title></rect>"
        )
    for i in range(0, n_bins + 1, max(1, n_bins // 5)):
        x = pad_l + i * group
        parts.append(
            f'<text x="{x:.1f}" y="{pad_t + plot_h + 14}" class="ax" text-anchor="middle">{edges[i]:.1f}</text>'
        )
    ly = height - 6
    parts.append(f'<rect x="{pad_l}" y="{ly - 9}" width="10" height="10" class="cur"/>')
    parts.append(f'<text x="{pad_l + 14}" y="{ly}" class="ax">this run (n={sum(current):,})</text>')
    if reference is not None:
        parts.append(f'<rect x="{pad_l + 150}" y="{ly - 9}" width="10" height="10" class="ref"/>')
        parts.append(f'<text x="{pad_l + 164}" y="{ly}" class="ax">previous run (n={sum(reference):,})</text>')
    parts.append("</svg>")
    return "".join(parts)


def bars_svg(
    labels: list[str],
    values: list[float | None],
    highlight: int | None,
    title: str,
    unit: str,
    width: int = 520,
    height: int = 190,
) -> str:
    """Vertical bars (e.g. rows/s per run), the ``highlight`` one in the accent colour."""
    pad_l, pad_r, pad_t, pad_b = 48, 10, 22, 30
    plot_w, plot_h = width - pad_l - pad_r, height - pad_t - pad_b
    n = max(len(values), 1)
    top = max([v for v in values if v is not None] + [1e-9])
    group = plot_w / n
    parts = _svg_open(title, width, height, pad_l, pad_t, plot_w, plot_h, top, ".3g")
    for i, (lab, v) in enumerate(zip(labels, values, strict=True)):
        x = pad_l + i * group + group * 0.15
        h = 0.0 if v is None else plot_h * v / top
        cls = "cur" if i == highlight else "ref"
        tip = f"{lab}: {'n/a' if v is None else f'{v:,.2f} {unit}'}"
        parts.append(
            f'<rect x="{x:.1f}" y="{pad_t + plot_h - h:.1f}" width="{group * 0.7:.1f}" height="{h:.1f}" class="{cls}">'
            f"<title>{_e(tip)}</title></rect>"
        )
        if n <= 12:
            parts.append(
                f'<text x="{x + group * 0.35:.1f}" y="{pad_t + plot_h + 14}" class="ax" text-anchor="middle">{_e(lab[-8:])}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


# --------------------------------------------------------------------------- data


@dataclass
class Drift:
    column: str
    edges: list[float]
    current: list[int]
    reference: list[int] | None
    psi: float | None
    mean_current: float | None
    mean_reference: float | None


@dataclass
class ReportData:
    """Everything the report shows, as plain Python values (what :func:`render` needs)."""

    run: dict[str, Any]
    generated_at: datetime
    tables_root: str = ""
    previous_run: dict[str, Any] | None = None
    rejects: list[tuple[str, int, int]] = field(default_factory=list)
    model: dict[str, Any] | None = None
    drift: list[Drift] = field(default_factory=list)
    drift_source: str = ""
    fraud_reviewers: list[dict[str, Any]] | None = None
    fraud_products: list[dict[str, Any]] | None = None
    explanations: list[dict[str, Any]] | None = None
    throughput: list[dict[str, Any]] = field(default_factory=list)


def _json(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        v = json.loads(text)
    except (TypeError, ValueError):
        return {}
    return v if isinstance(v, dict) else {}


def table_location(cfg: Any, logical: str) -> str:
    """Location of a table by logical name: ``cfg.table`` when the config knows the name,
    else ``<storage.root>/<name>`` (for tables not yet in the config)."""
    if hasattr(cfg.tables, logical):
        return cfg.table(logical)
    return cfg.storage.table_path(logical)


def _exists(spark, path: str) -> bool:
    from ecomine.io import delta_io

    return delta_io.table_exists(spark, path)


def _scored_version(spark, path: str, run_id: str) -> int | None:
    """The last review_scores version committed with ``userMetadata.run_id == run_id``."""
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    hist = DeltaTable.forPath(spark, path).history().select("version", "userMetadata")
    row = (
        hist.where(F.get_json_object(F.col("userMetadata"), "$.run_id") == F.lit(run_id)).agg(F.max("version")).first()
    )
    return int(row[0]) if row and row[0] is not None else None


def _run_histograms(
    spark, path: str, run_id: str, columns: list[str], bins: int
) -> tuple[dict[str, tuple[list[int], float | None]], str]:
    """Histograms of ``columns`` over the rows of review_scores that ``run_id`` wrote, and
    where those rows were read from: the version the run committed (time travel), else
    (commit not in the history, or its files vacuumed) the rows still carrying the run id."""
    from pyspark.sql import functions as F

    from ecomine.io import delta_io

    version = _scored_version(spark, path, run_id)
    if version is not None:
        try:
            df = delta_io.read(spark, path, version=version).where(F.col("run_id") == F.lit(run_id))
            have = set(df.columns)
            return {c: _histogram(df, c, bins) for c in columns if c in have}, f"review_scores version {version}"
        except Exception as e:  # files of an old version vacuumed: fall back below
            log.warning("review_scores version %s unreadable (%s); using current rows of run %s", version, e, run_id)
    df = delta_io.read(spark, path).where(F.col("run_id") == F.lit(run_id))
    note = "rows still carrying the run id (its commit is not readable any more)"
    return {c: _histogram(df, c, bins) for c in columns}, note


def _histogram(df, column: str, bins: int) -> tuple[list[int], float | None]:
    from pyspark.sql import functions as F

    v = F.col(column).cast("double")
    v = F.when(~F.isnan(v) & (v >= 0.0) & (v <= 1.0), v)
    b = F.least(F.floor(v * F.lit(bins)).cast("int"), F.lit(bins - 1))
    counts = [0] * bins
    rows = (
        df.select(b.alias("b"), v.alias("v"))
        .where(F.col("v").isNotNull())
        .groupBy("b")
        .agg(F.count(F.lit(1)).alias("n"), F.sum("v").alias("s"))
        .collect()
    )  # <= bins rows
    total, n = 0.0, 0
    for r in rows:
        counts[int(r["b"])] = int(r["n"])
        total += float(r["s"])
        n += int(r["n"])
    return counts, (total / n if n else None)


def collect(
    spark,
    cfg: Any,
    run_id: str,
    *,
    previous_run_id: str | None = None,
    top_n: int = 10,
    bins: int = 10,
    history: int = 14,
) -> ReportData:
    """Read what the report shows (bounded aggregates only) for ``run_id``."""
    from pyspark.sql import functions as F

    from ecomine.errors import DataError
    from ecomine.io import delta_io

    runs_path = table_location(cfg, "runs")
    if not _exists(spark, runs_path):
        raise DataError(f"no runs table at {runs_path}: nothing to report")
    runs_df = delta_io.read(spark, runs_path)
    found = runs_df.where(F.col("run_id") == F.lit(run_id)).collect()
    if not found:
        raise DataError(f"run {run_id} is not in the runs table at {runs_path}")
    run = found[0].asDict()
    run["details"] = _json(run.get("details"))
    run["source_versions"] = _json(run.get("source_versions"))
    data = ReportData(run=run, generated_at=datetime.now(timezone.utc), tables_root=cfg.storage.table_path(""))

    # previous scoring run
    if previous_run_id:
        prev = runs_df.where(F.col("run_id") == F.lit(previous_run_id)).collect()
    else:
        prev = (
            runs_df.where(
                F.col("job").isin(*SCORING_JOBS)
                & (F.col("status") == "succeeded")
                & (F.col("rows_scored") > 0)
                & (F.col("started_at") < F.lit(run["started_at"]))
            )
            .orderBy(F.col("started_at").desc())
            .limit(1)
            .collect()
        )
    if prev:
        data.previous_run = prev[0].asDict()
        data.previous_run["details"] = _json(data.previous_run.get("details"))

    # throughput history of the same job
    hist = (
        runs_df.where((F.col("job") == F.lit(run["job"])) & (F.col("started_at") <= F.lit(run["started_at"])))
        .orderBy(F.col("started_at").desc())
        .limit(history)
        .collect()
    )
    for r in reversed(hist):
        d = _json(r["details"])
        data.throughput.append(
            {
                "run_id": r["run_id"],
                "started_at": r["started_at"],
                "status": r["status"],
                "rows_scored": r["rows_scored"],
                "rows_per_second": d.get("rows_per_second"),
                "score_seconds": d.get("score_seconds"),
                "wall_seconds": d.get("wall_seconds"),
            }
        )

    # rejects
    rejects_path = table_location(cfg, "review_scores_rejects")
    if _exists(spark, rejects_path):
        agg = (
            delta_io.read(spark, rejects_path)
            .groupBy("reason")
            .agg(
                F.sum((F.col("run_id") == F.lit(run_id)).cast("long")).alias("this_run"), F.count(F.lit(1)).alias("all")
            )
            .orderBy(F.col("this_run").desc(), F.col("all").desc(), "reason")
            .limit(100)
            .collect()
        )
        data.rejects = [(r["reason"], int(r["this_run"] or 0), int(r["all"])) for r in agg]

    # model
    models_path = table_location(cfg, "models")
    if run.get("model_version") and _exists(spark, models_path):
        m = delta_io.read(spark, models_path).where(F.col("model_version") == F.lit(run["model_version"])).collect()
        if m:
            md = m[0].asDict()
            md["metrics"] = _json(md.get("metrics"))
            md["base_models"] = _json(md.get("base_models"))
            data.model = md

    # drift
    scores_path = table_location(cfg, "review_scores")
    if _exists(spark, scores_path):
        current_cols = delta_io.read(spark, scores_path).columns
        columns = [c for c in current_cols if c == "p_positive" or c.endswith("_prob")]
        columns = ["p_positive"] * ("p_positive" in columns) + sorted(c for c in columns if c != "p_positive")
        cur, cur_src = _run_histograms(spark, scores_path, run_id, columns, bins)
        prev: dict[str, tuple[list[int], float | None]] = {}
        data.drift_source = f"this run: {cur_src}"
        if data.previous_run:
            prev, prev_src = _run_histograms(spark, scores_path, data.previous_run["run_id"], columns, bins)
            data.drift_source += f"; previous run: {prev_src}"
        edges = [i / bins for i in range(bins + 1)]
        for c in columns:
            counts, mean_c = cur.get(c, ([0] * bins, None))
            ref, mean_r = prev.get(c, (None, None))
            data.drift.append(
                Drift(c, edges, counts, ref, psi(ref, counts) if ref is not None else None, mean_c, mean_r)
            )

    # fraud
    rr, pr = table_location(cfg, "reviewer_risk"), table_location(cfg, "product_risk")
    if _exists(spark, rr):
        data.fraud_reviewers = [
            r.asDict()
            for r in delta_io.read(spark, rr)
            .orderBy(
                F.col("reviews_flagged").desc_nulls_last(), F.col("mean_fraud_score").desc_nulls_last(), "reviewer_id"
            )
            .limit(top_n)
            .collect()
        ]
    if _exists(spark, pr):
        data.fraud_products = [
            r.asDict()
            for r in delta_io.read(spark, pr)
            .orderBy(
                F.col("reviews_flagged").desc_nulls_last(), F.col("mean_fraud_score").desc_nulls_last(), "product_id"
            )
            .limit(top_n)
            .collect()
        ]

    # explanations of this run
    ex = table_location(cfg, "review_explanations")
    if _exists(spark, ex):
        data.explanations = [
            r.asDict(recursive=True)
            for r in delta_io.read(spark, ex)
            .where(F.col("run_id") == F.lit(run_id))
            .orderBy("selection_reason", "review_id", "task")
            .limit(top_n)
            .collect()
        ]
    return data


# --------------------------------------------------------------------------- rendering

CSS = """
:root { --fg:#1d2330; --muted:#5b6578; --line:#dde2ea; --accent:#2f6fdf; --ref:#b7bfcc; --bad:#c0392b; --ok:#1e8e3e; }
* { box-sizing: border-box; }
body { font: 14px/1.45 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: var(--fg);
       margin: 0; background: #f5f7fa; }
header { background: #1d2330; color: #fff; padding: 18px 28px; }
header h1 { margin: 0; font-size: 20px; font-weight: 600; }
header p { margin: 4px 0 0; color: #c9d1de; font-size: 13px; }
main { padding: 18px 28px 40px; display: grid; grid-template-columns: repeat(auto-fit, minmax(540px, 1fr)); gap: 18px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 14px 18px; }
section.wide { grid-column: 1 / -1; }
h2 { font-size: 16px; margin: 0 0 10px; }
h3 { font-size: 13px; margin: 14px 0 6px; color: var(--muted); text-transform: uppercase; letter-spacing: .04em; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { color: var(--muted); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.kpis { display: flex; gap: 12px; flex-wrap: wrap; margin-bottom: 10px; }
.kpi { flex: 1 1 110px; border: 1px solid var(--line); border-radius: 6px; padding: 8px 10px; }
.kpi b { display: block; font-size: 20px; }
.kpi span { color: var(--muted); font-size: 12px; }
.status { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; color: #fff; }
.status.succeeded { background: var(--ok); } .status.failed { background: var(--bad); } .status.running { background: #b7791f; }
.note { color: var(--muted); font-size: 12px; }
.na { color: var(--muted); font-style: italic; }
.better { color: var(--ok); } .worse { color: var(--bad); }
pre { white-space: pre-wrap; background: #fbeaea; padding: 8px; border-radius: 4px; font-size: 12px; }
.charts { display: flex; flex-wrap: wrap; gap: 8px 18px; }
svg .grid { stroke: #edf0f4; } svg .ax { font-size: 10px; fill: var(--muted); } svg .ct { font-size: 12px; font-weight: 600; fill: var(--fg); }
svg .cur { fill: var(--accent); } svg .ref { fill: var(--ref); }
.tok { display: inline-block; margin: 1px 3px 1px 0; padding: 0 4px; border-radius: 3px; }
"""


def _kpi(label: str, value: Any, digits: int = 2) -> str:
    return f'<div class="kpi"><b>{_e(_fmt(value, digits))}</b><span>{_e(label)}</span></div>'


def _duration(run: dict[str, Any]) -> float | None:
    s, e = run.get("started_at"), run.get("ended_at")
    if isinstance(s, datetime) and isinstance(e, datetime):
        return (e - s).total_seconds()
    return None


def _section_summary(d: ReportData) -> str:
    r = d.run
    status = _e(r.get("status"))
    dur = _duration(r)
    kpis = "".join(
        [
            _kpi("rows in", r.get("rows_in")),
            _kpi("scored", r.get("rows_scored")),
            _kpi("rejected", r.get("rows_rejected")),
            _kpi("written", r.get("rows_written")),
            _kpi("seconds", dur, 1),
        ]
    )
    facts = [
        ["run id", r.get("run_id")],
        ["job", r.get("job")],
        ["status", ("html", f'<span class="status {status}">{status}</span>')],
        ["started (UTC)", r.get("started_at")],
        ["ended (UTC)", r.get("ended_at")],
        ["model version", r.get("model_version")],
        ["source table versions", ", ".join(f"{k} v{v}" for k, v in sorted(r["source_versions"].items())) or None],
        ["rows selected by", r["details"].get("selection")],
        ["previous scoring run", (d.previous_run or {}).get("run_id")],
    ]
    err = f"<h3>Error</h3><pre>{_e(r.get('error'))}</pre>" if r.get("error") else ""
    return (
        f'<section id="summary" class="wide"><h2>Run summary</h2><div class="kpis">{kpis}</div>'
        f"{_table(['', ''], facts)}{err}</section>"
    )


def _section_rejects(d: ReportData) -> str:
    if not d.rejects:
        body = '<p class="na">No rejected reviews.</p>'
    else:
        body = _table(
            ["reason", "recorded by this run", "currently rejected (all runs)"],
            [[reason, this, total] for reason, this, total in d.rejects],
            numeric={1, 2},
        )
        body += (
            '<p class="note">A reject keeps the run id of the run that first recorded it (or last changed it); '
            "the ledger's <i>rejected</i> count is every rejected row this run read.</p>"
        )
    return f'<section id="rejects"><h2>Rejected reviews</h2>{body}</section>'


def _metric_rows(metrics: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for lang in sorted(metrics):
        m = metrics[lang] or {}
        ft, bl = m.get("finetuned") or {}, m.get("tfidf_logreg") or {}
        for task in sorted(set(ft) | set(bl)):
            a, b = ft.get(task) or {}, bl.get(task) or {}
            keys = [
                k
                for k in ("macro_f1", "accuracy", "mae", "rmse", "r2")
                if isinstance(a.get(k), (int, float)) or isinstance(b.get(k), (int, float))
            ]
            for k in keys[:2]:
                va, vb = a.get(k), b.get(k)
                delta = va - vb if isinstance(va, (int, float)) and isinstance(vb, (int, float)) else None
                lower_better = k in ("mae", "rmse")
                good = delta is not None and ((delta < 0) if lower_better else (delta > 0))
                cls = "better" if good else ("worse" if delta not in (None, 0) else "")
                delta_html = ("html", f'<span class="{cls}">{_e(_fmt(delta))}</span>') if delta is not None else None
                rows.append([lang, task, k, va, vb, delta_html, a.get("n", b.get("n"))])
    return rows


def _section_model(d: ReportData) -> str:
    m = d.model
    if m is None:
        v = d.run.get("model_version")
        msg = "This run used no model." if not v else f"Model {v} is not in the models table."
        return f'<section id="model"><h2>Model</h2><p class="na">{_e(msg)}</p></section>'
    facts = _table(
        ["", ""],
        [
            ["version", m.get("model_version")],
            ["status", m.get("status")],
            ["trained (UTC)", m.get("created_at")],
            ["trained by run", m.get("run_id")],
            ["base encoders", ", ".join(f"{k}: {v}" for k, v in sorted(m["base_models"].items())) or None],
            ["training data", f"{m.get('source_table')} v{m.get('source_version')}"],
        ],
    )
    rows = _metric_rows(m["metrics"])
    metrics = (
        _table(
            ["language", "task", "metric", "fine-tuned", "TF-IDF + logreg", "difference", "test rows"],
            rows,
            numeric={3, 4, 5, 6},
        )
        if rows
        else '<p class="na">No held-out metrics recorded.</p>'
    )
    return (
        f'<section id="model"><h2>Model</h2>{facts}<h3>Held-out test metrics vs the TF-IDF baseline</h3>{metrics}'
        '<p class="note">Both methods are scored on the same held-out test rows of the training data.</p></section>'
    )


def _section_drift(d: ReportData) -> str:
    if not d.drift:
        return '<section id="drift" class="wide"><h2>Prediction drift</h2><p class="na">No review_scores table.</p></section>'
    charts, rows = [], []
    for x in d.drift:
        title = f"{x.column}: this run vs previous run" if x.reference is not None else f"{x.column}: this run"
        charts.append(histogram_svg(x.edges, x.current, x.reference, title))
        rows.append(
            [
                x.column,
                sum(x.current),
                x.mean_current,
                sum(x.reference) if x.reference is not None else None,
                x.mean_reference,
                x.psi,
                psi_label(x.psi),
            ]
        )
    prev = d.previous_run["run_id"] if d.previous_run else None
    note = f"Compared with run {_e(prev)}." if prev else "No earlier scoring run to compare with: PSI is not available."
    if sum(sum(x.current) for x in d.drift) == 0:
        note += " This run scored no new rows."
    table = _table(
        ["column", "rows (this run)", "mean (this run)", "rows (previous)", "mean (previous)", "PSI", ""],
        rows,
        numeric={1, 2, 3, 4, 5},
    )
    return (
        f'<section id="drift" class="wide"><h2>Prediction drift</h2><p class="note">{note} '
        f"Bins of width 0.1 over [0, 1]. PSI = Σ (c − r)·ln(c / r) over bin shares; &lt; 0.1 stable, "
        f"0.1–0.25 moderate, &gt; 0.25 large. Read from {_e(d.drift_source)}.</p>"
        f'{table}<div class="charts">{"".join(charts)}</div></section>'
    )


def _reasons(v: Any) -> str:
    return ", ".join(v) if isinstance(v, (list, tuple)) else _fmt(v)


def _section_fraud(d: ReportData) -> str:
    parts = []
    if d.fraud_reviewers is None:
        parts.append('<h3>Reviewers</h3><p class="na">Not available: there is no reviewer_risk table.</p>')
    elif not d.fraud_reviewers:
        parts.append('<h3>Reviewers</h3><p class="na">No reviewer ids in the data.</p>')
    else:
        parts.append(
            "<h3>Riskiest reviewers</h3>"
            + _table(
                ["reviewer", "reviews", "flagged", "mean score", "max score", "top reasons"],
                [
                    [
                        r.get("reviewer_id"),
                        r.get("reviews"),
                        r.get("reviews_flagged"),
                        r.get("mean_fraud_score"),
                        r.get("max_fraud_score"),
                        _reasons(r.get("top_reasons")),
                    ]
                    for r in d.fraud_reviewers
                ],
                numeric={1, 2, 3, 4},
            )
        )
    if d.fraud_products is None:
        parts.append('<h3>Products</h3><p class="na">Not available: there is no product_risk table.</p>')
    elif not d.fraud_products:
        parts.append('<h3>Products</h3><p class="na">No product ids in the data.</p>')
    else:
        parts.append(
            "<h3>Riskiest products</h3>"
            + _table(
                ["product", "reviews", "flagged", "mean score", "rating", "rating unflagged", "top reasons"],
                [
                    [
                        r.get("product_id"),
                        r.get("reviews"),
                        r.get("reviews_flagged"),
                        r.get("mean_fraud_score"),
                        r.get("mean_rating"),
                        r.get("mean_rating_unflagged"),
                        _reasons(r.get("top_reasons")),
                    ]
                    for r in d.fraud_products
                ],
                numeric={1, 2, 3, 4, 5},
            )
        )
    return f'<section id="fraud"><h2>Fraud risk</h2>{"".join(parts)}</section>'


def _token_html(tokens: list[dict[str, Any]] | None) -> str:
    if not tokens:
        return ""
    top = max(abs(float(t["attribution"])) for t in tokens) or 1.0
    out = []
    for t in tokens:
        a = float(t["attribution"])
        alpha = 0.15 + 0.6 * abs(a) / top
        colour = f"rgba(47,111,223,{alpha:.2f})" if a >= 0 else f"rgba(192,57,43,{alpha:.2f})"
        out.append(f'<span class="tok" style="background:{colour}" title="{a:+.4f}">{_e(t["token"])}</span>')
    return "".join(out)


def _section_explanations(d: ReportData) -> str:
    if d.explanations is None:
        return ""
    if not d.explanations:
        body = '<p class="na">No explanations were computed for this run.</p>'
    else:
        body = _table(
            [
                "review",
                "task",
                "predicted",
                "prob",
                "why",
                "words that pushed the prediction (blue: towards it, red: against)",
            ],
            [
                [
                    r.get("review_id"),
                    r.get("task"),
                    r.get("predicted_label"),
                    r.get("prob"),
                    r.get("selection_reason"),
                    ("html", _token_html(r.get("top_tokens"))),
                ]
                for r in d.explanations
            ],
            numeric={3},
        )
    return f'<section id="explanations" class="wide"><h2>Explanations</h2>{body}</section>'


def _section_throughput(d: ReportData) -> str:
    det = d.run["details"]
    kpis = "".join(
        [
            _kpi("rows / second", det.get("rows_per_second")),
            _kpi("scoring seconds", det.get("score_seconds"), 1),
            _kpi("wall seconds", det.get("wall_seconds"), 1),
        ]
    )
    hist = d.throughput
    chart = ""
    if hist:
        idx = next((i for i, h in enumerate(hist) if h["run_id"] == d.run["run_id"]), None)
        chart = bars_svg(
            [h["run_id"] for h in hist],
            [h["rows_per_second"] for h in hist],
            idx,
            f"rows/s, last {len(hist)} {d.run.get('job')} runs",
            "rows/s",
        )
    return f'<section id="throughput"><h2>Throughput</h2><div class="kpis">{kpis}</div>{chart}</section>'


def render(d: ReportData) -> str:
    """The HTML page for ``d``: one self-contained document, no scripts, no external URLs."""
    r = d.run
    title = f"ecomine run {r.get('run_id')}"
    sub = (
        f"{_e(r.get('job'))} · {_e(r.get('status'))} · started {_e(_fmt(r.get('started_at')))} UTC · "
        f"report generated {_e(_fmt(d.generated_at))} UTC · tables under {_e(d.tables_root)}"
    )
    body = "".join(
        [
            _section_summary(d),
            _section_rejects(d),
            _section_model(d),
            _section_drift(d),
            _section_fraud(d),
            _section_throughput(d),
            _section_explanations(d),
        ]
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">"
        f"<title>{_e(title)}</title><style>{CSS}</style></head>"
        f"<body><header><h1>{_e(title)}</h1><p>{sub}</p></header><main>{body}</main></body></html>\n"
    )


def render_run_report(spark, cfg: Any, run_id: str, *, previous_run_id: str | None = None, top_n: int = 10) -> str:
    """The HTML report of ``run_id`` (see the module docstring for its sections)."""
    return render(collect(spark, cfg, run_id, previous_run_id=previous_run_id, top_n=top_n))


# --------------------------------------------------------------------------- writing

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def reports_dir(cfg: Any) -> str:
    """``<storage.root>/_reports``."""
    return cfg.storage.table_path("_reports")


def write_report(html_text: str, directory: str | os.PathLike[str], run_id: str) -> str:
    """Write ``<directory>/<run_id>.html`` and return its path. Local paths (and
    ``file:`` URIs) are written atomically (temp file + rename); other URIs (s3://, ...)
    through pyarrow's filesystem layer. ``run_id`` must be a plain file name."""
    if not _SAFE_ID.match(run_id):
        raise ValueError(f"run id {run_id!r} is not usable as a file name")
    d = str(directory)
    if d.startswith("file:"):
        d = re.sub(r"^file:/*", "/", d)
    if "://" in d:
        from pyarrow import fs

        filesystem, base = fs.FileSystem.from_uri(d)
        filesystem.create_dir(base, recursive=True)
        target = base.rstrip("/") + f"/{run_id}.html"
        with filesystem.open_output_stream(target) as f:
            f.write(html_text.encode("utf-8"))
        return d.rstrip("/") + f"/{run_id}.html"
    p = Path(d)
    p.mkdir(parents=True, exist_ok=True)
    target = p / f"{run_id}.html"
    fd, tmp = tempfile.mkstemp(dir=p, prefix=f".{run_id}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(html_text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return str(target)
