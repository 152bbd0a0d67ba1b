"""Model promotion rule (pure): a candidate replaces the current model only if, on the same
held-out rows, no (language, task) headline metric is worse than the current model's by
more than ``margin``, and it covers every (language, task) the current model covers.
Headline metric (higher is better for each): QWK for ordinal tasks, R^2 for regression,
macro-F1 for binary and multiclass; the catalog model's tasks count under "catalog"."""

from __future__ import annotations

from typing import Any

__all__ = ["HEADLINES", "Metrics", "decide", "headline_metric"]

Metrics = dict[str, dict[str, dict[str, float]]]  # language -> task -> {"macro_f1": ...}
HEADLINES = ("qwk", "r2", "macro_f1")  # the first of these a task's report has is its headline


def headline_metric(report: dict[str, float]) -> str:
    """The name of a task report's headline metric (see the module doc)."""
    for name in HEADLINES:
        if name in report:
            return name
    raise KeyError(f"no headline metric ({HEADLINES}) in {sorted(report)}")


def decide(candidate: Metrics, current: Metrics | None, margin: float) -> dict[str, Any]:
    """{'promote': bool, 'reason': str, 'comparisons': [...]}"""
    if not current:
        return {"promote": True, "reason": "no current model", "comparisons": []}
    comparisons, worse, missing = [], [], []
    for lang, tasks in current.items():
        for task, old in tasks.items():
            new = candidate.get(lang, {}).get(task)
            if new is None:
                missing.append(f"{lang}/{task}")
                continue
            metric = headline_metric(old)
            delta = float(new[metric]) - float(old[metric])
            comparisons.append(
                {
                    "language": lang,
                    "task": task,
                    "metric": metric,
                    "current": old[metric],
                    "candidate": new[metric],
                    "delta": delta,
                }
            )
            if delta < -margin:
                worse.append(f"{lang}/{task} {metric} {new[metric]:.4f} < current {old[metric]:.4f} - {margin}")
    if missing:
        return {"promote": False, "reason": f"candidate lacks {missing}", "comparisons": comparisons}
    if worse:
        return {"promote": False, "reason": "; ".join(worse), "comparisons": comparisons}
    return {
        "promote": True,
        "reason": f"no metric worse than current by more than {margin}",
        "comparisons": comparisons,
    }
