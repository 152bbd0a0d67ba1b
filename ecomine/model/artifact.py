"""Versioned model artifacts: safetensors weights, tokenizer, label maps, manifest with checksums.

Layout of ``<artifacts root>/<model_version>/``::

    manifest.json              base models, training data version, config, metrics, sha256 of every file
    <lang>/encoder/            config.json + model.safetensors (transformers save_pretrained)
    <lang>/tokenizer/          tokenizer files
    <lang>/heads.safetensors   one linear head per task

Loading verifies every checksum and refuses pickled weights (``.bin``, ``.pt``, ``.pkl``):
safetensors cannot execute code, pickles can.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from ecomine.errors import ModelArtifactError

__all__ = ["MANIFEST", "PICKLE_SUFFIXES", "publish", "read_manifest", "sha256_file", "staging_dir"]

MANIFEST = "manifest.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _local(path: str | Path) -> Path:
    s = str(path)
    if s.startswith("file:"):
        s = s[len("file:") :]
        while s.startswith("//"):
            s = s[1:]
    if "://" in s:
        raise ModelArtifactError(
            f"artifact location {path} is not a local/mounted path; mount it (DBFS fuse, s3fs) or copy it first"
        )
    return Path(s)


def publish(staging: Path, root: str | Path, version: str, manifest: dict[str, Any]) -> Path:
    """Write checksums into the manifest and move ``staging`` to ``root/version`` atomically."""
    root_p = _local(root)
    root_p.mkdir(parents=True, exist_ok=True)
    files = {}
    for p in sorted(staging.rglob("*")):
        if p.is_file() and p.name != MANIFEST:
            if p.suffix in PICKLE_SUFFIXES:
                raise ModelArtifactError(f"refusing to publish pickled weights {p}")
            files[str(p.relative_to(staging))] = sha256_file(p)
    manifest = dict(manifest, files=files, model_version=version)
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
    final = root_p / version
    if final.exists():
        raise ModelArtifactError(f"artifact {final} already exists; versions are immutable")
    os.replace(staging, final) if staging.parent == root_p else shutil.move(str(staging), str(final))
    return final


def staging_dir(root: str | Path) -> Path:
    root_p = _local(root)
    root_p.mkdir(parents=True, exist_ok=True)
    d = root_p / f".staging-{uuid.uuid4().hex}"
    d.mkdir()
    return d


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
