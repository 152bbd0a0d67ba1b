"""The scoring network: one pretrained encoder, mean pooling, one small linear head per task.

Shared by the driver-side trainer and the executor-side predictor (it imports no
training code). One forward pass yields every task's logits and the pooled embedding.
"""

from __future__ import annotations

import torch
from torch import nn


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


class MultiHeadEncoder(nn.Module):
    """``encoder`` is a transformers ``PreTrainedModel`` (BERT class); ``heads`` maps task -> n_outputs."""

    def __init__(self, encoder: nn.Module, heads: dict[str, int], dropout: float = 0.1):
        super().__init__()
        self.encoder = encoder
        hidden = int(encoder.config.hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.heads = nn.ModuleDict({name: nn.Linear(hidden, n) for name, n in heads.items()})

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
        pooled = mean_pool(out.last_hidden_state, attention_mask)
        z = self.dropout(pooled)
        return {name: head(z) for name, head in self.heads.items()}, pooled
