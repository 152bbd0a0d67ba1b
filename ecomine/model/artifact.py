"""Versioned model artifacts: safetensors weights, tokenizer, label maps, manifest with checksums.

Layout of ``<artifacts root>/<model_version>/``::

    manifest.json              base models, training data version, config, metrics, sha256 of every file
    <lang>/encoder/            config.json + model.safetensors (transformers save_pretrained)
    <lang>/tokenizer/          tokenizer files
    <lang>/heads.safetensors   one linear head per task

Artifacts live under ``storage.artifacts_path`` on any file system (``ecomine/io/fs.py``);
the ``models`` table records each one's fully qualified URI. The driver works on a local
verified copy (``fetch``); executors get the model through Spark (``model/ship.py``).

Loading verifies every checksum and refuses pickled weights (``.bin``, ``.pt``, ``.pkl``):
safetensors cannot execute code, pickles can.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ecomine.errors import ModelArtifactError
from ecomine.io import fs

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = [
    "MANIFEST",
    "PICKLE_SUFFIXES",
    "cache_dir",
    "fetch",
    "publish",
    "read_manifest",
    "sha256_file",
    "staging_dir",
]

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _local(path: str | Path) -> Path:
    """The local directory of an artifact location (plain path or ``file:`` URI)."""
    if not fs.is_local(str(path)):
        raise ModelArtifactError(f"artifact location {path} is not local: fetch it first (artifact.fetch)")
    return fs.local_path(str(path))


def _checksums(staging: Path) -> dict[str, str]:
    files = {}
    for p in sorted(staging.rglob("*")):
        if p.is_file() and p.name != MANIFEST:
            if p.suffix in PICKLE_SUFFIXES:
                raise ModelArtifactError(f"refusing to publish pickled weights {p}")
            files[str(p.relative_to(staging))] = sha256_file(p)
    return files


def publish(
    staging: Path, root: str | Path, version: str, manifest: dict[str, Any], spark: SparkSession | None = None
) -> str:
    """Write checksums into the manifest and publish ``staging`` as ``root/version``;
    returns the artifact's fully qualified URI (``file:/...``, ``s3a://...``).

    Local roots: one atomic rename. Other file systems (through Spark's Hadoop
    configuration): every file is uploaded, the manifest last, so an artifact without
    its manifest is incomplete and is refused by ``read_manifest``."""
    manifest = dict(manifest, files=_checksums(staging), model_version=version)
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
    uri = fs.join(fs.qualify_local(str(root)), version)
    if fs.exists(spark, fs.join(uri, MANIFEST)) or (fs.is_local(uri) and fs.local_path(uri).exists()):
        raise ModelArtifactError(f"artifact {uri} already exists; versions are immutable")
    if fs.is_local(uri):
        final = fs.local_path(uri)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging, final) if staging.parent == final.parent else shutil.move(str(staging), str(final))
    else:
        fs.upload_dir(spark, staging, uri, last=MANIFEST)
        cached = cache_dir() / version  # the driver's verified local copy (what ``fetch`` would download)
        if cached.exists():
            shutil.rmtree(staging, ignore_errors=True)
        else:
            cached.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(staging), str(cached))
    return uri


def cache_dir() -> Path:
    """Where the driver keeps local copies of remote artifacts: ``$ECOMINE_CACHE`` or
    ``~/.cache/ecomine/artifacts``."""
    return Path(os.environ.get("ECOMINE_CACHE") or Path.home() / ".cache" / "ecomine" / "artifacts")


def staging_dir(root: str | Path) -> Path:
    """A fresh local directory to build an artifact in: inside a local ``root`` (so
    publishing is a rename on the same file system), else a local temp directory."""
    if fs.is_local(str(root)):
        root_p = _local(root)
        root_p.mkdir(parents=True, exist_ok=True)
        d = root_p / f".staging-{uuid.uuid4().hex}"
        d.mkdir()
        return d
    return Path(tempfile.mkdtemp(prefix="ecomine-artifact-staging-"))


def fetch(spark: SparkSession | None, uri: str, cache: str | Path | None = None) -> Path:
    """A local, verified copy of the artifact at ``uri`` for the driver (scoring
    registration, the promotion comparison, explanations).

    A local artifact is used in place. Any other is downloaded once into
    ``<cache>/<version>`` (default ``cache_dir()``) and checked against its manifest; a
    cached copy that no longer matches is fetched again."""
    if fs.is_local(uri):
        return _local(uri)
    cache = Path(cache or cache_dir())
    target = cache / uri.rstrip("/").rsplit("/", 1)[-1]
    if target.is_dir():
        try:
            read_manifest(target, verify=True)
            return target
        except ModelArtifactError as e:
            log.warning("cached artifact %s is unusable (%s): fetching it again", target, e)
            shutil.rmtree(target)
    if not fs.exists(spark, fs.join(uri, MANIFEST)):
        raise ModelArtifactError(f"model artifact {uri} does not exist or is incomplete (no {MANIFEST})")
    partial = cache / f".{target.name}.{uuid.uuid4().hex}"
    t0 = time.time()
    fs.download_dir(spark, uri, partial)
    os.replace(partial, target)
    log.info("fetched model artifact %s to %s in %.1fs", uri, target, time.time() - t0)
    return target


def read_manifest(path: str | Path, verify: bool = True) -> dict[str, Any]:
    """Manifest of the artifact at ``path``; with ``verify`` every file's sha256 is checked."""
    root = _local(path)
    manifest_path = root / MANIFEST
    if not root.is_dir():
        raise ModelArtifactError(f"model artifact {root} does not exist")
    if not manifest_path.is_file():
        raise ModelArtifactError(f"model artifact {root} has no {MANIFEST} (incomplete or not an ecomine artifact)")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as e:
        raise ModelArtifactError(f"model artifact {root}: {MANIFEST} is corrupt: {e}") from None
    for f in root.rglob("*"):
        if f.is_file() and f.suffix in PICKLE_SUFFIXES:
            raise ModelArtifactError(f"model artifact {root} contains pickled weights {f.name}; refusing to load")
    if verify:
        for rel, digest in manifest.get("files", {}).items():
            file_path = root / rel
            if not file_path.is_file():
                raise ModelArtifactError(f"model artifact {root}: file {rel} listed in the manifest is missing")
            if sha256_file(file_path) != digest:
                raise ModelArtifactError(f"model artifact {root}: checksum mismatch for {rel} (corrupt or modified)")
    return manifest
