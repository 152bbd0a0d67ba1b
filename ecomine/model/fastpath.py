"""Inference precision for the scoring path: fp32 reference, bf16 autocast, int8 dynamic quantization.

* ``fp32``: the reference path; every other precision is checked against it.
* ``bf16``: ``torch.autocast`` in bfloat16 (CUDA; on CPU only where the CPU has native
  bf16 matrix instructions, e.g. AVX-512 BF16 / AMX, else it is slower than fp32).
* ``int8``: dynamic int8 quantization of the encoder's Linear layers (weights int8,
  activations quantized per batch); heads stay fp32. CPU only (VNNI makes it fast).
* ``auto``: ``bf16`` on CUDA, ``int8`` on CPU.

The bench (bench/score_throughput.py) measures the speed of each and the held-out metric
change against fp32; the config default is the one that stays within 0.5 points.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "int8")


def resolve(precision: str, device: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        return "bf16" if device.startswith("cuda") else "int8"
    if precision == "int8" and device.startswith("cuda"):
        log.warning("int8 dynamic quantization is CPU-only; using bf16 on %s", device)
        return "bf16"
    return precision


def prepare(net: Any, device: str, precision: str) -> tuple[Any, Callable[[], contextlib.AbstractContextManager]]:
    """The network to run and a factory of the context to run it in, for ``precision``."""
    import torch

    precision = resolve(precision, device)
    if precision == "int8":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao.quantization deprecation notices
            net.encoder = torch.ao.quantization.quantize_dynamic(net.encoder, {torch.nn.Linear}, dtype=torch.qint8)
        return net, contextlib.nullcontext
    if precision == "bf16":
        dev_type = "cuda" if device.startswith("cuda") else "cpu"
        return net, lambda: torch.autocast(dev_type, dtype=torch.bfloat16)
    return net, contextlib.nullcontext
