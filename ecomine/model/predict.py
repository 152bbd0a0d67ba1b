"""Executor-side prediction: load an artifact once per Python worker, score texts in batches.

Imports no training code. ``get_predictor`` caches one ``Predictor`` per (artifact,
device) in the worker process, so with ``spark.python.worker.reuse=true`` the model is
loaded once per worker, not per batch or per row.

Batches are length-aware: texts are tokenized once, sorted by token count, cut into
batches of ``batch_size`` and padded only to the longest text of their batch; outputs
are put back in input order.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ecomine.model import artifact

log = logging.getLogger(__name__)

_CACHE: dict[tuple[str, str], "Predictor"] = {}
_LOCK = threading.Lock()


def output_columns(tasks: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(column, Spark SQL type) of the prediction outputs, in order, for a task list."""
    cols: list[tuple[str, str]] = []
    for t in tasks:
        cols += [(f"{t['name']}_label", "string"), (f"{t['name']}_prob", "double")]
    cols += [("n_tokens", "int"), ("truncated", "boolean")]
    return cols


class _LanguageModel:
    def __init__(self, root: Path, spec: dict[str, Any], tasks: list[dict[str, Any]], device: str):
        import torch
        from safetensors.torch import load_file
        from transformers import AutoModel, AutoTokenizer

        from ecomine.model.network import MultiHeadEncoder

        self.tokenizer = AutoTokenizer.from_pretrained(str(root / "tokenizer"))
        encoder = AutoModel.from_pretrained(str(root / "encoder"))
        self.net = MultiHeadEncoder(encoder, {t["name"]: len(t["classes"]) for t in tasks})
        self.net.heads.load_state_dict(load_file(str(root / "heads.safetensors")))
        self.net.to(device).eval()
        self.device = device
        self.prefix = spec.get("prefix", "")
        self.trained = set(spec["trained_tasks"])
        self.torch = torch


class Predictor:
    """All language sub-models of one artifact."""

    def __init__(self, path: str | Path, device: str = "cpu", verify: bool = True):
        t0 = time.time()
        self.path = str(path)
        self.manifest = artifact.read_manifest(path, verify=verify)
        self.tasks: list[dict[str, Any]] = self.manifest["tasks"]
        self.max_length: int = int(self.manifest["max_length"])
        self.model_version: str = self.manifest["model_version"]
        root = Path(str(path).replace("file:", "", 1) if str(path).startswith("file:") else str(path))
        self.models = {
            lang: _LanguageModel(root / lang, spec, self.tasks, device)
            for lang, spec in self.manifest["languages"].items()
        }
        self.device = device
        log.info("loaded model %s (%s) on %s in %.1fs", self.model_version, sorted(self.models), device, time.time() - t0)

    @property
    def languages(self) -> list[str]:
        return sorted(self.models)

    def predict(self, texts: list[str], languages: list[str], batch_size: int = 32) -> pd.DataFrame:
        """One row per text (input order) with ``output_columns(tasks)``; each text goes to its language's model."""
        n = len(texts)
        cols = output_columns(self.tasks)
        out = {c: np.full(n, None, dtype=object) for c, _ in cols}
        langs = np.asarray(languages, dtype=object)
        for lang, lm in self.models.items():
            idx = np.flatnonzero(langs == lang)
            if idx.size:
                self._predict_language(lm, [texts[i] for i in idx], idx, batch_size, out)
        unknown = sorted({str(x) for x in set(langs) - set(self.models)})
        if unknown:
            raise ValueError(f"no model for language(s) {unknown}; the artifact has {self.languages}")
        df = pd.DataFrame(out)
        for c, t in cols:
            if t == "double":
                df[c] = pd.to_numeric(df[c], errors="coerce").astype("float64")
            elif t == "int":
                df[c] = df[c].astype("int32")
            elif t == "boolean":
                df[c] = df[c].astype(bool)
        return df

    def _predict_language(self, lm: _LanguageModel, texts: list[str], idx: np.ndarray, bs: int, out: dict) -> None:
        torch = lm.torch
        L = self.max_length
        enc = lm.tokenizer([lm.prefix + t for t in texts], truncation=True, max_length=L + 1, padding=False)
        ids_list = enc["input_ids"]
        n_tokens = np.array([len(x) for x in ids_list])
        truncated = n_tokens > L
        sep = lm.tokenizer.sep_token_id
        ids_list = [x[: L - 1] + [sep] if len(x) > L else x for x in ids_list]
        order = np.argsort([len(x) for x in ids_list], kind="stable")
        pad = lm.tokenizer.pad_token_id or 0
        use_amp = lm.device.startswith("cuda")
        with torch.inference_mode():
            for start in range(0, len(order), bs):
                b = order[start : start + bs]
                width = max(len(ids_list[i]) for i in b)
                ids = torch.full((len(b), width), pad, dtype=torch.long)
                mask = torch.zeros((len(b), width), dtype=torch.long)
                for r, i in enumerate(b):
                    seq = ids_list[i]
                    ids[r, : len(seq)] = torch.tensor(seq)
                    mask[r, : len(seq)] = 1
                ids, mask = ids.to(lm.device), mask.to(lm.device)
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
                    logits, _ = lm.net(ids, mask)
                rows = idx[b]
                for t in self.tasks:
                    name = t["name"]
                    if name not in lm.trained:
                        continue  # no labels for this task in this language: outputs stay null
                    probs = torch.softmax(logits[name].float(), dim=-1).cpu().numpy()
                    classes = t["classes"]
                    if t["kind"] == "binary":
                        p = probs[:, classes.index(t["positive"])]
                    else:
                        p = probs.max(axis=1)
                    out[f"{name}_prob"][rows] = p
                    out[f"{name}_label"][rows] = np.asarray(classes, dtype=object)[probs.argmax(axis=1)]
        out["n_tokens"][idx] = np.minimum(n_tokens, L)
        out["truncated"][idx] = truncated


def get_predictor(path: str, device: str = "cpu", num_threads: int | None = None) -> Predictor:
    """The worker-wide cached Predictor for (artifact path, device): loaded once per worker."""
    key = (str(path), device)
    with _LOCK:
        pred = _CACHE.get(key)
        if pred is None:
            if num_threads:
                import torch

                torch.set_num_threads(num_threads)
            pred = Predictor(path, device=device)
            _CACHE[key] = pred
        return pred
