"""Metric math for the task heads, on scikit-learn's implementations.

Classification: accuracy, macro-F1. Ordinal: within-one accuracy, MAE, quadratic
weighted kappa (on class indices, so adjacent classes are one step apart). Regression:
R^2, RMSE, MAE. ``bootstrap_ci`` gives a percentile confidence interval for any of them.

What this module adds to scikit-learn is the project's conventions: every metric of an
empty input is NaN (scikit-learn raises or warns), and so is every metric scikit-learn
calls undefined (R^2 of a constant truth, QWK when truth and prediction are one and the
same class, macro-F1 with no class of ``range(n_classes)`` in either); NaN or infinite
inputs give NaN rather than an error. Macro-F1 averages over the classes of
``range(n_classes)`` present in the truth or the prediction, so a class the test rows
never show does not add a 0 to the mean.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import (
    accuracy_score,
    cohen_kappa_score,
    f1_score,
    mean_absolute_error,
    r2_score,
    root_mean_squared_error,
)

__all__ = [
    "accuracy",
    "bootstrap_ci",
    "classification_report",
    "macro_f1",
    "mae",
    "ordinal_report",
    "quadratic_weighted_kappa",
    "r2",
    "regression_report",
    "rmse",
    "within_one_accuracy",
]

NAN = float("nan")


def _pair(y_true: Sequence, y_pred: Sequence, dtype: type | None = None) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(y_true, dtype=dtype), np.asarray(y_pred, dtype=dtype)


def _finite_pair(y_true: Sequence[float], y_pred: Sequence[float]) -> tuple[np.ndarray, np.ndarray] | None:
    """Both as float arrays, or None when empty or not all finite (the metric is then NaN)."""
    truth, pred = _pair(y_true, y_pred, float)
    if truth.size == 0 or not (np.isfinite(truth).all() and np.isfinite(pred).all()):
        return None
    return truth, pred


def accuracy(y_true: Sequence[int], y_pred: Sequence[int]) -> float:
    truth, pred = _pair(y_true, y_pred)
    if truth.size == 0:
        return NAN
    return float(accuracy_score(truth, pred))


def macro_f1(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int) -> float:
    """Unweighted mean of per-class F1 over the classes of ``range(n_classes)`` present in
    y_true or y_pred (indices outside that range count only as errors of the others)."""
    truth, pred = _pair(y_true, y_pred)
    if truth.size == 0:
        return NAN
    present = [c for c in range(n_classes) if (truth == c).any() or (pred == c).any()]
    if not present:
        return NAN
    # every listed class occurs, so no F1 is 0/0; zero_division only silences the warning
    # sklearn gives for a class never predicted (its F1 is 0 either way)
    return float(f1_score(truth, pred, labels=present, average="macro", zero_division=0.0))


def within_one_accuracy(y_true: Sequence[float], y_pred: Sequence[float]) -> float:
    """Share of predictions at most one step (class index or unit) away from the truth."""
    truth, pred = _pair(y_true, y_pred, float)
    if truth.size == 0:
        return NAN
    return float((np.abs(truth - pred) <= 1).mean())


def mae(y_true: Sequence[float], y_pred: Sequence[float]) -> float:
    """Mean absolute error."""
    pair = _finite_pair(y_true, y_pred)
    return NAN if pair is None else float(mean_absolute_error(*pair))


def rmse(y_true: Sequence[float], y_pred: Sequence[float]) -> float:
    """Root mean squared error."""
    pair = _finite_pair(y_true, y_pred)
    return NAN if pair is None else float(root_mean_squared_error(*pair))


def r2(y_true: Sequence[float], y_pred: Sequence[float]) -> float:
    """Coefficient of determination 1 - SS_res / SS_tot (NaN when y_true is constant).
    Negative when the predictions are worse than predicting the mean of y_true."""
    pair = _finite_pair(y_true, y_pred)
    if pair is None:
        return NAN
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)  # fewer than two rows
        with np.errstate(divide="ignore", invalid="ignore"):
            value = float(r2_score(*pair, force_finite=False))  # SS_tot = 0 gives -inf or NaN here
    return value if np.isfinite(value) else NAN


def quadratic_weighted_kappa(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int | None = None) -> float:
    """Cohen's kappa with quadratic weights on class indices 0..K-1.

    ``1 - sum(W * O) / sum(W * E)`` with ``O`` the K x K confusion counts, ``E`` the
    outer product of the true and predicted class histograms divided by N, and
    ``W[i, j] = (i - j)^2``. 1 is perfect agreement, 0 chance level. NaN when
    ``sum(W * E)`` is 0 (truth and prediction are one and the same class) or K < 2.
    ``n_classes`` defaults to 1 + the largest index seen; indices must lie in 0..K-1.
    """
    truth, pred = _pair(y_true, y_pred, np.int64)
    if truth.size == 0:
        return NAN
    if (truth < 0).any() or (pred < 0).any():
        raise ValueError("quadratic_weighted_kappa expects class indices >= 0")
    k = int(n_classes) if n_classes is not None else int(max(truth.max(), pred.max())) + 1
    if max(truth.max(), pred.max()) >= k:
        raise ValueError(f"quadratic_weighted_kappa: class index >= n_classes ({k})")
    if k < 2:
        return NAN
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        return float(cohen_kappa_score(truth, pred, labels=list(range(k)), weights="quadratic"))


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
    truth, pred = _pair(y_true, y_pred)
    if len(truth) != len(pred):
        raise ValueError(f"y_true has {len(truth)} rows, y_pred {len(pred)}")
    if len(truth) == 0:
        return NAN, NAN
    rng = np.random.default_rng(seed)
    stats = np.empty(n)
    for i in range(n):
        rows = rng.integers(0, len(truth), len(truth))  # one draw per resample, as the seeded stream always was
        stats[i] = metric_fn(truth[rows], pred[rows])
    stats = stats[~np.isnan(stats)]
    if stats.size == 0:
        return NAN, NAN
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
    truth = np.asarray(y_true, dtype=np.int64)
    out = {
        "accuracy": accuracy(truth, y_pred),
        "within_one_accuracy": within_one_accuracy(truth, y_pred),
        "mae": mae(truth, y_pred),
        "qwk": quadratic_weighted_kappa(truth, y_pred, n_classes),
        "macro_f1": macro_f1(truth, y_pred, n_classes),
        "n": int(len(truth)),
    }
    if expected is not None:
        class_values = np.asarray(values if values is not None else np.arange(n_classes), dtype=float)
        out["mae_expected"] = mae(class_values[truth], expected)
    return out


def regression_report(y_true: Sequence[float], y_pred: Sequence[float]) -> dict[str, float]:
    return {"r2": r2(y_true, y_pred), "rmse": rmse(y_true, y_pred), "mae": mae(y_true, y_pred), "n": int(len(y_true))}
