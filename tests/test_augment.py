"""Few-label helpers (ecomine/model/augment.py): token edits and self-training's row choice (no JVM)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from ecomine.model.augment import edit_augment, pseudo_labels, tokens_of


def test_edits_delete_and_swap_words_in_english_and_characters_in_chinese():
    rng = np.random.default_rng(0)
    en = "the coffee arrived fresh and tasted great every single morning"
    zh = "物流很快，包装完好，味道不错"
    for _ in range(50):
        out = edit_augment(en, "en", rng)
        words = out.split()
        # only deletions and swaps: a sub-multiset of the words, never a new one
        assert not Counter(words) - Counter(en.split()) and 1 <= len(words) <= len(en.split())
        out_zh = edit_augment(zh, "zh", rng)
        assert " " not in out_zh and not Counter(out_zh) - Counter(zh) and 1 <= len(out_zh) <= len(zh)
    assert tokens_of("好 评", "zh") == ["好", "评"] and tokens_of("good  tea", "en") == ["good", "tea"]


def test_edit_rates_follow_the_parameters():
    rng = np.random.default_rng(1)
    text = " ".join(f"w{i}" for i in range(200))
    kept = [len(edit_augment(text, "en", rng, p_delete=0.25, swaps=0).split()) for _ in range(200)]
    assert abs(np.mean(kept) / 200 - 0.75) < 0.01  # binomial(200, 0.75) mean over 200 draws
    swapped = edit_augment(text, "en", rng, p_delete=0.0, swaps=1).split()
    moved = [i for i, w in enumerate(swapped) if w != f"w{i}"]
    assert len(moved) == 2 and sorted(swapped) == sorted(text.split())  # exactly one pair exchanged
    assert edit_augment("single", "en", rng) == "single"  # nothing to edit


def test_pseudo_labels_by_confidence_and_by_agreement():
    probs = np.array([[0.95, 0.05], [0.6, 0.4], [0.08, 0.92], [0.5, 0.5]])
    rows, labels = pseudo_labels("binary", probs, threshold=0.9)
    assert rows.tolist() == [0, 2] and labels.tolist() == [0, 1]
    teacher = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0])
    second = teacher + np.array([0.5, -0.1, 2.0, 0.05, -0.3, 1.0, 0.0, -4.0, 0.2, 0.01])
    rows, values = pseudo_labels("regression", teacher, second=second, keep_share=0.3)
    assert rows.tolist() == [3, 6, 9] and values.tolist() == [4.0, 7.0, 10.0]  # gaps 0.05, 0.0, 0.01
    with pytest.raises(ValueError, match="second model"):
        pseudo_labels("regression", teacher)
