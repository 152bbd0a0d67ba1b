"""The deployed method ``hybrid`` (``model.method``): the fine-tuned heads fused with a TF-IDF +
linear model fit on the same training rows, stored without pickles and run next to the
encoder on executors (``predict.Predictor``).

Per sub-model (a review language, or the catalog):

* one TF-IDF vectorizer (``vectorizer``: word 1-2-grams, or jieba words for ``zh``, plus
  char_wb 2-4-grams; sublinear tf, l2 rows) fit on the training texts;
* per task one linear model (``ecomine.model.baseline.LinearTaskModel``: logistic regression
  for class kinds, ridge for regression on the model's scale, ``log(1 + y)`` for ``log``
  tasks), its strength picked on validation rows by the task's headline metric;
* per task a fusion weight ``w`` on the fine-tuned model, fit on validation rows over
  ``WEIGHT_GRID`` by the headline metric (QWK, R^2 or macro-F1; ties go to the smaller w),
  kept only when a paired bootstrap on those rows puts its gain over TF-IDF alone above 0
  with 95% confidence, else 0 (``fit_weight``):

  - class kinds: ``p = w * p_finetuned + (1 - w) * p_tfidf``;
  - regression: ``z = w * z_finetuned + (1 - w) * z_tfidf`` on the fine-tuned head's
    standardized scale (``(y' - mean) / std`` with the head's training mean/std).

``w = 0`` is the TF-IDF model alone and ``w = 1`` the fine-tuned model alone, so on the
validation rows the hybrid is never worse than the TF-IDF model, and where the encoder's
gain is not clear the deployed outputs are the TF-IDF model's exactly.

On disk (``<sub-model>/tfidf/``, covered by the manifest's sha256 like every file):
``tfidf.json`` (language, parts, tasks with kind, present classes, strength and fusion
weight), ``vocabulary.json`` (term -> column per part) and ``weights.safetensors`` (idf per
part, coefficients and intercepts per task). Loading rebuilds the vectorizer with the same
parameters from ``vectorizer`` and sets the stored vocabulary and idf: no pickle, no code.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DIR",
    "TfidfHeads",
    "WEIGHT_GRID",
    "fit_weight",
    "fuse",
    "vectorizer",
]

log = logging.getLogger(__name__)

DIR = "tfidf"
FORMAT = "ecomine-tfidf/1"
WEIGHT_GRID = np.round(np.arange(0, 1.0001, 0.05), 2)
CLASS_STRENGTHS = (1.0, 4.0, 16.0)  # logistic regression C candidates
REGRESSION_STRENGTHS = (1.0, 3.0, 10.0)  # ridge alpha candidates
FUSION_CONFIDENCE = 0.95  # one-sided confidence that mixing in the encoder beats TF-IDF alone on validation
FUSION_RESAMPLES = 200


def vectorizer(language: str, max_features: int = 200_000):
    """The TF-IDF vectorizer of ``language`` (unfitted): word 1-2-grams (jieba words for
    'zh' when jieba is installed) + char_wb 2-4-grams, or the char part alone for 'zh'
    without jieba."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion

    char = TfidfVectorizer(
        analyzer="char_wb", ngram_range=(2, 4), min_df=2, sublinear_tf=True, max_features=max_features, dtype=np.float32
    )
    if language == "zh":
        try:
            import jieba

            jieba.setLogLevel(60)
            word = TfidfVectorizer(
                tokenizer=jieba.lcut, token_pattern=None, lowercase=False, min_df=2, sublinear_tf=True, dtype=np.float32
            )
        except ImportError:
            return char
    else:
        word = TfidfVectorizer(
            ngram_range=(1, 2), min_df=2, sublinear_tf=True, max_features=max_features, dtype=np.float32
        )
    return FeatureUnion([("word", word), ("char", char)])


def _parts(vec) -> list[tuple[str, Any]]:
    return list(vec.transformer_list) if hasattr(vec, "transformer_list") else [("char", vec)]


def _transform(parts: list[tuple[str, Any]], texts: Sequence[str]):
    from scipy import sparse

    return sparse.hstack([p.transform(list(texts)) for _, p in parts], format="csr", dtype=np.float32)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class TfidfHeads:
    """One TF-IDF vectorizer and a linear model per task (see the module doc).

    ``tasks``: name -> {"kind", "n_classes", "classes_present" (class indices the logistic
    regression saw), "strength", "weight" (fusion weight on the fine-tuned model, or None
    before ``set_weight``)}; ``coef``/``intercept``: name -> arrays."""

    def __init__(self, language: str, parts: list[tuple[str, Any]]):
        self.language = language
        self.parts = parts
        self.tasks: dict[str, dict[str, Any]] = {}
        self.coef: dict[str, np.ndarray] = {}
        self.intercept: dict[str, np.ndarray] = {}

    @property
    def n_features(self) -> int:
        return sum(len(p.vocabulary_) for _, p in self.parts)

    # ------------------------------------------------------------------ fit

    @classmethod
    def fit(
        cls,
        language: str,
        texts: Sequence[str],
        tasks: Sequence[Mapping[str, Any]],
        targets: Mapping[str, np.ndarray],
        val_texts: Sequence[str],
        val_targets: Mapping[str, np.ndarray],
        seed: int = 42,
    ) -> TfidfHeads:
        """Fit the vectorizer on ``texts`` and, per task with a labelled training row, a linear
        model on its labelled rows. ``tasks``: {"name", "kind", "n_classes"}; targets on the
        model's scale (class indices with -1 = none, or ``log(1 + y)`` etc. with NaN = none)."""
        from ecomine.model.baseline import LinearTaskModel
        from ecomine.model.finetune import has_label

        t0 = time.time()
        vec = vectorizer(language)
        vec.fit(list(texts))
        heads = cls(language, _parts(vec))
        X = _transform(heads.parts, texts)
        X_val = _transform(heads.parts, val_texts) if len(val_texts) else None
        for t in tasks:
            name, kind = t["name"], t["kind"]
            y = np.asarray(targets[name])
            keep = has_label(kind, y)
            if not keep.any() or (kind != "regression" and len(np.unique(y[keep])) < 2):
                continue
            y_val = np.asarray(val_targets[name]) if X_val is not None else None
            use_val = y_val is not None and has_label(kind, y_val).any()
            strengths = REGRESSION_STRENGTHS if kind == "regression" else CLASS_STRENGTHS
            lin = LinearTaskModel(kind, int(t.get("n_classes", 0)), strengths, seed=seed).fit(
                X, y, X_val if use_val else None, y_val if use_val else None
            )
            heads._take(name, kind, int(t.get("n_classes", 0)), lin)
        log.info(
            "tf-idf (%s): %d texts x %d features, tasks %s, in %.1fs",
            language, X.shape[0], X.shape[1], sorted(heads.tasks), time.time() - t0,
        )  # fmt: skip
        return heads

    def _take(self, name: str, kind: str, n_classes: int, lin: Any) -> None:
        model = lin.model_
        entry = {"kind": kind, "n_classes": n_classes, "strength": float(lin.strength_), "weight": None}
        if kind == "regression":
            self.coef[name] = np.asarray(model.coef_, dtype=np.float32).reshape(-1)
            self.intercept[name] = np.asarray([model.intercept_], dtype=np.float64).reshape(1)
        else:
            entry["classes_present"] = [int(c) for c in model.classes_]
            self.coef[name] = np.asarray(model.coef_, dtype=np.float32)
            self.intercept[name] = np.asarray(model.intercept_, dtype=np.float64).reshape(-1)
        self.tasks[name] = entry

    def set_weight(self, name: str, weight: float) -> None:
        self.tasks[name]["weight"] = float(weight)

    # ------------------------------------------------------------------ predict

    def predict_raw(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Per task: class probabilities ``(n, n_classes)`` (0 for classes the training rows
        lacked), or the prediction ``(n,)`` on the model's scale; float64."""
        X = _transform(self.parts, texts)
        out = {}
        for name, t in self.tasks.items():
            coef, b = self.coef[name], self.intercept[name]
            if t["kind"] == "regression":
                out[name] = np.asarray(X @ coef.astype(np.float64), dtype=np.float64).reshape(-1) + float(b[0])
                continue
            z = np.asarray(X @ coef.T.astype(np.float64), dtype=np.float64) + b
            if z.shape[1] == 1:  # binary logistic regression: one logit for the second class
                p1 = 1.0 / (1.0 + np.exp(-z[:, 0]))
                present = np.stack([1.0 - p1, p1], axis=1)
            else:
                present = _softmax(z)
            probs = np.zeros((X.shape[0], t["n_classes"]))
            probs[:, t["classes_present"]] = present
            out[name] = probs
        return out

    # ------------------------------------------------------------------ files

    def save(self, out_dir: str | Path) -> None:
        from safetensors.numpy import save_file

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        vocab = {name: {term: int(i) for term, i in p.vocabulary_.items()} for name, p in self.parts}
        (out / "vocabulary.json").write_text(json.dumps(vocab, ensure_ascii=False, sort_keys=True))
        tensors = {f"idf.{name}": np.asarray(p.idf_, dtype=np.float64) for name, p in self.parts}
        for name in self.tasks:
            tensors[f"coef.{name}"] = np.ascontiguousarray(self.coef[name])
            tensors[f"intercept.{name}"] = np.ascontiguousarray(self.intercept[name])
        save_file(tensors, str(out / "weights.safetensors"))
        meta = {
            "format": FORMAT,
            "language": self.language,
            "parts": [name for name, _ in self.parts],
            "tasks": self.tasks,
        }
        (out / "tfidf.json").write_text(json.dumps(meta, indent=2, sort_keys=True))

    @classmethod
    def load(cls, in_dir: str | Path) -> TfidfHeads:
        from safetensors.numpy import load_file

        from ecomine.errors import ModelArtifactError

        d = Path(in_dir)
        meta = json.loads((d / "tfidf.json").read_text())
        if meta.get("format") != FORMAT:
            raise ModelArtifactError(f"{d}: unknown tf-idf format {meta.get('format')!r} (want {FORMAT})")
        vocab = json.loads((d / "vocabulary.json").read_text())
        tensors = load_file(str(d / "weights.safetensors"))
        parts = dict(_parts(vectorizer(meta["language"])))
        if list(parts) != meta["parts"]:
            raise ModelArtifactError(
                f"{d}: tf-idf parts {meta['parts']} differ from this install's {list(parts)} (jieba missing?)"
            )
        rebuilt = []
        for name in meta["parts"]:
            part = parts[name]
            part.set_params(vocabulary=vocab[name])
            part.idf_ = tensors[f"idf.{name}"]  # sklearn's setter: checks the length against the vocabulary
            rebuilt.append((name, part))
        heads = cls(meta["language"], rebuilt)
        heads.tasks = meta["tasks"]
        heads.coef = {n: tensors[f"coef.{n}"] for n in heads.tasks}
        heads.intercept = {n: tensors[f"intercept.{n}"] for n in heads.tasks}
        return heads


def fit_weight(
    score: Callable[[np.ndarray, np.ndarray], float],
    y: np.ndarray,
    finetuned: np.ndarray,
    tfidf: np.ndarray,
    seed: int = 0,
) -> tuple[float, dict[str, float]]:
    """The fusion weight on the fine-tuned model, from validation rows (targets ``y``; raw
    outputs as fused: probabilities, or standardized regression values), and its record.

    The weight over ``WEIGHT_GRID`` that maximizes ``score(w * finetuned + (1 - w) * tfidf, y)``
    (the smallest of equal best scores) is kept only when its gain over the TF-IDF model
    alone (w = 0) holds up on validation: the ``1 - FUSION_CONFIDENCE`` quantile of the gain
    over ``FUSION_RESAMPLES`` paired bootstrap resamples of the rows must be above 0.
    Otherwise w = 0: the deployed outputs are then exactly the TF-IDF model's, so a gain too
    small to measure never costs a score below the baseline the promotion gate compares with.
    The record: the chosen weight's validation score, each model's alone, and (when the best
    weight is not 0) the best weight, its validation score and the gain's lower bound."""
    y = np.asarray(y)
    grid = [w * finetuned + (1 - w) * tfidf for w in WEIGHT_GRID]
    scores = np.array([score(raw, y) for raw in grid], dtype=float)
    if np.isnan(scores).all():
        return 1.0, {}
    best = int(np.nanargmax(scores))
    record = {"validation_finetuned": float(scores[-1]), "validation_tfidf": float(scores[0])}
    if best == 0:
        return 0.0, {"validation": float(scores[0]), **record}
    rng = np.random.default_rng(seed)
    gains = []
    for _ in range(FUSION_RESAMPLES):
        idx = rng.integers(0, len(y), len(y))
        gains.append(score(grid[best][idx], y[idx]) - score(tfidf[idx], y[idx]))
    lower = float(np.nanquantile(np.array(gains, dtype=float), 1.0 - FUSION_CONFIDENCE))
    record |= {
        "best_weight": float(WEIGHT_GRID[best]),
        "validation_best": float(scores[best]),
        "gain_lower_bound": lower,
    }
    if not lower > 0:
        return 0.0, {"validation": float(scores[0]), **record}
    return float(WEIGHT_GRID[best]), {"validation": float(scores[best]), **record}


def fuse(spec: Mapping[str, Any], weight: float, finetuned: np.ndarray, tfidf: np.ndarray) -> np.ndarray:
    """The fused raw output of one task: probabilities, or for regression the standardized
    value (the TF-IDF prediction, on the model's scale, standardized with the head's
    ``mean``/``std`` from ``spec``) — what ``predict.task_outputs`` decodes."""
    if spec["kind"] == "regression":
        tfidf = (np.asarray(tfidf, dtype=np.float64) - float(spec["mean"])) / float(spec["std"])
    return weight * np.asarray(finetuned, dtype=np.float64) + (1.0 - weight) * np.asarray(tfidf, dtype=np.float64)
