"""Model promotion rule (pure): a candidate replaces the current model only if, on the same
held-out rows, no (language, task) macro-F1 is worse than the current model's by more than
``margin``, and it covers every (language, task) the current model covers."""

from __future__ import annotations

from typing import Any

Metrics = dict[str, dict[str, dict[str, float]]]  # language -> task -> {"macro_f1": ...}


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
            delta = float(new["macro_f1"]) - float(old["macro_f1"])
            comparisons.append({"language": lang, "task": task, "current": old["macro_f1"], "candidate": new["macro_f1"], "delta": delta})
            if delta < -margin:
                worse.append(f"{lang}/{task} macro-F1 {new['macro_f1']:.4f} < current {old['macro_f1']:.4f} - {margin}")
    if missing:
        return {"promote": False, "reason": f"candidate lacks {missing}", "comparisons": comparisons}
    if worse:
        return {"promote": False, "reason": "; ".join(worse), "comparisons": comparisons}
    return {"promote": True, "reason": f"no metric worse than current by more than {margin}", "comparisons": comparisons}
