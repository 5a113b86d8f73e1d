"""Before measuring: run every statement of the scenario once per schema.

A query ClickHouse rejects, or a ``params`` function that cannot produce its
values, would otherwise fill a whole run with errors that look like
measurements. Found here, it is a broken scenario: one message naming the
statement and ClickHouse's error, before any run directory exists. A statement
that is merely slow is not broken: the check stops it after
:data:`PREFLIGHT_LIMIT_S`.
"""

from __future__ import annotations

import random
import uuid

from lockprof.driver import CANCELLED_CODES, first_line, user_code_error
from lockprof.engines.base import Connection
from lockprof.errors import ScenarioError
from lockprof.scenario import Query, Scenario, draw_params

PREFLIGHT_LIMIT_S = 5


def preflight(conn: Connection, scenario: Scenario, table: str, schema: str) -> None:
    """Run each query and background statement once on ``table``; raise ScenarioError on the first failure."""
    rng = random.Random(f"{scenario.seed}:preflight:{schema}")
    for item in [*scenario.queries, *scenario.background]:
        what = f"schema {schema!r}, {'query' if isinstance(item, Query) else 'background'} {item.name!r}"
        try:
            params = draw_params(item.params, rng)
        except (Exception, SystemExit) as exc:  # user code: its failure is the message (Ctrl-C stays an interruption)
            raise ScenarioError(f"{what}: {user_code_error('its params function', exc)}") from None
        try:
            conn.execute(item.sql.replace("{table}", table), params, query_id=f"lockprof-preflight-{uuid.uuid4().hex}",
                         settings={**scenario.settings, "max_execution_time": PREFLIGHT_LIMIT_S})
        except Exception as exc:
            message = first_line(exc)
            if message.endswith(CANCELLED_CODES):
                continue  # slow, not broken
            raise ScenarioError(f"{what}: ClickHouse rejected it: {message}") from None
        if not _exists(conn, table):
            raise ScenarioError(f"{what}: it removed the table it runs on ({table}: DROP, RENAME or the like); a "
                                "statement may change the table's rows and parts, but the table must stay")


def _exists(conn: Connection, table: str) -> bool:
    """Whether the scenario's table is still there (a background statement may have dropped it)."""
    return bool(int(conn.frame(f"EXISTS TABLE {table}").iloc[0, 0]))
