"""Small SQL text helpers shared by the engines. lockprof never edits a user's query text:
its own settings go in a separate ``SET`` statement on the session (or in the client's settings)."""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterable, Mapping
from typing import Any

DEFAULT = object()  # a value for session_settings: back to the setting's default


def session_settings(settings: Mapping[str, Any]) -> str:
    """A ``SET`` statement for the given settings (names checked by the scenario or the engine, values quoted)."""
    items = ", ".join(f"{k} = {'DEFAULT' if v is DEFAULT else quote(str(v))}" for k, v in settings.items())
    return f"SET {items}"


def quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


KNOWN_SETTINGS_SQL = "SELECT name FROM system.settings"  # aliases (insert_distributed_sync) are rows too


def unknown_setting(names: Iterable[str], known: Collection[str]) -> str | None:
    """The first name the engine does not know, said with the nearest known name; None when all are known.

    Why: ClickHouse ignores an unknown setting in chDB's connection string, so a misspelled
    ``embedded?max_threadz=1`` would make an A/B of a setting an A/A that exits 0.
    """
    for name in names:
        if name not in known:
            near = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
            hint = f"; did you mean {near[0]!r}?" if near else " (see system.settings for the names it knows)"
            return f"unknown setting {name!r}{hint}"
    return None
