"""Label mapping shared by training (pandas) and scoring (Spark): one mapping, two twins."""

from __future__ import annotations

import math

import numpy as np

from ecomine.config import TaskConfig

RATING_MIN, RATING_MAX = 1, 5


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
    """Index into ``task.classes`` for a source value, or -1 when the row has no label for the task."""
    key = normalize_value(value)
    if key is None:
        return -1
    mapped = task.label_map.get(key)
    return task.classes.index(mapped) if mapped is not None else -1


def class_indices(task: TaskConfig, values) -> np.ndarray:
    return np.fromiter((class_index(task, v) for v in values), dtype=np.int64, count=len(values))


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
