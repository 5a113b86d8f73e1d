"""The text summary printed after a run: throughput and latency per level, the lock
budget of the locks that matter, and one computed sentence per schema."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from lockprof.analysis import Run, dominant_lock_sentences, level_summary, load_run, lock_budget
from lockprof.run import ACHIEVED_FRACTION  # noqa: E402
from lockprof.samplers.pyspy import SATURATED_GIL_DEMAND  # noqa: E402

MATTERS_US = 1.0  # a lock matters when its wait or hold reaches this per query at some level


def locks_that_matter(budget: pd.DataFrame, threshold_us: float = MATTERS_US) -> pd.DataFrame:
    if budget.empty:
        return budget
    peak = budget.assign(t=budget[["wait_us_per_query", "hold_us_per_query"]].max(axis=1))
    keep = peak.groupby(["lock", "mode"])["t"].max()
    keep = keep[keep >= threshold_us].index
    return budget.set_index(["lock", "mode"]).loc[lambda f: f.index.isin(keep)].reset_index()


def render(run: Run, console: Console) -> None:
    manifest = run.manifest
    summary = level_summary(run)
    budget = lock_budget(run)
    engines = summary["engine"].nunique() > 1
    open_loop = summary["target_qps"].notna().any()
    title = f"{manifest['scenario']['name']} — run {manifest['run_id']}"
    levels = Table(title=title, title_justify="left")
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
            f"{r['throughput_qps']:.1f}",
            f"{r['p50_ms']:.2f}",
            f"{r['p99_ms']:.2f}",
            str(r["errors"]) if r["errors"] else "",
        ]
        if open_loop:
            cells.insert(5 if engines else 4, f"{r['target_qps']:g}")
            cells.append(f"{r['queue_delay_p99_ms']:.1f}")
        levels.add_row(*cells)
    console.print(levels)

    shown = locks_that_matter(budget)
    if not shown.empty:
        sources = ", ".join(sorted(shown["source"].unique()))
        table = Table(title=f"Lock budget per query (from {sources})", title_justify="left")
        for col in (["engine"] if engines else []) + ["schema", "conc", "lock", "mode", "wait µs", "hold µs",
                                                         "acq", "wait % lat"]:
            table.add_column(col, justify="left" if col in ("engine", "schema", "lock", "mode") else "right")
        for _, r in shown.sort_values(["engine", "schema", "concurrency", "lock", "mode"]).iterrows():
            cells = [r["engine"]] if engines else []
            cells += [
                r["schema"],
                str(r["concurrency"]),
                r["lock"],
                r["mode"],
                f"{r['wait_us_per_query']:.1f}",
                f"{r['hold_us_per_query']:.1f}",
                f"{r['acquisitions_per_query']:.3g}",
                f"{r['wait_share_of_latency']:.2%}",
            ]
            table.add_row(*cells)
        console.print(table)
    for sentence in dominant_lock_sentences(run, budget, summary):
        console.print("• " + sentence, highlight=False)
    for warning in warnings(run, summary):
        console.print(f"[bold yellow]warning:[/] {warning}", highlight=False)
    console.print(f"run directory: {run.paths[0]}", highlight=False)


def warnings(run: Run, summary: pd.DataFrame) -> list[str]:
    out = []
    for m in run.manifests:
        if m.get("status") != "complete":
            out.append(f"run {m['run_id']} is incomplete: {'; '.join(m.get('failures', [])) or 'it did not finish'}")
    for m in run.manifests:
        for engine in m.get("engines", []):
            check = engine.get("self_check") or {}
            if check.get("verdict") == "serialized":
                out.append(
                    f"engine {engine['label']} serialized queries in its self-check (speed-up "
                    f"{check['speedup']:.2f}x from 1 to 2): its results above concurrency 1 are not lock contention"
                )
    if not run.driver.empty:
        busy = run.driver[run.driver["gil_demand"] >= SATURATED_GIL_DEMAND]
        for _, r in busy.iterrows():
            out.append(
                f"the driver itself was saturated at {r['schema']} c={r['concurrency']} [{r['engine']}]: its threads "
                f"needed the GIL {r['gil_demand']:.0%} of the time, so the load generator may limit throughput"
            )
    for note in run.manifest.get("notes", []):
        out.append(note)
    short = summary[summary["throughput_qps"] < ACHIEVED_FRACTION * summary["target_qps"]]
    for _, r in short.iterrows():
        out.append(
            f"{r['engine']} / {r['schema']} c={r['concurrency']}: the target rate {r['target_qps']:g}/s was not "
            f"achieved ({r['throughput_qps']:.1f}/s); queries that never started are not in the latencies"
        )
    errors = int(summary["errors"].sum())
    if errors:
        out.append(f"{errors} measured queries failed; see the error column of the queries table")
    if "sampler_errors" in run.levels and run.levels["sampler_errors"].notna().any():
        out.append("a sampler failed during some levels: " + str(run.levels["sampler_errors"].dropna().iloc[0]))
    return out


def print_summary(path: Path, console: Console | None = None) -> None:
    render(load_run(path), console or Console(width=None if Console().is_terminal else 120))
