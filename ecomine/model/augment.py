"""Ways to get more out of few labels, measured by ``bench/label_efficiency.py``.

* ``edit_augment``: token-level edits of a labelled text (random deletion and swaps), the
  label kept. Tokens are whitespace words, or characters for Chinese (no spaces; a
  character swap or deletion is the closest edit to a word's there).
* ``pseudo_labels``: self-training. A model trained on the labelled rows labels the shop's
  unlabelled reviews; the rows it is confident about become extra training rows. For class
  kinds the confidence is the teacher's largest class probability; a regression head has
  none, so there a row counts as confident when a second, independent model (the TF-IDF
  one) agrees with the teacher: the share ``keep_share`` with the smallest disagreement.

Pure functions (numpy only), seeded by the caller's generator.
"""

from __future__ import annotations

import numpy as np

__all__ = ["edit_augment", "pseudo_labels", "tokens_of"]


def tokens_of(text: str, language: str) -> list[str]:
    """Characters for Chinese (spaces dropped), whitespace words otherwise."""
    if language == "zh":
        return [c for c in text if not c.isspace()]
    return text.split()


def edit_augment(text: str, language: str, rng: np.random.Generator, p_delete: float = 0.1, swaps: int = 1) -> str:
    """``text`` with each token deleted with probability ``p_delete`` (at least one token is
    kept) and then ``swaps`` random pairs of tokens swapped; texts of fewer than 2 tokens
    come back unchanged."""
    tokens = tokens_of(text, language)
    if len(tokens) < 2:
        return text
    kept = [t for t in tokens if rng.random() >= p_delete]
    if not kept:
        kept = [tokens[int(rng.integers(len(tokens)))]]
    for _ in range(swaps):
        if len(kept) < 2:
            break
        i, j = rng.choice(len(kept), size=2, replace=False)
        kept[i], kept[j] = kept[j], kept[i]
    return ("" if language == "zh" else " ").join(kept)


def pseudo_labels(
    kind: str,
    teacher: np.ndarray,
    threshold: float = 0.9,
    second: np.ndarray | None = None,
    keep_share: float = 0.3,
) -> tuple[np.ndarray, np.ndarray]:
    """(row indices, pseudo-labels) of the unlabelled rows to train on.

    Class kinds: ``teacher`` holds class probabilities ``(n, K)``; rows whose largest
    probability is at least ``threshold``, labelled with that class (int64 indices).
    Regression: ``teacher`` holds predicted values ``(n,)`` and ``second`` another model's;
    the ``keep_share`` of rows where the two differ least, labelled with the teacher's value.
    """
    teacher = np.asarray(teacher, dtype=np.float64)
    if kind == "regression":
        if second is None:
            raise ValueError("regression pseudo-labels need a second model's predictions to measure agreement")
        gap = np.abs(teacher - np.asarray(second, dtype=np.float64))
        n_keep = int(np.floor(keep_share * len(gap)))
        rows = np.sort(np.argsort(gap, kind="stable")[:n_keep])
        return rows, teacher[rows]
    confidence = teacher.max(axis=1)
    rows = np.flatnonzero(confidence >= threshold)
    return rows, teacher[rows].argmax(axis=1).astype(np.int64)
