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

import functools
import json
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ecomine.config import TaskConfig, TrainConfig
from ecomine.labels import ordinal_values
from ecomine.metrics import classification_report, ordinal_report, regression_report

__all__ = [
    "FineTuner",
    "MISSING",
    "SELECTION_METRIC",
    "TaskData",
    "has_label",
    "length_grouped_batches",
    "multitask_loss",
    "plan_schedule",
    "report_from_raw",
    "set_seed",
    "training_autocast",
    "transform_target",
]

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

    def head(self, n: int) -> TaskData:
        """The first ``n`` rows (training rows are in hash-pick order, so these are the rows a
        cap of ``n`` would have picked)."""
        return TaskData(self.texts[:n], {k: v[:n] for k, v in self.labels.items()})


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
    Weights, gradients and optimizer state stay fp32 either way. Speed and held-out metrics of
    both precisions: ``bench/results/train_precision.json`` (``bench/train_precision.py``)."""
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
    for start in range(0, len(idx), mega):
        chunk = sorted(idx[start : start + mega], key=lambda i: lengths[i], reverse=True)
        batches += [list(chunk[first : first + batch_size]) for first in range(0, len(chunk), batch_size)]
    order = rng.permutation(len(batches))
    return [batches[i] for i in order]


#: share of a time budget planned for training; the rest absorbs the speed estimate's error
BUDGET_SAFETY = 0.9
CALIBRATION_BATCHES = 4  # timed training steps (after one untimed) that measure a sub-model's speed
FORWARD_SHARE = 0.35  # a validation token's cost (forward only) relative to a training token's


def plan_schedule(
    budget_s: float,
    seconds_per_token: float,
    lengths: Sequence[int],
    max_epochs: float,
    batch_size: int,
    validation_tokens: int = 0,
) -> tuple[int, float]:
    """(training rows, epochs) that fit ``budget_s`` seconds: the first rows of ``lengths``
    (token counts of the candidate rows, in pick order) as far as they fit one epoch
    (``max_epochs`` if that is below 1), and more epochs, at most ``max_epochs``, once every
    row fits; never fewer rows than one batch. The cost of a row is its tokens times
    ``seconds_per_token``; each epoch's validation costs ``validation_tokens`` forward-only
    tokens. Distinct rows come first because a small encoder gains more from new labelled
    rows than from repeating them (docs/quality.md: Mercari condition QWK 0.497 on 2,000
    rows x 1 epoch, 0.763 on 80,072)."""
    n = len(lengths)
    if n == 0:
        return 0, 0.0
    spt = max(float(seconds_per_token), 1e-12)
    cum = np.cumsum(np.asarray(lengths, dtype=np.float64)) * spt  # seconds of one pass over the first r rows
    available = max(0.0, budget_s) * BUDGET_SAFETY
    val_s = validation_tokens * spt * FORWARD_SHARE
    first = min(1.0, max_epochs)
    fits = int(np.searchsorted(cum * first, available - val_s, side="right"))
    if fits < n:
        return max(fits, min(batch_size, n)), first
    best = first
    for k in range(1, int(math.ceil(max_epochs)) + 1):  # k validations for epochs in (k - 1, k]
        e = min(float(k), max_epochs, (available - k * val_s) / cum[-1])
        if e > k - 1:
            best = max(best, e)
    return n, math.floor(best * 100) / 100


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


def report_from_raw(task: TaskConfig, spec: dict[str, Any], y: np.ndarray, raw: np.ndarray) -> dict[str, float] | None:
    """A task's held-out metrics from raw head outputs (class probabilities, or the
    standardized prediction for regression, de-standardized with ``spec``'s mean/std) against
    source targets ``y`` (``labels.task_targets``); None when no row has a label.
    ``FineTuner.evaluate`` reports with it, and so do the TF-IDF and hybrid outputs in training."""
    if task.kind == "regression":
        z = transform_target(task, y)
        keep = has_label(task.kind, z)
        if not keep.any():
            return None
        return regression_report(z[keep], np.asarray(raw)[keep] * spec["std"] + spec["mean"])
    keep = has_label(task.kind, y)
    if not keep.any():
        return None
    probs = np.asarray(raw)[keep]
    if task.kind == "ordinal":
        values = np.asarray(spec["values"])
        return ordinal_report(y[keep], probs.argmax(1), len(task.classes), expected=probs @ values, values=values)
    return classification_report(y[keep], probs.argmax(1), len(task.classes))


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
            values = np.asarray(specs[name]["values"], dtype=np.float32)
            span = max(float(values.max() - values.min()), 1e-12)
            values01 = torch.as_tensor((values - values.min()) / span, device=device)
            expected = torch.softmax(out, -1) @ values01
            loss = loss + F.mse_loss(expected, values01[y])
    return loss


def _with_lora(encoder: Any, r: int) -> Any:
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=0.1, target_modules=["query", "value"], bias="none")
    return get_peft_model(encoder, cfg)


_EARLY_STOP = "early stop"


class _NoSchedule:
    """A scheduler stand-in for the speed measurement's steps."""

    def step(self) -> None:
        pass


@dataclass
class _EarlyStopping:
    """The best validation so far (score, step, trainable weights) and the validations since."""

    patience: int  # validations in a row without improvement that end training (0 = never)
    best: float | None = None
    best_step: int = 0
    weights: dict[str, Any] | None = None
    since_best: int = 0

    def update(self, score: float, step: int, model: Any) -> bool:
        """Record a validation score; keep ``model``'s trainable weights when it is the best so
        far. True when patience is used up."""
        if self.best is None or score > self.best:
            self.best, self.best_step, self.since_best = score, step, 0
            self.weights = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
            return False
        self.since_best += 1
        return self.patience > 0 and self.since_best >= self.patience


@dataclass
class _Progress:
    """Counters of a fit: optimizer steps, rows seen, finished epochs, why it stopped."""

    total_steps: int
    t0: float = field(default_factory=time.time)
    step: int = 0
    seen: int = 0
    epoch: int = 0
    stop_reason: str | None = None

    @property
    def stopped_early(self) -> bool:
        return self.stop_reason is not None and self.stop_reason.startswith(_EARLY_STOP)


@dataclass
class _StepTools:
    """What an optimizer step needs: optimizer, LR schedule, the trainable parameters (for
    clipping), the autocast device type and whether bf16 autocast is on."""

    optimizer: Any
    scheduler: Any
    params: list[Any]
    amp_device: str
    use_amp: bool
    total_steps: int


class FineTuner:
    """Fine-tunes ``base_dir``'s encoder with one head per task of ``tasks`` (see module doc).

    Learned state after ``fit``: ``model_`` (a ``MultiHeadEncoder``, plain transformers
    encoder even with LoRA), ``tokenizer_``, ``device_``, ``trained_tasks_`` (tasks with
    enough labels), ``task_specs_`` (what the predictor needs per head: kind, classes,
    ordinal values, regression mean/std/log), ``history_`` (one entry per validation),
    ``train_rows_`` (the first rows of ``train`` used), ``epochs_``, ``schedule_`` (the
    time-budget plan, or None), ``embeddings_frozen_``,
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
    def fit(self, train: TaskData, validation: TaskData, budget_s: float | None = None) -> FineTuner:
        """Fine-tune on ``train``, validating on ``validation`` (see the class doc); returns self.

        ``budget_s``: seconds of optimizer steps to plan for (``plan_schedule`` on the speed
        measured on a few of ``train``'s batches): the first ``train_rows_`` rows of ``train``
        are used, for ``epochs_`` epochs (``args.epochs`` is then the most). None: every row,
        ``args.epochs`` epochs. ``max_seconds`` still stops training in either case."""
        import torch
        from transformers import AutoModel, AutoTokenizer

        from ecomine.model.device import choose_device

        args = self.args
        set_seed(args.seed)
        if args.num_threads:
            torch.set_num_threads(args.num_threads)
        self.device_ = choose_device(args.device)
        self.tokenizer_ = AutoTokenizer.from_pretrained(str(self.base_dir))
        encoder = AutoModel.from_pretrained(str(self.base_dir))
        self._plan_tasks(train)
        self.model_ = self._build_model(encoder)
        ids = self._encode(train.texts)
        self.epochs_, self.schedule_ = float(args.epochs), None
        if budget_s is not None:
            spt = self._measure_speed(ids, self._model_targets(train))
            lengths = [len(x) for x in ids]
            val_tokens = sum(len(x) for x in self._encode(validation.texts)) if len(validation) else 0
            rows, self.epochs_ = plan_schedule(budget_s, spt, lengths, args.epochs, args.batch_size, val_tokens)
            per_row = sum(lengths) / max(len(lengths), 1)
            self.schedule_ = {
                "budget_seconds": round(float(budget_s), 1),
                "measured_tokens_per_second": round(1 / spt, 1),
                "measured_samples_per_second": round(1 / (spt * per_row), 2),
                "rows_available": len(ids),
                "rows": rows,
                "epochs": self.epochs_,
            }
            log.info(
                "time budget %.0fs at %.0f tokens/s (~%.1f rows/s): %d of %d rows, %.2f epoch(s)",
                budget_s, 1 / spt, 1 / (spt * per_row), rows, len(ids), self.epochs_,
            )  # fmt: skip
            train, ids = train.head(rows), ids[:rows]
            self._plan_tasks(train)  # regression mean/std and trainable tasks from the rows used
        set_seed(args.seed)  # the fit does not depend on whether timing steps drew random numbers
        self.train_rows_ = len(ids)
        lengths = [len(x) for x in ids]
        targets = self._model_targets(train)
        rng = np.random.default_rng(args.seed)
        steps_per_epoch = math.ceil(len(ids) / args.batch_size)
        tools = self._step_tools(total_steps=max(1, int(math.ceil(steps_per_epoch * self.epochs_))))
        self.history_: list[dict[str, Any]] = []
        stopping = _EarlyStopping(args.early_stopping_patience)
        progress = _Progress(total_steps=tools.total_steps)
        validate = functools.partial(self._validate, validation, progress, stopping)
        self._log_start(len(ids), tools)
        while progress.stop_reason is None:
            batches = length_grouped_batches(lengths, args.batch_size, rng)
            self._train_epoch(batches, ids, targets, tools, progress, validate)
            progress.epoch += 1
            if progress.stopped_early:
                break
            if not args.eval_every_steps or progress.stop_reason is not None:  # validate at each epoch end, and last
                if validate() and progress.stop_reason is None:
                    progress.stop_reason = self._early_stop_reason()
        self._finish(progress, stopping)
        return self

    def _measure_speed(self, ids: list[list[int]], targets: dict[str, np.ndarray]) -> float:
        """Seconds per training token on this device, from ``CALIBRATION_BATCHES`` full training
        steps (after one untimed) on length-grouped batches of ``ids`` at evenly spaced quantiles
        of their token counts (random picks came out twice too fast on Chinese reviews), with a
        learning rate of 0: the weights do not move (AdamW's step and decay are scaled by the
        learning rate) and the optimizer is thrown away."""
        import torch

        rng = np.random.default_rng(self.args.seed + 1)
        batches = length_grouped_batches([len(x) for x in ids], self.args.batch_size, rng)
        batches.sort(key=lambda b: sum(len(ids[i]) for i in b))
        picks = np.linspace(0, len(batches) - 1, CALIBRATION_BATCHES + 2).round().astype(int)[1:-1]
        warm, timed = batches[len(batches) // 2], [batches[i] for i in dict.fromkeys(picks.tolist())]
        tools = self._step_tools(total_steps=1)
        trainable = [p for p in self.model_.parameters() if p.requires_grad]
        tools.optimizer, tools.scheduler = torch.optim.AdamW(trainable, lr=0.0), _NoSchedule()
        self.model_.train()
        self._train_step(warm, ids, targets, tools)
        t0, tokens = time.perf_counter(), 0
        for batch in timed:
            self._train_step(batch, ids, targets, tools)
            tokens += sum(len(ids[i]) for i in batch)
        tools.optimizer.zero_grad(set_to_none=True)
        return (time.perf_counter() - t0) / max(tokens, 1)

    def _plan_tasks(self, train: TaskData) -> None:
        """``task_specs_`` and ``trained_tasks_`` (the tasks with at least two classes or values)."""
        self.task_specs_ = self._task_specs(train)
        self.trained_tasks_ = [t.name for t in self.tasks if self.task_specs_[t.name].get("trainable")]
        for spec in self.task_specs_.values():
            spec.pop("trainable", None)
        skipped = [t.name for t in self.tasks if t.name not in self.trained_tasks_]
        if not self.trained_tasks_:
            raise ValueError("no task has labels of at least two classes (or two distinct values) in the training rows")
        if skipped:
            log.info("tasks without enough labels here (head left untrained, outputs null): %s", skipped)

    def _build_model(self, encoder: Any) -> Any:
        """The encoder (embeddings frozen, LoRA-wrapped as configured) with one head per task, on ``device_``."""
        from ecomine.model.network import MultiHeadEncoder, head_sizes

        vocab = encoder.get_input_embeddings().num_embeddings
        above = self.args.freeze_embeddings_above_vocab
        self.embeddings_frozen_ = self.args.freeze_embeddings or bool(above and vocab > above)
        if self.embeddings_frozen_:
            emb = getattr(encoder, "embeddings", None)
            emb = emb if emb is not None else encoder.get_input_embeddings()
            for param in emb.parameters():
                param.requires_grad_(False)
        if self.args.lora:
            encoder = _with_lora(encoder, self.args.lora_r)
        return MultiHeadEncoder(encoder, head_sizes(self.tasks)).to(self.device_)

    def _step_tools(self, total_steps: int) -> _StepTools:
        """AdamW (no weight decay on biases and norms) with linear warmup/decay, and the autocast choice."""
        import torch
        from transformers import get_linear_schedule_with_warmup

        args = self.args
        no_decay = ("bias", "LayerNorm.weight", "layer_norm", "norm.weight")
        trainable = [(n, p) for n, p in self.model_.named_parameters() if p.requires_grad]
        groups = [
            {
                "params": [p for n, p in trainable if not any(k in n for k in no_decay)],
                "weight_decay": args.weight_decay,
            },
            {"params": [p for n, p in trainable if any(k in n for k in no_decay)], "weight_decay": 0.0},
        ]
        optimizer = torch.optim.AdamW(groups, lr=args.learning_rate)
        scheduler = get_linear_schedule_with_warmup(optimizer, int(args.warmup_ratio * total_steps), total_steps)
        amp_device = "cuda" if self.device_.startswith("cuda") else "cpu"
        use_amp = training_autocast(amp_device, args.bf16_cpu)
        if amp_device == "cpu" and args.bf16_cpu and not use_amp:
            log.info("model.train.bf16_cpu: this CPU has no native bf16 (avx512_bf16/amx_bf16); training in fp32")
        return _StepTools(optimizer, scheduler, [p for _, p in trainable], amp_device, use_amp, total_steps)

    def _log_start(self, n_rows: int, tools: _StepTools) -> None:
        args = self.args
        log.info(
            "fine-tuning %s on %s: %d rows, %d steps (batch %d, %.3g epochs), tasks %s, %.1fM trainable parameters%s%s",
            Path(str(self.base_dir)).name,
            self.device_,
            n_rows,
            tools.total_steps,
            args.batch_size,
            self.epochs_,
            self.trained_tasks_,
            sum(p.numel() for p in tools.params) / 1e6,
            f", LoRA r={args.lora_r}" if args.lora else "",
            ", embeddings frozen" if self.embeddings_frozen_ else "",
        )

    def _train_epoch(
        self,
        batches: list[list[int]],
        ids: list[list[int]],
        targets: dict[str, np.ndarray],
        tools: _StepTools,
        progress: _Progress,
        validate: Callable[[], bool],
    ) -> None:
        """One pass over ``batches``; sets ``progress.stop_reason`` when training must end
        (patience used up at a step validation, time budget spent, all steps done)."""
        args = self.args
        self.model_.train()
        for batch in batches:
            loss = self._train_step(batch, ids, targets, tools)
            progress.step += 1
            progress.seen += len(batch)
            self._log_step(progress, loss, args.batch_size)
            every = args.eval_every_steps
            if every and progress.step % every == 0 and progress.step < progress.total_steps and validate():
                progress.stop_reason = self._early_stop_reason()
                return
            if time.time() - progress.t0 > args.max_seconds:
                progress.stop_reason = f"time budget {args.max_seconds:.0f}s spent"
                return
            if progress.step >= progress.total_steps:
                progress.stop_reason = "epochs done"
                return

    def _train_step(self, batch: list[int], ids: list[list[int]], targets: dict[str, np.ndarray], tools: _StepTools):
        """Forward (under bf16 autocast where chosen), multi-task loss, clipped AdamW step; the loss."""
        import torch

        x, mask = self._pad([ids[i] for i in batch])
        x, mask = x.to(self.device_), mask.to(self.device_)
        with torch.autocast(tools.amp_device, dtype=torch.bfloat16, enabled=tools.use_amp):
            outputs, _ = self.model_(x, mask)
        loss = multitask_loss(outputs, {n: targets[n][batch] for n in self.trained_tasks_}, self.task_specs_)
        tools.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(tools.params, self.args.max_grad_norm)
        tools.optimizer.step()
        tools.scheduler.step()
        return loss

    @staticmethod
    def _log_step(progress: _Progress, loss: Any, batch_size: int) -> None:
        if progress.step % 20 and progress.step != progress.total_steps:
            return
        elapsed = time.time() - progress.t0
        rate = progress.seen / elapsed
        log.info(
            "step %d/%d loss %.4f  %.1f samples/s  %.0fs elapsed, ~%.0fs to go",
            progress.step,
            progress.total_steps,
            loss.item(),
            rate,
            elapsed,
            (progress.total_steps - progress.step) * batch_size / max(rate, 1e-9),
        )

    def _validate(self, validation: TaskData, progress: _Progress, stopping: _EarlyStopping) -> bool:
        """Validate, record it in ``history_``, keep the best trainable weights; True when patience is used up."""
        report = self.evaluate(validation) if len(validation) else {}
        score = self._selection_score(report)
        self.history_.append(
            {
                "epoch": progress.epoch,
                "step": progress.step,
                "validation": report,
                "score": score if math.isfinite(score) else None,
                "seconds": round(time.time() - progress.t0, 1),
            }
        )
        log.info("validation at step %d (epoch %d): score %.4f %s", progress.step, progress.epoch, score, report)
        self.model_.train()
        if not report:
            return False  # nothing to select on: keep the last weights, never stop early
        return stopping.update(score, progress.step, self.model_)

    def _early_stop_reason(self) -> str:
        return f"{_EARLY_STOP}: no validation improvement in {self.args.early_stopping_patience} evaluation(s)"

    def _finish(self, progress: _Progress, stopping: _EarlyStopping) -> None:
        """Best weights back in, LoRA merged, eval mode; the run's learned-state attributes."""
        model = self.model_
        if stopping.weights is not None:
            model.load_state_dict(stopping.weights, strict=False)
        if self.args.lora:
            model.encoder = model.encoder.merge_and_unload()  # plain transformers encoder again
        model.eval()
        self.train_seconds_ = round(time.time() - progress.t0, 1)
        self.samples_per_second_ = round(progress.seen / max(self.train_seconds_, 1e-9), 2)
        self.stop_reason_ = progress.stop_reason
        self.steps_ = progress.step
        self.best_step_ = stopping.best_step if stopping.weights is not None else progress.step
        log.info(
            "fine-tune done: %d steps (best at %d), %.0fs, %.1f samples/s (%s)",
            progress.step,
            self.best_step_,
            self.train_seconds_,
            self.samples_per_second_,
            progress.stop_reason,
        )

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
            for start in range(0, len(order), self.args.eval_batch_size):
                rows = order[start : start + self.args.eval_batch_size]
                x, mask = self._pad([ids[i] for i in rows])
                logits, pooled = self.model_(x.to(self.device_), mask.to(self.device_))
                for t in self.tasks:
                    out[t.name][rows] = raw_head_output(t.kind, logits[t.name])
                if with_embeddings:
                    out["_pooled"][rows] = pooled.float().cpu().numpy()
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
            r = report_from_raw(t, self.task_specs_[t.name], data.labels[t.name], raw[t.name])
            if r is not None:
                report[t.name] = r
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
