"""Driver-side fine-tuning of one language's multi-head model (never imported on executors).

``FineTuner`` follows scikit-learn conventions: parameters stored in ``__init__``,
``fit`` returns ``self``, learned state ends in ``_``. Training uses dynamic padding
with length-grouped batches, AdamW with linear warmup/decay, gradient clipping, a
wall-clock budget, validation per epoch or every ``eval_every_steps`` steps with the
best state kept and early stopping, bf16 autocast on CUDA (and on CPU with
``bf16_cpu``), optional LoRA (merged into the encoder after training) or frozen
embeddings, and fixed seeds.

Losses (``multitask_loss``), summed over tasks, each a mean over the batch rows that
have a label for that task (rows without one contribute nothing):

* binary / multiclass: cross-entropy;
* ordinal: cross-entropy plus the squared error between the predicted expected class
  value and the true one, both on class values rescaled to [0, 1], so that a
  prediction two classes off costs more than one class off;
* regression: mean squared error on the standardized target ``(y' - mean) / std``
  where ``y' = log(1 + y)`` for ``log`` tasks (negative y then counts as missing) and
  ``y`` otherwise; mean and std come from the training rows and are saved with the
  heads (``heads.json``) so the predictor can transform back.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ecomine.config import TaskConfig, TrainConfig
from ecomine.labels import ordinal_values
from ecomine.metrics import classification_report, ordinal_report, regression_report

log = logging.getLogger(__name__)

MISSING = -1
SELECTION_METRIC = {"binary": "macro_f1", "multiclass": "macro_f1", "ordinal": "qwk", "regression": "r2"}


@dataclass
class TaskData:
    """Texts and, per task, targets: int64 class indices (``MISSING`` where a row has no
    label) for binary/multiclass/ordinal tasks, float64 source values (NaN where a row has
    no label, before any log transform) for regression tasks. See ``labels.task_targets``."""

    texts: list[str]
    labels: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.texts)


def set_seed(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def training_autocast(amp_device: str, bf16_cpu: bool, cpuinfo: str | None = None) -> bool:
    """Whether to train under bf16 autocast: always on CUDA; on CPU when ``bf16_cpu`` is set
    and the CPU has native bf16 instructions (elsewhere emulated bf16 is slower than fp32).
    Weights, gradients and optimizer state stay fp32 either way. On this project's AMD EPYC
    (AVX-512 BF16) it trains 1.65-1.89x faster with the same held-out metrics
    (``bench/results/train_precision.json``)."""
    if amp_device == "cuda":
        return True
    from ecomine.model.fastpath import cpu_has_bf16

    return bool(bf16_cpu) and cpu_has_bf16(cpuinfo)


def length_grouped_batches(lengths: list[int], batch_size: int, rng: np.random.Generator) -> list[list[int]]:
    """Shuffle, sort within mega-batches of 50 batches by length, then shuffle batch order:
    little padding per batch, still random across the epoch."""
    idx = rng.permutation(len(lengths))
    mega = batch_size * 50
    batches: list[list[int]] = []
    for s in range(0, len(idx), mega):
        chunk = sorted(idx[s : s + mega], key=lambda i: lengths[i], reverse=True)
        batches += [list(chunk[j : j + batch_size]) for j in range(0, len(chunk), batch_size)]
    order = rng.permutation(len(batches))
    return [batches[i] for i in order]


def has_label(kind: str, y: np.ndarray) -> np.ndarray:
    """Rows that carry a label: class index >= 0, or a non-NaN regression value."""
    y = np.asarray(y)
    return ~np.isnan(y.astype(float)) if kind == "regression" else y >= 0


def transform_target(task: TaskConfig, y: np.ndarray) -> np.ndarray:
    """Regression targets on the model's scale: ``log(1 + y)`` for ``log`` tasks (NaN for
    y < 0), else ``y`` as float. Class targets unchanged."""
    if task.kind != "regression":
        return np.asarray(y)
    y = np.asarray(y, dtype=float)
    if not task.log:
        return y
    out = np.full(y.shape, np.nan)
    ok = ~np.isnan(y) & (y >= 0)
    out[ok] = np.log1p(y[ok])
    return out


def multitask_loss(outputs: dict[str, Any], targets: dict[str, np.ndarray], specs: dict[str, dict[str, Any]]):
    """Sum over the tasks in ``targets`` of each task's mean loss over the rows with a label.

    ``outputs``: head outputs for the batch (logits ``(n, K)``, or ``(n, 1)`` for regression);
    ``targets``: the batch's class indices (-1 = none) or standardized regression values
    (NaN = none); ``specs``: task name -> {"kind", and for ordinal "values"}. A task with
    no labelled row in the batch adds nothing (not even a zero-weighted term)."""
    import torch
    import torch.nn.functional as F

    device = next(iter(outputs.values())).device
    loss = torch.zeros((), device=device)
    for name, y_np in targets.items():
        kind = specs[name]["kind"]
        keep_np = has_label(kind, y_np)
        if not keep_np.any():
            continue
        keep = torch.as_tensor(keep_np, device=device)
        out = outputs[name][keep].float()
        if kind == "regression":
            y = torch.as_tensor(np.asarray(y_np, dtype=np.float32)[keep_np], device=device)
            loss = loss + F.mse_loss(out.reshape(-1), y)
            continue
        y = torch.as_tensor(np.asarray(y_np, dtype=np.int64)[keep_np], device=device)
        loss = loss + F.cross_entropy(out, y)
        if kind == "ordinal":
            v = np.asarray(specs[name]["values"], dtype=np.float32)
            v01 = torch.as_tensor((v - v.min()) / max(float(v.max() - v.min()), 1e-12), device=device)
            expected = torch.softmax(out, -1) @ v01
            loss = loss + F.mse_loss(expected, v01[y])
    return loss


def _with_lora(encoder: Any, r: int) -> Any:
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=0.1, target_modules=["query", "value"], bias="none")
    return get_peft_model(encoder, cfg)


class FineTuner:
    """Fine-tunes ``base_dir``'s encoder with one head per task of ``tasks`` (see module doc).

    Learned state after ``fit``: ``model_`` (a ``MultiHeadEncoder``, plain transformers
    encoder even with LoRA), ``tokenizer_``, ``device_``, ``trained_tasks_`` (tasks with
    enough labels), ``task_specs_`` (what the predictor needs per head: kind, classes,
    ordinal values, regression mean/std/log), ``history_`` (one entry per validation),
    ``train_seconds_``, ``samples_per_second_``, ``steps_``, ``stop_reason_``,
    ``best_step_``."""

    def __init__(
        self, base_dir: str | Path, tasks: tuple[TaskConfig, ...], max_length: int, args: TrainConfig, prefix: str = ""
    ):
        self.base_dir = base_dir
        self.tasks = tasks
        self.max_length = max_length
        self.args = args
        self.prefix = prefix

    # ------------------------------------------------------------------ fit
    def fit(self, train: TaskData, validation: TaskData) -> FineTuner:
        import torch
        from transformers import AutoModel, AutoTokenizer, get_linear_schedule_with_warmup

        from ecomine.model.device import choose_device
        from ecomine.model.network import MultiHeadEncoder, head_sizes

        a = self.args
        set_seed(a.seed)
        if a.num_threads:
            torch.set_num_threads(a.num_threads)
        self.device_ = choose_device(a.device)
        self.tokenizer_ = AutoTokenizer.from_pretrained(str(self.base_dir))
        encoder = AutoModel.from_pretrained(str(self.base_dir))
        self.task_specs_ = self._task_specs(train)
        self.trained_tasks_ = [t.name for t in self.tasks if self.task_specs_[t.name].get("trainable")]
        for spec in self.task_specs_.values():
            spec.pop("trainable", None)
        skipped = [t.name for t in self.tasks if t.name not in self.trained_tasks_]
        if not self.trained_tasks_:
            raise ValueError("no task has labels of at least two classes (or two distinct values) in the training rows")
        if skipped:
            log.info("tasks without enough labels here (head left untrained, outputs null): %s", skipped)
        if a.freeze_embeddings:
            emb = getattr(encoder, "embeddings", None)
            emb = emb if emb is not None else encoder.get_input_embeddings()
            for p in emb.parameters():
                p.requires_grad_(False)
        if a.lora:
            encoder = _with_lora(encoder, a.lora_r)
        model = MultiHeadEncoder(encoder, head_sizes(self.tasks)).to(self.device_)
        self.model_ = model

        ids = self._encode(train.texts)
        lengths = [len(x) for x in ids]
        targets = self._model_targets(train)
        rng = np.random.default_rng(a.seed)
        steps_per_epoch = math.ceil(len(ids) / a.batch_size)
        total_steps = max(1, int(math.ceil(steps_per_epoch * a.epochs)))
        no_decay = ("bias", "LayerNorm.weight", "layer_norm", "norm.weight")
        trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        groups = [
            {"params": [p for n, p in trainable if not any(k in n for k in no_decay)], "weight_decay": a.weight_decay},
            {"params": [p for n, p in trainable if any(k in n for k in no_decay)], "weight_decay": 0.0},
        ]
        opt = torch.optim.AdamW(groups, lr=a.learning_rate)
        sched = get_linear_schedule_with_warmup(opt, int(a.warmup_ratio * total_steps), total_steps)
        amp_device = "cuda" if self.device_.startswith("cuda") else "cpu"
        use_amp = training_autocast(amp_device, a.bf16_cpu)
        if amp_device == "cpu" and a.bf16_cpu and not use_amp:
            log.info("model.train.bf16_cpu: this CPU has no native bf16 (avx512_bf16/amx_bf16); training in fp32")

        self.history_: list[dict[str, Any]] = []
        state: dict[str, Any] = {"best": None, "weights": None, "bad": 0, "best_step": 0}
        step, seen, epoch, t0 = 0, 0, 0, time.time()
        stop_reason: str | None = None
        n_trainable = sum(p.numel() for _, p in trainable)
        log.info(
            "fine-tuning %s on %s: %d rows, %d steps (batch %d, %.3g epochs), tasks %s, %.1fM trainable parameters%s%s",
            Path(str(self.base_dir)).name,
            self.device_,
            len(ids),
            total_steps,
            a.batch_size,
            a.epochs,
            self.trained_tasks_,
            n_trainable / 1e6,
            f", LoRA r={a.lora_r}" if a.lora else "",
            ", embeddings frozen" if a.freeze_embeddings else "",
        )

        def validate() -> bool:
            """Validate, keep the best trainable weights; True when patience is used up."""
            val = self.evaluate(validation) if len(validation) else {}
            score = self._selection_score(val)
            self.history_.append(
                {
                    "epoch": epoch,
                    "step": step,
                    "validation": val,
                    "score": score if math.isfinite(score) else None,
                    "seconds": round(time.time() - t0, 1),
                }
            )
            log.info("validation at step %d (epoch %d): score %.4f %s", step, epoch, score, val)
            model.train()
            if not val:
                return False  # nothing to select on: keep the last weights, never stop early
            if state["best"] is None or score > state["best"]:
                state.update(best=score, bad=0, best_step=step)
                state["weights"] = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
                return False
            state["bad"] += 1
            return a.early_stopping_patience > 0 and state["bad"] >= a.early_stopping_patience

        while stop_reason is None:
            model.train()
            for batch in length_grouped_batches(lengths, a.batch_size, rng):
                x, m = self._pad([ids[i] for i in batch])
                x, m = x.to(self.device_), m.to(self.device_)
                with torch.autocast(amp_device, dtype=torch.bfloat16, enabled=use_amp):
                    outputs, _ = model(x, m)
                loss = multitask_loss(outputs, {n: targets[n][batch] for n in self.trained_tasks_}, self.task_specs_)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_([p for _, p in trainable], a.max_grad_norm)
                opt.step()
                sched.step()
                step += 1
                seen += len(batch)
                if step % 20 == 0 or step == total_steps:
                    el = time.time() - t0
                    rate = seen / el
                    log.info(
                        "step %d/%d loss %.4f  %.1f samples/s  %.0fs elapsed, ~%.0fs to go",
                        step,
                        total_steps,
                        loss.item(),
                        rate,
                        el,
                        (total_steps - step) * a.batch_size / max(rate, 1e-9),
                    )
                if a.eval_every_steps and step % a.eval_every_steps == 0 and step < total_steps:
                    if validate():
                        stop_reason = (
                            f"early stop: no validation improvement in {a.early_stopping_patience} evaluation(s)"
                        )
                        break
                if time.time() - t0 > a.max_seconds:
                    stop_reason = f"time budget {a.max_seconds:.0f}s spent"
                    break
                if step >= total_steps:
                    stop_reason = "epochs done"
                    break
            epoch += 1
            if stop_reason is not None and stop_reason.startswith("early"):
                break
            if (not a.eval_every_steps or stop_reason is not None) and validate() and stop_reason is None:
                stop_reason = f"early stop: no validation improvement in {a.early_stopping_patience} evaluation(s)"
        if state["weights"] is not None:
            model.load_state_dict(state["weights"], strict=False)
        if a.lora:
            model.encoder = model.encoder.merge_and_unload()  # plain transformers encoder again
        model.eval()
        self.model_ = model
        self.train_seconds_ = round(time.time() - t0, 1)
        self.samples_per_second_ = round(seen / max(self.train_seconds_, 1e-9), 2)
        self.stop_reason_ = stop_reason
        self.steps_ = step
        self.best_step_ = state["best_step"] if state["weights"] is not None else step
        log.info(
            "fine-tune done: %d steps (best at %d), %.0fs, %.1f samples/s (%s)",
            step,
            self.best_step_,
            self.train_seconds_,
            self.samples_per_second_,
            stop_reason,
        )
        return self

    # ------------------------------------------------------------------ targets
    def _task_specs(self, train: TaskData) -> dict[str, dict[str, Any]]:
        """Per task what the predictor needs, plus a 'trainable' flag (>= 2 classes / values)."""
        specs: dict[str, dict[str, Any]] = {}
        for t in self.tasks:
            spec: dict[str, Any] = {"kind": t.kind, "classes": list(t.classes), "positive": t.positive}
            y = train.labels.get(t.name)
            if t.kind == "regression":
                z = transform_target(t, y) if y is not None else np.empty(0)
                z = z[has_label(t.kind, z)]
                spec.update(
                    log=bool(t.log), mean=float(z.mean()) if z.size else 0.0, std=float(z.std()) if z.size else 1.0
                )
                spec["trainable"] = z.size >= 2 and spec["std"] > 0
                if not spec["trainable"]:
                    spec["std"] = 1.0
            else:
                if t.kind == "ordinal":
                    spec["values"] = [float(v) for v in ordinal_values(t.classes)]
                spec["trainable"] = y is not None and len(set(np.asarray(y)[has_label(t.kind, y)].tolist())) >= 2
            specs[t.name] = spec
        return specs

    def _model_targets(self, data: TaskData) -> dict[str, np.ndarray]:
        """Targets as the heads see them: class indices, or standardized regression values."""
        out = {}
        for t in self.tasks:
            if t.name not in data.labels:
                continue
            y = data.labels[t.name]
            if t.kind == "regression":
                s = self.task_specs_[t.name]
                out[t.name] = (transform_target(t, y) - s["mean"]) / s["std"]
            else:
                out[t.name] = np.asarray(y, dtype=np.int64)
        return out

    def _selection_score(self, report: dict[str, dict[str, float]]) -> float:
        """Mean over tasks of macro-F1 (binary, multiclass), QWK (ordinal), R^2 (regression)."""
        kinds = {t.name: t.kind for t in self.tasks}
        vals = [r[SELECTION_METRIC[kinds[name]]] for name, r in report.items()]
        vals = [v for v in vals if v is not None and not np.isnan(v)]
        return float(np.mean(vals)) if vals else float("-inf")

    # ------------------------------------------------------------------ helpers
    def _encode(self, texts: Sequence[str]) -> list[list[int]]:
        enc = self.tokenizer_(
            [self.prefix + t for t in texts], truncation=True, max_length=self.max_length, padding=False
        )
        return enc["input_ids"]

    def _pad(self, seqs: list[list[int]]):
        from ecomine.model.network import pad_batch

        return pad_batch(seqs, self.tokenizer_.pad_token_id)

    def predict_raw(self, texts: Sequence[str], with_embeddings: bool = False) -> dict[str, np.ndarray]:
        """Raw head outputs per task for ``texts`` (input order), computed in float32 on every
        device: class probabilities ``(n, K)``, or the standardized prediction ``(n,)`` for
        regression. With ``with_embeddings`` also ``"_pooled"``: the mean-pooled encoder
        output ``(n, hidden)``."""
        import torch

        from ecomine.model.predict import raw_head_output

        ids = self._encode(texts)
        order = np.argsort([len(x) for x in ids], kind="stable")
        sizes = {t.name: (len(t.classes),) if t.kind != "regression" else () for t in self.tasks}
        out = {t.name: np.zeros((len(texts), *sizes[t.name]), dtype=np.float32) for t in self.tasks}
        if with_embeddings:
            out["_pooled"] = np.zeros((len(texts), int(self.model_.encoder.config.hidden_size)), dtype=np.float32)
        self.model_.eval()
        with torch.inference_mode():  # float32, as the predictor's reference precision
            for s in range(0, len(order), self.args.eval_batch_size):
                b = order[s : s + self.args.eval_batch_size]
                x, m = self._pad([ids[i] for i in b])
                logits, pooled = self.model_(x.to(self.device_), m.to(self.device_))
                for t in self.tasks:
                    out[t.name][b] = raw_head_output(t.kind, logits[t.name])
                if with_embeddings:
                    out["_pooled"][b] = pooled.float().cpu().numpy()
        return out

    def predict_proba(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Class probabilities ``(n, K)`` of the binary, multiclass and ordinal tasks."""
        raw = self.predict_raw(texts)
        return {t.name: raw[t.name] for t in self.tasks if t.kind != "regression"}

    def predict_frame(self, texts: Sequence[str]) -> Any:
        """The task output columns ``Predictor.predict`` emits (without ``n_tokens`` and
        ``truncated``), from the in-memory model; tasks not trained here are null."""
        from ecomine.model.predict import frame_from_columns, output_columns, task_outputs

        specs = [{"name": t.name, **self.task_specs_[t.name]} for t in self.tasks]
        cols = output_columns(specs)[:-2]
        out = {c: np.full(len(texts), None, dtype=object) for c, _ in cols}
        raw = self.predict_raw(texts)
        for spec in specs:
            if spec["name"] in self.trained_tasks_:
                out.update(task_outputs(spec, raw[spec["name"]]))
        return frame_from_columns(cols, out)

    def evaluate(self, data: TaskData) -> dict[str, dict[str, float]]:
        """Metrics per trained task on the rows of ``data`` that have its label:
        binary/multiclass accuracy, macro-F1; ordinal accuracy, within-one accuracy, MAE
        (in classes), QWK, macro-F1, MAE of the expected value; regression R^2, RMSE, MAE
        on the model's scale (``log(1 + y)`` for ``log`` tasks)."""
        raw = self.predict_raw(data.texts)
        report = {}
        for t in self.tasks:
            if t.name not in self.trained_tasks_ or t.name not in data.labels:
                continue
            y = data.labels[t.name]
            if t.kind == "regression":
                z = transform_target(t, y)
                keep = has_label(t.kind, z)
                if keep.any():
                    s = self.task_specs_[t.name]
                    report[t.name] = regression_report(z[keep], raw[t.name][keep] * s["std"] + s["mean"])
                continue
            keep = has_label(t.kind, y)
            if not keep.any():
                continue
            probs = raw[t.name][keep]
            if t.kind == "ordinal":
                values = np.asarray(self.task_specs_[t.name]["values"])
                report[t.name] = ordinal_report(
                    y[keep], probs.argmax(1), len(t.classes), expected=probs @ values, values=values
                )
            else:
                report[t.name] = classification_report(y[keep], probs.argmax(1), len(t.classes))
        return report

    def save(self, out_dir: str | Path) -> None:
        """Encoder + tokenizer via save_pretrained (safetensors), heads as safetensors, and
        ``heads.json`` (per task: kind, classes, ordinal values, regression mean/std/log)."""
        from safetensors.torch import save_file

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        self.model_.encoder.save_pretrained(str(out_dir / "encoder"), safe_serialization=True)
        self.tokenizer_.save_pretrained(str(out_dir / "tokenizer"))
        heads = {k: v.detach().cpu().contiguous() for k, v in self.model_.heads.state_dict().items()}
        save_file(heads, str(out_dir / "heads.safetensors"))
        meta = {"format": 1, "trained_tasks": list(self.trained_tasks_), "tasks": self.task_specs_}
        (out_dir / "heads.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
