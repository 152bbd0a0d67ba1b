"""Executor-side prediction: load an artifact once per Python worker, score texts in batches.

Imports no training code. ``get_predictor`` caches the ``Predictor`` of a shipped model
(``ship.ShippedModel``: the artifact Spark unpacked on this executor) per (model, device,
precision, scope) in the worker process, in a bounded LRU, so with
``spark.python.worker.reuse=true`` the model is loaded once per worker, not per batch or row.

Batches are length-aware: texts are tokenized once, sorted by token count, cut into
batches of ``batch_size`` and padded only to the longest text of their batch; outputs
are put back in input order.

Outputs per task (``output_columns``), named after the task ``t``:

* binary: ``t_label`` (class name), ``t_prob`` (probability of the positive class);
* multiclass: ``t_label``, ``t_prob`` (probability of the predicted class);
* ordinal: ``t_label`` (most probable class), ``t_prob`` (its probability),
  ``t_expected`` (expected class value under the predicted distribution);
* regression: ``t_value`` (the prediction on the target's scale: de-standardized with
  the training mean/std kept in ``<lang>/heads.json`` and, for ``log`` tasks,
  transformed back with ``exp(x) - 1``).

then ``n_tokens`` and ``truncated``; with ``embedding=True`` (the catalog scope) also ``embedding``:
the encoder's mean-pooled output, L2-normalised, as float32 (``product_embeddings``, ``similar_products``).
A task without labels in a language's training
rows has null outputs for that language.

With ``method: hybrid`` in a sub-model's manifest record, each head's raw output is first fused
with the TF-IDF model stored next to it (``model/hybrid.py``: ``w * head + (1 - w) * tfidf``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ecomine.errors import ModelArtifactError
from ecomine.io import fs
from ecomine.labels import ordinal_values
from ecomine.model import artifact

if TYPE_CHECKING:
    from ecomine.model.ship import ShippedModel

__all__ = [
    "ANY",
    "CATALOG",
    "HEADS_META",
    "REVIEWS",
    "DEFAULT_CACHE_SIZE",
    "EMBEDDING",
    "Predictor",
    "cached_models",
    "frame_from_columns",
    "get_predictor",
    "output_columns",
    "raw_head_output",
    "task_outputs",
]

log = logging.getLogger(__name__)

DEFAULT_CACHE_SIZE = 2
_CACHE: OrderedDict[tuple[str, str, str, str, str], Predictor] = OrderedDict()
_LOCK = threading.Lock()
HEADS_META = "heads.json"
REVIEWS, CATALOG = "reviews", "catalog"  # Predictor scopes
ANY = "*"  # the "language" of catalog texts: the catalog model reads every row


def _task_columns(t: Mapping[str, Any]) -> list[tuple[str, str]]:
    name, kind = t["name"], t["kind"]
    if kind == "regression":
        return [(f"{name}_value", "double")]
    cols = [(f"{name}_label", "string"), (f"{name}_prob", "double")]
    if kind == "ordinal":
        cols.append((f"{name}_expected", "double"))
    return cols


EMBEDDING = ("embedding", "array<float>")


def output_columns(tasks: list[dict[str, Any]], embedding: bool = False) -> list[tuple[str, str]]:
    """(column, Spark SQL type) of the prediction outputs, in order, for a task list
    (``embedding``: and the text's embedding, last)."""
    cols: list[tuple[str, str]] = []
    for t in tasks:
        cols += _task_columns(t)
    cols += [("n_tokens", "int"), ("truncated", "boolean")]
    return cols + [EMBEDDING] if embedding else cols


def task_outputs(task: Mapping[str, Any], raw: np.ndarray) -> dict[str, np.ndarray]:
    """A task's output columns from its head's raw output for n rows.

    ``raw``: class probabilities ``(n, K)`` for binary/multiclass/ordinal tasks, the
    standardized prediction ``(n,)`` for regression. ``task`` carries ``name``, ``kind``,
    ``classes``, ``positive``; for ordinal optionally ``values`` (else
    ``labels.ordinal_values(classes)``); for regression ``mean``, ``std`` and ``log``."""
    name, kind = task["name"], task["kind"]
    if kind == "regression":
        value = np.asarray(raw, dtype=np.float64).reshape(-1) * float(task["std"]) + float(task["mean"])
        if task.get("log"):
            value = np.expm1(value)
        return {f"{name}_value": value}
    probs = np.asarray(raw, dtype=np.float64)
    classes = list(task["classes"])
    pred = probs.argmax(axis=1)
    out = {f"{name}_label": np.asarray(classes, dtype=object)[pred]}
    if kind == "binary":
        out[f"{name}_prob"] = probs[:, classes.index(task["positive"])]
    else:
        out[f"{name}_prob"] = probs[np.arange(len(pred)), pred]
    if kind == "ordinal":
        values = task.get("values")
        values = np.asarray(ordinal_values(classes) if values is None or len(values) == 0 else values, dtype=np.float64)
        out[f"{name}_expected"] = probs @ values
    return out


def frame_from_columns(cols: list[tuple[str, str]], out: dict[str, np.ndarray]) -> pd.DataFrame:
    """A DataFrame of ``out`` with each column cast to the pandas twin of its Spark type."""
    df = pd.DataFrame({c: out[c] for c, _ in cols})
    for c, t in cols:
        if t == "double":
            df[c] = pd.to_numeric(df[c], errors="coerce").astype("float64")
        elif t == "int":
            df[c] = df[c].astype("int32")
        elif t == "boolean":
            df[c] = df[c].astype(bool)
    return df


class _LanguageModel:
    def __init__(
        self, root: Path, spec: dict[str, Any], tasks: list[dict[str, Any]], device: str, precision: str = "fp32"
    ):
        import torch
        from safetensors.torch import load_file
        from transformers import AutoModel, AutoTokenizer

        from ecomine.model.network import MultiHeadEncoder, head_sizes

        self.tokenizer = AutoTokenizer.from_pretrained(str(root / "tokenizer"))
        encoder = AutoModel.from_pretrained(str(root / "encoder"))
        self.net = MultiHeadEncoder(encoder, head_sizes(tasks))
        self.net.heads.load_state_dict(load_file(str(root / "heads.safetensors")))
        self.net.to(device).eval()
        from ecomine.model import fastpath

        self.precision = fastpath.resolve(precision, device)
        self.net, self.autocast = fastpath.prepare(self.net, device, self.precision)
        self.device = device
        self.prefix = spec.get("prefix", "")
        self.trained = set(spec["trained_tasks"])
        meta_path = root / HEADS_META
        meta = json.loads(meta_path.read_text())["tasks"] if meta_path.is_file() else {}
        self.task_specs = {t["name"]: {**t, **meta.get(t["name"], {})} for t in tasks}
        for name, t in self.task_specs.items():
            if t["kind"] == "regression" and name in self.trained and not {"mean", "std"} <= set(t):
                raise ModelArtifactError(f"{root}: regression task {name} has no target mean/std in {HEADS_META}")
        self.torch = torch
        self.tfidf = None  # model.method hybrid: the TF-IDF heads fused with these (model/hybrid.py)
        if spec.get("method") == "hybrid":
            from ecomine.model.hybrid import DIR, TfidfHeads

            if not (root / DIR).is_dir():
                raise ModelArtifactError(f"{root}: method hybrid but no {DIR}/ folder")
            self.tfidf = TfidfHeads.load(root / DIR)


class Predictor:
    """The sub-models of one artifact for one scope: ``reviews`` (one model per language,
    ``manifest["languages"]``, outputs of ``manifest["tasks"]``) or ``catalog`` (the one
    catalog model in ``catalog/``, outputs of ``manifest["catalog"]["tasks"]``; every text
    goes to it: pass ``ANY`` as its language)."""

    def __init__(
        self, path: str | Path, device: str = "cpu", verify: bool = True, precision: str = "fp32", scope: str = REVIEWS
    ):
        t0 = time.time()
        self.path = str(path)
        self.scope = scope
        self.manifest = artifact.read_manifest(path, verify=verify)
        self.max_length: int = int(self.manifest["max_length"])
        self.model_version: str = self.manifest["model_version"]
        root = fs.local_path(str(path))
        if scope == REVIEWS:
            self.tasks: list[dict[str, Any]] = self.manifest["tasks"]
            self.models = {
                lang: _LanguageModel(root / lang, spec, self.tasks, device, precision)
                for lang, spec in self.manifest["languages"].items()
            }
        elif scope == CATALOG:
            section = self.manifest.get(CATALOG)
            if not section:
                raise ModelArtifactError(f"model artifact {path} has no catalog model (model.catalog_tasks was empty)")
            self.tasks = section["tasks"]
            self.models = {ANY: _LanguageModel(root / CATALOG, section, self.tasks, device, precision)}
        else:
            raise ValueError(f"scope must be {REVIEWS!r} or {CATALOG!r}, got {scope!r}")
        self.device = device
        self.embedding = scope == CATALOG  # catalog rows also get their embedding (product_embeddings)
        log.info(
            "loaded model %s (%s: %s) on %s in %.1fs",
            self.model_version,
            scope,
            sorted(self.models),
            device,
            time.time() - t0,
        )

    @property
    def languages(self) -> list[str]:
        return sorted(self.models)

    def predict(self, texts: list[str], languages: list[str], batch_size: int = 32) -> pd.DataFrame:
        """One row per text (input order) with ``output_columns(tasks)``; each text goes to its language's model."""
        n = len(texts)
        cols = output_columns(self.tasks, embedding=self.embedding)
        out = {c: np.full(n, None, dtype=object) for c, _ in cols}
        langs = np.asarray(languages, dtype=object)
        for lang, lm in self.models.items():
            idx = np.flatnonzero(langs == lang)
            if idx.size:
                self._predict_language(lm, [texts[i] for i in idx], idx, batch_size, out)
        unknown = sorted({str(x) for x in set(langs) - set(self.models)})
        if unknown:
            raise ValueError(f"no model for language(s) {unknown}; the artifact has {self.languages}")
        return frame_from_columns(cols, out)

    def _predict_language(
        self, lm: _LanguageModel, texts: list[str], idx: np.ndarray, batch_size: int, out: dict
    ) -> None:
        """Score ``texts`` (the rows ``idx`` of the whole input) with ``lm`` into ``out``."""
        from ecomine.model.network import pad_batch

        torch = lm.torch
        max_len = self.max_length
        enc = lm.tokenizer([lm.prefix + t for t in texts], truncation=True, max_length=max_len + 1, padding=False)
        ids_list = enc["input_ids"]
        n_tokens = np.array([len(x) for x in ids_list])
        truncated = n_tokens > max_len
        sep = lm.tokenizer.sep_token_id
        ids_list = [x[: max_len - 1] + [sep] if len(x) > max_len else x for x in ids_list]
        order = np.argsort([len(x) for x in ids_list], kind="stable")
        tasks = [t for t in self.tasks if t["name"] in lm.trained]  # the others stay null in this language
        raw = {t["name"]: [] for t in tasks}
        pooled_parts = []
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                batch = [ids_list[i] for i in order[start : start + batch_size]]
                ids, mask = pad_batch(batch, lm.tokenizer.pad_token_id)
                with lm.autocast():
                    logits, pooled = lm.net(ids.to(lm.device), mask.to(lm.device))
                for t in tasks:
                    raw[t["name"]].append(raw_head_output(t["kind"], logits[t["name"]]))
                if self.embedding:
                    pooled_parts.append(torch.nn.functional.normalize(pooled.float(), dim=-1).cpu().numpy())
        rows = idx[order]
        if self.embedding and len(order):
            emb = np.concatenate(pooled_parts).astype(np.float32)
            for j, r in enumerate(rows):
                out["embedding"][r] = emb[j]
        tfidf = lm.tfidf.predict_raw([texts[i] for i in order]) if lm.tfidf is not None and len(order) else {}
        for t in tasks:
            if len(order):
                spec, head = lm.task_specs[t["name"]], np.concatenate(raw[t["name"]])
                if t["name"] in tfidf:  # hybrid: fuse with the TF-IDF model's output (model/hybrid.py)
                    from ecomine.model.hybrid import fuse

                    head = fuse(spec, lm.tfidf.tasks[t["name"]]["weight"], head, tfidf[t["name"]])
                for col, values in task_outputs(spec, head).items():
                    out[col][rows] = values
        out["n_tokens"][idx] = np.minimum(n_tokens, max_len)
        out["truncated"][idx] = truncated


def raw_head_output(kind: str, logits):
    """A head's logits as numpy: softmax probabilities (n, K) for class kinds, the
    standardized prediction (n,) for regression. Computed in float32."""
    import torch

    if kind == "regression":
        return logits.float().reshape(-1).cpu().numpy()
    return torch.softmax(logits.float(), dim=-1).cpu().numpy()


def get_predictor(
    shipped: ShippedModel | str | Path,
    device: str = "cpu",
    num_threads: int | None = None,
    precision: str = "fp32",
    scope: str = REVIEWS,
    max_models: int = DEFAULT_CACHE_SIZE,
) -> Predictor:
    """The worker-wide cached Predictor: loaded (and every file's checksum verified) once per
    Python worker process, then reused by every batch and task that worker runs.

    ``shipped``: the model as Spark shipped it (``ship.ShippedModel``, on executors) or a
    local artifact directory (driver-side tools). The cache is an LRU of at most
    ``max_models`` model versions per process (each with the scopes it was used for, like
    Spark ML's ``ModelCache``): a worker that scores with a new model version drops the least
    recently used one instead of growing."""
    from ecomine.model.ship import ShippedModel

    if isinstance(shipped, ShippedModel):
        key = (shipped.model_version, shipped.manifest_sha256, device, precision, scope)
    else:
        key = (str(shipped), "", device, precision, scope)
    with _LOCK:
        pred = _CACHE.get(key)
        if pred is not None:
            _CACHE.move_to_end(key)
            return pred
        if num_threads:
            import torch

            torch.set_num_threads(num_threads)
        path = shipped.local_dir() if isinstance(shipped, ShippedModel) else shipped
        pred = Predictor(path, device=device, precision=precision, scope=scope)
        _CACHE[key] = pred
        _evict(max(1, max_models), device)
        return pred


def _evict(max_models: int, device: str) -> None:
    """Drop the least recently used model versions (every scope and device of each) until at
    most ``max_models`` versions stay loaded."""
    versions = list(dict.fromkeys(k[:2] for k in reversed(_CACHE)))  # most recent first
    for version in versions[max_models:]:
        for k in [k for k in _CACHE if k[:2] == version]:
            del _CACHE[k]
        log.info("predictor cache holds %d model versions: dropped %s", max_models, version[0])
        _release(device)


def cached_models() -> list[tuple[str, str, str, str, str]]:
    """Keys of the models loaded in this process, least recently used first (for tests and logs)."""
    with _LOCK:
        return list(_CACHE)


def _release(device: str) -> None:
    import gc

    gc.collect()
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()
