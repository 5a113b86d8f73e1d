"""The text summary printed after a run: throughput and latency per level, the lock
budget of the locks that matter, and one computed sentence per schema."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lockprof.analysis import Run, level_summary, load_run, lock_budget, time_accounting, verdict_lines
from lockprof.analysis.accounting import SOURCE_TEXT
from lockprof.analysis.health import run_warnings
from lockprof.analysis.outside import outside_sentences
from lockprof.analysis.tail import rare_exclusive_holds, tail_attribution
from lockprof.formatting import ACCOUNTING_HEADERS, BUDGET_HEADERS, accounting_cells, budget_cells

SUMMARY_WIDTH = 150
MATTERS_US = 1.0  # a lock matters when its wait or hold reaches this per query at some level


def locks_that_matter(budget: pd.DataFrame, threshold_us: float = MATTERS_US) -> pd.DataFrame:
    """The budget's rows of the locks whose wait or hold reaches the threshold per query at some level."""
    if budget.empty:
        return budget
    peak = budget.assign(t=budget[["wait_us_per_query", "hold_us_per_query"]].max(axis=1))
    keep = peak.groupby(["lock", "mode"])["t"].max()
    keep = keep[keep >= threshold_us].index
    return budget.set_index(["lock", "mode"]).loc[lambda f: f.index.isin(keep)].reset_index()


def render(run: Run, console: Console) -> None:
    """The answer first (the verdict, then what the slowest queries are made of), then warnings, then the
    tables behind them."""
    manifest = run.manifest
    summary = level_summary(run)
    engines = summary["engine"].nunique() > 1
    name = manifest.scenario_name or "unnamed scenario"
    console.print(f"[bold]{escape(str(name))} — run {escape(manifest.run_id)}[/]", highlight=False)
    console.print("[bold]Verdict[/]")
    for sentence in verdict_lines(run):
        console.print("• " + escape(sentence), highlight=False)
    tail = summary_tail_lines(run)
    if tail:
        console.print("[bold]Beyond the mean: the slowest queries and rare exclusive holds[/]")
        for sentence in tail:
            console.print("• " + escape(sentence), highlight=False)
    sweep = sweep_lines(run)
    if sweep:
        console.print("[bold]Along the engines, in the order given (a release sweep): where each metric moved[/]")
        for sentence in sweep:
            console.print("• " + escape(sentence), highlight=False)
    for warning in run_warnings(run, summary):
        console.print(f"[bold yellow]warning:[/] {escape(warning)}", highlight=False)
    console.print(levels_table(summary, engines))
    accounting = time_accounting(run)
    if not accounting.empty:
        console.print(accounting_table(accounting, engines))
    budget = budget_table(lock_budget(run), engines)
    if budget is not None:
        console.print(budget)
    console.print(f"run directory: {run.paths[0]}", highlight=False)


def sweep_lines(run: Run) -> list[str]:
    """With three or more engines: the first change of every metric that moved from one engine to the next, and
    how many did not (the report lists them all)."""
    from lockprof.analysis.releases import engine_order, first_changes

    if len(engine_order(run)) < 3:
        return []
    changes = first_changes(run)
    moved = changes[changes["first_changed"] != ""]
    still = len(changes) - len(moved)
    rest = [f"{still} more metrics moved at no step beyond their intervals (the report lists each with its values)"]
    return [*moved["sentence"], *(rest if still else [])]


def summary_tail_lines(run: Run) -> list[str]:
    """The tail sentences the summary shows: per engine and schema, the highest concurrency and every level
    whose tail is an exclusive hold or a stall (the report shows every level), the rare exclusive holds, and the
    exclusive holds outside the measured queries."""
    tails = tail_attribution(run)
    if not tails.empty:
        top = tails.groupby(["engine", "schema"])["concurrency"].transform("max") == tails["concurrency"]
        tails = tails[(top | tails["cause"].isin(["exclusive_hold", "stall"])) & (tails["sentence"] != "")]
    return [*tails["sentence"], *rare_exclusive_holds(run)["sentence"],
            *outside_sentences(run, only=("exclusive", "hold"))]


def levels_table(summary: pd.DataFrame, engines: bool) -> Table:
    """Throughput and latency per level."""
    open_loop = summary["target_qps"].notna().any()
    levels = Table(title="Levels", title_justify="left")
    columns = ["schema", "conc", "parts", "queries", "qps", "p50 ms", "p99 ms", "errors"]
    if open_loop:
        columns[4:4] = ["target qps"]
        columns.append("p99 queue ms")
    for col in (["engine"] if engines else []) + columns:
        levels.add_column(col, justify="left" if col in ("engine", "schema") else "right")
    for _, r in summary.iterrows():
        cells = [r["engine"]] if engines else []
        cells += [
            r["schema"],
            str(r["concurrency"]),
            f"{r['active_parts']:.0f}",
            str(r["queries"]),
            "too few" if r.get("too_few", False) else f"{r['throughput_qps']:.1f}",
            f"{r['p50_ms']:.2f}" if pd.notna(r["p50_ms"]) else "—",
            "—" if r.get("too_few", False) or pd.isna(r["p99_ms"])
            else ("≥ " if r.get("p99_lower_bound", False) else "") + f"{r['p99_ms']:.2f}",
            str(r["errors"]) if r["errors"] else "",
        ]
        if open_loop:
            cells.insert(5 if engines else 4, f"{r['target_qps']:g}")
            cells.append(f"{r['queue_delay_p99_ms']:.1f}")
        levels.add_row(*cells)
    return levels


def budget_table(budget: pd.DataFrame, engines: bool) -> Table | None:
    """The lock budget of the locks that matter, at the lowest and highest concurrency."""
    shown = locks_that_matter(budget)
    shown = shown[shown.groupby(["engine", "schema"])["concurrency"].transform(
        lambda c: c.isin([c.min(), c.max()]))] if not shown.empty else shown
    if shown.empty:
        return None
    source = SOURCE_TEXT.get(shown["source"].iloc[0], shown["source"].iloc[0])
    table = Table(title=f"Lock budget per query at the lowest and highest concurrency (from {source}; "
                        "n/a: the engine has no such counter)", title_justify="left")
    for col in (["engine"] if engines else []) + ["schema", "conc", "lock", "mode", *BUDGET_HEADERS]:
        table.add_column(col, justify="left" if col in ("engine", "schema", "lock", "mode") else "right")
    for _, r in shown.sort_values(["engine", "schema", "concurrency", "lock", "mode"]).iterrows():
        cells = [r["engine"]] if engines else []
        table.add_row(*cells, r["schema"], str(r["concurrency"]), r["lock"], r["mode"], *budget_cells(r))
    return table


def accounting_table(accounting: pd.DataFrame, engines: bool) -> Table:
    """Thread time per query and its parts, in ms and as a share of thread time."""
    source = SOURCE_TEXT.get(accounting["source"].iloc[0], accounting["source"].iloc[0])
    table = Table(title=f"Where the time goes, per query: thread time (summed over a query's threads) in ms and "
                        f"its share (from {source})", title_justify="left")
    for col in (["engine"] if engines else []) + ["schema", "conc", *ACCOUNTING_HEADERS]:
        table.add_column(col, justify="left" if col in ("engine", "schema") else "right")
    for _, r in accounting.iterrows():
        cells = [r["engine"]] if engines else []
        table.add_row(*cells, r["schema"], str(r["concurrency"]), *accounting_cells(r))
    return table


def print_summary(path: Path, console: Console | None = None) -> None:
    # Not a terminal (a pipe, a file, CI): wide enough for the time-accounting table's eight parts on one line.
    render(load_run(path), console or Console(width=None if Console().is_terminal else SUMMARY_WIDTH))
