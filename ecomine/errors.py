"""The small exception hierarchy callers and retries use to tell failures apart."""

from __future__ import annotations

__all__ = ["ConcurrentRunError", "ConfigError", "DataError", "EcomineError", "ModelArtifactError", "SchemaError"]


class EcomineError(Exception):
    """Base class of every error ecomine raises on purpose."""


class ConfigError(EcomineError):
    """A configuration file, key or value is wrong; names the file and the key."""


class SchemaError(EcomineError):
    """A source table lacks a column or has the wrong type; names table, column, expected, found."""


class DataError(EcomineError):
    """Input rows are unusable as a whole (e.g. an empty source table where rows are required)."""


class ModelArtifactError(EcomineError):
    """A model artifact is missing, incomplete, corrupt (checksum) or unsafe (pickled weights)."""


class ConcurrentRunError(EcomineError):
    """Another run holds the lock on the output tables."""
