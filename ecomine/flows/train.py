"""Driver-side training run: Delta -> bounded pandas -> fine-tune each sub-model -> artifact + models row.

An artifact holds one fine-tuned encoder per review language (``model.encoders``, heads
``model.tasks``) and, when ``model.catalog_tasks`` is set, one catalog model. Each is a
``SubModel`` of an entity (``flows/entities.py``) and goes through the same steps:
labelled rows prepared exactly as the scoring flow prepares them, a split by a salted
hash of the entity's key (``ecomine.split``: a row's split never changes across nightly
retrains), at most ``model.train.max_samples_per_language`` training rows (picked by a
second hash), fine-tune, held-out metrics next to a TF-IDF + linear baseline fit on the
same training rows, and the current model's metrics on the same test rows for the
promotion rule.

Catalog regression tasks with a ``valid_range`` take target values outside [lo, hi] (and
non-finite ones) as no label (``labels.task_targets``); the run reports them: counts per
task and reason in the manifest (``manifest["catalog"]["label_rejects"]``) and the rows
MERGEd into the ``catalog_label_rejects`` table (``catalog_label_rejects``,
``write_label_rejects``), so bad source values are seen rather than silently trained on.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import reduce
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession, Window
from pyspark.sql import functions as F

from ecomine import promotion, split
from ecomine.config import Config, TaskConfig
from ecomine.errors import ModelArtifactError
from ecomine.flows.entities import CATALOG_ENTITY, REVIEWS_ENTITY, Entity
from ecomine.flows.score import with_key_checks
from ecomine.io import delta_io, fs, tables
from ecomine.labels import ordinal_values, regression_issue, task_targets
from ecomine.metrics import classification_report, ordinal_report, regression_report
from ecomine.model import artifact
from ecomine.model.encoders import needs_query_prefix, resolve_base
from ecomine.model.predict import ANY, Predictor

__all__ = [
    "LABEL_REJECTS_COLUMNS",
    "LABEL_REJECTS_DDL",
    "MODELS_DDL",
    "SubModel",
    "budget_share",
    "catalog_label_rejects",
    "current_model",
    "label_reject_counts",
    "record_model",
    "submodels",
    "summarize_metrics",
    "train",
    "write_label_rejects",
]

log = logging.getLogger(__name__)

MAX_LABELLED_ROWS = 500_000  # hard bound on rows brought to the driver per entity and training run
MODELS_DDL = (
    "model_version string, created_at timestamp, run_id string, artifact_path string, status string, "
    "base_models string, source_table string, source_version long, metrics string, config string"
)
LABEL_REJECTS_COLUMNS = ["product_id", "task", "column", "value", "reason"]
LABEL_REJECTS_DDL = (
    "product_id string, task string, column string, value string, reason string, run_id string, detected_at timestamp"
)


@dataclass(frozen=True)
class SubModel:
    """One fine-tuned encoder of an artifact: a review language's model, or the catalog model.

    ``name``: its folder in the artifact and its key in the manifest's metrics (the language
    code, or ``catalog``); ``language``: the value of the prepared rows' ``language`` column
    it reads (``ANY`` for the catalog); ``baseline_language``: how the TF-IDF baseline
    tokenizes; ``test_cap``: at most this many hash-picked test rows (None: all)."""

    name: str
    entity: Entity
    tasks: tuple[TaskConfig, ...]
    encoder: str
    language: str
    baseline_language: str
    test_cap: int | None


def submodels(cfg: Config) -> list[SubModel]:
    """The sub-models ``cfg`` asks for: one per review language, then the catalog model."""
    m = cfg.model
    out = [SubModel(lang, REVIEWS_ENTITY, m.tasks, spec, lang, lang, None) for lang, spec in sorted(m.encoders.items())]
    if m.catalog_tasks:
        cap = max(2000, m.train.max_samples_per_language)
        out.append(
            SubModel("catalog", CATALOG_ENTITY, m.catalog_tasks, m.catalog_encoder, ANY, m.catalog_language, cap)
        )
    return out


def task_entry(t: TaskConfig) -> dict[str, Any]:
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


# --------------------------------------------------------------------------- label rejects


def _value_text(v: object) -> str:
    """A rejected source value as the table stores it: numbers in ``%.10g`` (1.56e+38, inf), else ``str``."""
    try:
        return f"{float(v):.10g}"
    except (TypeError, ValueError):
        return str(v)


def catalog_label_rejects(
    rows: pd.DataFrame, tasks: Sequence[TaskConfig], key: str = CATALOG_ENTITY.key
) -> pd.DataFrame:
    """The target values ``tasks`` do not train on although the row has one, one row per
    (key, task): ``LABEL_REJECTS_COLUMNS`` (product_id, task, column, value as text, reason
    from ``labels.regression_issue``: ``not_a_number``, ``not_finite``, ``below_valid_range``,
    ``above_valid_range``). Only regression tasks with a ``valid_range`` reject; the
    others keep their behaviour (a non-number is silently no label). Pure pandas, so the
    training flow and a test call it on the labelled rows the same way."""
    frames = []
    for t in tasks:
        if t.kind != "regression" or t.valid_range is None:
            continue
        if t.target not in rows.columns or key not in rows.columns:
            raise KeyError(f"catalog_label_rejects: rows lack {key!r} or {t.target!r}; have {sorted(rows.columns)}")
        reasons = rows[t.target].map(lambda v, r=t.valid_range: regression_issue(v, r))
        bad = reasons.notna()
        if bad.any():
            frames.append(
                pd.DataFrame(
                    {
                        "product_id": rows.loc[bad, key].astype(str).to_numpy(),
                        "task": t.name,
                        "column": t.target,
                        "value": rows.loc[bad, t.target].map(_value_text).to_numpy(),
                        "reason": reasons[bad].to_numpy(),
                    }
                )
            )
    if not frames:
        return _no_label_rejects()
    out = pd.concat(frames, ignore_index=True).drop_duplicates(["product_id", "task"])
    return out.sort_values(["task", "product_id"], kind="stable").reset_index(drop=True)[LABEL_REJECTS_COLUMNS]


def _no_label_rejects() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="object") for c in LABEL_REJECTS_COLUMNS})


def label_reject_counts(rejects: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Rejected labels per task and reason (``{"popularity": {"above_valid_range": 28}}``), for the manifest."""
    out: dict[str, dict[str, int]] = {}
    for (task, reason), n in rejects.groupby(["task", "reason"]).size().items():
        out.setdefault(str(task), {})[str(reason)] = int(n)
    return out


def write_label_rejects(spark: SparkSession, cfg: Config, rejects: pd.DataFrame, run_id: str) -> dict[str, int]:
    """MERGE ``rejects`` into ``catalog_label_rejects`` on (product_id, task), stamped with
    ``run_id`` and ``detected_at``; a row is updated only when its column, value or reason
    changed, so a rerun on the same data commits nothing. Nothing to write: no commit."""
    if rejects.empty:
        log.info("catalog label rejects: none")
        return {"inserted": 0, "updated": 0, "deleted": 0}
    path = cfg.table("catalog_label_rejects")
    stamped = rejects[LABEL_REJECTS_COLUMNS].assign(run_id=run_id, detected_at=datetime.now(timezone.utc))
    df = spark.createDataFrame(stamped, schema=LABEL_REJECTS_DDL)
    metrics = delta_io.merge_into(
        spark,
        path,
        df,
        ["product_id", "task"],
        compare=["column", "value", "reason"],
        metadata={"run_id": run_id},
    )
    log.info("catalog label rejects: %d rows MERGEd into %s: %s", len(rejects), path, metrics)
    return metrics


# --------------------------------------------------------------------------- labelled rows


def load_labelled(
    spark: SparkSession, cfg: Config, entity: Entity, tasks: tuple[TaskConfig, ...]
) -> tuple[pd.DataFrame | None, int | None]:
    """Labelled, scorable rows of ``entity`` (at most ``MAX_LABELLED_ROWS``, by key), prepared
    as the scoring flow prepares them, and the Delta version read; (None, None) when the
    source table does not exist. A key with different texts or with different labels is
    ambiguous and left out (scoring rejects the first kind as ``duplicate_<key>``)."""
    path = cfg.table(entity.source)
    version = delta_io.table_version(spark, path)
    rows = tables.read_source(spark, cfg, entity.source, version)
    if rows is None:
        log.warning("no %s table at %s: no %s model", entity.source, path, entity.name)
        return None, None
    targets = sorted({t.target for t in tasks})
    has_label = reduce(lambda a, b: a | b, [F.col(c).isNotNull() for c in targets])
    section = {"languages": sorted(cfg.model.encoders), "inputs": list(tasks[0].inputs)}
    key = entity.key
    pdf = (
        rows.transform(entity.prepare, scoring=cfg.scoring, section=section)
        .transform(with_key_checks, key=key)
        .filter(F.col("reject_reason").isNull() & has_label)
        .select(key, "clean_text", "language", *targets)
        .dropDuplicates()
        .withColumn("_copies", F.count(F.lit(1)).over(Window.partitionBy(key)))
        .filter(F.col("_copies") == 1)
        .drop("_copies")
        .orderBy(key)
        .limit(MAX_LABELLED_ROWS)
        .toPandas()
    )
    log.info("labelled %s rows read from %s@v%s: %d", entity.name, path, version, len(pdf))
    return pdf, version


def _splits(rows: pd.DataFrame, key: str, cfg: Config, test_cap: int | None) -> tuple[pd.DataFrame, ...]:
    """(train, validation, test) rows by the salted hash of ``key``; train and validation
    capped, hash-picked."""
    s, cap = cfg.model.split, cfg.model.train.max_samples_per_language
    part = pd.Series([split.assign(k, s.salt, s.validation, s.test) for k in rows[key]], index=rows.index)
    pick = pd.Series([split.bucket(k, s.salt + "/pick") for k in rows[key]], index=rows.index)
    rows = rows.assign(_split=part, _pick=pick)

    def take(name: str, n: int | None) -> pd.DataFrame:
        chosen = rows[rows["_split"] == name]
        return chosen.sort_values("_pick").head(n) if n is not None else chosen

    return take(split.TRAIN, cap), take(split.VALIDATION, validation_cap(cap)), take(split.TEST, test_cap)


def validation_cap(train_cap: int) -> int:
    """Validation rows per sub-model: a quarter of the training cap, within [200, 1000] (they
    pick the best epoch and the fusion weights; more would only cost evaluation time)."""
    return min(1000, max(200, train_cap // 4))


# --------------------------------------------------------------------------- fit one sub-model


@dataclass
class Fitted:
    """A fine-tuned sub-model's manifest record and metrics (its own, TF-IDF's, and the
    current model's on the same test rows, or None)."""

    record: dict[str, Any]
    metrics: dict[str, Any]
    current_metrics: dict[str, Any] | None


def _task_data(sub: SubModel, frame: pd.DataFrame):
    from ecomine.model.finetune import TaskData

    return TaskData(
        frame["clean_text"].tolist(), {t.name: task_targets(t, frame[t.target].tolist()) for t in sub.tasks}
    )


def fit_submodel(
    sub: SubModel,
    rows: pd.DataFrame,
    cfg: Config,
    staging: Path,
    current: Predictor | None,
    budget_s: float | None = None,
) -> Fitted | None:
    """Fine-tune ``sub`` on its labelled ``rows`` into ``staging/<name>`` (within ``budget_s``
    seconds of training when given: ``FineTuner.fit``); None when it has no training rows."""
    from ecomine.model.finetune import FineTuner

    tr, va, te = _splits(rows, sub.entity.key, cfg, sub.test_cap)
    if tr.empty:
        log.warning("%s: no labelled training rows; no %s model", sub.name, sub.name)
        return None
    train_d, val_d, test_d = _task_data(sub, tr), _task_data(sub, va), _task_data(sub, te)
    log.info(
        "%s: train %d / validation %d / test %d rows, tasks %s, base %s",
        sub.name, len(tr), len(va), len(te), [t.name for t in sub.tasks], sub.encoder,
    )  # fmt: skip
    tuner = FineTuner(
        resolve_base(sub.encoder),
        sub.tasks,
        cfg.model.max_length,
        cfg.model.train,
        prefix=needs_query_prefix(sub.encoder),
    )
    tuner.fit(train_d, val_d, budget_s=budget_s)
    tr, train_d = tr.head(tuner.train_rows_), train_d.head(tuner.train_rows_)  # the TF-IDF model sees the same rows
    tuner.save(staging / sub.name)
    metrics, fusion, n_features = _tfidf_and_hybrid(sub, cfg, tuner, train_d, val_d, test_d, staging)
    log.info("%s test metrics: %s", sub.name, metrics)
    current_metrics = None
    if current is not None and sub.language in current.languages:
        current_metrics = evaluate_predictor(current, sub, test_d, cfg.model.train.eval_batch_size)
    record = {
        "base_model": sub.encoder,
        "base_model_dir": str(resolve_base(sub.encoder)),
        "prefix": needs_query_prefix(sub.encoder),
        "trained_tasks": tuner.trained_tasks_,
        "n_train": len(tr),
        "n_validation": len(va),
        "n_test": len(te),
        "train_seconds": tuner.train_seconds_,
        "train_samples_per_second": tuner.samples_per_second_,
        "stop_reason": tuner.stop_reason_,
        "epochs": tuner.epochs_,
        "schedule": tuner.schedule_,
        "embeddings_frozen": tuner.embeddings_frozen_,
        "device": tuner.device_,
        "history": tuner.history_,
        "method": cfg.model.method,
        "fusion": fusion,
        "tfidf_features": n_features,
    }
    return Fitted(record, metrics, current_metrics)


def _tfidf_and_hybrid(sub: SubModel, cfg: Config, tuner: Any, train_d, val_d, test_d, staging: Path):
    """The TF-IDF + linear model fit on the same training rows (strengths picked on validation),
    the fusion weight per task fit on validation rows (``model.hybrid``), and the held-out
    metrics of all three on the test rows; ({"finetuned", "tfidf_logreg", and with ``model.method:
    hybrid`` "hybrid": metrics per task}, fusion record per task, tf-idf features).
    With ``model.method: hybrid`` the TF-IDF model is saved into the sub-model's folder, so the
    predictor computes the same fused outputs on executors."""
    from ecomine.model import hybrid
    from ecomine.model.baseline import selection_score
    from ecomine.model.finetune import report_from_raw, transform_target

    tasks = [t for t in sub.tasks if t.name in tuner.trained_tasks_]
    specs = {t.name: tuner.task_specs_[t.name] for t in tasks}

    def model_scale(data) -> dict[str, np.ndarray]:
        return {t.name: transform_target(t, data.labels[t.name]) for t in tasks}

    heads = hybrid.TfidfHeads.fit(
        sub.baseline_language,
        train_d.texts,
        [{"name": t.name, "kind": t.kind, "n_classes": len(t.classes)} for t in tasks],
        model_scale(train_d),
        val_d.texts,
        model_scale(val_d),
        seed=cfg.model.train.seed,
    )
    raw_ft = {"validation": tuner.predict_raw(val_d.texts), "test": tuner.predict_raw(test_d.texts)}
    raw_tf = {"validation": heads.predict_raw(val_d.texts), "test": heads.predict_raw(test_d.texts)}
    finetuned, baseline, deployed, fusion = {}, {}, {}, {}
    for t in tasks:
        report = report_from_raw(t, specs[t.name], test_d.labels[t.name], raw_ft["test"][t.name])
        if report is not None:
            finetuned[t.name] = report
        if t.name not in heads.tasks:
            continue
        spec = specs[t.name]
        tf_val, tf_test = (hybrid.fuse(spec, 0.0, raw_ft[s][t.name], raw_tf[s][t.name]) for s in ("validation", "test"))
        y_val = val_d.labels[t.name]
        if t.kind == "regression":
            y_val = (transform_target(t, y_val) - spec["mean"]) / spec["std"]
        k = len(t.classes)
        weight, scores = hybrid.fit_weight(
            lambda raw, y, kind=t.kind, k=k: selection_score(kind, k, y, raw),
            y_val,
            raw_ft["validation"][t.name],
            tf_val,
            seed=cfg.model.train.seed,
        )
        heads.set_weight(t.name, weight)
        fusion[t.name] = {"weight_finetuned": weight, **scores}
        fused = hybrid.fuse(spec, weight, raw_ft["test"][t.name], raw_tf["test"][t.name])
        for out, raw in ((baseline, tf_test), (deployed, fused)):
            report = report_from_raw(t, spec, test_d.labels[t.name], raw)
            if report is not None:
                out[t.name] = report
        log.info("%s/%s: fusion weight on the fine-tuned model %.2f (validation %s)", sub.name, t.name, weight, scores)
    metrics = {"finetuned": finetuned, "tfidf_logreg": baseline}
    if cfg.model.method == "hybrid":
        heads.save(staging / sub.name / hybrid.DIR)
        metrics["hybrid"] = {**finetuned, **deployed}  # a task without a tf-idf model is the fine-tuned one
    return metrics, fusion, heads.n_features


def evaluate_predictor(pred: Predictor, sub: SubModel, data, batch_size: int) -> dict[str, Any]:
    """Held-out metrics of a published model (``pred``) on ``data``, computed from its scoring
    outputs like ``FineTuner.evaluate``; tasks it has no output for are left out."""
    from ecomine.model.finetune import transform_target

    out = pred.predict(data.texts, [sub.language] * len(data.texts), batch_size=batch_size)
    report: dict[str, Any] = {}
    for t in sub.tasks:
        y = data.labels[t.name]
        if t.kind == "regression":
            col, z = f"{t.name}_value", transform_target(t, y)
            keep = ~np.isnan(z)
            if col in out and keep.any() and not out[col][keep].isna().any():
                p = out[col].to_numpy(dtype=float)[keep]
                report[t.name] = regression_report(z[keep], np.log1p(p) if t.log else p)
            continue
        col, keep = f"{t.name}_label", y >= 0
        if col not in out or not keep.any() or out[col][keep].isna().any():
            continue
        idx = out[col][keep].map(list(t.classes).index).to_numpy()
        if t.kind == "ordinal":
            expected = out[f"{t.name}_expected"].to_numpy(dtype=float)[keep]
            values = ordinal_values(t.classes)
            report[t.name] = ordinal_report(y[keep], idx, len(t.classes), expected=expected, values=values)
        else:
            report[t.name] = classification_report(y[keep], idx, len(t.classes))
    return report


# --------------------------------------------------------------------------- train


def _current_predictors(
    spark: SparkSession, current: dict[str, Any] | None, entities: set[str]
) -> dict[str, Predictor]:
    """The current model's predictor per entity scope it has (for the promotion comparison)."""
    out: dict[str, Predictor] = {}
    local = artifact.fetch(spark, current["artifact_path"]) if current is not None else None
    for scope in sorted(entities) if current is not None else ():
        try:
            out[scope] = Predictor(local, device="cpu", scope=scope)
        except ModelArtifactError:  # the current model has no sub-model for this entity
            continue
    return out


def budget_share(budget: float, spent: float, weight_total: float, weight_left: float, weight: float) -> float:
    """A sub-model's seconds of ``model.train.time_budget_s`` (``budget``): its ``weight``
    (labelled tasks) of what is left for the sub-models still to train (``weight_left``,
    itself included). What is left is the budget minus what the earlier ones ``spent``, but
    never less than those sub-models' own shares of the budget: an earlier sub-model's time
    left unspent goes to the later ones, its overrun is not taken from them."""
    if weight <= 0 or weight_total <= 0:
        return 0.0
    left = max(budget - spent, budget * weight_left / weight_total)
    return left * weight / weight_left


def labelled_tasks(sub: SubModel, rows: pd.DataFrame) -> int:
    """How many of ``sub``'s tasks have at least one label in ``rows`` (a review language's
    model carries every review task's head, but e.g. only English rows have star labels)."""
    from ecomine.model.finetune import has_label

    return sum(bool(has_label(t.kind, task_targets(t, rows[t.target].tolist())).any()) for t in sub.tasks)


def _fit_all(
    spark: SparkSession, cfg: Config, staging: Path, current: dict[str, Any] | None
) -> tuple[dict, dict, dict, pd.DataFrame]:
    """Fit every sub-model; (fitted by name, source (table, version) by entity, current metrics
    by name, the catalog's rejected labels: ``catalog_label_rejects``)."""
    subs = submodels(cfg)
    predictors = _current_predictors(spark, current, {s.entity.name for s in subs})
    fitted: dict[str, Fitted] = {}
    sources: dict[str, dict[str, Any]] = {}
    frames: dict[str, pd.DataFrame] = {}
    rejects = _no_label_rejects()
    for entity in dict.fromkeys(s.entity for s in subs):
        mine = [s for s in subs if s.entity == entity]
        frame, version = load_labelled(spark, cfg, entity, tuple(t for s in mine for t in s.tasks))
        if frame is None or frame.empty:
            continue
        sources[entity.name] = {"table": cfg.table(entity.source), "version": version}
        if entity == CATALOG_ENTITY:
            rejects = catalog_label_rejects(frame, cfg.model.catalog_tasks)
            log.info(
                "catalog: %d labelled rows, rejected labels per task and reason: %s",
                len(frame),
                label_reject_counts(rejects) or "none",
            )
        for sub in mine:
            frames[sub.name] = frame[frame["language"] == sub.language]
    todo = [s for s in subs if s.name in frames]
    weights = {s.name: labelled_tasks(s, frames[s.name]) for s in todo}
    total = cfg.model.train.time_budget_s
    spent, weight_total = 0.0, sum(weights.values())
    weight_left = weight_total
    for sub in todo:
        budget = budget_share(total, spent, weight_total, weight_left, weights[sub.name]) if total > 0 else None
        fit = fit_submodel(sub, frames[sub.name], cfg, staging, predictors.get(sub.entity.name), budget)
        weight_left -= weights[sub.name]
        if fit is not None:
            fitted[sub.name] = fit
            spent += fit.record["train_seconds"]
    current_metrics = {n: f.current_metrics for n, f in fitted.items() if f.current_metrics is not None}
    return fitted, sources, current_metrics, rejects


def _manifest(
    cfg: Config,
    run_id: str,
    created: datetime,
    fitted: dict[str, Fitted],
    sources: dict,
    label_rejects: dict[str, dict[str, int]] | None = None,
) -> dict[str, Any]:
    """The artifact manifest: tasks, sub-models with their fit records, metrics, data and config;
    ``label_rejects`` (``label_reject_counts``) goes to the catalog section."""
    languages = {n: f.record for n, f in fitted.items() if n != "catalog"}
    manifest: dict[str, Any] = {
        "created_at": created.isoformat(),
        "run_id": run_id,
        "tasks": [task_entry(t) for t in cfg.model.tasks],
        "max_length": cfg.model.max_length,
        "languages": languages,
        "metrics": {n: f.metrics for n, f in fitted.items()},
        "source": {**sources["reviews"], "split": vars(cfg.model.split)},
        "config": {"model": cfg.to_dict()["model"]},
        "format": "ecomine-artifact/1",
        "method": cfg.model.method,
    }
    if "catalog" in fitted:
        tasks = cfg.model.catalog_tasks
        manifest["catalog"] = {
            "tasks": [task_entry(t) for t in tasks],
            "inputs": list(tasks[0].inputs),
            **fitted["catalog"].record,
            "source": {**sources["catalog"], "key": CATALOG_ENTITY.key},
            "label_rejects": label_rejects or {},
        }
    return manifest


def train(spark: SparkSession, cfg: Config, run_id: str) -> dict[str, Any]:
    """Fit every sub-model, publish one artifact, record it in the models table as
    ``current`` when the promotion rule accepts it (else ``rejected``, with the reason)."""
    t0 = time.time()
    current = current_model(spark, cfg)
    staging = artifact.staging_dir(cfg.storage.artifacts_path)
    fitted, sources, current_metrics, label_rejects = _fit_all(spark, cfg, staging, current)
    write_label_rejects(spark, cfg, label_rejects, run_id)  # reported even when no model gets published
    if not any(n != "catalog" for n in fitted):
        raise ValueError(f"no language in model.encoders {sorted(cfg.model.encoders)} has labelled training rows")
    created = datetime.now(timezone.utc)
    version = created.strftime("v%Y%m%dT%H%M%SZ") + "-" + run_id.rsplit("-", 1)[-1]
    manifest = _manifest(cfg, run_id, created, fitted, sources, label_reject_counts(label_rejects))
    method = cfg.model.method
    candidate = {name: promotion.deployed_metrics(m, method) for name, m in manifest["metrics"].items()}
    baselines = {name: m.get("tfidf_logreg") or {} for name, m in manifest["metrics"].items()}
    decision = promotion.decide(
        candidate,
        current_metrics if current is not None else None,
        cfg.model.promotion_margin,
        baselines=baselines,
        baseline_margin=cfg.model.baseline_margin,
    )
    if current is not None:
        decision["current_model"] = current["model_version"]
    manifest["promotion"] = decision
    uri = artifact.publish(staging, cfg.storage.artifacts_path, version, manifest, spark=spark)
    status = "current" if decision["promote"] else "rejected"
    record_model(spark, cfg, manifest | {"model_version": version}, uri, status=status)
    if decision["promote"] and current is not None:
        retire = {**current, "status": "retired"}
        delta_io.upsert_rows(
            spark, cfg.table("models"), [retire], MODELS_DDL, ["model_version"], metadata={"run_id": run_id}
        )
    log.info("model %s published at %s in %.0fs; %s: %s", version, uri, time.time() - t0, status, decision["reason"])
    return artifact.read_manifest(artifact.fetch(spark, uri), verify=False) | {"artifact_path": uri}


def record_model(spark: SparkSession, cfg: Config, manifest: dict[str, Any], path: str, status: str) -> None:
    """One ``models`` row; ``path`` is stored fully qualified (``file:/...``, ``s3a://...``)."""
    row = {
        "model_version": manifest["model_version"],
        "created_at": datetime.fromisoformat(manifest["created_at"]),
        "run_id": manifest["run_id"],
        "artifact_path": fs.qualify_local(path),
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
        methods = (("fine-tuned", "finetuned"), ("tf-idf", "tfidf_logreg"), ("hybrid", "hybrid"))
        for method, per_task in ((label, m.get(key) or {}) for label, key in methods):
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
