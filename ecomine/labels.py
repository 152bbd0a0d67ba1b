"""Task inputs and targets shared by training (pandas) and scoring (Spark): one mapping, two twins.

* ``class_index`` / ``class_indices``: source label -> class index (-1 = no label) for
  binary, multiclass and ordinal tasks.
* ``regression_values``: source value -> float (NaN = no label) for regression tasks;
  with a task's ``valid_range`` values outside [lo, hi] are no label either.
* ``regression_issue``: why a regression task rejects a source value (what the training
  flow reports as label rejects), from the same rule ``regression_values`` masks with.
* ``task_targets``: whichever of the two a task needs.
* ``ordinal_values``: the number each ordinal class stands for (expected values, MAE).
* ``compose_text``: the model input of a task that reads several text columns.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from ecomine.config import TaskConfig

__all__ = [
    "INPUT_SEPARATOR",
    "MISSING_CLASS",
    "RATING_MAX",
    "RATING_MIN",
    "class_index",
    "class_indices",
    "compose_text",
    "input_texts",
    "normalize_value",
    "ordinal_values",
    "parse_rating",
    "regression_issue",
    "regression_values",
    "task_targets",
]

RATING_MIN, RATING_MAX = 1, 5
MISSING_CLASS = -1
INPUT_SEPARATOR = " | "


def normalize_value(value: object) -> str | None:
    """Source label/rating as the string used in ``label_map`` keys: 5.0 -> '5', ' Great ' -> 'great'."""
    if value is None:
        return None
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer():
            return str(int(value))
    s = str(value).strip()
    if s.replace(".", "", 1).isdigit() and float(s).is_integer():
        return str(int(float(s)))
    return s.lower() or None


def class_index(task: TaskConfig, value: object) -> int:
    """Index into ``task.classes`` for a source value, or -1 when the row has no label for the task.

    With an empty ``label_map`` a value maps to the class whose normalized name equals the
    normalized value (so classes ``["1", ..., "5"]`` read ratings 1-5 directly)."""
    key = normalize_value(value)
    if key is None:
        return MISSING_CLASS
    if task.label_map:
        mapped = task.label_map.get(key)
        return task.classes.index(mapped) if mapped is not None else MISSING_CLASS
    names = [normalize_value(c) for c in task.classes]
    return names.index(key) if key in names else MISSING_CLASS


def class_indices(task: TaskConfig, values) -> np.ndarray:
    return np.fromiter((class_index(task, v) for v in values), dtype=np.int64, count=len(values))


def regression_issue(value: object, valid_range: tuple[float, float] | None = None) -> str | None:
    """Why a regression source value is not a label, or None when it is one or is missing.

    Missing (None, NaN: Spark's null reaches pandas as NaN, so the two cannot be told
    apart) is no label and no issue. Otherwise: ``not_a_number`` (a string that does not
    parse), ``not_finite`` (+-inf), and with ``valid_range`` (lo, hi) ``below_valid_range``
    / ``above_valid_range`` (the bounds themselves are valid)."""
    if _is_null(value):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return "not_a_number"
    if math.isnan(f):
        return None
    if not math.isfinite(f):
        return "not_finite"
    if valid_range is not None:
        lo, hi = valid_range
        if f < lo:
            return "below_valid_range"
        if f > hi:
            return "above_valid_range"
    return None


def regression_values(values, valid_range: tuple[float, float] | None = None) -> np.ndarray:
    """Source values as float64; null, NaN, infinite and non-numbers become NaN (= no label),
    and with ``valid_range`` so do values outside [lo, hi] (``regression_issue``).
    The log transform of ``log: true`` tasks is the trainer's job, not done here."""
    out = np.full(len(values), np.nan)
    for i, v in enumerate(values):
        if v is None or regression_issue(v, valid_range) is not None:
            continue
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(f):
            out[i] = f
    return out


def task_targets(task: TaskConfig, values) -> np.ndarray:
    """Training targets of one task: class indices (int64, -1 = missing) for binary,
    multiclass and ordinal tasks, floats (NaN = missing, or outside the task's
    ``valid_range``) for regression."""
    if task.kind == "regression":
        return regression_values(values, task.valid_range)
    return class_indices(task, values)


def ordinal_values(classes: Sequence[str]) -> np.ndarray:
    """The value of each ordinal class: ``float(name)`` when every name is a number,
    else the 0-based rank (0, 1, ..., K-1)."""
    try:
        return np.array([float(c) for c in classes], dtype=float)
    except (TypeError, ValueError):
        return np.arange(len(classes), dtype=float)


def compose_text(
    columns: Mapping[str, Sequence[object]], inputs: Sequence[str], separator: str = INPUT_SEPARATOR
) -> list[str]:
    """One model input per row from several text columns: the non-empty values in
    ``inputs`` order, stripped, joined by ``separator`` (null/NaN/blank values are
    skipped). Put short fields (name, brand) first: truncation cuts the end."""
    missing = [c for c in inputs if c not in columns]
    if missing:
        raise KeyError(f"compose_text: no column(s) {missing}; have {sorted(columns)}")
    if not inputs:
        raise ValueError("compose_text needs at least one input column")
    cols = [list(columns[c]) for c in inputs]
    out = []
    for i in range(len(cols[0])):
        parts = []
        for col in cols:
            v = col[i]
            if _is_null(v):
                continue
            s = " ".join(str(v).split())
            if s:
                parts.append(s)
        out.append(separator.join(parts))
    return out


def _is_null(v: object) -> bool:
    """None, NaN, NaT or pandas NA (whose comparisons are not booleans)."""
    if v is None:
        return True
    try:
        return bool(v != v)
    except TypeError:
        return True


def parse_rating(value: object) -> tuple[int | None, str | None]:
    """A stated star rating as int 1-5, or (None, issue) for a value outside the range or not a number."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None, None
    try:
        f = float(str(value).strip())
    except ValueError:
        return None, "rating_not_a_number"
    if not f.is_integer() or not RATING_MIN <= f <= RATING_MAX:
        return None, "rating_out_of_range"
    return int(f), None


def input_texts(columns: Mapping[str, Sequence[object]], inputs: Sequence[str]) -> list[str]:
    """The model input of each row of a multi-column task: ``compose_text`` then the review
    text cleanup (``text.clean_text``). Training (pandas) and scoring (the Spark UDF in
    ``scoring.with_catalog_text``) both call this, so a row reads the same in both."""
    from ecomine.text import clean_text

    return [clean_text(t) or "" for t in compose_text(columns, inputs)]
