"""lockprof compare: did engine B get faster or slower than engine A, per schema and concurrency?

Give one run measured on two or more engines (the first is A), or two runs of
one engine each. Each measurement window is one replicate: per repetition the
ratio of B's window to A's, with the position effect (the worker started second
runs the second window) removed. A change is called only when its 95% interval
excludes no change, its estimate is beyond the minimum change, and it stays
significant once all the comparison's tests of its family are counted
(Benjamini-Hochberg); "unchanged" only when the whole interval lies within the
minimum change; otherwise "inconclusive". ``--fail-on`` turns a significant
worsening of the chosen metric into exit status 5, for CI; a gate's false-alarm
rate is bounded per family it reads (latency and throughput; CPU; locks).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from lockprof import store
from lockprof.analysis import load_run
from lockprof.analysis.ab import Comparison, Settings, compare, regressions
from lockprof.analysis.ab_text import ab_headlines
from lockprof.errors import LockprofError

REGRESSION_EXIT = 5
GATES = {
    "latency": "latency_ms",
    "throughput": "throughput_qps",
    "lock_wait": "lock_wait_us_per_query",
    "lock_hold": "lock_hold_us_per_query",
    "lock_acquisitions": "lock_acquisitions_per_query",
    "cpu": "cpu_ms_per_query",
}
STYLE = {"faster": "green", "slower": "red", "fewer": "green", "more": "red", "inconclusive": "yellow",
         "too_few_repetitions": "yellow", "error": "bold red", "not_comparable": "dim"}
ROLES = (("lock_wait_us_per_query", "wait µs/query"), ("lock_hold_us_per_query", "hold µs/query"),
         ("lock_acquisitions_per_query", "acquisitions/query"))  # fmt: skip


def gate(text: str) -> tuple[str, str | None]:
    metric, _, lock = text.partition(":")
    if metric not in GATES:
        raise argparse.ArgumentTypeError(f"unknown metric {metric!r}; choose from {', '.join(GATES)} (lock_*:LOCK)")
    return GATES[metric], lock or None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="A/B verdicts between engines or runs", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("runs", type=Path, nargs="+", metavar="RUN", help="one run with 2+ engines, or two runs")
    p.add_argument("--fail-on", type=gate, action="append", default=[], metavar="METRIC[:LOCK]",
                   help=f"exit {REGRESSION_EXIT} if this got significantly worse anywhere: {', '.join(GATES)}; "
                        "lock metrics can name a lock, e.g. lock_wait:parts (repeatable)")  # fmt: skip
    p.add_argument("--min-change", type=float, default=Settings.min_change,
                   help=f"smallest relative change ever called, and the margin within which 'unchanged' must be shown "
                        f"(default {Settings.min_change})")  # fmt: skip
    p.add_argument("--allow-host-mismatch", action="store_true", help="compare runs from different machines anyway")
    p.add_argument("--csv", type=Path, help="also write the full tidy comparison frame to this CSV file")
    p.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    if len(args.runs) > 2:
        raise LockprofError("compare takes one run (with two or more engines) or two runs")
    if len(args.runs) == 2 and Path(args.runs[0]).resolve() == Path(args.runs[1]).resolve():
        raise LockprofError(f"{args.runs[0]} is given twice; compare the engines of one run with `lockprof compare "
                            "RUN`, or two different runs with `lockprof compare RUN_A RUN_B`")
    if args.csv:
        store.check_output_file(args.csv, "--csv")
    runs = [load_run(p) for p in args.runs]
    settings = Settings(min_change=args.min_change)
    result = compare(*runs, settings=settings, allow_host_mismatch=args.allow_host_mismatch)
    console = Console(width=None if sys.stdout.isatty() else 160)
    render(result, console, settings.min_change)
    if args.csv:
        with store.writing(args.csv, "--csv"):
            store.atomic_write_bytes(args.csv, result.frame.to_csv(index=False).encode())
    failed = False
    for metric, lock in args.fail_on:
        bad = regressions(result.frame, metric, lock)
        for r in bad.itertuples():
            where = f"{r.schema} c={r.concurrency}" + (f" {r.lock} {r.mode}" if r.lock else "")
            what = "could not be computed" if r.verdict == "error" else f"got worse ({_ratio(r.ratio)})"
            print(f"lockprof: {metric} {what} at {where}: {r.engine_a} -> {r.engine_b}", file=sys.stderr)
        failed |= not bad.empty
    return REGRESSION_EXIT if failed else 0


# --- rendering -------------------------------------------------------------------------


def render(result: Comparison, console: Console, min_change: float = Settings.min_change) -> None:
    frame = result.frame
    for label, e in result.engines.items():
        console.print(f"[bold]{label}[/]: ClickHouse {e.get('clickhouse_version', '?')} ({e.get('package', '?')})",
                      highlight=False)  # fmt: skip
    if frame.empty:
        console.print("No point was measured on both sides.")
    for line in ab_headlines(frame, min_change):
        console.print(f"[bold]{line}[/]", highlight=False)
    for (a, b), pair in frame.groupby(["engine_a", "engine_b"], sort=False):
        for schema, rows in pair.groupby("schema", sort=True):
            key = result.partition_keys.get(schema)
            title = f"{schema}{f' (PARTITION BY {key})' if key else ''}: {b} vs {a}"
            console.print(_performance_table(rows, a, b, title))
            locks = _lock_table(rows, a, b)
            if locks is not None:
                console.print(locks)
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}", highlight=False)
    for line in result.positions:
        console.print(line, highlight=False)
    console.print(
        "Each measurement window is one replicate; per repetition the ratio of B's window to A's, whose order "
        "turns from one repetition to the next; the position effect is removed. A change counts only if its exact "
        f"95% interval excludes no change, its estimate (Hodges-Lehmann) is beyond ±{min_change:.0%}, and its "
        f"q-value (Benjamini-Hochberg over the comparison's tests of that family) is at most "
        f"{Settings.false_discovery_rate:.0%}; 'unchanged' only when the whole interval lies within "
        f"±{min_change:.0%}; otherwise 'inconclusive' (more repetitions narrow the interval). Ratios are B ÷ A. "
        "Lock times: less is 'faster'; acquisitions are 'more' or 'fewer'; n/a: the engine has no such counter.",
        style="dim",
        highlight=False,
    )


def _performance_table(rows: pd.DataFrame, a: str, b: str, title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for col in ("conc", "metric", a, b, "ratio", "95% CI", "q", "verdict"):
        table.add_column(col, justify="left" if col in ("metric", "verdict") else "right")
    names = {"throughput_qps": "throughput q/s", "latency_ms": "median latency ms", "cpu_ms_per_query": "CPU ms/query"}
    perf = rows[rows["metric"].isin(list(names))]
    perf = perf.assign(order=perf["metric"].map({m: i for i, m in enumerate(names)}))
    for r in perf.sort_values(["concurrency", "order", "query_name"]).itertuples():
        name = f"{names[r.metric]} {r.query_name}".strip()
        table.add_row(str(r.concurrency), name, _num(r.value_a), _num(r.value_b), _ratio(r.ratio),
                      _ci(r.ci_low, r.ci_high), _q(r.q_value),
                      _verdict(r.verdict, r.note))  # fmt: skip
    return table


def _lock_table(rows: pd.DataFrame, a: str, b: str) -> Table | None:
    locks = rows[rows["metric"].str.startswith("lock_")]
    if locks.empty:
        return None
    source = ", ".join(sorted(locks["source"].dropna().unique()))
    table = Table(title=f"  locks per query ({a} → {b}; from {source})", title_justify="left")
    for col in ("conc", "lock", "mode", *(label for _, label in ROLES)):
        table.add_column(col, justify="left" if col in ("lock", "mode") else "right")
    for (conc, lock, mode), g in locks.groupby(["concurrency", "lock", "mode"], sort=True):
        by_metric = {r.metric: r for r in g.itertuples()}
        cells = [_lock_cell(by_metric.get(metric)) for metric, _ in ROLES]
        table.add_row(str(conc), lock, mode, *cells)
    return table


def _lock_cell(r) -> str:  # noqa: ANN001  (a row of the comparison frame)
    if r is None:
        return ""
    text = f"{_num(r.value_a)} → {_num(r.value_b)}"
    if r.verdict == "not_comparable":
        return text
    return f"{text} {_ratio(r.ratio)} {_verdict(r.verdict, r.note)}"


def _num(v: float) -> str:
    if v is None or pd.isna(v):
        return "n/a"
    if v == 0:
        return "0"
    return f"{v:.3g}" if abs(v) < 100 else f"{v:,.0f}"


def _ratio(v: float) -> str:
    """B ÷ A as a factor: 1.13×, 0.87×; 'new' where A had none."""
    if v is None or pd.isna(v):
        return ""
    if math.isinf(v):
        return "new"
    return f"{v:.2f}×" if v < 100 else f"{v:,.0f}×"


def _q(v: float) -> str:
    return "" if v is None or pd.isna(v) else f"{v:.3f}"


def _ci(low: float, high: float) -> str:
    if pd.isna(low) or pd.isna(high):
        return ""
    return f"{low:.2f}–{'∞' if math.isinf(high) else f'{high:.2f}'}×"


def _verdict(v: str, note: object = None) -> str:
    style = STYLE.get(v)
    text = f"[{style}]{v.replace('_', ' ')}[/]" if style else v
    if v == "error" and isinstance(note, str):
        text += f" ({note})"
    return text
