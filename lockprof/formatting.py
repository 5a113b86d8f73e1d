"""How a number is written, shared by every renderer: the summary, the report and compare print one
metric of one run as the same string."""

from __future__ import annotations

import pandas as pd

from lockprof.analysis.accounting import COMPONENTS

ACCOUNTING_HEADERS = ["latency ms", "thread ms", "on CPU", "CPU wait", "IO wait", "lock wait", "own threads",
                      "other"]
BUDGET_HEADERS = ["wait µs", "hold µs", "acq/query", "wait % thread"]


def fmt(value: float, spec: str) -> str:
    """A number, or n/a for a counter the engine does not have."""
    return "n/a" if pd.isna(value) else format(value, spec)


def accounting_cells(row: pd.Series) -> list[str]:
    """A time-accounting row: latency and thread time in ms, each part as 'ms (share)'."""
    cells = [fmt(row["latency_ms"], ".1f"), fmt(row["thread_ms"], ".1f")]
    return cells + [f"{fmt(row[f'{c}_ms'], '.1f')} ({fmt(row[f'{c}_share'], '.0%')})" for c in COMPONENTS]


def budget_cells(row: pd.Series) -> list[str]:
    """A lock-budget row: wait and hold per query in µs, acquisitions per query, wait as a share of thread time."""
    return [fmt(row["wait_us_per_query"], ".1f"), fmt(row["hold_us_per_query"], ".1f"),
            fmt(row["acquisitions_per_query"], ".3g"), fmt(row["wait_share_of_thread_time"], ".1%")]


def cells_frame(frame: pd.DataFrame, keys: list[str], headers: list[str], cells) -> pd.DataFrame:  # noqa: ANN001
    """The frame's key columns beside its formatted cells, as a table of strings."""
    rows = [[*(str(r[k]) for k in keys), *cells(r)] for _, r in frame.iterrows()]
    return pd.DataFrame(rows, columns=[*keys, *headers])
