"""lockprof forecast: what a run's engines would do on N cores.

From the run's CPU per query, its measured parallel efficiency and each exclusive lock's hold per query (at the
lowest concurrency), the throughput on N cores is the least of the CPU line and the locks' ceilings 1/h; the
table gives the core count from which each lock becomes the limit and its forecast wait at N cores and
C workers (default: one per core). Intervals come from a bootstrap over the run's windows. See docs/forecast.md
for the method and its assumptions.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lockprof import store
from lockprof.analysis import load_run
from lockprof.analysis.capacity import capacity_forecast, capacity_sentences

STDOUT = "-"


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("forecast", help="forecast throughput and lock limits on N cores", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("run", type=Path, help="run directory")
    p.add_argument("--cores", type=positive, required=True, help="cores to forecast for")
    p.add_argument("--concurrency", type=positive,
                   help="closed-loop workers (default: one per core); bounds throughput by the lowest level's latency")
    p.add_argument("--csv", nargs="?", const=STDOUT, metavar="FILE",
                   help="write the tidy forecast frame as CSV to FILE, or alone: to stdout instead of the table")
    p.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    if args.csv and args.csv != STDOUT:
        store.check_output_file(Path(args.csv), "--csv")
    run = load_run(args.run)
    frame = capacity_forecast(run, args.cores, args.concurrency)
    if args.csv == STDOUT:
        sys.stdout.write(frame.to_csv(index=False))
        return 0
    if args.csv:
        with store.writing(Path(args.csv), "--csv"):
            store.atomic_write_bytes(Path(args.csv), frame.to_csv(index=False).encode())
    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(forecast_table(frame, args.cores))
    console.print("[bold]Forecast[/]")
    for sentence in capacity_sentences(run, args.cores, args.concurrency):
        console.print("• " + escape(sentence), highlight=False)
    return 0


def forecast_table(frame: pd.DataFrame, cores: int) -> Table:
    """One row per engine, schema and exclusive lock: the CPU line's inputs, the lock's ceiling and crossing, and
    the forecast at ``cores``."""
    workers = int(frame["concurrency"].iloc[0]) if not frame.empty else cores
    table = Table(title=f"Capacity forecast at {cores} cores, {workers} workers (n/a: no hold counter, so no ceiling; "
                        "intervals: 95%, bootstrap over the run's windows; wait: its share of a query's time in "
                        "brackets)", title_justify="left")
    for col in ("engine", "schema", "CPU ms/query", "efficiency", "lock", "hold µs/query", "ceiling q/s",
                "lock-bound from", f"q/s at {cores} cores", "bound", "wait µs/query"):
        table.add_column(col, justify="left" if col in ("engine", "schema", "lock", "bound") else "right")
    first = ~frame.duplicated(["engine", "schema"])
    for i, r in frame.iterrows():
        counted = pd.notna(r["hold_us_per_query"])
        lock = str(r["lock"]).replace("_", " ") if r["lock"] else "—"
        # the engine's forecast once, on its first row: the rows below add locks, not other forecasts
        once = (lambda text, show=bool(first[i]): text if show else "")  # noqa: E731
        table.add_row(
            once(str(r["engine"])), once(str(r["schema"])), once(_fmt(r["cpu_ms_per_query"], ".1f")),
            once(_fmt(r["efficiency"], ".0%")),
            lock, _fmt(r["hold_us_per_query"], ",.0f") if counted else ("n/a" if r["lock"] else ""),
            _fmt(r["ceiling_qps"], ",.0f") if counted else ("n/a" if r["lock"] else ""),
            _fmt(r["crossing_cores"], ",.1f") + (" cores" if pd.notna(r["crossing_cores"]) else "")
            if counted else ("n/a" if r["lock"] else ""),
            once(_fmt(r["forecast_qps"], ",.0f") + _span(r["forecast_low_qps"], r["forecast_high_qps"])),
            once(str(r["bound"]).replace("_", " ") or "—"),
            _fmt(r["forecast_wait_us"], ",.0f") + _share(r["wait_share_of_latency"]) if counted
            else ("n/a" if r["lock"] else ""),
        )
    return table


def _fmt(value: float, spec: str) -> str:
    return "—" if pd.isna(value) else format(value, spec)


def _share(share: float) -> str:
    return "" if pd.isna(share) else f" ({share:.0%})"


def _span(low: float, high: float) -> str:
    return "" if pd.isna(low) or pd.isna(high) else f" ({low:,.0f}–{high:,.0f})"
