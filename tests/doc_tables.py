"""Reading docs/tables.md in tests: its column tables and its named SQL examples.

Import it as ``doc_tables`` (pytest puts ``tests/`` on ``sys.path``; ``tests/`` has no
``__init__.py``)."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "tables.md"
PRODUCT_TABLES = "\n## Product tables"  # the part tests/test_product_tables.py checks; the rest is test_insights'


def doc_columns(text: str) -> dict[str, list[tuple[str, str]]]:
    """Per '### table' section: the (column, type) pairs of its markdown table."""
    out: dict[str, list[tuple[str, str]]] = {}
    current = None
    for line in text.splitlines():
        m = re.match(r"^##+ (\w+)", line)
        if m:
            current = m.group(1)
            continue
        m = re.match(r"^\| `([^`]+)` \| ([^|]+) \|", line)
        if m and current:
            out.setdefault(current, []).append((m.group(1), m.group(2).strip()))
    return out


def doc_sql(text: str) -> dict[str, str]:
    """Each ```sql block by the name its first line gives (``-- name: <name>``)."""
    blocks = re.findall(r"```sql\n(.*?)```", text, flags=re.S)
    out = {}
    for b in blocks:
        m = re.match(r"-- name: (\w+)\n", b)
        assert m, f"every sql block starts with '-- name: <name>': {b[:60]!r}"
        out[m.group(1)] = b
    return out


def before_product_tables() -> str:
    return DOC.read_text(encoding="utf-8").split(PRODUCT_TABLES, 1)[0]


def product_tables() -> str:
    return DOC.read_text(encoding="utf-8").split(PRODUCT_TABLES, 1)[1]
