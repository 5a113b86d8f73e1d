"""User SQL is never rewritten: whatever text the engine accepts runs unchanged and keeps its query-log match.

Property-based: Hypothesis builds query texts with comments, string literals that look like
clauses, FORMAT, SETTINGS, semicolons and unicode; each runs through the driver's one timing
path on the real embedded engine and must appear in ``system.query_log`` verbatim (the engine
itself leaves off trailing whitespace), under the driver's id, exactly once.
"""

from __future__ import annotations

import itertools
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lockprof.clock import RunClock
from lockprof.driver import timed_execute
from lockprof.samplers.query_log import QueryLogReader

ids = itertools.count()
# Text that reads like SQL to a regular expression: clause keywords, quotes, comment openers, semicolons.
tricky = st.text(
    alphabet=st.sampled_from(list("ab ;'\"\\-/*\n\tSETINGFORMAT,=()é中🙂")) | st.characters(codec="utf-8"),
    max_size=30,
).map(lambda t: t.replace("\x00", ""))


def literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


@st.composite
def query_texts(draw: st.DrawFn) -> str:
    value = draw(st.one_of(st.integers(-(2**63), 2**63 - 1).map(str), tricky.map(literal)))
    text = f"SELECT {value} AS x"
    if draw(st.booleans()):
        text = f"-- {draw(tricky).replace(chr(10), ' ').replace(chr(13), ' ')}\n{text}"
    if draw(st.booleans()):
        text += f" /* {draw(tricky).replace('*/', '')} */"
    if draw(st.booleans()):
        text += f" SETTINGS max_threads = {draw(st.integers(1, 8))}"
    if draw(st.booleans()):
        text += f" FORMAT {draw(st.sampled_from(['JSON', 'TSV', 'CSV', 'Null', 'Pretty']))}"
    if draw(st.booleans()):
        text += " -- trailing comment " + draw(tricky).replace("\n", " ").replace("\r", " ")
    if draw(st.booleans()):
        text += draw(st.sampled_from([";", " ;", ";\n", "\n"]))
    return text


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=query_texts())
def test_any_accepted_query_text_runs_unchanged_and_keeps_its_query_log_match(engine, text):
    conn = engine.connect()
    qid = f"qtext-{next(ids)}"
    _, _, error = timed_execute(conn, text, {}, qid, RunClock(), {"max_execution_time": 30})
    assert error is None, error
    per_query, _ = QueryLogReader(engine.admin).read(qid)
    match = per_query[per_query["query_id"] == qid]
    assert len(match) == 1
    logged = engine.admin.frame(
        "SELECT query FROM system.query_log "
        "WHERE log_comment = {id:String} AND query_kind != 'Set' AND type = 'QueryFinish'", {"id": qid}
    )
    [as_logged] = logged["query"]
    # The engine logs the statement up to its end: what it leaves off is only whitespace, ';' or a comment.
    assert text.startswith(as_logged), as_logged
    assert re.fullmatch(r"[\s;]*(--[^\n]*)?[\s;]*", text[len(as_logged):]), text[len(as_logged):]
