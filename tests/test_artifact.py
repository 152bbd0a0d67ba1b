"""Artifact publishing and verification (no JVM): checksums, immutability, pickle refusal."""

from __future__ import annotations

import hashlib
import json

import pytest

from ecomine.errors import ModelArtifactError
from ecomine.io import fs
from ecomine.model import artifact


def _publish(tmp_path, version="v1"):
    st = artifact.staging_dir(tmp_path)
    (st / "en").mkdir()
    (st / "en" / "heads.safetensors").write_bytes(b"weights-bytes")
    uri = artifact.publish(st, tmp_path, version, {"tasks": []})
    assert uri == f"file:{tmp_path}/{version}"  # fully qualified: what the models table stores
    return fs.local_path(uri)


def test_manifest_lists_sha256_of_every_file(tmp_path):
    path = _publish(tmp_path)
    m = artifact.read_manifest(path)
    assert m["model_version"] == "v1"
    assert m["files"] == {"en/heads.safetensors": hashlib.sha256(b"weights-bytes").hexdigest()}
    assert not list(tmp_path.glob(".staging-*"))  # staging moved, not copied


def test_corrupt_file_is_detected(tmp_path):
    path = _publish(tmp_path)
    (path / "en" / "heads.safetensors").write_bytes(b"weights-bytez")
    with pytest.raises(ModelArtifactError, match="checksum mismatch for en/heads.safetensors"):
        artifact.read_manifest(path)


def test_missing_file_and_missing_manifest(tmp_path):
    path = _publish(tmp_path)
    (path / "en" / "heads.safetensors").unlink()
    with pytest.raises(ModelArtifactError, match="missing"):
        artifact.read_manifest(path)
    (path / "manifest.json").unlink()
    with pytest.raises(ModelArtifactError, match="no manifest.json"):
        artifact.read_manifest(path)
    with pytest.raises(ModelArtifactError, match="does not exist"):
        artifact.read_manifest(tmp_path / "nope")


def test_corrupt_manifest(tmp_path):
    path = _publish(tmp_path)
    (path / "manifest.json").write_text("{not json")
    with pytest.raises(ModelArtifactError, match="corrupt"):
        artifact.read_manifest(path)


def test_pickled_weights_are_refused(tmp_path):
    path = _publish(tmp_path)
    (path / "en" / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    with pytest.raises(ModelArtifactError, match="pickled weights"):
        artifact.read_manifest(path)
    st = artifact.staging_dir(tmp_path)
    (st / "model.pt").write_bytes(b"x")
    with pytest.raises(ModelArtifactError, match="refusing to publish pickled"):
        artifact.publish(st, tmp_path, "v2", {})


def test_versions_are_immutable(tmp_path):
    _publish(tmp_path)
    with pytest.raises(ModelArtifactError, match="already exists"):
        _publish(tmp_path)
    assert json.loads((tmp_path / "v1" / "manifest.json").read_text())["model_version"] == "v1"
