"""What a statement's text says before it runs: whether it only reads.

Shared by the scenario (a measured query that writes changes its dataset) and the server
guard (which lets reads through); it lives outside the engines so the scenario layer loads
no engine code.
"""

from __future__ import annotations

import re

READING = re.compile(r"^(\(\s*)*(SELECT|WITH|SHOW|DESC|DESCRIBE|EXISTS|EXPLAIN)\b", re.IGNORECASE)


def strip_comments(sql: str) -> str:
    return re.sub(r"--[^\n]*|/\*.*?\*/", " ", sql, flags=re.DOTALL).strip()
