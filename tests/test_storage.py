"""Storage locations and model shipping without a JVM: URI handling, the S3 settings given to
Spark and to delta-rs, the jars a job asks for, the archive Spark ships to executors and the
bounded per-process predictor cache (real artifact files, real tar archives)."""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path

import pytest

from ecomine import config
from ecomine.errors import ConfigError, ModelArtifactError
from ecomine.io import fs
from ecomine.model import artifact, predict, ship

ROOT = Path(__file__).resolve().parents[1]


def _storage(**over) -> config.StorageConfig:
    sets = [f"storage.{k}={v}" for k, v in over.items()]
    return config.load(ROOT / "conf", "test", sets).storage


def test_local_paths_and_uris():
    assert fs.is_local("lakehouse") and fs.is_local("/a/b") and fs.is_local("file:/a") and fs.is_local("file:///a")
    assert not fs.is_local("s3a://bucket/x") and not fs.is_local("abfss://c@acct.dfs.core.windows.net/x")
    assert fs.local_path("file:///a/b") == Path("/a/b") == fs.local_path("file:/a/b")
    with pytest.raises(ValueError, match="not a local path"):
        fs.local_path("s3a://bucket/x")
    assert fs.qualify_local("/a/b") == "file:/a/b"
    assert fs.qualify_local("rel/x") == f"file:{Path.cwd() / 'rel/x'}"
    assert fs.qualify_local("s3a://bucket/x") == "s3a://bucket/x"
    assert fs.join("s3a://b/root/", "_locks", "writer.lock") == "s3a://b/root/_locks/writer.lock"


def test_artifacts_live_under_the_root_unless_set():
    s = _storage(root="s3a://bucket/shop")
    assert s.artifacts_path == "s3a://bucket/shop/_artifacts"
    assert _storage(root="s3a://bucket/shop", artifacts="s3a://other/models").artifacts_path == "s3a://other/models"
    assert _storage(root="/data/lake").artifacts_path == "/data/lake/_artifacts"


def test_s3_settings_reach_spark_and_delta_rs_the_same(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    s = _storage(
        **{"root": "s3a://bucket/lake", "s3.endpoint": "http://127.0.0.1:9000", "s3.region": "eu-west-1"},
        **{"s3.path_style_access": "true"},
    )
    assert fs.hadoop_conf(s) == {
        "spark.hadoop.fs.s3a.endpoint": "http://127.0.0.1:9000",
        "spark.hadoop.fs.s3a.connection.ssl.enabled": "false",
        "spark.hadoop.fs.s3a.endpoint.region": "eu-west-1",
        "spark.hadoop.fs.s3a.path.style.access": "true",
    }
    assert fs.delta_rs_options(s) == {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
        "AWS_ALLOW_HTTP": "true",
        "AWS_REGION": "eu-west-1",
        "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": "false",
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "secret",
    }
    assert fs.hadoop_conf(_storage()) == {}  # a local lakehouse sets nothing
    with pytest.raises(ConfigError, match="storage.s3.endpoint must start with http"):
        _storage(**{"s3.endpoint": "127.0.0.1:9000"})


def test_the_s3a_connector_is_asked_for_only_when_something_is_on_s3a():
    import pyspark

    jars = sorted((Path(pyspark.__file__).parent / "jars").glob("hadoop-client-api-*.jar"))
    hadoop = jars[-1].name.removeprefix("hadoop-client-api-").removesuffix(".jar")
    delta = "io.delta:delta-spark_4.2_2.13:4.4.0"
    assert fs.maven_packages(_storage(), delta) == delta
    assert fs.maven_packages(_storage(root="s3a://b/x"), delta) == f"{delta},org.apache.hadoop:hadoop-aws:{hadoop}"
    assert fs.maven_packages(_storage(artifacts="s3a://b/models"), delta).endswith(f"hadoop-aws:{hadoop}")
    assert hadoop == "3.5.0"  # ENV-NOTES: pyspark 4.2.0 bundles Hadoop 3.5.0 client jars


def _artifact(tmp_path: Path, version: str = "v1") -> Path:
    st = artifact.staging_dir(tmp_path / "arts")
    (st / "en").mkdir()
    (st / "en" / "heads.safetensors").write_bytes(b"weights " + version.encode())
    return fs.local_path(artifact.publish(st, tmp_path / "arts", version, {"tasks": []}))


def _as_executor(monkeypatch, root: Path) -> None:
    """What a Python worker sees: SparkFiles rooted at its own directory (pyspark sets these
    two class attributes in every worker; here there is no JVM)."""
    from pyspark import SparkFiles

    monkeypatch.setattr(SparkFiles, "_is_running_on_worker", True)
    monkeypatch.setattr(SparkFiles, "_root_directory", str(root))


def test_the_archive_unpacks_to_the_artifact_and_is_checked_against_the_drivers_manifest(tmp_path, monkeypatch):
    local = _artifact(tmp_path)
    tar = ship.pack(local, tmp_path / "ship", "ecomine-model-v1-abc.tar")
    executor_files = tmp_path / "executor" / "spark-files"
    (executor_files / tar.name).mkdir(parents=True)
    with tarfile.open(tar) as t:  # what Spark does with an archive on each executor
        t.extractall(executor_files / tar.name, filter="data")
    _as_executor(monkeypatch, executor_files)
    digest = hashlib.sha256((local / "manifest.json").read_bytes()).hexdigest()
    got = ship.ShippedModel(tar.name, digest, "v1").local_dir()
    assert got == executor_files / tar.name / "model"
    assert artifact.read_manifest(got)["model_version"] == "v1"
    with pytest.raises(ModelArtifactError, match="is not the one the driver verified"):
        ship.ShippedModel(tar.name, "0" * 64, "v1").local_dir()
    with pytest.raises(ModelArtifactError, match="is not unpacked on this executor"):
        ship.ShippedModel("ecomine-model-v2-def.tar", digest, "v2").local_dir()


def test_predictor_cache_is_a_bounded_lru_of_model_versions(monkeypatch):
    loaded = []

    class FakePredictor:  # stands in for loading real weights: the cache policy is what is tested
        def __init__(self, path, device, precision, scope):
            loaded.append((str(path), scope))

    monkeypatch.setattr(predict, "Predictor", FakePredictor)
    monkeypatch.setattr(predict, "_CACHE", type(predict._CACHE)())
    a, b, c = (f"/models/{v}" for v in "abc")
    first = predict.get_predictor(a, max_models=2)
    assert predict.get_predictor(a, max_models=2) is first  # loaded once per process
    predict.get_predictor(a, scope=predict.CATALOG, max_models=2)  # a second scope of the same version
    predict.get_predictor(b, max_models=2)
    predict.get_predictor(a, max_models=2)  # a becomes the most recently used version
    predict.get_predictor(c, max_models=2)  # evicts b, not a (nor a's catalog scope)
    assert [(k[0], k[4]) for k in predict.cached_models()] == [(a, "catalog"), (a, "reviews"), (c, "reviews")]
    predict.get_predictor(b, max_models=2)  # evicts a, both scopes
    assert [k[0] for k in predict.cached_models()] == [c, b]
    assert loaded == [(a, "reviews"), (a, "catalog"), (b, "reviews"), (c, "reviews"), (b, "reviews")]
