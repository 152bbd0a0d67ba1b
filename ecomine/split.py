"""Deterministic train/validation/test assignment by a salted hash of the key (pure)."""

from __future__ import annotations

import hashlib

__all__ = ["TEST", "TRAIN", "VALIDATION", "assign", "bucket"]

TRAIN, VALIDATION, TEST = "train", "validation", "test"


def bucket(key: str, salt: str) -> float:
    """A stable number in [0, 1) for a key: first 8 bytes of sha256(salt + '|' + key)."""
    digest = hashlib.sha256(f"{salt}|{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign(key: str, salt: str, validation: float, test: float) -> str:
    """'test' for the lowest ``test`` share of buckets, then 'validation', else 'train'.

    The assignment of a key never changes when other rows are added or removed, so a
    model's test set stays held out across nightly retrains."""
    position = bucket(key, salt)
    if position < test:
        return TEST
    if position < test + validation:
        return VALIDATION
    return TRAIN
