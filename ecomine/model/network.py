"""The scoring network: one pretrained encoder, mean pooling, one small linear head per task.

Shared by the driver-side trainer and the executor-side predictor (it imports no
training code). One forward pass yields every task's outputs and the pooled embedding:
class logits for binary, multiclass and ordinal tasks, one standardized number for
regression tasks (see ``head_size``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["MultiHeadEncoder", "head_size", "head_sizes", "mean_pool", "pad_batch"]


def pad_batch(seqs: Sequence[Sequence[int]], pad_id: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id lists as a ``(n, longest)`` id tensor padded with ``pad_id`` (0 when the
    tokenizer has none) and the matching 0/1 attention mask, both int64 on the CPU."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id or 0, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, seq in enumerate(seqs):
        ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
    return ids, mask


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


def head_size(kind: str, n_classes: int) -> int:
    """Outputs of a task's head: 1 for regression, one logit per class otherwise."""
    return 1 if kind == "regression" else int(n_classes)


def head_sizes(tasks: Iterable[Any]) -> dict[str, int]:
    """task name -> head outputs, for ``TaskConfig`` objects or manifest task dicts."""
    out = {}
    for t in tasks:
        if isinstance(t, Mapping):
            out[t["name"]] = head_size(t["kind"], len(t.get("classes") or ()))
        else:
            out[t.name] = head_size(t.kind, len(t.classes))
    return out


class MultiHeadEncoder(nn.Module):
    """``encoder`` is a transformers ``PreTrainedModel`` (BERT class); ``heads`` maps task -> n_outputs.

    Under autocast only the encoder runs in reduced precision; mean pooling and the heads
    run in float32."""

    def __init__(self, encoder: nn.Module, heads: dict[str, int], dropout: float = 0.1):
        super().__init__()
        self.encoder = encoder
        hidden = int(encoder.config.hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.heads = nn.ModuleDict({name: nn.Linear(hidden, n) for name, n in heads.items()})

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
        # pooling and heads in float32 even under bf16 autocast: a regression head's output
        # is de-standardized (and exponentiated), so bf16's 3 digits would show in prices
        pooled = mean_pool(out.last_hidden_state.float(), attention_mask)
        z = self.dropout(pooled)
        with torch.autocast(device_type=z.device.type, enabled=False):
            return {name: head(z) for name, head in self.heads.items()}, pooled
