"""How the model reaches the executors: through Spark itself, never a shared path.

Driver (``register``): fetch the artifact from wherever ``models.artifact_path`` says
(local folder, ``s3a://``, ``abfss://``: ``artifact.fetch``), verify every checksum,
pack it into one uncompressed tar (safetensors weights do not compress) and register it
with ``SparkContext.addArchive``. Spark serves the file from the driver and every
executor fetches and unpacks it once into its ``SparkFiles`` directory, exactly as
MLflow's ``spark_udf`` ships a model.

Executor (``ShippedModel.local_dir``): find the unpacked copy with ``SparkFiles.get``,
check that its manifest is the one the driver verified (sha256 travels in the task) and
hand it to ``predict.get_predictor``, which verifies every file once and keeps the loaded
model in a bounded per-process cache. The only thing a task carries is the
``ShippedModel`` below: an archive name, a digest and a version, no path.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ecomine.errors import ModelArtifactError
from ecomine.model import artifact

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["ARCHIVE_ROOT", "ShippedModel", "pack", "register"]

log = logging.getLogger(__name__)

ARCHIVE_ROOT = "model"  # the artifact's folder inside the archive


@dataclass(frozen=True)
class ShippedModel:
    """A model registered with Spark: what each scoring task receives."""

    archive: str  # file name given to SparkContext.addArchive
    manifest_sha256: str  # of manifest.json, as verified on the driver
    model_version: str

    def local_dir(self) -> Path:
        """On an executor (or the driver in local mode): the unpacked artifact, checked
        against the driver's manifest digest."""
        from pyspark import SparkFiles

        unpacked = Path(SparkFiles.get(self.archive))
        root = unpacked / ARCHIVE_ROOT
        manifest = root / artifact.MANIFEST
        if not manifest.is_file():
            raise ModelArtifactError(
                f"model {self.model_version}: archive {self.archive} is not unpacked on this executor "
                f"({unpacked}); was it registered with SparkContext.addArchive?"
            )
        digest = artifact.sha256_file(manifest)
        if digest != self.manifest_sha256:
            raise ModelArtifactError(
                f"model {self.model_version}: the manifest in archive {self.archive} on this executor "
                f"(sha256 {digest[:12]}) is not the one the driver verified ({self.manifest_sha256[:12]})"
            )
        return root


def pack(local_dir: Path, out_dir: Path, name: str) -> Path:
    """``out_dir/name``: an uncompressed tar of ``local_dir`` under ``ARCHIVE_ROOT/``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / name
    if target.is_file():
        return target
    partial = out_dir / f".{name}.{os.getpid()}.partial"
    with tarfile.open(partial, "w") as tar:
        tar.add(str(local_dir), arcname=ARCHIVE_ROOT)
    os.replace(partial, target)
    return target


def register(spark: SparkSession, uri: str) -> tuple[ShippedModel, Path, dict[str, Any]]:
    """Ship the artifact at ``uri`` to the executors; (what tasks receive, the driver's
    local verified copy, its manifest). Registering the same model again in the same
    Spark application is a no-op."""
    t0 = time.time()
    local = artifact.fetch(spark, uri)
    manifest = artifact.read_manifest(local, verify=True)  # every checksum, before any executor loads it
    digest = artifact.sha256_file(local / artifact.MANIFEST)
    name = f"ecomine-model-{manifest['model_version']}-{digest[:12]}.tar"
    sc = spark.sparkContext
    if not any(a.rstrip("/").endswith("/" + name) for a in sc.listArchives):
        out_dir = Path(tempfile.gettempdir()) / f"ecomine-ship-{sc.applicationId}"
        if not out_dir.exists():  # Spark serves the file from here while the application runs
            atexit.register(shutil.rmtree, out_dir, True)
        tar = pack(local, out_dir, name)
        sc.addArchive(str(tar))
        log.info(
            "model %s registered with Spark as %s (%.0f MB) in %.1fs; executors unpack it once",
            manifest["model_version"],
            name,
            tar.stat().st_size / 1e6,
            time.time() - t0,
        )
    return ShippedModel(name, digest, manifest["model_version"]), local, manifest
