"""The classical baselines every quality claim is compared with, trained on the same split
as the fine-tuned model:

* ``TfidfModel``: TF-IDF (word 1-2-grams + char_wb 2-4-grams) + a linear model: logistic
  regression for binary, multiclass and ordinal tasks (the ordinal label is the most
  probable class, as for the fine-tuned head), ridge regression for regression tasks.
* ``LinearTaskModel`` on ``embed_texts`` output: the frozen pretrained encoder's
  mean-pooled embeddings (standardized) + the same linear models.

Both pick their regularization strength on validation rows when given several
candidates and validation data (by macro-F1, QWK or R^2 as the fine-tuner does).

Chinese has no spaces, so for 'zh' the word analyser runs on jieba tokens when jieba is
installed and falls back to character n-grams only otherwise (said in the report).
Targets follow ``labels.task_targets``: class indices with -1 = no label, floats with
NaN = no label; such rows are left out of fitting.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ecomine.config import TaskConfig
from ecomine.labels import ordinal_values
from ecomine.metrics import (
    classification_report,
    macro_f1,
    ordinal_report,
    quadratic_weighted_kappa,
    r2,
    regression_report,
)
from ecomine.model.finetune import has_label, transform_target
from ecomine.model.hybrid import vectorizer

__all__ = ["LinearTaskModel", "TfidfModel", "embed_texts", "selection_score", "tfidf_task_baseline"]

log = logging.getLogger(__name__)


def selection_score(kind: str, n_classes: int, y: np.ndarray, raw: np.ndarray) -> float:
    """Macro-F1 (binary, multiclass), QWK (ordinal) or R^2 (regression) of raw outputs
    (class probabilities or values) against targets; NaN targets / -1 labels are skipped."""
    keep = has_label(kind, y)
    if kind == "regression":
        return r2(y[keep], raw[keep])
    pred = raw[keep].argmax(1)
    if kind == "ordinal":
        return quadratic_weighted_kappa(y[keep], pred, n_classes)
    return macro_f1(y[keep], pred, n_classes)


class LinearTaskModel:
    """Logistic regression (class kinds) or ridge regression on a feature matrix.

    ``strengths``: candidate C (logistic regression, larger = weaker regularization) or
    alpha (ridge, larger = stronger). With more than one and validation rows given to
    ``fit``, each candidate is fit on the training rows and the one scoring best on
    validation is kept (``strength_``, ``validation_scores_``); otherwise the first.
    ``scale``: standardize dense features first (for embeddings; not for sparse TF-IDF)."""

    def __init__(
        self, kind: str, n_classes: int = 0, strengths: Sequence[float] = (4.0,), scale: bool = False, seed: int = 42
    ):
        self.kind = kind
        self.n_classes = n_classes
        self.strengths = tuple(strengths)
        self.scale = scale
        self.seed = seed

    def _make(self, strength: float):
        from sklearn.linear_model import LogisticRegression, Ridge

        if self.kind == "regression":
            return Ridge(alpha=strength, random_state=self.seed)
        return LogisticRegression(C=strength, max_iter=2000, random_state=self.seed)

    def fit(self, X, y: np.ndarray, X_val=None, y_val: np.ndarray | None = None) -> LinearTaskModel:
        keep = has_label(self.kind, y)
        X_fit, y_fit = X[keep], np.asarray(y)[keep]
        self.scaler_ = None
        if self.scale:
            from sklearn.preprocessing import StandardScaler

            self.scaler_ = StandardScaler().fit(X_fit)
            X_fit = self.scaler_.transform(X_fit)
        candidates = self.strengths if (X_val is not None and y_val is not None) else self.strengths[:1]
        self.validation_scores_: dict[float, float] = {}
        best = None
        for strength in candidates:
            model = self._make(strength).fit(X_fit, y_fit)
            self.model_ = model
            if len(candidates) == 1:
                best = (strength, model)
                break
            score = selection_score(self.kind, self.n_classes, np.asarray(y_val), self.predict_raw(X_val))
            self.validation_scores_[strength] = score
            log.info("%s strength %g: validation %.4f", type(model).__name__, strength, score)
            if best is None or score > self.validation_scores_[best[0]]:
                best = (strength, model)
        self.strength_, self.model_ = best
        return self

    def predict_raw(self, X) -> np.ndarray:
        """Class probabilities ``(n, n_classes)`` (columns for classes absent from the
        training rows are 0), or predicted values ``(n,)`` for regression."""
        if self.scaler_ is not None:
            X = self.scaler_.transform(X)
        if self.kind == "regression":
            return np.asarray(self.model_.predict(X), dtype=float)
        probs = self.model_.predict_proba(X)
        out = np.zeros((probs.shape[0], self.n_classes))
        out[:, self.model_.classes_.astype(int)] = probs
        return out


class TfidfModel:
    """TF-IDF word + char n-grams (jieba words for 'zh') + ``LinearTaskModel``.

    ``fit(texts, y, val_texts, val_y)`` fits the vectorizer on the labelled training
    texts; learned state: ``vectorizer_``, ``linear_``, ``train_seconds_``."""

    def __init__(
        self,
        kind: str,
        language: str,
        n_classes: int = 0,
        strengths: Sequence[float] | None = None,
        seed: int = 42,
        max_features: int = 200_000,
    ):
        self.kind = kind
        self.language = language
        self.n_classes = n_classes
        self.strengths = strengths
        self.seed = seed
        self.max_features = max_features

    def fit(
        self,
        texts: Sequence[str],
        y: np.ndarray,
        val_texts: Sequence[str] | None = None,
        val_y: np.ndarray | None = None,
    ) -> TfidfModel:
        t0 = time.time()
        keep = has_label(self.kind, y)
        texts = [t for t, k in zip(texts, keep, strict=True) if k]
        self.vectorizer_ = vectorizer(self.language, self.max_features)
        X = self.vectorizer_.fit_transform(texts)
        log.info("tf-idf (%s): %d rows x %d features in %.0fs", self.language, X.shape[0], X.shape[1], time.time() - t0)
        strengths = self.strengths or ((1.0, 3.0, 10.0) if self.kind == "regression" else (4.0,))
        X_val = self.vectorizer_.transform(val_texts) if val_texts is not None and val_y is not None else None
        self.linear_ = LinearTaskModel(self.kind, self.n_classes, strengths, seed=self.seed).fit(
            X, np.asarray(y)[keep], X_val, val_y
        )
        self.train_seconds_ = round(time.time() - t0, 2)
        return self

    def predict_raw(self, texts: Sequence[str]) -> np.ndarray:
        return self.linear_.predict_raw(self.vectorizer_.transform(texts))


def embed_texts(
    base_dir: str | Path,
    texts: Sequence[str],
    max_length: int,
    prefix: str = "",
    batch_size: int = 64,
    device: str = "cpu",
) -> np.ndarray:
    """Mean-pooled last hidden states ``(n, hidden)`` of the pretrained encoder at
    ``base_dir`` (no fine-tuning), in input order; texts truncated to ``max_length`` tokens."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from ecomine.model.network import mean_pool, pad_batch

    tokenizer = AutoTokenizer.from_pretrained(str(base_dir))
    encoder = AutoModel.from_pretrained(str(base_dir)).to(device).eval()
    ids = tokenizer([prefix + t for t in texts], truncation=True, max_length=max_length, padding=False)["input_ids"]
    order = np.argsort([len(x) for x in ids], kind="stable")
    out = np.zeros((len(texts), int(encoder.config.hidden_size)), dtype=np.float32)
    t0 = time.time()
    with torch.inference_mode():
        for n_done, start in enumerate(range(0, len(order), batch_size)):
            rows = order[start : start + batch_size]
            batch_ids, mask = pad_batch([ids[i] for i in rows], tokenizer.pad_token_id)
            mask = mask.to(device)
            hidden = encoder(input_ids=batch_ids.to(device), attention_mask=mask).last_hidden_state
            out[rows] = mean_pool(hidden, mask).float().cpu().numpy()
            if n_done % 20 == 19:
                n_embedded = start + len(rows)
                log.info("embedded %d/%d texts, %.1f texts/s", n_embedded, len(texts), n_embedded / (time.time() - t0))
    return out


def tfidf_task_baseline(
    task: TaskConfig,
    train_texts: Sequence[str],
    train_y: np.ndarray,
    test_texts: Sequence[str],
    test_y: np.ndarray,
    language: str,
    seed: int = 42,
) -> dict[str, float]:
    """The TF-IDF baseline of any task kind, reported like ``FineTuner.evaluate``:
    accuracy / macro-F1 (binary, multiclass), plus within-one accuracy, MAE and QWK
    (ordinal), or R^2 / RMSE / MAE on the model's scale (regression, ``log(1 + y)`` for
    ``log`` tasks; targets are source values as ``labels.task_targets`` gives them).
    Adds the fit time."""
    t0 = time.time()
    train_y, test_y = np.asarray(train_y), np.asarray(test_y)
    if task.kind == "regression":
        train_y, test_y = transform_target(task, train_y), transform_target(task, test_y)
    model = TfidfModel(task.kind, language, len(task.classes), seed=seed).fit(list(train_texts), train_y)
    keep = has_label(task.kind, test_y)
    raw = model.predict_raw([t for t, k in zip(test_texts, keep, strict=True) if k])
    if task.kind == "regression":
        report = regression_report(test_y[keep], raw)
    elif task.kind == "ordinal":
        values = ordinal_values(task.classes)
        report = ordinal_report(test_y[keep], raw.argmax(1), len(task.classes), expected=raw @ values, values=values)
    else:
        report = classification_report(test_y[keep], raw.argmax(1), len(task.classes))
    report["train_seconds"] = round(time.time() - t0, 2)
    return report
