"""Files outside Delta (model artifacts, run reports, the writer lock), on any file system.

Every such file goes through this module, so a ``storage.root`` on ``s3a://``,
``abfss://`` or ``hdfs://`` works like a local folder:

* **local** paths and ``file:`` URIs use the local file system directly (atomic
  ``O_EXCL`` create and ``rename``);
* **anything else** goes through Hadoop's ``FileSystem`` inside the driver's JVM (py4j),
  with the very Hadoop configuration Spark uses for the tables, so one set of
  settings (``storage.s3`` -> ``spark.hadoop.fs.s3a.*``) serves tables and files alike.

Only the driver calls these functions; executors get the model through Spark
(``model/ship.py``), never a path.

The pure helpers (``is_local``, ``local_path``, ``qualify_local``, ``hadoop_conf``,
``delta_rs_options``, ``maven_packages``) need no JVM and are unit-tested without one.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from ecomine.config import StorageConfig

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = [
    "create_new",
    "delete",
    "delta_rs_options",
    "download_dir",
    "exists",
    "hadoop_aws_coordinate",
    "hadoop_conf",
    "is_local",
    "join",
    "local_path",
    "maven_packages",
    "qualify_local",
    "read_text",
    "upload_dir",
    "uses_s3a",
    "write_text",
]

log = logging.getLogger(__name__)

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


# --------------------------------------------------------------------------- pure


def is_local(uri: str) -> bool:
    """A plain path or a ``file:`` URI (no other scheme)."""
    s = str(uri)
    return s.startswith("file:") or not _SCHEME.match(s)


def local_path(uri: str) -> Path:
    """The local path of a plain path or ``file:`` URI (``file:/a``, ``file:///a`` -> ``/a``)."""
    s = str(uri)
    if s.startswith("file:"):
        s = "/" + s[len("file:") :].lstrip("/")
    if _SCHEME.match(s):
        raise ValueError(f"{uri} is not a local path")
    return Path(s)


def qualify_local(path: str | os.PathLike[str]) -> str:
    """A local path as a fully qualified ``file:/abs/path`` URI; other URIs unchanged.

    What the ``models`` table stores: a location that means the same on every machine,
    never one relative to a working directory."""
    s = str(path)
    if not is_local(s):
        return s
    return "file:" + str(local_path(s).absolute())


def join(uri: str, *parts: str) -> str:
    return "/".join([str(uri).rstrip("/"), *(p.strip("/") for p in parts)])


def uses_s3a(storage: StorageConfig, locations: list[str] | tuple[str, ...] = ()) -> bool:
    return any(str(u).startswith("s3a://") for u in (storage.root, storage.artifacts_path, *locations))


def hadoop_aws_coordinate(storage: StorageConfig) -> str:
    """``org.apache.hadoop:hadoop-aws:<version>``: the S3A connector matching the Hadoop
    client jars that pyspark bundles (its AWS SDK bundle comes along through Ivy)."""
    if storage.s3.connector != "auto":
        return storage.s3.connector
    import pyspark

    # SPARK_HOME/jars; under spark-submit pyspark is imported from SPARK_HOME/python/lib/pyspark.zip
    here = Path(pyspark.__file__).resolve()
    candidates = [Path(os.environ["SPARK_HOME"]) / "jars"] if os.environ.get("SPARK_HOME") else []
    candidates += [p / "jars" for p in here.parents]
    for jars in candidates:
        found = sorted(jars.glob("hadoop-client-api-*.jar")) if jars.is_dir() else []
        if found:
            version = found[-1].name[len("hadoop-client-api-") : -len(".jar")]
            return f"org.apache.hadoop:hadoop-aws:{version}"
    raise RuntimeError(f"no hadoop-client-api jar near {here} or in $SPARK_HOME: set storage.s3.connector explicitly")


def maven_packages(storage: StorageConfig, delta_coordinate: str, locations: list[str] | tuple[str, ...] = ()) -> str:
    """``spark.jars.packages`` for a job: Delta, plus the S3A connector when anything is on s3a://."""
    pkgs = [delta_coordinate] if delta_coordinate else []
    if uses_s3a(storage, locations):
        pkgs.append(hadoop_aws_coordinate(storage))
    return ",".join(pkgs)


def hadoop_conf(storage: StorageConfig) -> dict[str, str]:
    """``spark.hadoop.fs.s3a.*`` settings from ``storage.s3`` (empty when nothing to set).

    Credentials are not set here: Spark copies ``AWS_ACCESS_KEY_ID`` /
    ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN`` of the driver's environment into
    ``fs.s3a.*`` itself, and the Hadoop configuration travels with every task, so
    executors need no credentials of their own."""
    s3 = storage.s3
    out: dict[str, str] = {}
    if s3.endpoint:
        out["spark.hadoop.fs.s3a.endpoint"] = s3.endpoint
        out["spark.hadoop.fs.s3a.connection.ssl.enabled"] = str(s3.endpoint.startswith("https://")).lower()
    if s3.region:
        out["spark.hadoop.fs.s3a.endpoint.region"] = s3.region
    if s3.path_style_access:
        out["spark.hadoop.fs.s3a.path.style.access"] = "true"
    return out


def delta_rs_options(storage: StorageConfig) -> dict[str, str]:
    """delta-rs ``storage_options`` equivalent to ``hadoop_conf`` (the console reads the
    same tables without a JVM). Credentials come from the same AWS_* variables, which
    delta-rs reads itself."""
    s3 = storage.s3
    out: dict[str, str] = {}
    if s3.endpoint:
        out["AWS_ENDPOINT_URL"] = s3.endpoint
        if s3.endpoint.startswith("http://"):
            out["AWS_ALLOW_HTTP"] = "true"
    if s3.region:
        out["AWS_REGION"] = s3.region
    if s3.path_style_access:
        out["AWS_VIRTUAL_HOSTED_STYLE_REQUEST"] = "false"
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        if os.environ.get(var):
            out[var] = os.environ[var]
    return out


# --------------------------------------------------------------------------- Hadoop FileSystem (driver)


def _hadoop(spark: SparkSession, uri: str):
    """(Hadoop FileSystem, Path) for ``uri`` with Spark's Hadoop configuration."""
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(uri)
    return path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), path


def exists(spark: SparkSession | None, uri: str) -> bool:
    if is_local(uri):
        return local_path(uri).exists()
    fs, path = _hadoop(_need(spark, uri), uri)
    return bool(fs.exists(path))


def read_text(spark: SparkSession | None, uri: str) -> str:
    if is_local(uri):
        return local_path(uri).read_text(encoding="utf-8")
    fs, path = _hadoop(_need(spark, uri), uri)
    jvm = spark.sparkContext._jvm
    stream = fs.open(path)
    try:
        data = jvm.org.apache.commons.io.IOUtils.toByteArray(stream)
    finally:
        stream.close()
    return bytes(data).decode("utf-8")


def write_text(spark: SparkSession | None, uri: str, text: str) -> None:
    """Write (replace) a small text file; local writes are atomic (temp file + rename),
    object stores publish an object only when it is complete."""
    if is_local(uri):
        p = local_path(uri)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, p)
        return
    fs, path = _hadoop(_need(spark, uri), uri)
    out = fs.create(path, True)
    try:
        out.write(bytearray(text.encode("utf-8")))
    finally:
        out.close()


def create_new(spark: SparkSession | None, uri: str, text: str) -> bool:
    """Create ``uri`` with ``text`` only if it does not exist; False when it does.

    Local: atomic (``O_CREAT | O_EXCL``). Hadoop file systems: ``createFile(path)
    .overwrite(false)``, atomic on HDFS and ABFS; on S3A with the conditional-create option,
    so the store refuses a second creator (``If-None-Match: *``, HTTP 412)."""
    if is_local(uri):
        p = local_path(uri)
        p.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        return True
    fs, path = _hadoop(_need(spark, uri), uri)
    if fs.exists(path):
        return False
    return _create_if_absent(fs, path, uri, text)


def _create_if_absent(fs, path, uri: str, text: str) -> bool:
    """The atomic part of ``create_new`` (what decides a race between two creators)."""
    builder = fs.createFile(path).overwrite(False)
    if uri.startswith("s3a://"):
        # S3A (Hadoop >= 3.4.2) sends If-None-Match: * : the store itself refuses a second creator (412)
        builder = builder.must("fs.option.create.conditional.overwrite", True)
    try:
        out = builder.build()
        try:
            out.write(bytearray(text.encode("utf-8")))
        finally:
            out.close()  # on S3A the object is created (or refused) here
    except Exception as e:  # py4j wraps the Java exception
        if any(m in str(e) for m in ("FileAlreadyExists", "RemoteFileChanged", "412", "PreconditionFailed")):
            return False
        raise
    return True


def delete(spark: SparkSession | None, uri: str, recursive: bool = False) -> None:
    if is_local(uri):
        p = local_path(uri)
        if p.is_dir():
            shutil.rmtree(p) if recursive else p.rmdir()
        else:
            p.unlink(missing_ok=True)
        return
    fs, path = _hadoop(_need(spark, uri), uri)
    fs.delete(path, recursive)


def upload_dir(spark: SparkSession | None, local_dir: Path, uri: str, last: str | None = None) -> None:
    """Copy the files of ``local_dir`` to ``uri`` (created), ``last`` (a relative path)
    after all others: readers that wait for it never see a half-written directory."""
    files = sorted(p for p in Path(local_dir).rglob("*") if p.is_file())
    ordered = [p for p in files if str(p.relative_to(local_dir)) != last]
    ordered += [p for p in files if str(p.relative_to(local_dir)) == last]
    if is_local(uri):
        for p in ordered:
            dst = local_path(uri) / p.relative_to(local_dir)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, dst)
        return
    spark = _need(spark, uri)
    jvm = spark.sparkContext._jvm
    fs, _ = _hadoop(spark, uri)
    for p in ordered:
        fs.copyFromLocalFile(
            False,
            True,
            jvm.org.apache.hadoop.fs.Path(p.as_uri()),
            jvm.org.apache.hadoop.fs.Path(join(uri, str(p.relative_to(local_dir)))),
        )
    log.info("uploaded %d files to %s", len(ordered), uri)


def download_dir(spark: SparkSession | None, uri: str, local_dir: Path) -> Path:
    """Copy the directory at ``uri`` into ``local_dir`` (which must not exist yet)."""
    local_dir = Path(local_dir)
    if is_local(uri):
        shutil.copytree(local_path(uri), local_dir)
        return local_dir
    spark = _need(spark, uri)
    jvm = spark.sparkContext._jvm
    fs, src = _hadoop(spark, uri)
    if not fs.exists(src):
        raise FileNotFoundError(uri)
    local_dir.parent.mkdir(parents=True, exist_ok=True)
    fs.copyToLocalFile(False, src, jvm.org.apache.hadoop.fs.Path(local_dir.absolute().as_uri()), True)
    return local_dir


def _need(spark: SparkSession | None, uri: str) -> SparkSession:
    if spark is None:
        raise ValueError(f"{uri}: a non-local location needs the SparkSession (Hadoop file system)")
    return spark
