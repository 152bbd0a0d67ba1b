"""Metric math for classification heads (pure numpy, no sklearn so the formulas are visible)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def accuracy(y_true: Sequence[int], y_pred: Sequence[int]) -> float:
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if t.size == 0:
        return float("nan")
    return float((t == p).mean())


def macro_f1(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int) -> float:
    """Unweighted mean of per-class F1 over classes present in y_true or y_pred."""
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if t.size == 0:
        return float("nan")
    f1s = []
    for c in range(n_classes):
        tp = int(((t == c) & (p == c)).sum())
        fp = int(((t != c) & (p == c)).sum())
        fn = int(((t == c) & (p != c)).sum())
        if tp + fp + fn == 0:
            continue
        f1s.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f1s)) if f1s else float("nan")


def classification_report(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int) -> dict[str, float]:
    return {
        "accuracy": accuracy(y_true, y_pred),
        "macro_f1": macro_f1(y_true, y_pred, n_classes),
        "n": int(len(y_true)),
    }
