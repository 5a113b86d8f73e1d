"""Small SQL text helpers shared by the engines."""

from __future__ import annotations

import re

_SETTINGS = re.compile(r"\bSETTINGS\b", re.IGNORECASE)


def with_settings(sql: str, settings: dict[str, str]) -> str:
    """Append query-level settings; a query's own SETTINGS clause, if any, must be its last clause."""
    if not settings:
        return sql
    body = sql.rstrip().rstrip(";")
    items = ", ".join(f"{k} = {quote(v)}" for k, v in settings.items())
    joiner = ", " if _SETTINGS.search(body) else " SETTINGS "
    return f"{body}{joiner}{items}"


def quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
