"""Driver-side fine-tuning of one language's multi-head model (never imported on executors).

``FineTuner`` follows scikit-learn conventions: parameters stored in ``__init__``,
``fit`` returns ``self``, learned state ends in ``_``. Training uses dynamic padding
with length-grouped batches, AdamW with linear warmup/decay, gradient clipping, masked
multi-task losses (label -1 = missing, no loss), a wall-clock budget, per-epoch
validation with the best epoch kept, bf16 autocast on CUDA, and fixed seeds.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ecomine.config import TaskConfig, TrainConfig
from ecomine.metrics import classification_report

log = logging.getLogger(__name__)

MISSING = -1


@dataclass
class TaskData:
    """Texts and, per task, integer class labels (``MISSING`` where a row has no label)."""

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


class FineTuner:
    def __init__(self, base_dir: str | Path, tasks: tuple[TaskConfig, ...], max_length: int, args: TrainConfig, prefix: str = ""):
        self.base_dir = base_dir
        self.tasks = tasks
        self.max_length = max_length
        self.args = args
        self.prefix = prefix

    # ------------------------------------------------------------------ fit
    def fit(self, train: TaskData, validation: TaskData) -> "FineTuner":
        import torch
        from transformers import AutoModel, AutoTokenizer, get_linear_schedule_with_warmup

        from ecomine.model.device import choose_device
        from ecomine.model.network import MultiHeadEncoder

        a = self.args
        set_seed(a.seed)
        if a.num_threads:
            torch.set_num_threads(a.num_threads)
        self.device_ = choose_device(a.device)
        self.tokenizer_ = AutoTokenizer.from_pretrained(str(self.base_dir))
        encoder = AutoModel.from_pretrained(str(self.base_dir))
        self.trained_tasks_ = [
            t.name for t in self.tasks if t.name in train.labels and len(set(train.labels[t.name][train.labels[t.name] >= 0])) >= 2
        ]
        skipped = [t.name for t in self.tasks if t.name not in self.trained_tasks_]
        if not self.trained_tasks_:
            raise ValueError("no task has labels of at least two classes in the training rows")
        if skipped:
            log.info("tasks without labels here (head left untrained, outputs null): %s", skipped)
        model = MultiHeadEncoder(encoder, {t.name: len(t.classes) for t in self.tasks}).to(self.device_)

        ids = self._encode(train.texts)
        lengths = [len(x) for x in ids]
        rng = np.random.default_rng(a.seed)
        steps_per_epoch = math.ceil(len(ids) / a.batch_size)
        total_steps = max(1, int(math.ceil(steps_per_epoch * a.epochs)))
        no_decay = ("bias", "LayerNorm.weight", "layer_norm", "norm.weight")
        groups = [
            {"params": [p for n, p in model.named_parameters() if not any(k in n for k in no_decay)], "weight_decay": a.weight_decay},
            {"params": [p for n, p in model.named_parameters() if any(k in n for k in no_decay)], "weight_decay": 0.0},
        ]
        opt = torch.optim.AdamW(groups, lr=a.learning_rate)
        sched = get_linear_schedule_with_warmup(opt, int(a.warmup_ratio * total_steps), total_steps)
        use_amp = self.device_.startswith("cuda")

        self.history_: list[dict[str, Any]] = []
        best_score, best_state = -1.0, None
        step, seen, t0 = 0, 0, time.time()
        stop_reason = "epochs done"
        epoch = 0
        log.info(
            "fine-tuning %s on %s: %d rows, %d steps (batch %d), tasks %s",
            Path(str(self.base_dir)).name, self.device_, len(ids), total_steps, a.batch_size, self.trained_tasks_,
        )
        while step < total_steps:
            model.train()
            for batch in length_grouped_batches(lengths, a.batch_size, rng):
                x, m = self._pad([ids[i] for i in batch])
                x, m = x.to(self.device_), m.to(self.device_)
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
                    logits, _ = model(x, m)
                loss = torch.zeros((), device=self.device_)
                for name in self.trained_tasks_:
                    y = torch.as_tensor(train.labels[name][batch], device=self.device_)
                    keep = y >= 0  # masked loss: rows without this task's label contribute nothing
                    if keep.any():
                        loss = loss + torch.nn.functional.cross_entropy(logits[name][keep].float(), y[keep])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), a.max_grad_norm)
                opt.step()
                sched.step()
                step += 1
                seen += len(batch)
                if step % 20 == 0 or step == total_steps:
                    el = time.time() - t0
                    log.info("step %d/%d loss %.4f  %.1f samples/s  %.0fs", step, total_steps, loss.item(), seen / el, el)
                if time.time() - t0 > a.max_seconds:
                    stop_reason = f"time budget {a.max_seconds:.0f}s spent"
                    break
                if step >= total_steps:
                    break
            epoch += 1
            self.model_ = model
            val = self.evaluate(validation) if len(validation) else {}
            score = float(np.nanmean([v["macro_f1"] for v in val.values()])) if val else 0.0
            self.history_.append({"epoch": epoch, "step": step, "validation": val, "seconds": round(time.time() - t0, 1)})
            log.info("epoch %d: validation %s", epoch, val)
            if score > best_score:
                best_score = score
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            elif len(self.history_) > 1:
                stop_reason = "early stop: validation did not improve"
                break
            if stop_reason.startswith("time"):
                break
        if best_state is not None:
            model.load_state_dict(best_state)
        model.eval()
        self.model_ = model
        self.train_seconds_ = round(time.time() - t0, 1)
        self.samples_per_second_ = round(seen / max(self.train_seconds_, 1e-9), 2)
        self.stop_reason_ = stop_reason
        self.steps_ = step
        log.info("fine-tune done: %d steps, %.0fs, %.1f samples/s (%s)", step, self.train_seconds_, self.samples_per_second_, stop_reason)
        return self

    # ------------------------------------------------------------------ helpers
    def _encode(self, texts: list[str]) -> list[list[int]]:
        enc = self.tokenizer_([self.prefix + t for t in texts], truncation=True, max_length=self.max_length, padding=False)
        return enc["input_ids"]

    def _pad(self, seqs: list[list[int]]):
        import torch

        width = max(len(s) for s in seqs)
        pad = self.tokenizer_.pad_token_id or 0
        x = torch.full((len(seqs), width), pad, dtype=torch.long)
        m = torch.zeros((len(seqs), width), dtype=torch.long)
        for r, s in enumerate(seqs):
            x[r, : len(s)] = torch.tensor(s)
            m[r, : len(s)] = 1
        return x, m

    def predict_proba(self, texts: list[str]) -> dict[str, np.ndarray]:
        import torch

        ids = self._encode(texts)
        order = np.argsort([len(x) for x in ids], kind="stable")
        out = {t.name: np.zeros((len(texts), len(t.classes)), dtype=np.float32) for t in self.tasks}
        self.model_.eval()
        with torch.inference_mode():
            for s in range(0, len(order), self.args.eval_batch_size):
                b = order[s : s + self.args.eval_batch_size]
                x, m = self._pad([ids[i] for i in b])
                logits, _ = self.model_(x.to(self.device_), m.to(self.device_))
                for name, lg in logits.items():
                    out[name][b] = torch.softmax(lg.float(), -1).cpu().numpy()
        return out

    def evaluate(self, data: TaskData) -> dict[str, dict[str, float]]:
        probs = self.predict_proba(data.texts)
        report = {}
        for t in self.tasks:
            if t.name not in self.trained_tasks_ or t.name not in data.labels:
                continue
            y = data.labels[t.name]
            keep = y >= 0
            if keep.any():
                report[t.name] = classification_report(y[keep], probs[t.name][keep].argmax(1), len(t.classes))
        return report

    def save(self, out_dir: Path) -> None:
        """Encoder + tokenizer via save_pretrained (safetensors), heads as safetensors."""
        from safetensors.torch import save_file

        out_dir.mkdir(parents=True, exist_ok=True)
        self.model_.encoder.save_pretrained(str(out_dir / "encoder"), safe_serialization=True)
        self.tokenizer_.save_pretrained(str(out_dir / "tokenizer"))
        heads = {k: v.detach().cpu().contiguous() for k, v in self.model_.heads.state_dict().items()}
        save_file(heads, str(out_dir / "heads.safetensors"))
