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
import sys
import threading
import uuid

from lockprof.driver import CANCELLED_CODES, KILL_SQL, first_line, user_code_error
from lockprof.engines.base import Connection
from lockprof.errors import ScenarioError
from lockprof.scenario import Query, Scenario, draw_params

PREFLIGHT_LIMIT_S = 5
KILL_AFTER_S = 1.0  # past the limit, a statement whose own SETTINGS lift it is cancelled


def preflight(conn: Connection, scenario: Scenario, table: str, schema: str, killer: Connection | None = None) -> None:
    """Run each query and background statement once on ``table``; raise ScenarioError on the first failure.

    ``killer``, a spare connection, stops a statement still running after the limit even when its own
    ``SETTINGS max_execution_time`` outranks the one sent beside it (by its own id, so on a shared server too)."""
    rng = random.Random(f"{scenario.seed}:preflight:{schema}")
    for item in [*scenario.queries, *scenario.background]:
        what = f"schema {schema!r}, {'query' if isinstance(item, Query) else 'background'} {item.name!r}"
        try:
            params = draw_params(item.params, rng)
        except (Exception, SystemExit) as exc:  # user code: its failure is the message (Ctrl-C stays an interruption)
            raise ScenarioError(f"{what}: {user_code_error('its params function', exc)}") from None
        qid = f"lockprof-preflight-{uuid.uuid4().hex}"
        cancelled = threading.Event()  # set once the killer sent its KILL
        timer = _killer(killer, qid, cancelled)
        try:
            conn.execute(item.sql.replace("{table}", table), params, query_id=qid,
                         settings={**scenario.settings, "max_execution_time": PREFLIGHT_LIMIT_S})
        except Exception as exc:
            message = first_line(exc)
            # Slow, not broken. Over HTTP a server cancels a streaming answer by cutting it, so after our own
            # KILL any failure is the cancellation, whatever the client calls it.
            if message.endswith(CANCELLED_CODES) or cancelled.is_set():
                continue
            raise ScenarioError(f"{what}: ClickHouse rejected it: {message}") from None
        finally:
            if timer is not None:
                timer.cancel()
                timer.join()
        if not _exists(conn, table):
            raise ScenarioError(f"{what}: it removed the table it runs on ({table}: DROP, RENAME or the like); a "
                                "statement may change the table's rows and parts, but the table must stay")


def _killer(killer: Connection | None, qid: str, cancelled: threading.Event) -> threading.Timer | None:
    """A started timer that cancels statement ``qid`` once it outlives the limit, or None without a killer."""
    if killer is None:
        return None
    timer = threading.Timer(PREFLIGHT_LIMIT_S + KILL_AFTER_S, _kill, args=(killer, qid, cancelled))
    timer.daemon = True
    timer.start()
    return timer


def _kill(killer: Connection, qid: str, cancelled: threading.Event) -> None:
    """Cancel a preflight statement that outlived its limit (the driver's KILL, by the statement's id)."""
    try:
        cancelled.set()
        killer.execute(KILL_SQL, {"prefix": qid})
    except Exception as exc:  # the statement then runs to its own end; the worker's log says why
        print(f"lockprof: could not cancel a preflight statement: {first_line(exc)}", file=sys.stderr)


def _exists(conn: Connection, table: str) -> bool:
    """Whether the scenario's table is still there (a background statement may have dropped it)."""
    return bool(int(conn.frame(f"EXISTS TABLE {table}").iloc[0, 0]))
