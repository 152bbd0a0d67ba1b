"""Device and thread choice: CUDA when present (or the GPU Spark assigned to the task), CPU otherwise."""

from __future__ import annotations

import logging
import os

__all__ = ["choose_device", "spark_task_cpus", "spark_task_gpus"]


def choose_device(preference: str = "auto", task_gpus: list[str] | None = None) -> str:
    """'cuda:<i>' or 'cpu'.

    ``task_gpus`` are the GPU addresses Spark assigned to the current task
    (``TaskContext.get().resources()["gpu"].addresses``); the first one wins. With
    ``preference='auto'`` and no assignment, use cuda:0 when torch sees a GPU.
    When Spark assigned a GPU that torch cannot see (a driver/CUDA mismatch, a CPU-only
    torch build on a GPU node, or a cluster whose workers advertise GPUs they lack),
    ``auto`` falls back to the CPU with a warning naming the address, so the run finishes;
    ``preference='cuda'`` without a visible GPU is an error rather than a silent CPU run.
    """
    import torch

    if preference == "cpu":
        return "cpu"
    has_cuda = torch.cuda.is_available()
    if task_gpus:
        if has_cuda:
            return f"cuda:{int(task_gpus[0])}"
        if preference == "cuda":
            raise RuntimeError(f"Spark assigned GPU(s) {task_gpus} but torch sees no CUDA device")
        logging.getLogger(__name__).warning(
            "Spark assigned GPU(s) %s but torch sees no CUDA device: scoring on the CPU", task_gpus
        )
        return "cpu"
    if has_cuda:
        return "cuda:0"
    if preference == "cuda":
        raise RuntimeError("scoring/training device 'cuda' requested but torch sees no CUDA device")
    return "cpu"


def spark_task_gpus() -> list[str] | None:
    """GPU addresses assigned to the running Spark task, or None outside a task / without GPUs."""
    try:
        from pyspark import TaskContext
    except ImportError:
        return None
    ctx = TaskContext.get()
    if ctx is None:
        return None
    gpu = ctx.resources().get("gpu")
    return list(gpu.addresses) if gpu is not None and gpu.addresses else None


def spark_task_cpus(default: int = 1) -> int:
    """Cores Spark gives each task (spark.task.cpus), read inside a Python worker."""
    try:
        from pyspark import TaskContext

        ctx = TaskContext.get()
        if ctx is not None:
            return max(1, int(ctx.cpus()))
    except Exception:
        pass
    return max(1, int(os.environ.get("ECOMINE_TASK_CPUS", default)))
