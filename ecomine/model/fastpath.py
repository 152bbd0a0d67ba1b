"""Inference precision for the scoring path: fp32 reference, bf16 autocast, int8 dynamic quantization.

* ``fp32``: the reference path; every other precision is checked against it.
* ``bf16``: ``torch.autocast`` in bfloat16 (CUDA; on CPU only where the CPU has native
  bf16 matrix instructions, e.g. AVX-512 BF16 / AMX, else it is slower than fp32).
* ``int8``: dynamic int8 quantization of the encoder's Linear layers (weights int8 per
  output channel, activations quantized per batch); heads stay fp32. CPU only (VNNI makes
  it fast).
* ``auto``: ``bf16`` on CUDA and on CPUs with native bf16 (``avx512_bf16``/``amx_bf16`` in
  /proc/cpuinfo), else ``int8``.

The bench (bench/score_throughput.py) measures the speed of each and the held-out metric
change against fp32 (``bench/results/throughput.json``). ``auto`` prefers bf16 wherever the
CPU has it: int8 quantizes activations too and so flips some borderline predictions, bf16
autocast keeps them much closer to fp32 (the ``quality_check`` records of that file).
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable
from typing import Any

__all__ = ["PRECISIONS", "cpu_has_bf16", "prepare", "resolve"]

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "int8")


def cpu_has_bf16(cpuinfo: str | None = None) -> bool:
    """Whether the CPU has native bf16 matrix instructions (read from /proc/cpuinfo)."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                cpuinfo = f.read()
        except OSError:
            return False
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[-1].split())
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def resolve(precision: str, device: str, cpu_bf16: bool | None = None) -> str:
    """The concrete precision for ``device``; ``cpu_bf16`` overrides the CPU check (tests)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        if device.startswith("cuda"):
            return "bf16"
        return "bf16" if (cpu_has_bf16() if cpu_bf16 is None else cpu_bf16) else "int8"
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
            from torch.ao.quantization import per_channel_dynamic_qconfig

            net.encoder = torch.ao.quantization.quantize_dynamic(
                net.encoder, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8
            )
        return net, contextlib.nullcontext
    if precision == "bf16":
        dev_type = "cuda" if device.startswith("cuda") else "cpu"
        return net, lambda: torch.autocast(dev_type, dtype=torch.bfloat16)
    return net, contextlib.nullcontext
