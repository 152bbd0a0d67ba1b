"""Driver-side training run: Delta -> bounded pandas -> fine-tune per language -> artifact + models row.

Splits are by a salted hash of review_id (``ecomine.split``), so a review's split never
changes across nightly retrains. Each language's model is trained on at most
``model.train.max_samples_per_language`` training rows (picked by a second hash, so the
pick is deterministic too) and evaluated on every held-out test row of its language,
next to a TF-IDF + logistic regression baseline fit on the same training rows.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from ecomine import promotion, split
from ecomine.config import Config
from ecomine.flows.score import with_prepared_text
from ecomine.io import delta_io, tables
from ecomine.labels import class_indices
from ecomine.model import artifact
from ecomine.model.baseline import tfidf_baseline
from ecomine.model.encoders import needs_query_prefix, resolve_base

log = logging.getLogger(__name__)

MAX_LABELLED_ROWS = 500_000  # hard bound on rows brought to the driver per training run
MODELS_DDL = (
    "model_version string, created_at timestamp, run_id string, artifact_path string, status string, "
    "base_models string, source_table string, source_version long, metrics string, config string"
)


def _target_column(target: str) -> str:
    return {"rating": "rating", "label": "label"}.get(target, target)


def load_labelled(spark: SparkSession, cfg: Config) -> tuple[pd.DataFrame, int | None]:
    """Labelled, scorable reviews of the configured languages (bounded), and the Delta version read."""
    path = cfg.table("reviews")
    version = delta_io.table_version(spark, path)
    df = tables.read_reviews(spark, cfg, version=version).transform(
        with_prepared_text, min_chars=cfg.scoring.min_text_chars, languages=list(cfg.model.encoders)
    )
    targets = sorted({_target_column(t.target) for t in cfg.model.tasks})
    has_label = None
    for c in targets:
        cond = F.col(c).isNotNull()
        has_label = cond if has_label is None else (has_label | cond)
    pdf = (
        df.filter(F.col("reject_reason").isNull() & has_label)
        .select("review_id", "clean_text", "language", *targets)
        .dropDuplicates(["review_id"])
        .orderBy("review_id")
        .limit(MAX_LABELLED_ROWS)
        .toPandas()
    )
    log.info("labelled rows read from %s@v%s: %d", path, version, len(pdf))
    return pdf, version


def split_frame(pdf: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    s = cfg.model.split
    out = pdf.copy()
    out["split"] = [split.assign(k, s.salt, s.validation, s.test) for k in out["review_id"]]
    out["pick"] = [split.bucket(k, s.salt + "/pick") for k in out["review_id"]]
    return out


def _task_data(frame: pd.DataFrame, cfg: Config):
    from ecomine.model.finetune import TaskData

    labels = {t.name: class_indices(t, frame[_target_column(t.target)].tolist()) for t in cfg.model.tasks}
    return TaskData(texts=frame["clean_text"].tolist(), labels=labels)


def train(spark: SparkSession, cfg: Config, run_id: str) -> dict[str, Any]:
    """Train every language that has labels; publish one artifact; record it in the models table."""
    from ecomine.model.finetune import FineTuner

    t0 = time.time()
    pdf, source_version = load_labelled(spark, cfg)
    frame = split_frame(pdf, cfg)
    cap = cfg.model.train.max_samples_per_language
    current = current_model(spark, cfg)
    current_pred = None
    current_metrics: dict[str, Any] = {}
    if current is not None:
        from ecomine.model.predict import Predictor

        current_pred = Predictor(current["artifact_path"], device="cpu")
    staging = artifact.staging_dir(cfg.storage.artifacts)
    languages: dict[str, Any] = {}
    metrics: dict[str, Any] = {}
    for lang, spec in sorted(cfg.model.encoders.items()):
        rows = frame[frame["language"] == lang]
        tr = rows[rows["split"] == split.TRAIN].sort_values("pick").head(cap)
        va = rows[rows["split"] == split.VALIDATION].sort_values("pick").head(max(200, cap // 4))
        te = rows[rows["split"] == split.TEST]
        if tr.empty:
            log.warning("language %s: no labelled training rows; its reviews will be rejected as unsupported", lang)
            continue
        train_d, val_d, test_d = _task_data(tr, cfg), _task_data(va, cfg), _task_data(te, cfg)
        base_dir = resolve_base(spec)
        log.info("language %s: train %d / validation %d / test %d rows, base %s", lang, len(tr), len(va), len(te), spec)
        tuner = FineTuner(
            base_dir, cfg.model.tasks, cfg.model.max_length, cfg.model.train, prefix=needs_query_prefix(spec)
        )
        tuner.fit(train_d, val_d)
        test_metrics = tuner.evaluate(test_d)
        baseline = {}
        for t in cfg.model.tasks:
            if t.name in tuner.trained_tasks_ and (test_d.labels[t.name] >= 0).any():
                baseline[t.name] = tfidf_baseline(
                    train_d.texts,
                    train_d.labels[t.name],
                    test_d.texts,
                    test_d.labels[t.name],
                    len(t.classes),
                    lang,
                    cfg.model.train.seed,
                )
        tuner.save(staging / lang)
        if current is not None and lang in current_pred.languages:
            # The current model on exactly the same held-out rows, for the promotion rule.
            current_metrics[lang] = _evaluate_predictor(current_pred, test_d, te, lang, cfg)
        languages[lang] = _fit_record(spec, tuner, len(tr), len(va), len(te))
        metrics[lang] = {"finetuned": test_metrics, "tfidf_logreg": baseline}
        log.info("language %s test metrics: fine-tuned %s | tf-idf %s", lang, test_metrics, baseline)
    if not languages:
        raise ValueError(f"no language in model.encoders {sorted(cfg.model.encoders)} has labelled training rows")
    catalog_section, catalog_metrics, catalog_current = train_catalog(spark, cfg, staging, current)
    if catalog_section is not None:
        metrics["catalog"] = catalog_metrics
        if catalog_current is not None:
            current_metrics["catalog"] = catalog_current
    created = datetime.now(timezone.utc)
    version = created.strftime("v%Y%m%dT%H%M%SZ") + "-" + run_id.rsplit("-", 1)[-1]
    manifest = {
        "created_at": created.isoformat(),
        "run_id": run_id,
        "tasks": [
            {"name": t.name, "kind": t.kind, "classes": list(t.classes), "positive": t.positive, "target": t.target}
            for t in cfg.model.tasks
        ],
        "max_length": cfg.model.max_length,
        "languages": languages,
        "metrics": metrics,
        "source": {"table": cfg.table("reviews"), "version": source_version, "split": vars(cfg.model.split)},
        "config": {"model": cfg.to_dict()["model"]},
        "format": "ecomine-artifact/1",
    }
    if catalog_section is not None:
        manifest["catalog"] = catalog_section
    candidate = {lang: m["finetuned"] for lang, m in metrics.items()}
    decision = promotion.decide(candidate, current_metrics if current is not None else None, cfg.model.promotion_margin)
    if current is not None:
        decision["current_model"] = current["model_version"]
    manifest["promotion"] = decision
    path = artifact.publish(staging, cfg.storage.artifacts, version, manifest)
    status = "current" if decision["promote"] else "rejected"
    record_model(spark, cfg, manifest | {"model_version": version}, str(path), status=status)
    if decision["promote"] and current is not None:
        retire = {**current, "status": "retired"}
        retire["created_at"] = current["created_at"]
        delta_io.upsert_rows(
            spark, cfg.table("models"), [retire], MODELS_DDL, ["model_version"], metadata={"run_id": run_id}
        )
    log.info("model %s published at %s in %.0fs; %s: %s", version, path, time.time() - t0, status, decision["reason"])
    return artifact.read_manifest(path, verify=False) | {"artifact_path": str(path)}


def _fit_record(spec: str, tuner: Any, n_train: int, n_validation: int, n_test: int) -> dict[str, Any]:
    """What the manifest records about one fine-tuned sub-model (base model, rows, speed, history)."""
    return {
        "base_model": spec,
        "base_model_dir": str(resolve_base(spec)),
        "prefix": needs_query_prefix(spec),
        "trained_tasks": tuner.trained_tasks_,
        "n_train": n_train,
        "n_validation": n_validation,
        "n_test": n_test,
        "train_seconds": tuner.train_seconds_,
        "train_samples_per_second": tuner.samples_per_second_,
        "stop_reason": tuner.stop_reason_,
        "device": tuner.device_,
        "history": tuner.history_,
    }


def _task_entry(t: Any) -> dict[str, Any]:
    """A task as the manifest records it (what the predictor needs to name and decode outputs)."""
    return {
        "name": t.name,
        "kind": t.kind,
        "classes": list(t.classes),
        "positive": t.positive,
        "target": t.target,
        "inputs": list(t.inputs),
        "log": t.log,
    }


def load_catalog_labelled(spark: SparkSession, cfg: Config) -> tuple[pd.DataFrame | None, int | None]:
    """Catalog rows with at least one catalog-task target (bounded), with their model input
    text, and the Delta version read; (None, None) when there is no catalog table.
    A product_id that appears with different input texts is ambiguous and left out (the
    scoring side rejects it as ``duplicate_product_id``)."""
    from functools import reduce

    from ecomine.labels import input_texts

    path = cfg.table("catalog")
    if not delta_io.table_exists(spark, path):
        log.warning("catalog tasks configured but there is no catalog table at %s: no catalog model", path)
        return None, None
    version = delta_io.table_version(spark, path)
    tasks = cfg.model.catalog_tasks
    inputs = list(tasks[0].inputs)
    targets = sorted({t.target for t in tasks})
    has_label = reduce(lambda a, b: a | b, [F.col(c).isNotNull() for c in targets])
    df = tables.read_catalog(spark, cfg, version=version).filter(F.col("product_id").isNotNull())
    pdf = (
        df.filter(has_label)
        .select("product_id", *sorted(set(inputs) | set(targets)))
        .dropDuplicates()
        .orderBy("product_id")
        .limit(MAX_LABELLED_ROWS)
        .toPandas()
    )
    pdf = pdf[~pdf["product_id"].duplicated(keep=False)].reset_index(drop=True)
    pdf["clean_text"] = input_texts({c: pdf[c].tolist() for c in inputs}, inputs)
    pdf = pdf[pdf["clean_text"].str.len() >= cfg.scoring.min_text_chars].reset_index(drop=True)
    log.info("labelled catalog rows read from %s@v%s: %d", path, version, len(pdf))
    return pdf, version


def train_catalog(
    spark: SparkSession, cfg: Config, staging, current: dict[str, Any] | None
) -> tuple[dict[str, Any] | None, dict[str, Any], dict[str, Any] | None]:
    """Fine-tune the catalog model (``model.catalog_tasks`` on ``model.catalog_encoder``)
    into ``staging/catalog``. Split by the same salted hash, of product_id; at most
    ``max_samples_per_language`` training rows and ``max(2000, that)`` test rows, both
    hash-picked. Returns (manifest section, {finetuned, tfidf_logreg} test metrics, the
    current model's catalog metrics on the same test rows or None)."""
    from ecomine.labels import task_targets
    from ecomine.model.baseline import tfidf_task_baseline
    from ecomine.model.finetune import FineTuner, TaskData

    tasks = cfg.model.catalog_tasks
    if not tasks:
        return None, {}, None
    pdf, version = load_catalog_labelled(spark, cfg)
    if pdf is None or pdf.empty:
        return None, {}, None
    s, cap = cfg.model.split, cfg.model.train.max_samples_per_language
    pdf["split"] = [split.assign(k, s.salt, s.validation, s.test) for k in pdf["product_id"]]
    pdf["pick"] = [split.bucket(k, s.salt + "/pick") for k in pdf["product_id"]]
    tr = pdf[pdf["split"] == split.TRAIN].sort_values("pick").head(cap)
    va = pdf[pdf["split"] == split.VALIDATION].sort_values("pick").head(max(200, cap // 4))
    te = pdf[pdf["split"] == split.TEST].sort_values("pick").head(max(2000, cap))
    if tr.empty:
        log.warning("catalog: no labelled training rows; no catalog model")
        return None, {}, None

    def data(frame: pd.DataFrame) -> TaskData:
        return TaskData(
            frame["clean_text"].tolist(), {t.name: task_targets(t, frame[t.target].tolist()) for t in tasks}
        )

    train_d, val_d, test_d = data(tr), data(va), data(te)
    enc = cfg.model.catalog_encoder
    log.info(
        "catalog: train %d / validation %d / test %d rows, tasks %s, base %s",
        len(tr),
        len(va),
        len(te),
        [t.name for t in tasks],
        enc,
    )
    tuner = FineTuner(resolve_base(enc), tasks, cfg.model.max_length, cfg.model.train, prefix=needs_query_prefix(enc))
    tuner.fit(train_d, val_d)
    finetuned = tuner.evaluate(test_d)
    baseline = {
        t.name: tfidf_task_baseline(
            t,
            train_d.texts,
            train_d.labels[t.name],
            test_d.texts,
            test_d.labels[t.name],
            cfg.model.catalog_language,
            cfg.model.train.seed,
        )
        for t in tasks
        if t.name in tuner.trained_tasks_
    }
    tuner.save(staging / "catalog")
    log.info("catalog test metrics: fine-tuned %s | tf-idf %s", finetuned, baseline)
    current_metrics = None
    if current is not None:
        current_metrics = _evaluate_catalog(current["artifact_path"], tasks, test_d, cfg)
    section = {
        "tasks": [_task_entry(t) for t in tasks],
        "inputs": list(tasks[0].inputs),
        **_fit_record(enc, tuner, len(tr), len(va), len(te)),
        "source": {"table": cfg.table("catalog"), "version": version, "key": "product_id"},
    }
    return section, {"finetuned": finetuned, "tfidf_logreg": baseline}, current_metrics


def _evaluate_catalog(artifact_path: str, tasks, data, cfg: Config) -> dict[str, Any] | None:
    """The catalog metrics of the model at ``artifact_path`` on ``data`` (None when it has no
    catalog model), computed from its scoring outputs like ``FineTuner.evaluate``."""
    from ecomine.errors import ModelArtifactError
    from ecomine.labels import ordinal_values
    from ecomine.metrics import classification_report, ordinal_report, regression_report
    from ecomine.model.finetune import transform_target
    from ecomine.model.predict import ANY, CATALOG, Predictor

    try:
        pred = Predictor(artifact_path, device="cpu", scope=CATALOG)
    except ModelArtifactError:
        return None
    out = pred.predict(data.texts, [ANY] * len(data.texts), batch_size=cfg.model.train.eval_batch_size)
    report: dict[str, Any] = {}
    for t in tasks:
        y = data.labels[t.name]
        if t.kind == "regression":
            col = f"{t.name}_value"
            z = transform_target(t, y)
            keep = ~np.isnan(z)
            if col in out and keep.any() and not out[col][keep].isna().any():
                p = out[col].to_numpy(dtype=float)[keep]
                report[t.name] = regression_report(z[keep], np.log1p(p) if t.log else p)
            continue
        col = f"{t.name}_label"
        keep = y >= 0
        if col not in out or not keep.any() or out[col][keep].isna().any():
            continue
        idx = out[col][keep].map(list(t.classes).index).to_numpy()
        if t.kind == "ordinal":
            report[t.name] = ordinal_report(
                y[keep],
                idx,
                len(t.classes),
                expected=out[f"{t.name}_expected"].to_numpy(dtype=float)[keep],
                values=ordinal_values(t.classes),
            )
        else:
            report[t.name] = classification_report(y[keep], idx, len(t.classes))
    return report


def _evaluate_predictor(pred, data, frame: pd.DataFrame, lang: str, cfg: Config) -> dict[str, dict[str, float]]:
    from ecomine.metrics import classification_report

    out = pred.predict(data.texts, [lang] * len(data.texts), batch_size=cfg.model.train.eval_batch_size)
    report = {}
    for t in cfg.model.tasks:
        y = data.labels[t.name]
        keep = y >= 0
        col = f"{t.name}_label"
        if col not in out or not keep.any() or out[col][keep].isna().any():
            continue
        pred_idx = out[col][keep].map(list(t.classes).index).to_numpy()
        report[t.name] = classification_report(y[keep], pred_idx, len(t.classes))
    return report


def record_model(spark: SparkSession, cfg: Config, manifest: dict[str, Any], path: str, status: str) -> None:
    row = {
        "model_version": manifest["model_version"],
        "created_at": datetime.fromisoformat(manifest["created_at"]),
        "run_id": manifest["run_id"],
        "artifact_path": path,
        "status": status,
        "base_models": json.dumps({k: v["base_model"] for k, v in manifest["languages"].items()}),
        "source_table": manifest["source"]["table"],
        "source_version": manifest["source"]["version"],
        "metrics": json.dumps(manifest["metrics"], default=float),
        "config": json.dumps(manifest["config"]),
    }
    delta_io.upsert_rows(
        spark, cfg.table("models"), [row], MODELS_DDL, ["model_version"], metadata={"run_id": manifest["run_id"]}
    )


def current_model(spark: SparkSession, cfg: Config) -> dict[str, Any] | None:
    """The newest model with status 'current' in the models table, or None."""
    path = cfg.table("models")
    if not delta_io.table_exists(spark, path):
        return None
    row = (
        delta_io.read(spark, path)
        .filter(F.col("status") == "current")
        .orderBy(F.col("created_at").desc(), F.col("model_version").desc())
        .first()
    )
    return row.asDict() if row else None


def summarize_metrics(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """Flat rows (language or "catalog", task, method, headline metric name and value,
    accuracy, macro_f1, n) for printing and the README."""
    out = []
    for lang, m in metrics.items():
        for method, per_task in (("fine-tuned", m.get("finetuned") or {}), ("tf-idf", m.get("tfidf_logreg") or {})):
            for task, r in per_task.items():
                head = promotion.headline_metric(r)
                out.append(
                    {
                        "language": lang,
                        "task": task,
                        "method": method,
                        "metric": head,
                        "value": r.get(head),
                        **{k: r.get(k) for k in ("accuracy", "macro_f1", "n")},
                    }
                )
    return out
