"""A self-contained HTML report of one run, for people who look rather than query.

``render_run_report(spark, storage, tables, run_id)`` reads the lakehouse (small, bounded reads:
aggregates of at most a few dozen rows reach the driver) and returns one HTML string:
inline CSS, charts as inline SVG, no scripts, no external URLs, so it renders the same
offline, from a file, in a mail client's sandbox or in CI. The page is the autoescaped
Jinja2 template ``templates/run_report.html.j2`` (with ``run_report.css``), shipped as
package data; Python computes what it shows (table rows, chart geometry), the template
holds all the markup.

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
  ``product_risk`` (most flagged reviews first, then the highest mean fraud score), and
  the review bursts: the products of ``product_risk`` with the highest burst z-score
  (``max_burst_z``; a note when no product has one, i.e. the data has no dates); or a
  "not available" note when those tables do not exist. Each row shows where its reviews
  come from (the table's ``sources``): a "simulated" badge when any source starts with
  ``simulated`` (the demo's simulated marketplace layer, explained in a note above the
  tables), else the sources themselves.
* ``explanations``: the words that drove a few of this run's predictions, from
  ``review_explanations`` (when present).
* ``throughput``: rows per second of scoring (``runs.details.rows_per_second``) for this
  run and the last runs of the same job.

``write_report(html, dir, run_id)`` writes ``<dir>/<run_id>.html``; ``reports_dir(storage)``
is ``<storage.root>/_reports``. The reading (:func:`collect`) and the rendering
(:func:`render`) are separate, so the rendering is tested without Spark.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import jinja2

from ecomine.config import StorageConfig, TablesConfig
from ecomine.io import fs

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = [
    "PSI_EPSILON",
    "SCORING_JOBS",
    "SIMULATED_NOTE",
    "SIMULATED_PREFIX",
    "TEMPLATE",
    "Chart",
    "Drift",
    "ReportData",
    "bars_chart",
    "collect",
    "histogram_chart",
    "psi",
    "psi_label",
    "render",
    "render_run_report",
    "reports_dir",
    "write_report",
]

log = logging.getLogger(__name__)

SCORING_JOBS = ("nightly", "score")
PSI_EPSILON = 1e-4
#: The page template, in ecomine/derived/templates/ (package data).
TEMPLATE = "run_report.html.j2"
#: A risk-table row whose ``sources`` has a value starting with this is badged "simulated".
SIMULATED_PREFIX = "simulated"
SIMULATED_NOTE = (
    "Rows marked simulated come from the simulated marketplace layer of the demo (source simulated_marketplace*): "
    "their reviewers, products, dates, ratings and campaigns are simulated; the texts are real reviews."
)


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


def _fmt(v: Any, digits: int = 3) -> str:
    """A value as the page shows it: thousands separators, ``digits`` decimals, '–' for none."""
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


def _px(v: float) -> str:
    """An SVG coordinate: floats to one decimal, integers as they are."""
    return f"{v:.1f}" if isinstance(v, float) else str(v)


# --------------------------------------------------------------------------- charts (geometry; the template draws)


@dataclass(frozen=True)
class Line:
    x1: float
    x2: float
    y1: float
    y2: float
    css: str = "grid"
    kind: str = "line"


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    width: float
    height: float
    css: str
    tip: str | None = None  # tooltip (an SVG <title>)
    kind: str = "rect"


@dataclass(frozen=True)
class Text:
    x: float
    y: float
    text: str
    css: str = "ax"
    anchor: str | None = None
    kind: str = "text"


@dataclass(frozen=True)
class Chart:
    """An inline SVG chart: its size, title and marks in drawing order."""

    title: str
    width: int
    height: int
    marks: list[Line | Rect | Text]


def _frame(
    title: str, pad_l: int, pad_t: int, plot_w: int, plot_h: int, top: float, tick_fmt: str
) -> list[Line | Rect | Text]:
    """A chart's title and four horizontal grid lines with y-axis labels from 0 to ``top``."""
    marks: list[Line | Rect | Text] = [Text(pad_l, 14, title, css="ct")]
    for k in range(0, 5):
        y = pad_t + plot_h - plot_h * k / 4
        marks.append(Line(pad_l, pad_l + plot_w, y, y))
        marks.append(Text(pad_l - 4, y + 4, format(top * k / 4, tick_fmt), anchor="end"))
    return marks


def histogram_chart(
    edges: list[float], current: list[int], reference: list[int] | None, title: str, width: int = 520, height: int = 190
) -> Chart:
    """Two-series bar chart (reference grey, current blue) of bin shares."""
    n_bins = len(current)
    pad_l, pad_r, pad_t, pad_b = 40, 10, 22, 34
    plot_w, plot_h = width - pad_l - pad_r, height - pad_t - pad_b
    shares_current = [c / (sum(current) or 1) for c in current]
    shares_reference = [r / (sum(reference or []) or 1) for r in reference] if reference else []
    top = math.ceil(max(shares_current + shares_reference + [0.01]) * 10) / 10
    group = plot_w / n_bins
    bar = group * (0.4 if reference else 0.8)
    marks = _frame(title, pad_l, pad_t, plot_w, plot_h, top, ".0%")
    for i in range(n_bins):
        x0 = pad_l + i * group + group * 0.1
        span = f"{edges[i]:.1f}-{edges[i + 1]:.1f}"
        if reference:
            h = plot_h * shares_reference[i] / top
            tip = f"previous run, {span}: {reference[i]} rows ({shares_reference[i]:.1%})"
            marks.append(Rect(x0, pad_t + plot_h - h, bar, h, "ref", tip))
            x0 += bar
        h = plot_h * shares_current[i] / top
        tip = f"this run, {span}: {current[i]} rows ({shares_current[i]:.1%})"
        marks.append(Rect(x0, pad_t + plot_h - h, bar, h, "cur", tip))
    for i in range(0, n_bins + 1, max(1, n_bins // 5)):
        marks.append(Text(pad_l + i * group, pad_t + plot_h + 14, f"{edges[i]:.1f}", anchor="middle"))
    legend_y = height - 6
    marks.append(Rect(pad_l, legend_y - 9, 10, 10, "cur"))
    marks.append(Text(pad_l + 14, legend_y, f"this run (n={sum(current):,})"))
    if reference is not None:
        marks.append(Rect(pad_l + 150, legend_y - 9, 10, 10, "ref"))
        marks.append(Text(pad_l + 164, legend_y, f"previous run (n={sum(reference):,})"))
    return Chart(title, width, height, marks)


def bars_chart(
    labels: list[str],
    values: list[float | None],
    highlight: int | None,
    title: str,
    unit: str,
    width: int = 520,
    height: int = 190,
) -> Chart:
    """Vertical bars (e.g. rows/s per run), the ``highlight`` one in the accent colour."""
    pad_l, pad_r, pad_t, pad_b = 48, 10, 22, 30
    plot_w, plot_h = width - pad_l - pad_r, height - pad_t - pad_b
    n = max(len(values), 1)
    top = max([v for v in values if v is not None] + [1e-9])
    group = plot_w / n
    marks = _frame(title, pad_l, pad_t, plot_w, plot_h, top, ".3g")
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        x = pad_l + i * group + group * 0.15
        h = 0.0 if value is None else plot_h * value / top
        tip = f"{label}: {'n/a' if value is None else f'{value:,.2f} {unit}'}"
        marks.append(Rect(x, pad_t + plot_h - h, group * 0.7, h, "cur" if i == highlight else "ref", tip))
        if n <= 12:
            marks.append(Text(x + group * 0.35, pad_t + plot_h + 14, label[-8:], anchor="middle"))
    return Chart(title, width, height, marks)


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
    fraud_bursts: list[dict[str, Any]] | None = None
    explanations: list[dict[str, Any]] | None = None
    throughput: list[dict[str, Any]] = field(default_factory=list)
    embeddings: dict[str, Any] | None = None  # product_embeddings: rows, dim, model_version
    similar: list[dict[str, Any]] | None = None  # a sample of products with their nearest neighbours
    recommendations: dict[str, Any] | None = None  # per source counts and a sample of users' lists
    label_rejects: list[tuple[str, str, int]] | None = None  # catalog_label_rejects: (task, reason, rows)


def _json(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        v = json.loads(text)
    except (TypeError, ValueError):
        return {}
    return v if isinstance(v, dict) else {}


def _exists(spark: SparkSession, path: str) -> bool:
    from ecomine.io import delta_io

    return delta_io.table_exists(spark, path)


def _scored_version(spark: SparkSession, path: str, run_id: str) -> int | None:
    """The last review_scores version committed with ``userMetadata.run_id == run_id``."""
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    hist = DeltaTable.forPath(spark, path).history().select("version", "userMetadata")
    row = (
        hist.where(F.get_json_object(F.col("userMetadata"), "$.run_id") == F.lit(run_id)).agg(F.max("version")).first()
    )
    return int(row[0]) if row and row[0] is not None else None


def _run_histograms(
    spark: SparkSession, path: str, run_id: str, columns: list[str], bins: int
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


def _histogram(df: DataFrame, column: str, bins: int) -> tuple[list[int], float | None]:
    """Counts of ``column``'s values in ``bins`` equal bins over [0, 1] and their mean
    (values outside [0, 1], NaN and null are left out)."""
    from pyspark.sql import functions as F

    value = F.col(column).cast("double")
    value = F.when(~F.isnan(value) & (value >= 0.0) & (value <= 1.0), value)
    bin_index = F.least(F.floor(value * F.lit(bins)).cast("int"), F.lit(bins - 1))
    counts = [0] * bins
    rows = (
        df.select(bin_index.alias("bin"), value.alias("value"))
        .where(F.col("value").isNotNull())
        .groupBy("bin")
        .agg(F.count(F.lit(1)).alias("n"), F.sum("value").alias("total"))
        .collect()
    )  # <= bins rows
    total, n = 0.0, 0
    for row in rows:
        counts[int(row["bin"])] = int(row["n"])
        total += float(row["total"])
        n += int(row["n"])
    return counts, (total / n if n else None)


def _run_row(runs: DataFrame, run_id: str, runs_path: str) -> dict[str, Any]:
    from pyspark.sql import functions as F

    from ecomine.errors import DataError

    found = runs.where(F.col("run_id") == F.lit(run_id)).collect()
    if not found:
        raise DataError(f"run {run_id} is not in the runs table at {runs_path}")
    run = found[0].asDict()
    run["details"] = _json(run.get("details"))
    run["source_versions"] = _json(run.get("source_versions"))
    return run


def _previous_run(runs: DataFrame, run: dict[str, Any], previous_run_id: str | None) -> dict[str, Any] | None:
    """``previous_run_id``'s row, else the latest earlier succeeded scoring run that scored rows."""
    from pyspark.sql import functions as F

    if previous_run_id:
        found = runs.where(F.col("run_id") == F.lit(previous_run_id)).collect()
    else:
        found = (
            runs.where(
                F.col("job").isin(*SCORING_JOBS)
                & (F.col("status") == "succeeded")
                & (F.col("rows_scored") > 0)
                & (F.col("started_at") < F.lit(run["started_at"]))
            )
            .orderBy(F.col("started_at").desc())
            .limit(1)
            .collect()
        )
    if not found:
        return None
    previous = found[0].asDict()
    previous["details"] = _json(previous.get("details"))
    return previous


def _throughput(runs: DataFrame, run: dict[str, Any], history: int) -> list[dict[str, Any]]:
    """The last ``history`` runs of the same job up to this one, oldest first, with their speed."""
    from pyspark.sql import functions as F

    rows = (
        runs.where((F.col("job") == F.lit(run["job"])) & (F.col("started_at") <= F.lit(run["started_at"])))
        .orderBy(F.col("started_at").desc())
        .limit(history)
        .collect()
    )
    out = []
    for row in reversed(rows):
        details = _json(row["details"])
        out.append(
            {
                "run_id": row["run_id"],
                "started_at": row["started_at"],
                "status": row["status"],
                "rows_scored": row["rows_scored"],
                "rows_per_second": details.get("rows_per_second"),
                "score_seconds": details.get("score_seconds"),
                "wall_seconds": details.get("wall_seconds"),
            }
        )
    return out


def _reject_counts(spark: SparkSession, path: str, run_id: str) -> list[tuple[str, int, int]]:
    """(reason, rows this run recorded, rows rejected now) per reason; [] without the table."""
    from pyspark.sql import functions as F

    from ecomine.io import delta_io

    if not _exists(spark, path):
        return []
    rows = (
        delta_io.read(spark, path)
        .groupBy("reason")
        .agg(F.sum((F.col("run_id") == F.lit(run_id)).cast("long")).alias("this_run"), F.count(F.lit(1)).alias("all"))
        .orderBy(F.col("this_run").desc(), F.col("all").desc(), "reason")
        .limit(100)
        .collect()
    )
    return [(r["reason"], int(r["this_run"] or 0), int(r["all"])) for r in rows]


def _model(spark: SparkSession, path: str, model_version: str | None) -> dict[str, Any] | None:
    """The models row of ``model_version`` with metrics and base models parsed."""
    from pyspark.sql import functions as F

    from ecomine.io import delta_io

    if not model_version or not _exists(spark, path):
        return None
    found = delta_io.read(spark, path).where(F.col("model_version") == F.lit(model_version)).collect()
    if not found:
        return None
    model = found[0].asDict()
    model["metrics"] = _json(model.get("metrics"))
    model["base_models"] = _json(model.get("base_models"))
    return model


def _drift(
    spark: SparkSession, path: str, run_id: str, previous_run: dict[str, Any] | None, bins: int
) -> tuple[list[Drift], str]:
    """Per probability column of review_scores: this run's histogram against the previous
    run's, and where the rows were read from; ([], "") without the table."""
    from ecomine.io import delta_io

    if not _exists(spark, path):
        return [], ""
    probability_columns = [c for c in delta_io.read(spark, path).columns if c == "p_positive" or c.endswith("_prob")]
    columns = ["p_positive"] * ("p_positive" in probability_columns) + sorted(
        c for c in probability_columns if c != "p_positive"
    )
    current, current_source = _run_histograms(spark, path, run_id, columns, bins)
    reference: dict[str, tuple[list[int], float | None]] = {}
    source = f"this run: {current_source}"
    if previous_run:
        reference, reference_source = _run_histograms(spark, path, previous_run["run_id"], columns, bins)
        source += f"; previous run: {reference_source}"
    edges = [i / bins for i in range(bins + 1)]
    drift = []
    for column in columns:
        counts, mean_current = current.get(column, ([0] * bins, None))
        reference_counts, mean_reference = reference.get(column, (None, None))
        stability = psi(reference_counts, counts) if reference_counts is not None else None
        drift.append(Drift(column, edges, counts, reference_counts, stability, mean_current, mean_reference))
    return drift, source


def _riskiest(spark: SparkSession, path: str, key: str, top_n: int) -> list[dict[str, Any]] | None:
    """The ``top_n`` rows of a risk table (most flagged reviews first, then the highest mean
    fraud score, then ``key``); None when the table does not exist."""
    from pyspark.sql import functions as F

    from ecomine.io import delta_io

    if not _exists(spark, path):
        return None
    order = [F.col("reviews_flagged").desc_nulls_last(), F.col("mean_fraud_score").desc_nulls_last(), key]
    return [r.asDict() for r in delta_io.read(spark, path).orderBy(*order).limit(top_n).collect()]


def _bursts(spark: SparkSession, path: str, top_n: int) -> list[dict[str, Any]] | None:
    """The ``top_n`` rows of ``product_risk`` with a burst z-score, highest ``max_burst_z``
    first (then ``product_id``); None when the table does not exist, [] when no row has one."""
    from pyspark.sql import functions as F

    from ecomine.io import delta_io

    if not _exists(spark, path):
        return None
    df = delta_io.read(spark, path)
    if "max_burst_z" not in df.columns:
        return []
    z = F.col("max_burst_z")
    rows = df.where(z.isNotNull() & ~F.isnan(z)).orderBy(z.desc_nulls_last(), "product_id").limit(top_n).collect()
    return [r.asDict() for r in rows]


def _explanations(spark: SparkSession, path: str, run_id: str, top_n: int) -> list[dict[str, Any]] | None:
    """Up to ``top_n`` explanations of this run; None when the table does not exist."""
    from pyspark.sql import functions as F

    from ecomine.io import delta_io

    if not _exists(spark, path):
        return None
    rows = (
        delta_io.read(spark, path)
        .where(F.col("run_id") == F.lit(run_id))
        .orderBy("selection_reason", "review_id", "task")
        .limit(top_n)
        .collect()
    )
    return [r.asDict(recursive=True) for r in rows]


def _sample_order(column: str):
    """A stable pseudo-random order (hash of the key): the report's samples do not all come
    from one corner of the key space."""
    from pyspark.sql import functions as F

    return [F.xxhash64(column), column]


def _embeddings(spark: SparkSession, path: str) -> dict[str, Any] | None:
    from pyspark.sql import functions as F

    from ecomine.io import delta_io

    if not _exists(spark, path):
        return None
    row = (
        delta_io.read(spark, path)
        .agg(F.count("*").alias("rows"), F.max("dim").alias("dim"), F.max("model_version").alias("model_version"))
        .first()
    )
    return row.asDict()


def _names(spark: SparkSession, catalog_path: str):
    """product_id -> name, source from the catalog table (None when there is none)."""
    from ecomine.io import delta_io

    if not _exists(spark, catalog_path):
        return None
    df = delta_io.read(spark, catalog_path)
    cols = [c for c in ("product_id", "name", "source") if c in df.columns]
    return df.select(*cols).dropDuplicates(["product_id"])


def _similar(spark: SparkSession, path: str, catalog_path: str, top_n: int, per_product: int = 3):
    """``top_n`` products (hash-sampled) with their ``per_product`` nearest neighbours and names."""
    from pyspark.sql import functions as F

    from ecomine.io import delta_io

    if not _exists(spark, path):
        return None
    sim = delta_io.read(spark, path)
    products = [
        r[0] for r in sim.select("product_id").distinct().orderBy(*_sample_order("product_id")).limit(top_n).collect()
    ]
    rows = sim.where(F.col("product_id").isin(products) & (F.col("rank") <= per_product))
    names = _names(spark, catalog_path)
    if names is not None:
        rows = rows.join(
            names.select("product_id", F.col("name").alias("product_name"), "source"), "product_id", "left"
        )
        rows = rows.join(
            names.select(F.col("product_id").alias("similar_product_id"), F.col("name").alias("similar_name")),
            "similar_product_id",
            "left",
        )
    return [r.asDict() for r in rows.orderBy("product_id", "rank").collect()]


def _recommendations(spark: SparkSession, path: str, catalog_path: str, users: int, per_user: int = 5):
    """Counts per source, and ``users`` hash-sampled users' top ``per_user`` with product names."""
    from pyspark.sql import functions as F

    from ecomine.io import delta_io

    if not _exists(spark, path):
        return None
    recs = delta_io.read(spark, path)
    by_source = [
        r.asDict()
        for r in recs.groupBy("source")
        .agg(F.countDistinct("user_id").alias("users"), F.count("*").alias("rows"))
        .orderBy("source")
        .collect()
    ]
    sample_users = [
        r[0] for r in recs.select("user_id").distinct().orderBy(*_sample_order("user_id")).limit(users).collect()
    ]
    rows = recs.where(F.col("user_id").isin(sample_users) & (F.col("rank") <= per_user))
    names = _names(spark, catalog_path)
    if names is not None:
        rows = rows.join(names.select("product_id", F.col("name").alias("product_name")), "product_id", "left")
    sample = [r.asDict() for r in rows.orderBy("user_id", "rank").collect()]
    return {"by_source": by_source, "sample": sample}


def _label_rejects(spark: SparkSession, path: str) -> list[tuple[str, str, int]] | None:
    from ecomine.io import delta_io

    if not _exists(spark, path):
        return None
    rows = delta_io.read(spark, path).groupBy("task", "reason").count().orderBy("task", "reason").collect()
    return [(r["task"], r["reason"], int(r["count"])) for r in rows]


def collect(
    spark: SparkSession,
    storage: StorageConfig,
    tables: TablesConfig,
    run_id: str,
    *,
    previous_run_id: str | None = None,
    top_n: int = 10,
    bins: int = 10,
    history: int = 14,
) -> ReportData:
    """Read what the report shows (bounded aggregates only) for ``run_id`` from the tables
    ``tables`` names under ``storage``."""
    from ecomine.errors import DataError
    from ecomine.io import delta_io

    def path(name: str) -> str:
        return storage.table_path(name)

    runs_path = path(tables.runs)
    if not _exists(spark, runs_path):
        raise DataError(f"no runs table at {runs_path}: nothing to report")
    runs = delta_io.read(spark, runs_path)
    run = _run_row(runs, run_id, runs_path)
    previous_run = _previous_run(runs, run, previous_run_id)
    drift, drift_source = _drift(spark, path(tables.review_scores), run_id, previous_run, bins)
    return ReportData(
        run=run,
        generated_at=datetime.now(timezone.utc),
        tables_root=storage.table_path(""),
        previous_run=previous_run,
        rejects=_reject_counts(spark, path(tables.review_scores_rejects), run_id),
        model=_model(spark, path(tables.models), run.get("model_version")),
        drift=drift,
        drift_source=drift_source,
        fraud_reviewers=_riskiest(spark, path(tables.reviewer_risk), "reviewer_id", top_n),
        fraud_products=_riskiest(spark, path(tables.product_risk), "product_id", top_n),
        fraud_bursts=_bursts(spark, path(tables.product_risk), top_n),
        explanations=_explanations(spark, path(tables.review_explanations), run_id, top_n),
        throughput=_throughput(runs, run, history),
        embeddings=_embeddings(spark, path(tables.product_embeddings)),
        similar=_similar(spark, path(tables.similar_products), path(tables.catalog), min(top_n, 6)),
        recommendations=_recommendations(spark, path(tables.recommendations), path(tables.catalog), 3),
        label_rejects=_label_rejects(spark, path(tables.catalog_label_rejects)),
    )


# --------------------------------------------------------------------------- rendering


@dataclass(frozen=True)
class Badge:
    """A table cell drawn as ``<span class="css" title="title">text</span>`` (no title when None)."""

    text: str
    css: str
    title: str | None = None


@dataclass(frozen=True)
class Token:
    token: str
    colour: str  # CSS background
    title: str  # the attribution, signed


@dataclass(frozen=True)
class Tokens:
    """A table cell of highlighted words (an explanation's top tokens)."""

    items: tuple[Token, ...]


def _text(v: Any) -> str:
    return "" if v is None else str(v)


def _duration(run: dict[str, Any]) -> float | None:
    started, ended = run.get("started_at"), run.get("ended_at")
    if isinstance(started, datetime) and isinstance(ended, datetime):
        return (ended - started).total_seconds()
    return None


def _summary_facts(data: ReportData) -> list[list[Any]]:
    run = data.run
    status = _text(run.get("status"))
    versions = ", ".join(f"{k} v{v}" for k, v in sorted(run["source_versions"].items()))
    return [
        ["run id", run.get("run_id")],
        ["job", run.get("job")],
        ["status", Badge(status, f"status {status}")],
        ["started (UTC)", run.get("started_at")],
        ["ended (UTC)", run.get("ended_at")],
        ["model version", run.get("model_version")],
        ["source table versions", versions or None],
        ["rows selected by", run["details"].get("selection")],
        ["model trained by this run", _promotion_text(run["details"].get("promotion"))],
        ["previous scoring run", (data.previous_run or {}).get("run_id")],
    ]


def _promotion_text(promotion: dict[str, Any] | None) -> str | None:
    """What became of the model this run trained: promoted, or rejected with the reason."""
    if not promotion:
        return None
    return f"{promotion.get('model_version')}: {promotion.get('status')} ({promotion.get('reason')})"


def _model_facts(model: dict[str, Any]) -> list[list[Any]]:
    encoders = ", ".join(f"{k}: {v}" for k, v in sorted(model["base_models"].items()))
    return [
        ["version", model.get("model_version")],
        ["status", model.get("status")],
        ["trained (UTC)", model.get("created_at")],
        ["trained by run", model.get("run_id")],
        ["base encoders", encoders or None],
        ["training data", f"{model.get('source_table')} v{model.get('source_version')}"],
    ]


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float))


def _metric_rows(metrics: dict[str, Any]) -> list[list[Any]]:
    """language, task, metric, deployed method (the hybrid, or the fine-tuned model alone),
    baseline, difference (coloured), test rows: the first two metrics each task has."""
    from ecomine.promotion import deployed_metrics

    rows = []
    for lang in sorted(metrics):
        per_method = metrics[lang] or {}
        finetuned, baseline = deployed_metrics(per_method), per_method.get("tfidf_logreg") or {}
        for task in sorted(set(finetuned) | set(baseline)):
            ours, theirs = finetuned.get(task) or {}, baseline.get(task) or {}
            keys = [
                k
                for k in ("qwk", "r2", "macro_f1", "accuracy", "mae", "rmse")
                if _is_number(ours.get(k)) or _is_number(theirs.get(k))
            ]
            for k in keys[:2]:
                a, b = ours.get(k), theirs.get(k)
                delta = a - b if _is_number(a) and _is_number(b) else None
                lower_is_better = k in ("mae", "rmse")
                good = delta is not None and ((delta < 0) if lower_is_better else (delta > 0))
                css = "better" if good else ("worse" if delta not in (None, 0) else "")
                shown = Badge(_fmt(delta), css) if delta is not None else None
                rows.append([lang, task, k, a, b, shown, ours.get("n", theirs.get("n"))])
    return rows


def _drift_view(data: ReportData) -> tuple[list[list[Any]], list[Chart], str]:
    """The drift table's rows, one histogram per column, and the note above them."""
    rows, charts = [], []
    for col in data.drift:
        title = f"{col.column}: this run vs previous run" if col.reference is not None else f"{col.column}: this run"
        charts.append(histogram_chart(col.edges, col.current, col.reference, title))
        n_reference = sum(col.reference) if col.reference is not None else None
        rows.append(
            [
                col.column,
                sum(col.current),
                col.mean_current,
                n_reference,
                col.mean_reference,
                col.psi,
                psi_label(col.psi),
            ]
        )
    previous = data.previous_run["run_id"] if data.previous_run else None
    if previous:
        note = f"Compared with run {previous}."
    else:
        note = "No earlier scoring run to compare with: PSI is not available."
    if sum(sum(col.current) for col in data.drift) == 0:
        note += " This run scored no new rows."
    return rows, charts, note


def _reasons(v: Any) -> str:
    return ", ".join(v) if isinstance(v, (list, tuple)) else _fmt(v)


def _sources(v: Any) -> list[str]:
    """A risk row's ``sources`` as a list of strings ([] when absent: tables written before it)."""
    return [str(x) for x in v if x is not None] if isinstance(v, (list, tuple)) else []


def _is_simulated(row: dict[str, Any]) -> bool:
    return any(x.startswith(SIMULATED_PREFIX) for x in _sources(row.get("sources")))


def _source_cell(row: dict[str, Any]) -> Badge | str | None:
    """Where a risk row's reviews come from: a "simulated" badge (the sources as its
    tooltip) when any source is simulated, else the sources joined; None without any."""
    sources = _sources(row.get("sources"))
    if _is_simulated(row):
        return Badge("simulated", "sim", ", ".join(sources))
    return ", ".join(sources) or None


def _risk_cell(row: dict[str, Any], column: str) -> Any:
    if column == "top_reasons":
        return _reasons(row.get(column))
    if column == "sources":
        return _source_cell(row)
    return row.get(column)


def _risk_rows(rows: list[dict[str, Any]] | None, columns: tuple[str, ...]) -> list[list[Any]] | None:
    """Table rows of a risk table's ``columns`` (``top_reasons`` joined, ``sources`` as a
    source cell); None stays None. Columns a row lacks (older tables) show as '–'."""
    if rows is None:
        return None
    return [[_risk_cell(r, c) for c in columns] for r in rows]


def _fraud_note(data: ReportData) -> str | None:
    """The note on simulated rows, when the fraud section shows any."""
    shown = [*(data.fraud_reviewers or []), *(data.fraud_products or []), *(data.fraud_bursts or [])]
    return SIMULATED_NOTE if any(_is_simulated(r) for r in shown) else None


def _tokens(tokens: list[dict[str, Any]] | None) -> Tokens:
    """Words coloured by attribution: blue towards the prediction, red against; stronger = more opaque."""
    if not tokens:
        return Tokens(())
    top = max(abs(float(t["attribution"])) for t in tokens) or 1.0
    items = []
    for t in tokens:
        a = float(t["attribution"])
        alpha = 0.15 + 0.6 * abs(a) / top
        colour = f"rgba(47,111,223,{alpha:.2f})" if a >= 0 else f"rgba(192,57,43,{alpha:.2f})"
        items.append(Token(t["token"], colour, f"{a:+.4f}"))
    return Tokens(tuple(items))


def _explanation_rows(explanations: list[dict[str, Any]] | None) -> list[list[Any]] | None:
    if explanations is None:
        return None
    keys = ("review_id", "task", "predicted_label", "prob", "selection_reason")
    return [[r.get(k) for k in keys] + [_tokens(r.get("top_tokens"))] for r in explanations]


def _throughput_chart(data: ReportData) -> Chart | None:
    history = data.throughput
    if not history:
        return None
    highlight = next((i for i, h in enumerate(history) if h["run_id"] == data.run["run_id"]), None)
    return bars_chart(
        [h["run_id"] for h in history],
        [h["rows_per_second"] for h in history],
        highlight,
        f"rows/s, last {len(history)} {data.run.get('job')} runs",
        "rows/s",
    )


def _view(data: ReportData) -> dict[str, Any]:
    """What the template needs besides ``data``: table rows, charts and notes."""
    run, details = data.run, data.run["details"]
    drift_rows, drift_charts, drift_note = _drift_view(data)
    model_version = run.get("model_version")
    return {
        "data": data,
        "run": run,
        "title": f"ecomine run {run.get('run_id')}",
        "summary_kpis": [
            ("rows in", run.get("rows_in"), 2),
            ("scored", run.get("rows_scored"), 2),
            ("rejected", run.get("rows_rejected"), 2),
            ("written", run.get("rows_written"), 2),
            ("seconds", _duration(run), 1),
        ],
        "summary_facts": _summary_facts(data),
        "model_missing": f"Model {model_version} is not in the models table."
        if model_version
        else "This run used no model.",
        "model_facts": _model_facts(data.model) if data.model else [],
        "metric_rows": _metric_rows(data.model["metrics"]) if data.model else [],
        "drift_rows": drift_rows,
        "drift_charts": drift_charts,
        "drift_note": drift_note,
        "reviewer_rows": _risk_rows(
            data.fraud_reviewers,
            (
                "reviewer_id",
                "reviews",
                "reviews_flagged",
                "mean_fraud_score",
                "max_fraud_score",
                "top_reasons",
                "sources",
            ),
        ),
        "product_rows": _risk_rows(
            data.fraud_products,
            (
                "product_id",
                "reviews",
                "reviews_flagged",
                "mean_fraud_score",
                "mean_rating",
                "mean_rating_unflagged",
                "top_reasons",
                "sources",
            ),
        ),
        "burst_rows": _risk_rows(
            data.fraud_bursts,
            ("product_id", "reviews", "max_day_reviews", "max_burst_z", "reviews_flagged", "sources"),
        ),
        "fraud_note": _fraud_note(data),
        "explanation_rows": _explanation_rows(data.explanations),
        "throughput_kpis": [
            ("rows / second", details.get("rows_per_second"), 2),
            ("scoring seconds", details.get("score_seconds"), 1),
            ("wall seconds", details.get("wall_seconds"), 1),
        ],
        "throughput_chart": _throughput_chart(data),
        **_products_view(data),
    }


def _products_view(data: ReportData) -> dict[str, Any]:
    """The "Products" section: embeddings, similar products, recommendations, label rejects."""
    similar_rows = None
    if data.similar is not None:
        similar_rows = [
            [
                r.get("product_name") or r["product_id"],
                r.get("source"),
                r["rank"],
                r.get("similar_name") or r["similar_product_id"],
                r["similarity"],
            ]
            for r in data.similar
        ]
    rec_rows = rec_sources = None
    if data.recommendations is not None:
        rec_sources = [[s["source"], s["users"], s["rows"]] for s in data.recommendations["by_source"]]
        rec_rows = [
            [r["user_id"], r["rank"], r.get("product_name") or r["product_id"], r["score"], r["source"]]
            for r in data.recommendations["sample"]
        ]
    emb = data.embeddings
    return {
        "embedding_kpis": [("products", emb["rows"], 0), ("dimensions", emb["dim"], 0)] if emb else None,
        "embedding_version": emb["model_version"] if emb else None,
        "similar_rows": similar_rows,
        "rec_source_rows": rec_sources,
        "rec_rows": rec_rows,
        "label_reject_rows": [list(r) for r in data.label_rejects] if data.label_rejects is not None else None,
    }


@functools.lru_cache(maxsize=1)
def _template() -> jinja2.Template:
    """The page template (package data: ecomine/derived/templates/), autoescaped."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("ecomine.derived", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(fmt=_fmt, px=_px, text=_text)
    env.tests.update(badge=lambda v: isinstance(v, Badge), tokens=lambda v: isinstance(v, Tokens))
    return env.get_template(TEMPLATE)


def render(data: ReportData) -> str:
    """The HTML page for ``data``: one self-contained document, no scripts, no external URLs."""
    return _template().render(**_view(data))


def render_run_report(
    spark: SparkSession,
    storage: StorageConfig,
    tables: TablesConfig,
    run_id: str,
    *,
    previous_run_id: str | None = None,
    top_n: int = 10,
) -> str:
    """The HTML report of ``run_id`` (see the module docstring for its sections)."""
    return render(collect(spark, storage, tables, run_id, previous_run_id=previous_run_id, top_n=top_n))


# --------------------------------------------------------------------------- writing

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def reports_dir(storage: StorageConfig) -> str:
    """``<storage.root>/_reports``."""
    return storage.table_path("_reports")


def write_report(
    html_text: str, directory: str | os.PathLike[str], run_id: str, spark: SparkSession | None = None
) -> str:
    """Write ``<directory>/<run_id>.html`` and return its location. Local paths (and
    ``file:`` URIs) are written atomically (temp file + rename); other file systems
    (s3a://, abfss://, ...) through Spark's Hadoop file system (``io/fs.py``: pass
    ``spark``). ``run_id`` must be a plain file name."""
    if not _SAFE_ID.match(run_id):
        raise ValueError(f"run id {run_id!r} is not usable as a file name")
    target = fs.join(str(directory), f"{run_id}.html")
    fs.write_text(spark, target, html_text)
    return str(fs.local_path(target)) if fs.is_local(target) else target
