"""Metric math for the task heads (pure numpy, no sklearn, so the formulas are visible).

Classification: accuracy, macro-F1. Ordinal: within-one accuracy, MAE, quadratic
weighted kappa (on class indices, so adjacent classes are one step apart). Regression:
R^2, RMSE, MAE. ``bootstrap_ci`` gives a percentile confidence interval for any of them.
Every metric of an empty input is NaN.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

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


def within_one_accuracy(y_true: Sequence[float], y_pred: Sequence[float]) -> float:
    """Share of predictions at most one step (class index or unit) away from the truth."""
    t, p = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    if t.size == 0:
        return float("nan")
    return float((np.abs(t - p) <= 1).mean())


def mae(y_true: Sequence[float], y_pred: Sequence[float]) -> float:
    """Mean absolute error."""
    t, p = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    if t.size == 0:
        return float("nan")
    return float(np.abs(t - p).mean())


def rmse(y_true: Sequence[float], y_pred: Sequence[float]) -> float:
    """Root mean squared error."""
    t, p = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    if t.size == 0:
        return float("nan")
    return float(np.sqrt(((t - p) ** 2).mean()))


def r2(y_true: Sequence[float], y_pred: Sequence[float]) -> float:
    """Coefficient of determination 1 - SS_res / SS_tot (NaN when y_true is constant).
    Negative when the predictions are worse than predicting the mean of y_true."""
    t, p = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    if t.size == 0:
        return float("nan")
    ss_tot = float(((t - t.mean()) ** 2).sum())
    if ss_tot == 0:
        return float("nan")
    return 1.0 - float(((t - p) ** 2).sum()) / ss_tot


def quadratic_weighted_kappa(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int | None = None) -> float:
    """Cohen's kappa with quadratic weights on class indices 0..K-1.

    ``1 - sum(W * O) / sum(W * E)`` with ``O`` the K x K confusion counts, ``E`` the
    outer product of the true and predicted class histograms divided by N, and
    ``W[i, j] = (i - j)^2 / (K - 1)^2``. 1 is perfect agreement, 0 chance level. NaN
    when ``sum(W * E)`` is 0 (e.g. truth and prediction are one and the same class).
    ``n_classes`` defaults to 1 + the largest index seen.
    """
    t, p = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    if t.size == 0:
        return float("nan")
    if (t < 0).any() or (p < 0).any():
        raise ValueError("quadratic_weighted_kappa expects class indices >= 0")
    k = int(n_classes) if n_classes is not None else int(max(t.max(), p.max())) + 1
    if k < 2:
        return float("nan")
    observed = np.bincount(t * k + p, minlength=k * k).reshape(k, k).astype(float)
    expected = np.outer(np.bincount(t, minlength=k), np.bincount(p, minlength=k)).astype(float) / t.size
    i, j = np.indices((k, k))
    w = (i - j) ** 2 / (k - 1) ** 2
    den = float((w * expected).sum())
    if den == 0:
        return float("nan")
    return 1.0 - float((w * observed).sum()) / den


def bootstrap_ci(
    metric_fn: Callable[[np.ndarray, np.ndarray], float],
    y_true: Sequence,
    y_pred: Sequence,
    n: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``metric_fn(y_true, y_pred)``: resample the rows
    (pairs) with replacement ``n`` times and take the ``(1 - level) / 2`` and
    ``(1 + level) / 2`` quantiles of the metric. ``y_pred`` may be 2-D (rows of class
    probabilities). Resamples whose metric is NaN are dropped; (NaN, NaN) if all are."""
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if len(t) != len(p):
        raise ValueError(f"y_true has {len(t)} rows, y_pred {len(p)}")
    if len(t) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    stats = np.empty(n)
    for b in range(n):
        idx = rng.integers(0, len(t), len(t))
        stats[b] = metric_fn(t[idx], p[idx])
    stats = stats[~np.isnan(stats)]
    if stats.size == 0:
        return float("nan"), float("nan")
    alpha = (1 - level) / 2
    return float(np.quantile(stats, alpha)), float(np.quantile(stats, 1 - alpha))


def classification_report(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int) -> dict[str, float]:
    return {
        "accuracy": accuracy(y_true, y_pred),
        "macro_f1": macro_f1(y_true, y_pred, n_classes),
        "n": int(len(y_true)),
    }


def ordinal_report(
    y_true: Sequence[int],
    y_pred: Sequence[int],
    n_classes: int,
    expected: Sequence[float] | None = None,
    values: Sequence[float] | None = None,
) -> dict[str, float]:
    """Metrics of an ordinal head on class indices: accuracy, within-one accuracy, MAE in
    class steps, QWK, macro-F1; with ``expected`` (the predicted expected value on the
    scale of ``values``, the value of each class) also ``mae_expected``, the MAE of the
    expected value against the true class value."""
    t = np.asarray(y_true, dtype=np.int64)
    out = {
        "accuracy": accuracy(t, y_pred),
        "within_one_accuracy": within_one_accuracy(t, y_pred),
        "mae": mae(t, y_pred),
        "qwk": quadratic_weighted_kappa(t, y_pred, n_classes),
        "macro_f1": macro_f1(t, y_pred, n_classes),
        "n": int(len(t)),
    }
    if expected is not None:
        v = np.asarray(values if values is not None else np.arange(n_classes), dtype=float)
        out["mae_expected"] = mae(v[t], expected)
    return out


def regression_report(y_true: Sequence[float], y_pred: Sequence[float]) -> dict[str, float]:
    return {"r2": r2(y_true, y_pred), "rmse": rmse(y_true, y_pred), "mae": mae(y_true, y_pred), "n": int(len(y_true))}
