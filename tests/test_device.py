"""Device choice for GPU executors, exercised on this CPU-only machine.

There is no GPU here, so two things are faked, and only these: ``torch.cuda.is_available``
(monkeypatched) and Spark's ``TaskContext`` (a stand-in object returning a real
``pyspark.resource.ResourceInformation`` map, as an executor with GPU resources would).
Everything else is the real code path the scoring UDF runs in each task.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pyspark.resource import ResourceInformation

from ecomine import config
from ecomine.model import device, fastpath

ROOT = Path(__file__).resolve().parents[1]


class FakeTaskContext:
    """What TaskContext.get() returns inside a task on a GPU executor (fake: no cluster here)."""

    def __init__(self, gpus: list[str] | None, cpus: int = 2):
        self._res = {"gpu": ResourceInformation("gpu", gpus)} if gpus is not None else {}
        self._cpus = cpus

    def resources(self):
        return self._res

    def cpus(self):
        return self._cpus


def _in_task(monkeypatch, ctx):
    import pyspark

    monkeypatch.setattr(pyspark.TaskContext, "get", staticmethod(lambda: ctx))


def test_task_gpu_addresses_and_cores_come_from_the_task_context(monkeypatch):
    _in_task(monkeypatch, FakeTaskContext(["3", "5"], cpus=4))
    assert device.spark_task_gpus() == ["3", "5"]
    assert device.spark_task_cpus() == 4
    _in_task(monkeypatch, FakeTaskContext(None))
    assert device.spark_task_gpus() is None
    _in_task(monkeypatch, FakeTaskContext([]))
    assert device.spark_task_gpus() is None


def test_outside_a_task_there_is_no_assignment(monkeypatch):
    _in_task(monkeypatch, None)
    monkeypatch.setenv("ECOMINE_TASK_CPUS", "3")
    assert device.spark_task_gpus() is None
    assert device.spark_task_cpus() == 3


def test_the_assigned_gpu_wins_when_cuda_is_visible(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # fake: no GPU on this machine
    _in_task(monkeypatch, FakeTaskContext(["2"]))
    assert device.choose_device("auto", device.spark_task_gpus()) == "cuda:2"
    assert device.choose_device("cuda", ["1", "0"]) == "cuda:1"
    assert device.choose_device("auto", None) == "cuda:0"
    assert device.choose_device("cpu", ["2"]) == "cpu"  # an explicit cpu preference is obeyed


def test_gpu_assigned_but_invisible_falls_back_to_cpu_and_required_but_absent_is_an_error(monkeypatch, caplog):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with caplog.at_level("WARNING"):
        assert device.choose_device("auto", ["0"]) == "cpu"
    assert "assigned GPU(s) ['0'] but torch sees no CUDA device: scoring on the CPU" in caplog.text
    with pytest.raises(RuntimeError, match=r"assigned GPU\(s\) \['0'\] but torch sees no CUDA"):
        device.choose_device("cuda", ["0"])
    with pytest.raises(RuntimeError, match="'cuda' requested"):
        device.choose_device("cuda", None)
    assert device.choose_device("auto", None) == "cpu"


def test_on_cuda_the_fast_path_is_bf16_autocast():
    net, ctx = fastpath.prepare(torch.nn.Linear(4, 2), "cuda:1", "auto")
    with pytest.warns(UserWarning) if not torch.cuda.is_available() else _nothing():
        mode = ctx()
    assert isinstance(mode, torch.autocast) and mode.fast_dtype == torch.bfloat16 and mode.device == "cuda"
    assert isinstance(net, torch.nn.Linear)  # not quantized: int8 is CPU-only


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def test_gpu_cluster_profile_shares_each_gpu_between_tasks_with_their_own_cores():
    cfg = config.load(ROOT / "conf", "gpu-cluster", [])
    conf = cfg.spark.conf
    assert conf["spark.executor.resource.gpu.amount"] == "1"
    per_gpu = 1 / float(conf["spark.task.resource.gpu.amount"])
    assert per_gpu == 4 and per_gpu * int(conf["spark.task.cpus"]) == int(conf["spark.executor.cores"])
    assert cfg.scoring.device == "auto" and fastpath.resolve(cfg.scoring.precision, "cuda:0") == "bf16"
