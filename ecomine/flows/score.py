"""Spark side of scoring: DataFrame -> DataFrame transforms, chained with ``df.transform``.

This is where a review's scores are computed:

    reviews -> with_prepared_text   (clean text, language, reject reason, parsed rating: pandas UDF on text.py)
            -> split_rejects        (unscorable rows -> rejects with a reason; nothing vanishes)
            -> select_changed       (incremental: only new/edited reviews or a new model version)
            -> with_scores          (iterator pandas UDF: model loaded once per worker, length-sorted batches)

and a catalog product's (``model.catalog_tasks``, table ``catalog_scores``):

    catalog -> with_catalog_text    (the task inputs joined: labels.compose_text; reject reason)
            -> with_scores(scope="catalog")
"""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from ecomine import text as textlib
from ecomine.labels import parse_rating
from ecomine.model.predict import output_columns

PREPARED_TYPE = (
    "clean_text string, text_cut boolean, language string, reject_reason string, rating int, rating_issue string"
)


def with_prepared_text(df: DataFrame, min_chars: int, languages: list[str], max_chars: int = 20000) -> DataFrame:
    """Adds ``clean_text`` (cut to ``max_chars``; ``text_cut`` says so), ``language`` (given,
    else detected), ``reject_reason``, a parsed ``rating`` (int 1-5 or null) and
    ``rating_issue``. Rows whose language has no model get ``unsupported_language``."""
    supported = set(languages)

    @F.pandas_udf(PREPARED_TYPE)
    def prepare(text: pd.Series, lang: pd.Series, rating: pd.Series) -> pd.DataFrame:
        full = [textlib.clean_text(t) if t is not None else None for t in text]
        cleaned = [c[:max_chars] if c is not None else None for c in full]
        cut = [c is not None and len(c) > max_chars for c in full]
        langs = [textlib.normalize_language(g) or textlib.detect_language(c) for g, c in zip(lang, cleaned)]
        reasons = []
        for raw, c, lg in zip(text, cleaned, langs):
            r = textlib.reject_reason(c, raw is None, min_chars)
            if r is None and lg not in supported:
                r = textlib.REJECT_LANGUAGE
            reasons.append(r)
        parsed = [parse_rating(v) for v in rating]
        return pd.DataFrame(
            {
                "clean_text": cleaned,
                "text_cut": cut,
                "language": langs,
                "reject_reason": reasons,
                "rating": pd.array([p[0] for p in parsed], dtype="Int32"),
                "rating_issue": [p[1] for p in parsed],
            }
        )

    prepared = prepare(F.col("text"), F.col("language"), F.col("rating"))
    return (
        df.withColumn("_p", prepared)
        .select(
            *[c for c in df.columns if c not in ("language", "rating")],
            F.col("rating").alias("rating_raw"),
            *[
                F.col(f"_p.{c}").alias(c)
                for c in ("clean_text", "text_cut", "language", "reject_reason", "rating", "rating_issue")
            ],
        )
        .withColumn("text_sha256", F.sha2(F.coalesce(F.col("clean_text"), F.lit("")), 256))
    )


def with_catalog_text(df: DataFrame, inputs: list[str], min_chars: int, max_chars: int = 20000) -> DataFrame:
    """Adds ``clean_text`` (the ``inputs`` columns joined by ``labels.compose_text``, cleaned
    like review text, cut to ``max_chars``), ``text_cut``, ``text_sha256`` and
    ``reject_reason`` (``null_key``, ``empty_text``/``too_short``, or
    ``duplicate_product_id`` when one product_id has different texts)."""
    cols = list(inputs)

    @F.pandas_udf("clean_text string, text_cut boolean, reject_reason string")
    def compose(*series: pd.Series) -> pd.DataFrame:
        from ecomine.labels import input_texts

        full = input_texts(dict(zip(cols, series)), cols)
        return pd.DataFrame(
            {
                "clean_text": [c[:max_chars] for c in full],
                "text_cut": [len(c) > max_chars for c in full],
                "reject_reason": [textlib.reject_reason(c, False, min_chars) for c in full],
            }
        )

    out = df.withColumn("_c", compose(*[F.col(c) for c in cols]))
    out = out.select(*df.columns, *[F.col(f"_c.{c}").alias(c) for c in ("clean_text", "text_cut", "reject_reason")])
    out = out.withColumn("text_sha256", F.sha2(F.col("clean_text"), 256))
    w = Window.partitionBy("product_id")
    return out.withColumn(
        "reject_reason",
        F.when(F.col("product_id").isNull(), F.lit("null_product_id"))
        .when(F.size(F.collect_set("text_sha256").over(w)) > 1, F.lit("duplicate_product_id"))
        .otherwise(F.col("reject_reason")),
    )


def with_duplicate_check(df: DataFrame) -> DataFrame:
    """A review_id that appears more than once with different texts is ambiguous: every copy
    is rejected (``duplicate_review_id``). Identical copies collapse to one row later."""
    w = Window.partitionBy("review_id")
    n_texts = F.size(F.collect_set("text_sha256").over(w))
    return df.withColumn(
        "reject_reason",
        F.when(F.col("review_id").isNull(), F.lit(textlib.REJECT_NULL_KEY))
        .when(n_texts > 1, F.lit(textlib.REJECT_DUPLICATE_KEY))
        .otherwise(F.col("reject_reason")),
    )


def split_rejects(df: DataFrame) -> tuple[DataFrame, DataFrame]:
    """(scorable rows, one per review_id) and (rejected rows with reason)."""
    scorable = df.filter(F.col("reject_reason").isNull()).dropDuplicates(["review_id"])
    rejects = df.filter(F.col("reject_reason").isNotNull())
    return scorable, rejects


def select_changed(
    scorable: DataFrame, existing_scores: DataFrame | None, model_version: str, same_model_only: bool = True
) -> DataFrame:
    """Incremental selection: rows never scored or whose text changed; with ``same_model_only``
    also rows scored by another model version (rescore policy ``all_on_model_change``)."""
    if existing_scores is None:
        return scorable
    done = existing_scores.select("review_id", "text_sha256", "model_version")
    if same_model_only:
        done = done.filter(F.col("model_version") == F.lit(model_version))
    return scorable.join(done.drop("model_version"), on=["review_id", "text_sha256"], how="left_anti")


class _Progress:
    """Rows scored by one Spark task, logged to the executor's stderr at most once a minute
    (and at the end), so a long scoring stage is never silent."""

    def __init__(self, what: str, every_s: float = 60.0):
        import time

        self._time = time.monotonic
        self.what, self.every_s, self.rows = what, every_s, 0
        self.t0 = self.last = self._time()

    def _log(self, final: bool) -> None:
        import sys

        from pyspark import TaskContext

        ctx = TaskContext.get()
        part = ctx.partitionId() if ctx is not None else "-"
        dt = max(self._time() - self.t0, 1e-9)
        sys.stderr.write(
            f"ecomine: {self.what}: partition {part}: {self.rows:,} rows {'done' if final else 'so far'} "
            f"in {dt:.0f}s ({self.rows / dt:.1f} rows/s)\n"
        )

    def add(self, n: int) -> None:
        self.rows += n
        if self._time() - self.last >= self.every_s:
            self.last = self._time()
            self._log(final=False)

    def done(self) -> None:
        if self.rows:
            self._log(final=True)


def with_scores(
    df: DataFrame,
    artifact_path: str,
    tasks: list[dict],
    batch_size: int,
    device_pref: str = "auto",
    num_threads: int = 0,
    precision: str = "fp32",
    scope: str = "reviews",
) -> DataFrame:
    """Adds one column per task output (``<task>_label``, ``<task>_prob``, ...) plus
    ``n_tokens``, ``truncated``, from one forward pass per row of ``clean_text`` through the
    artifact's model for ``language`` (``scope="catalog"``: the catalog model, ``tasks`` its tasks)."""
    cols = output_columns(tasks)
    schema = ", ".join(f"{c} {t}" for c, t in cols)

    @F.pandas_udf(schema)
    def score(batches: Iterator[tuple[pd.Series, pd.Series]]) -> Iterator[pd.DataFrame]:
        from ecomine.model.device import choose_device, spark_task_cpus, spark_task_gpus
        from ecomine.model.predict import get_predictor

        device = choose_device(device_pref, spark_task_gpus())
        threads = num_threads or spark_task_cpus()
        predictor = get_predictor(
            artifact_path, device=device, num_threads=threads, precision=precision, scope=scope
        )  # once per worker
        progress = _Progress(f"{scope} scoring on {device}, {precision}")
        for texts, langs in batches:
            yield predictor.predict(texts.tolist(), langs.tolist(), batch_size=batch_size)
            progress.add(len(texts))
        progress.done()

    scored = df.withColumn("_s", score(F.col("clean_text"), F.col("language")))
    return scored.select(*df.columns, *[F.col(f"_s.{c}").alias(c) for c, _ in cols])


def with_positive_probability(df: DataFrame, tasks: list[dict]) -> DataFrame:
    """``p_positive``: the model's probability that the text praises (sentiment head where it
    has output, else the rating head's P(top class)); input to the fraud signals."""
    probs = [
        F.col(f"{t['name']}_prob")
        for t in sorted(tasks, key=lambda t: t["name"] != "sentiment")
        if t["kind"] == "binary"
    ]
    return df.withColumn("p_positive", F.coalesce(*probs) if probs else F.lit(None).cast("double"))
