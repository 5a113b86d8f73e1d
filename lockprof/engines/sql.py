"""Small SQL text helpers shared by the engines. lockprof never edits a user's query text:
its own settings go in a separate ``SET`` statement on the session (or in the client's settings)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def session_settings(settings: Mapping[str, Any]) -> str:
    """A ``SET`` statement for the given settings (names are lockprof's own, values quoted)."""
    items = ", ".join(f"{k} = {quote(str(v))}" for k, v in settings.items())
    return f"SET {items}"


def quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
