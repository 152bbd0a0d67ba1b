"""The jobs on a real Spark standalone cluster on this machine, submitted as a user would.

A master and two workers (separate JVMs, separate work directories, 1 core each, all on
127.0.0.1; ``tests/cluster.py``). When the tests run as root the workers, and so every
executor, run as ``nobody``, and the driver's artifact directory is ``chmod 700`` root:
executors cannot read it at all, so the only way the model reaches them is through Spark
(``SparkContext.addArchive``). The workers advertise fake GPU addresses through
``conf/gpu-discovery.sh`` (``ECOMINE_FAKE_GPUS``): this machine has no GPU, so the GPU is
the one mocked part, and the scoring tasks must log the address Spark gave them and fall
back to the CPU.

Jobs run through ``spark-submit.sh`` in subprocesses (``SPARK_MASTER=spark://...``);
tables are checked with delta-rs, independently of Spark and of ecomine's own readers.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
from cluster import StandaloneCluster, gpu_app_conf  # tests/cluster.py (a site-package shadows 'tests')
from deltalake import DeltaTable

from bench.compare_lakehouses import compare_lakehouses

ROOT = Path(__file__).resolve().parents[1]
AS_ROOT = os.geteuid() == 0
FAKE_GPUS = ["0", "1"]  # worker i advertises GPU address FAKE_GPUS[i]


def start_job(
    job: str, master: str, root: Path, artifacts: Path, log: Path, *sets: str, conf=None, python: str | None = None
):
    """``spark-submit.sh jobs/<job>.py`` against ``master`` with the test config, in the
    background; output appended to ``log``. The driver's umask is 000 so the table folders it
    creates are writable by executors running as another user (on a real cluster the
    storage's permissions do this)."""
    app_conf = {
        "spark.executor.memory": "1g",
        "spark.hadoop.fs.permissions.umask-mode": "000",  # executors (another user) write into these folders
        **(conf or {}),
    }
    extra = " ".join(f"--conf {k}={v}" for k, v in app_conf.items())
    cmd = [str(ROOT / "spark-submit.sh"), f"jobs/{job}.py", "--env", "test", "--set", f"storage.root={root}",
           "--set", f"storage.artifacts={artifacts}", *[x for s in sets for x in ("--set", s)]]  # fmt: skip
    env = {
        **os.environ,
        "SPARK_MASTER": master,
        "SPARK_SUBMIT_EXTRA": extra,
        "DRIVER_MEMORY": "4g",
        "ECOMINE_VENV": str(Path(sys.executable).parent.parent),
    }
    if python:  # the interpreter executors run (the workers' user must be able to execute it)
        env["PYSPARK_PYTHON"] = python
    out = log.open("a")
    return subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, preexec_fn=lambda: os.umask(0)
    )


def finish(proc: subprocess.Popen, what: str, log: Path, timeout: float = 1800) -> None:
    rc = proc.wait(timeout=timeout)
    if rc != 0:
        tail = "".join(log.read_text(errors="replace").splitlines(True)[-60:])
        pytest.fail(f"{what} failed (exit {rc}); log {log}:\n{tail}")


def submit(job: str, master: str, root: Path, artifacts: Path, log: Path, *sets: str, conf=None, python=None) -> None:
    finish(start_job(job, master, root, artifacts, log, *sets, conf=conf, python=python), f"{job} on {master}", log)


def _pd(root: Path, table: str) -> pd.DataFrame:
    return DeltaTable(str(root / table)).to_pandas()


@pytest.fixture(scope="module")
def base():
    # Under /tmp, not pytest's tmp_path (/tmp/pytest-of-root is 0700: nobody could not reach it).
    d = Path(tempfile.mkdtemp(prefix="ecomine-cluster-", dir="/tmp"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(base):
    (base / "cluster").mkdir()
    with StandaloneCluster(
        base / "cluster", workers=2, cores=1, memory="3g", worker_user="nobody" if AS_ROOT else None,
        gpus_per_worker=FAKE_GPUS,
    ) as c:  # fmt: skip
        yield c


@pytest.fixture(scope="module")
def runs(base, cluster):
    """The demo data loaded and the nightly job run twice: on ``local[2]`` and on the cluster
    (every scoring task asks Spark for a GPU), each from an empty lakehouse."""
    local, shared = base / "local", base / "shared"
    driver_only = base / "driver-only"
    for d in (local, shared, driver_only):
        d.mkdir()
    shared.chmod(0o1777)  # tables: written by the driver and by executors (nobody)
    driver_only.chmod(0o700)  # model artifacts: the driver's alone
    logs = base / "logs"
    logs.mkdir()
    t0 = time.time()
    for job in ("load_demo_data", "nightly"):
        submit(job, "local[2]", local, local / "_artifacts", logs / "local.log")
    t_local = time.time() - t0
    for job in ("load_demo_data", "nightly"):
        submit(
            job, cluster.master_url, shared, driver_only / "_artifacts", logs / "cluster.log",
            conf=gpu_app_conf(), python=cluster.python_exec,
        )  # fmt: skip
    return {"local": local, "cluster": shared, "artifacts": driver_only / "_artifacts", "logs": logs,
            "local_seconds": t_local}  # fmt: skip


def _stderr_files(cluster, worker: int) -> set[Path]:
    """The stderr files of every executor this worker has launched (one folder per application)."""
    return set(cluster.workers[worker].work_dir.glob("*/*/stderr"))


def _executor_logs(cluster, worker: int, files: set[Path] | None = None) -> str:
    chosen = sorted(_stderr_files(cluster, worker) if files is None else files)
    return "\n".join(p.read_text(errors="replace") for p in chosen if p.is_file())


@pytest.mark.skipif(not AS_ROOT, reason="needs root to run the workers as another user")
def test_executors_cannot_read_the_drivers_artifacts(runs):
    probe = subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "ls", str(runs["artifacts"])],
        capture_output=True,
    )
    assert probe.returncode != 0 and b"Permission denied" in probe.stderr


def test_nightly_on_the_cluster_equals_local(runs):
    """Same input, same seeds: every table equal (delta-rs, floats to 1e-6), weights identical."""
    result = compare_lakehouses(runs["local"], runs["cluster"], atol=1e-6, artifacts=(None, runs["artifacts"]))
    differing = {n: t for n, t in result["tables"].items() if not t["equal"]}
    assert not differing and not result["only_before"] and not result["only_after"], differing
    assert result["artifacts"]["weights_equal"], result["artifacts"]
    scores = _pd(runs["cluster"], "review_scores")
    reviews = _pd(runs["cluster"], "reviews")
    assert scores["review_id"].is_unique and set(scores["review_id"]) <= set(reviews["review_id"])
    models = _pd(runs["cluster"], "models")
    assert models["artifact_path"].str.startswith(f"file:{runs['artifacts']}/").all()


def test_the_model_reached_executors_through_spark(runs, cluster):
    log = (runs["logs"] / "cluster.log").read_text(errors="replace")
    assert re.search(r"registered with Spark as ecomine-model-\S+\.tar", log)
    for i in range(2):
        text = _executor_logs(cluster, i)
        assert "reviews scoring" in text, f"worker {i} ran no scoring task"


def test_each_scoring_task_logs_its_gpu_and_falls_back_to_cpu(runs, cluster):
    """Spark gave each executor its worker's (fake) GPU; torch sees no CUDA here, so every
    task says so and scores on the CPU (the tables above are complete and equal)."""
    for i, gpu in enumerate(FAKE_GPUS):
        text = _executor_logs(cluster, i)
        assigned = re.findall(r"scoring task: Spark assigned GPU (\S+); device (\S+)", text)
        assert assigned, f"no scoring task on worker {i}"
        assert set(assigned) == {(f"['{gpu}']", "cpu")}
        assert f"Spark assigned GPU(s) ['{gpu}'] but torch sees no CUDA device: scoring on the CPU" in text


def test_a_worker_killed_while_scoring_loses_no_row(runs, cluster, base):
    """SIGKILL one worker (its JVM and executor, as when a machine dies) while its scoring
    task runs: Spark reschedules on the other worker, the job succeeds, and every scorable
    review has exactly one score row with the values of the undisturbed run."""
    stamps = ["run_id", "scored_at"]
    before = _pd(runs["cluster"], "review_scores").drop(columns=stamps).set_index("review_id").sort_index()
    shutil.rmtree(runs["cluster"] / "review_scores")  # no scores: the score job rescans every review
    victim, log = 1, runs["logs"] / "kill.log"
    old = _stderr_files(cluster, victim)
    proc = start_job("score", cluster.master_url, runs["cluster"], runs["artifacts"], log, python=cluster.python_exec)
    deadline = time.time() + 900
    while "scoring task" not in _executor_logs(cluster, victim, _stderr_files(cluster, victim) - old):
        assert proc.poll() is None, "the job ended before a scoring task ran on the victim:\n" + log.read_text()[-3000:]
        assert time.time() < deadline, "no scoring task started on the victim worker"
        time.sleep(0.2)
    assert cluster.kill_worker(victim)  # the pids killed
    finish(proc, "score job after the worker kill", log)
    after = _pd(runs["cluster"], "review_scores").drop(columns=stamps).set_index("review_id").sort_index()
    assert after.index.is_unique and list(after.index) == list(before.index)
    pd.testing.assert_frame_equal(after[before.columns], before, check_exact=False, atol=1e-6, rtol=0)
    ledger = _pd(runs["cluster"], "runs").sort_values("started_at")
    assert ledger.iloc[-1]["job"] == "score" and ledger.iloc[-1]["status"] == "succeeded"
    assert "ExecutorLost" in log.read_text() or "lost" in log.read_text().lower()
