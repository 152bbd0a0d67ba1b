"""Model promotion rule (pure): a candidate replaces the current model only if, on the same
held-out rows, no (language, task) headline metric of its deployed method is below its own
TF-IDF baseline's by more than ``baseline_margin`` (0: at least the baseline), none is worse
than the current model's by more than ``margin``, and it covers every (language, task) the
current model covers.
Headline metric (higher is better for each): QWK for ordinal tasks, R^2 for regression,
macro-F1 for binary and multiclass; the catalog model's tasks count under "catalog"."""

from __future__ import annotations

from typing import Any

__all__ = ["HEADLINES", "Metrics", "decide", "deployed_metrics", "headline_metric"]

Metrics = dict[str, dict[str, dict[str, float]]]  # language -> task -> {"macro_f1": ...}
HEADLINES = ("qwk", "r2", "macro_f1")  # the first of these a task's report has is its headline


def headline_metric(report: dict[str, float]) -> str:
    """The name of a task report's headline metric (see the module doc)."""
    for name in HEADLINES:
        if name in report:
            return name
    raise KeyError(f"no headline metric ({HEADLINES}) in {sorted(report)}")


def deployed_metrics(per_method: dict[str, Any], method: str | None = None) -> dict[str, dict[str, float]]:
    """A sub-model's metrics of the method that scores: ``method`` ("hybrid" or "finetune")
    when given, else "hybrid" when the metrics have it (models trained before the hybrid
    existed have only "finetuned")."""
    if method == "hybrid" or (method is None and "hybrid" in per_method):
        return per_method.get("hybrid") or {}
    return per_method.get("finetuned") or {}


def _below_baseline(candidate: Metrics, baselines: Metrics, margin: float) -> tuple[list[dict], list[str]]:
    comparisons, below = [], []
    for lang, tasks in sorted(candidate.items()):
        for task, new in sorted(tasks.items()):
            base = baselines.get(lang, {}).get(task)
            if not base:
                continue
            metric = headline_metric(new)
            delta = float(new[metric]) - float(base[metric])
            comparisons.append(
                {"language": lang, "task": task, "metric": metric, "baseline": base[metric], "candidate": new[metric],
                 "delta": delta}
            )  # fmt: skip
            if delta < -margin:
                below.append(f"{lang}/{task} {metric} {new[metric]:.4f} < its tf-idf baseline {base[metric]:.4f}")
    return comparisons, below


def decide(
    candidate: Metrics,
    current: Metrics | None,
    margin: float,
    baselines: Metrics | None = None,
    baseline_margin: float = 0.0,
) -> dict[str, Any]:
    """{'promote': bool, 'reason': str, 'comparisons': [...] (against the current model),
    'baseline_comparisons': [...] (against the candidate's own TF-IDF baseline)}"""
    base_cmp, below = _below_baseline(candidate, baselines or {}, baseline_margin)
    if below:
        return {"promote": False, "reason": "; ".join(below), "comparisons": [], "baseline_comparisons": base_cmp}
    out = _decide_current(candidate, current, margin)
    return out | {"baseline_comparisons": base_cmp}


def _decide_current(candidate: Metrics, current: Metrics | None, margin: float) -> dict[str, Any]:
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
