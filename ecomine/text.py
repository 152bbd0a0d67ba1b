"""Pure text helpers shared by the driver, the executors and the tests (no pyspark).

`clean_text` is what the model sees; `reject_reason` decides whether a review can be
scored at all. Both are used from Spark through pandas UDFs, so the rules live once.

`normalize_for_matching`, `weighted_length` and `shingles` are how texts are compared
with each other (near-duplicate detection in `ecomine.derived.fraud`). Spark applies
them as native column expressions built from the same patterns (`HAN_CLASS`,
`NON_WORD_JAVA`, written in the syntax Java and Python regexes read alike);
`tests/test_fraud_rules.py` checks that both forms give the same output.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = [
    "HAN_CLASS",
    "NON_WORD_JAVA",
    "REJECT_DUPLICATE_KEY",
    "REJECT_EMPTY",
    "REJECT_LANGUAGE",
    "REJECT_NULL",
    "REJECT_NULL_KEY",
    "REJECT_TOO_SHORT",
    "clean_text",
    "detect_language",
    "is_mostly_han",
    "normalize_for_matching",
    "normalize_language",
    "reject_reason",
    "shingles",
    "weighted_length",
]

#: Ideographs (CJK unified + extension A + compatibility), as a regex character class.
HAN_CLASS = r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]"
#: What matching normalisation replaces: runs of anything that is not a letter or digit.
#: Java form (Spark's ``regexp_replace``); the Python form below matches the same runs.
NON_WORD_JAVA = r"[^\p{L}\p{N}]+"

# C0/C1 control characters except tab/newline; lone surrogates from bad UTF-8 decoding.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_WS = re.compile(r"\s+")
_CJK = re.compile(HAN_CLASS)
_NON_WORD = re.compile(r"[\W_]+")  # Unicode-aware: not a letter or digit
_LETTER = re.compile(r"[^\W\d_]", re.UNICODE)

REJECT_NULL = "null_text"
REJECT_EMPTY = "empty_text"
REJECT_TOO_SHORT = "too_short"
REJECT_LANGUAGE = "unsupported_language"
REJECT_NULL_KEY = "null_review_id"
REJECT_DUPLICATE_KEY = "duplicate_review_id"


def clean_text(text: str | None) -> str | None:
    """NFC-normalise, drop control characters and undecodable surrogates, collapse whitespace."""
    if text is None:
        return None
    text = unicodedata.normalize("NFC", str(text))
    text = _SURROGATE.sub("", text)
    text = text.replace("\ufffd", "")  # replacement characters left by invalid UTF-8
    text = _CONTROL.sub(" ", text)
    return _WS.sub(" ", text).strip()


def detect_language(text: str | None) -> str | None:
    """A deliberately small detector for the languages ecomine routes: 'zh' when CJK
    ideographs make up at least 30% of the letters, 'en' otherwise; None for no letters."""
    if not text:
        return None
    letters = _LETTER.findall(text)
    if not letters:
        return None
    cjk = len(_CJK.findall(text))
    return "zh" if cjk / len(letters) >= 0.3 else "en"


def normalize_language(code: str | None) -> str | None:
    """'EN', 'en-US', 'zh_CN' -> 'en', 'zh'; blank -> None."""
    if code is None:
        return None
    code = str(code).strip().lower().replace("_", "-")
    return code.split("-")[0] or None


def reject_reason(cleaned: str | None, raw_was_null: bool, min_chars: int) -> str | None:
    """Why a review cannot be scored, or None when it can."""
    if raw_was_null:
        return REJECT_NULL
    if cleaned is None or cleaned == "":
        return REJECT_EMPTY
    if len(cleaned) < min_chars:
        return REJECT_TOO_SHORT
    return None


# --------------------------------------------------------------------------- matching


def normalize_for_matching(text: str | None) -> str | None:
    """Lower-case, every run of non-letters/digits to one space, trimmed: the form in which
    two reviews count as the same text ("Great -- Product!!" -> "great product")."""
    if text is None:
        return None
    return _NON_WORD.sub(" ", text.lower()).strip()


def weighted_length(normalized: str | None) -> int | None:
    """Length of a normalised text where each ideograph counts 3 (an ideograph carries
    about as much as a short English word): used to discount very short texts."""
    if normalized is None:
        return None
    return len(normalized) + 2 * len(_CJK.findall(normalized))


def is_mostly_han(normalized: str) -> bool:
    """True when ideographs make up more than half of the (normalised) text."""
    return 2 * len(_CJK.findall(normalized)) > len(normalized)


def shingles(normalized: str, size: int) -> list[str]:
    """The distinct character ``size``-grams of a normalised text in order of first
    appearance; a text shorter than ``size`` is its own single shingle."""
    grams = (normalized[i : i + size] for i in range(max(len(normalized) - size, 0) + 1))
    return list(dict.fromkeys(grams))
