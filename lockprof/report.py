"""One self-contained HTML report of a run: verdict sentences, figures embedded as PNG
data URIs, the tables behind them, and the manifest. No external file, font or script,
so it opens offline and can be attached to a ticket or a pull request as it is.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

import pandas as pd
from matplotlib.figure import Figure

from lockprof import store
from lockprof.analysis import (
    Run,
    ab,
    diagnose,
    exclusive_ceilings,
    forecast_vs_measured,
    has_parts_range,
    level_summary,
    load_run,
    lock_budget,
    lock_utilization,
    parts_dependence,
    time_accounting,
    usl_fits,
)
from lockprof.analysis.ab_text import ab_headlines
from lockprof.analysis.accounting import SOURCE_TEXT
from lockprof.analysis.capacity import FIGURE_CORES, capacity_forecast, capacity_model, capacity_sentences
from lockprof.analysis.health import run_warnings
from lockprof.analysis.load import Relabel, combine
from lockprof.analysis.outside import outside_sentences
from lockprof.analysis.scalability import MIN_LEVELS_TO_DRAW, MIN_R_SQUARED
from lockprof.analysis.tail import lock_distribution, rare_exclusive_holds, tail_attribution
from lockprof.analysis.utilization import no_ceiling_reason, no_forecast_reason, uncounted_holds
from lockprof.errors import LockprofError
from lockprof.flamegraph import flame_graph, short_name, waiting_locks
from lockprof.formatting import ACCOUNTING_HEADERS, BUDGET_HEADERS, accounting_cells, budget_cells, cells_frame
from lockprof.plots import ab_forest, capacity_figure, forest_frame, report_figures

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1150px; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: .8em; margin: .5em 0 1em; display: block; overflow-x: auto; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: left; }
th { background: #f3f3f3; }
.warning { background: #fff3cd; border: 1px solid #e6c200; padding: .8em 1em; border-radius: 4px; }
.verdict li { margin: .3em 0; } figure { margin: 1.5em 0; } figcaption { font-weight: 600; margin-bottom: .3em; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
pre { background: #f7f7f7; padding: 1em; overflow-x: auto; font-size: .8em; } .note { color: #555; }
"""


def figure_png(fig: Figure, dpi: int = 100) -> str:
    """A figure as a base64 PNG data URI."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _number(value: object) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        if math.isinf(value):
            return "∞" if value > 0 else "−∞"
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    return str(value)


def table_html(frame: pd.DataFrame, empty: str = "nothing to show") -> str:
    if frame.empty:
        return f'<p class="note">{html.escape(empty)}</p>'
    return frame.to_html(index=False, border=0, na_rep="–", formatters={c: _number for c in frame.columns},
                         escape=True)


def _forecast_sentence(run: Run, check: pd.DataFrame) -> str:
    if check.empty:
        return no_forecast_reason(run)
    errors = check["relative_error"].dropna().abs()
    if errors.empty:
        return "The forecast could not be checked: no wait was measured at the higher levels."
    return (f"Fed only the lowest level's hold time, the M/D/1 forecast of lock wait at the higher levels was off "
            f"by a median of {errors.median():.0%} (worst {errors.max():.0%}) over {len(errors)} level(s); "
            "the notes say where its assumptions visibly broke.")


FLAME_CAPTION = "Flame graph of the stack samples, lock frames highlighted"


def stacks_sentence(stacks: pd.DataFrame) -> str:
    """Which lock and mode the lock-waiting stack samples point at (per lockprof.stacks' classification)."""
    timed = _timer_samples(stacks)
    total = max(float(timed["samples"].sum()), 1.0)
    waits = waiting_locks(timed)
    if waits.empty:
        return (f"None of the {total:,.0f} stack samples was waiting for a lock (no blocking primitive on top of "
                "a lock's frames).")
    waiting = float(waits["samples"].sum())
    top = waits.iloc[0]
    text = (f"{waiting:,.0f} of the {total:,.0f} stack samples ({waiting / total:.0%}) were waiting for a lock; "
            f"{top['share_of_waiting']:.0%} of those point at the {top['category']} "
            f"(acquired in {short_name(str(top['frame']))})")
    if len(waits) > 1:
        rest = waits.iloc[1]
        text += f", next the {rest['category']} ({rest['share_of_waiting']:.0%})"
    return text + "."


def _timer_samples(stacks: pd.DataFrame) -> pd.DataFrame:
    # ProfileEvent samples are counter increments, not a picture of where threads wait; only timer samples
    # (real-time and CPU profilers) say where the threads were. A run with no timer sample keeps what it has.
    timed = stacks[stacks["trace_type"].astype(str).isin(["Real", "CPU"])]
    return timed if not timed.empty else stacks


def _stacks_section(stacks: pd.DataFrame) -> list[str]:
    out = ["<h2>Stack samples</h2>", f"<p>{html.escape(stacks_sentence(stacks))}</p>",
           f'<figure><figcaption>{html.escape(FLAME_CAPTION)}</figcaption>'
           f'<img alt="{html.escape(FLAME_CAPTION)}" src="{figure_png(flame_graph(stacks))}"></figure>']
    waits = waiting_locks(_timer_samples(stacks))
    out.append(table_html(waits.drop(columns=["frame"]), "no timer sample was waiting for a lock"))
    return out


def render_report(run: Run, report_dir: str | Path | None = None) -> str:
    """The report as one HTML string: the answer first, then the evidence, then the details.

    ``report_dir`` is where the file will be written (default: the first run's directory, where
    ``lockprof report`` writes it); links to the run's files are relative to it, so they work there."""
    manifest = run.manifest
    name = manifest.scenario_name or "run"
    run_ids = ", ".join(m.run_id for m in run.manifests)
    parts: list[str] = [f"<h1>Lock-contention report: {html.escape(name)}</h1>",
                        f"<p>Run {html.escape(run_ids)} · lockprof {html.escape(manifest.lockprof_version or 'None')}"
                        f" · {html.escape(_engines_line(run))}</p>"]
    if not run.complete:
        statuses = ", ".join(f"{m.run_id}: {m.status}" for m in run.manifests)
        parts.append(f'<p class="warning"><b>Incomplete run</b> ({html.escape(statuses)}): it was interrupted or '
                     "failed, so some levels are missing and the figures show only what was measured.</p>")
    comparison = _comparison(run) if run.levels["engine"].nunique() > 1 else None
    parts += _verdict_section(run, comparison)
    if comparison is not None:
        parts += _ab_section(comparison)
    if run.levels["engine"].nunique() > 2:
        parts += _releases_section(run)
    parts += _beyond_the_mean_section(run)
    parts += _context_section(run)

    parts.append("<h2>Where the time goes</h2>")
    accounting = time_accounting(run)
    figures = report_figures(run)
    first = next(iter(figures))
    parts.append(_figure_html(first, figures.pop(first)))
    parts.append(table_html(_accounting_table(accounting), "no thread-time counters were recorded"))

    parts.append("<h2>Levels</h2>")
    summary = level_summary(run)
    for q in ("p50", "p99"):
        summary[f"{q} 95% interval"] = [_range_ms(lo, hi) for lo, hi in zip(summary[f"{q}_ci_low_ms"],
                                                                           summary[f"{q}_ci_high_ms"], strict=True)]
    summary["throughput_qps"] = summary["throughput_qps"].astype(object).where(~summary["too_few"], "too few")
    parts.append(table_html(summary[["engine", "schema", "concurrency", "active_parts", "queries", "errors",
                                     "throughput_qps", "p50_ms", "p50 95% interval", "p99_ms", "p99 95% interval",
                                     "mean_ms"]]))
    parts.append("<p class='note'>Intervals from a block bootstrap over 1-second blocks of each window (and over the "
                 "repetitions' windows, where there are several); – where a level has under 5 blocks to resample. "
                 "They hold the sampling noise of this run, not the difference between machines or days.</p>")

    parts.append("<h2>Figures</h2>")
    for caption, fig in figures.items():
        parts.append(_figure_html(caption, fig))

    if not run.stacks.empty:
        parts += _stacks_section(run.stacks)

    parts.append("<h2>Lock budget per query</h2>")
    budget = lock_budget(run)
    parts.append(f"<p class='note'>From {html.escape(_source_text(budget))}. n/a: the engine has no such counter."
                 "</p>")
    parts.append(table_html(cells_frame(budget, ["engine", "schema", "concurrency", "lock", "mode"],
                                        BUDGET_HEADERS, budget_cells), "no lock events were recorded"))

    parts.append("<h2>Lock utilization and the exclusive-lock ceiling</h2>")
    parts.append("<p class='note'>Utilization is the hold per query times throughput: the share of wall time the "
                 "lock was held. An exclusive lock held h µs per query caps the table at 1/h queries per second "
                 "whatever the number of cores; a ceiling is given only for a lock that at least 1% of the queries "
                 "take exclusively.</p>")
    utilization = lock_utilization(run)
    utilization["utilization"] = utilization["utilization"].map(_percent)
    # short headers, so the ceiling, which the section is about, shows without scrolling
    parts.append(table_html(utilization.rename(columns=UTILIZATION_HEADERS), "no lock reported a hold time"))
    ceilings = exclusive_ceilings(run)
    ceilings["peak_utilization"] = ceilings["peak_utilization"].map(_percent)
    parts.append(table_html(ceilings, no_ceiling_reason(run)))
    for sentence in uncounted_holds(run):
        parts.append(f"<p class='note'>{html.escape(sentence)}</p>")

    check = forecast_vs_measured(run)
    if not check.empty:
        parts.append("<h2>Queueing forecast vs measured wait</h2>")
        parts.append(f"<p>{html.escape(_forecast_sentence(run, check))}</p>")
        parts.append(table_html(check, ""))
    elif not ceilings.empty:  # a ceiling but no forecast: say why once (without a ceiling, its note says it)
        parts.append(f"<p class='note'>{html.escape(no_forecast_reason(run))}</p>")

    parts += _capacity_section(run)

    parts.append("<h2>Scalability (Universal Scalability Law)</h2>")
    parts.append("<p class='note'>X(N) = λN / (1 + σ(N − 1) + κN(N − 1)): λ is one worker's throughput, σ "
                 "(contention) flattens the curve and κ (coherency) makes it peak and fall. σ takes in every "
                 "reason the workers do not run in parallel, including more workers than cores, so it does not "
                 "point at a lock: a lock is named only by the verdict above, from its wait counters. "
                 f"A fit is drawn only with r² ≥ {MIN_R_SQUARED} over at least {MIN_LEVELS_TO_DRAW} "
                 "concurrency levels, and never past twice the machine's cores.</p>")
    fits = usl_fits(run)
    # the notes as sentences under the table: in a cell they squeeze into a column a word wide
    parts.append(table_html(fits.drop(columns="note")))
    notes = [f"{_series(row['engine'], row['schema'], fits)}: {row['note']}"
             for _, row in fits.iterrows() if row["note"]]
    if notes:
        parts.append("<ul class='note'>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")

    frame = parts_dependence(run)
    if has_parts_range(frame):
        parts.append("<h2>Active parts</h2>")
        parts.append(table_html(frame))

    parts += _profiles_section(run, Path(report_dir) if report_dir is not None else None)
    parts.append("<h2>Manifest</h2>")
    for m in run.manifests:
        text = json.dumps(m.to_dict(), indent=2, sort_keys=True, default=str)
        parts.append(f"<details><summary>{html.escape(m.run_id)}</summary>"
                     f"<pre>{html.escape(text)}</pre></details>")
    body = "\n".join(parts)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>lockprof: {html.escape(name)} {html.escape(run_ids)}</title><style>{CSS}</style></head>"
            f"<body>\n{body}\n</body></html>\n")


CAPACITY_HEADERS = {"cpu_ms_per_query": "CPU ms/query", "efficiency": "efficiency", "lock": "lock",
                    "hold_us_per_query": "hold µs/query", "ceiling_qps": "ceiling q/s",
                    "crossing_cores": "lock-bound from (cores)", "forecast_qps": "forecast q/s",
                    "forecast interval": "95% interval", "bound": "bound", "forecast_wait_us": "wait µs/query",
                    "wait_share_of_latency": "wait share of query time"}


def _capacity_section(run: Run, cores: int = FIGURE_CORES) -> list[str]:
    """Throughput against cores: where the CPU line meets each exclusive lock's ceiling, so that a run on a small
    machine says what the lock will do on a big one."""
    model = capacity_model(run)
    if model.empty:
        return []
    out = ["<h2 id='capacity'>Capacity forecast: throughput against cores</h2>",
           "<p class='note'>The CPU line is the cores times the parallel efficiency measured at the highest "
           "concurrency (throughput × CPU per query ÷ the cores the engine had, less what other processes used; at "
           "most 100%) ÷ CPU per query; each exclusive lock caps it at 1/h, h its hold per query at the lowest "
           "concurrency, from each query's own counters where the engine keeps a query log (so, unlike the ceiling "
           "table above, holds outside the queries, such as a system log's flush, do not count). The forecast is the "
           "lower of the two (an upper bound: queueing bends the real curve below the corner); n/a: the engine "
           "counts no hold time for that lock, so the forecast cannot bound it. "
           f"Intervals: 95%, a bootstrap over the run's windows. The table is at {cores} cores, one closed-loop "
           "worker per core; <code>lockprof forecast RUN --cores N</code> gives any other count.</p>"]
    out.append("<ul class='verdict'>" + "".join(f"<li>{html.escape(s)}</li>" for s in capacity_sentences(run, cores))
               + "</ul>")
    out.append(_figure_html("Throughput vs cores: measured, forecast and the exclusive-lock ceilings",
                            capacity_figure(run, cores)))
    frame = capacity_forecast(run, cores)
    frame["forecast interval"] = [_range_qps(lo, hi) for lo, hi in zip(frame["forecast_low_qps"],
                                                                       frame["forecast_high_qps"], strict=True)]
    counted = frame["hold_us_per_query"].notna() | (frame["lock"] == "")
    for column in ("hold_us_per_query", "ceiling_qps", "crossing_cores", "forecast_wait_us"):
        frame[column] = frame[column].astype(object).where(counted, "n/a")
    frame["efficiency"] = frame["efficiency"].map(_percent)
    frame["wait_share_of_latency"] = frame["wait_share_of_latency"].map(_percent).where(counted, "n/a")
    frame["lock"] = frame["lock"].str.replace("_", " ").replace("", "none with a ceiling")
    out.append(table_html(frame[["engine", "schema", *CAPACITY_HEADERS]].rename(columns=CAPACITY_HEADERS)))
    return out


def _range_qps(low: float, high: float) -> str:
    return "–" if pd.isna(low) or pd.isna(high) else f"{low:,.0f}–{high:,.0f}"


def _beyond_the_mean_section(run: Run) -> list[str]:
    """What the means hide: what each level's slowest queries are made of, rare exclusive holds, how each lock is
    spread over the queries, and lock time outside the measured queries."""
    tails = tail_attribution(run)
    rare = rare_exclusive_holds(run)
    outside = outside_sentences(run)
    lines = [*(s for s in tails["sentence"] if s), *rare["sentence"], *outside]
    if not lines:
        return []
    out = ["<h2>Beyond the mean: the slowest queries, rare exclusive holds, and who else holds the locks</h2>",
           "<ul class='verdict'>" + "".join(f"<li>{html.escape(line)}</li>" for line in lines) + "</ul>",
           "<p class='note'>The slowest queries are those at p99 and above (at least three), compared with the "
           "middle half (p25–p75) on each query's own counters; a tail is put down to exclusive holds when at least "
           "half of the slowest queries held the lock exclusively or ran beside a statement that did, and at least "
           "twice the share of the middle half; a stall is most of them starting within a tenth of their window. "
           "Thread time counts every thread of a query, so the slowest queries' extra thread time can exceed their "
           "extra latency.</p>"]
    if not tails.empty:
        shown = tails.assign(extra_thread_ms=tails["extra_thread_ms"].map(lambda v: "–" if pd.isna(v) else f"{v:.1f}"),
                             slow_overlap_share=tails["slow_overlap_share"].map(_percent),
                             middle_overlap_share=tails["middle_overlap_share"].map(_percent))
        out.append(table_html(shown[["engine", "schema", "concurrency", "queries", "p50_ms", "p99_ms", "slow_queries",
                                     "slow_mean_ms", "middle_mean_ms", "extra_thread_ms", "slow_overlap_share",
                                     "middle_overlap_share", "cluster_span_s", "window_s", "cause"]]))
    spread = lock_distribution(run)
    spread = spread[~spread["lock"].isin(["context"])] if not spread.empty else spread
    if not spread.empty:
        out.append("<h3>How each lock is spread over the queries (µs per query; p50/p99/max over the queries that "
                   "took it)</h3>")
        out.append(table_html(spread.assign(taken_share=spread["taken_share"].map(_percent))))
    return out


def _figure_html(caption: str, fig: Figure) -> str:
    return (f'<figure><figcaption>{html.escape(caption)}</figcaption>'
            f'<img alt="{html.escape(caption)}" src="{figure_png(fig)}"></figure>')


def _source_text(frame: pd.DataFrame) -> str:
    if frame.empty or "source" not in frame:
        return "no counters"
    source = str(frame["source"].iloc[0])
    return SOURCE_TEXT.get(source, source)


def _verdict_section(run: Run, comparison: ab.Comparison | LockprofError | None) -> list[str]:
    out = ["<h2>Verdict: what costs the queries their time</h2>"]
    if isinstance(comparison, ab.Comparison):
        out.append("<ul class='verdict'>" + "".join(f"<li><b>{html.escape(h)}</b></li>"
                                                    for h in ab_headlines(comparison.frame)) + "</ul>")
    diagnosis = diagnose(run)
    if diagnosis.empty:
        return [*out, "<p>No level recorded thread-time counters, so nothing can be said about where time went.</p>"]
    out.append("<ul class='verdict'>")
    for _, row in diagnosis.iterrows():
        where = f"{row['engine']} / {row['schema']}"
        out.append(f"<li><b>{html.escape(where)}: {html.escape(row['conclusion'])}.</b> "
                   f"{html.escape(row['explanation'])}")
        if row["findings"]:
            out.append("<ul>" + "".join(f"<li>{html.escape(f)}</li>" for f in row["findings"]) + "</ul>")
        out.append("</li>")
    out.append("</ul>")
    out.append(f"<p class='note'>Counters from {html.escape(_source_text(diagnosis))}. A lock is named only when "
               "its wait is at least 10% of thread time and not explained by preemption (see docs/method.md, "
               "How the verdict is reached).</p>")
    return out


def _comparison(run: Run) -> ab.Comparison | LockprofError:
    try:
        return ab.compare(run)
    except LockprofError as exc:  # shown where the comparison would be, never a traceback
        return exc


def _releases_section(run: Run) -> list[str]:
    """A sweep read along the engines: each metric by engine with its interval, and where it first moved."""
    from lockprof.analysis.releases import engine_order, first_changes, metric_text, release_values

    out = ["<h2>Along the engines, in the order given: where each metric moved</h2>",
           "<p class='note'>Each step is the A/B test of one engine against the one before it (a release sweep "
           "lists the oldest first). A metric is said to change first where a step calls a change; a step that "
           "is only inconclusive is not read as unchanged. n/a: the engine has no such counter.</p>"]
    try:
        changes = first_changes(run)
    except LockprofError as exc:
        return [*out, f'<p class="warning">No comparison: {html.escape(str(exc))}</p>']
    moved = changes[changes["first_changed"] != ""]
    out.append("<ul>" + "".join(f"<li><b>{html.escape(s)}</b></li>" for s in moved["sentence"])
               + "".join(f"<li>{html.escape(s)}</li>" for s in changes.loc[changes["first_changed"] == "", "sentence"])
               + "</ul>")
    values = release_values(run)
    values["metric"] = [metric_text(m, lk, md) for m, lk, md in zip(values["metric"], values["lock"], values["mode"],
                                                                    strict=True)]
    values["cell"] = [f"{v:.3g} [{lo:.3g}–{hi:.3g}]" if pd.notna(lo) else f"{v:.3g}"
                      for v, lo, hi in zip(values["value"], values["ci_low"], values["ci_high"], strict=True)]
    table = values.pivot_table(index=["schema", "concurrency", "query_name", "metric"], columns="engine",
                               values="cell", aggfunc="first")
    table = table.reindex(columns=engine_order(run)).fillna("n/a").reset_index()
    table.columns.name = None
    if (table["query_name"] == "").all():
        table = table.drop(columns="query_name")
    out.append(table_html(table))
    return out


def _ab_section(result: ab.Comparison | LockprofError) -> list[str]:
    """The A/B verdicts with intervals: the latency and throughput table and a forest plot."""
    out = ["<h2>A/B: latency and throughput, engine against engine</h2>"]
    if isinstance(result, LockprofError):
        return [*out, f'<p class="warning">No comparison: {html.escape(str(result))}</p>']
    frame = result.frame
    perf = frame[frame["metric"].isin(["latency_ms", "throughput_qps"])]
    for note in result.notes:
        out.append(f'<p class="warning">{html.escape(note)}</p>')
    for line in result.positions:
        out.append(f'<p class="note">{html.escape(line)}</p>')
    table = perf.assign(
        interval=[_interval(lo, hi) for lo, hi in zip(perf["ci_low"], perf["ci_high"], strict=True)],
        ratio=perf["ratio"].map(_times),
        q=perf["q_value"].map(lambda q: "" if pd.isna(q) else f"{q:.3f}"))
    out.append(table_html(table[["engine_a", "engine_b", "schema", "concurrency", "query_name", "metric", "value_a",
                                 "value_b", "ratio", "interval", "q", "verdict"]],
                          "no point measured on both"))
    forest = forest_frame(perf)
    if not forest.empty:
        pairs = perf[["engine_a", "engine_b"]].drop_duplicates()
        title = f"A/B: {pairs.iloc[0]['engine_b']} ÷ {pairs.iloc[0]['engine_a']}" if len(pairs) == 1 else "A/B: B ÷ A"
        out.append(_figure_html("Latency and throughput ratios with 95% intervals", ab_forest(forest, title=title)))
    return out


UTILIZATION_HEADERS = {"hold_us_per_query": "hold µs/query", "wait_us_per_query": "wait µs/query",
                       "acquisitions_per_query": "acquisitions/query", "throughput_qps": "q/s",
                       "ceiling_qps": "ceiling q/s"}


def _series(engine: str, schema: str, frame: pd.DataFrame) -> str:
    return f"{engine} / {schema}" if frame["engine"].nunique() > 1 else str(schema)


def _range_ms(low: float, high: float) -> str:
    """An interval with the same 3 significant digits at both ends (38.0, not 38)."""
    if pd.isna(low) or pd.isna(high):
        return "–"
    return "–".join(_number(float(v)) if abs(v) >= 1000 else f"{v:#.3g}".rstrip(".") for v in (low, high))


def _times(value: float) -> str:
    return "–" if pd.isna(value) else f"{value:.2f}×"


def _percent(value: float) -> str:
    return "–" if pd.isna(value) else ("∞" if math.isinf(value) else f"{value:.1%}")


def _interval(low: float, high: float) -> str:
    return "–" if pd.isna(low) or pd.isna(high) else f"{low:.2f}–{high:.2f}×"


def _context_section(run: Run) -> list[str]:
    """What was run, where, from which counters, and what the self-checks found."""
    rows = []
    levels = run.levels.assign(window_s=run.levels["measure_end_s"] - run.levels["measure_start_s"])
    for m in run.manifests:
        for e in m.engines:
            check = e.get("self_check") or {}
            mine = levels[levels["engine"] == e.get("label")]
            rows.append({
                "engine": e.get("label"), "ClickHouse": e.get("clickhouse_version"), "package": e.get("package"),
                "query log": "yes" if e.get("has_query_log") else "no",
                "cores": m.cpu_count, "repetitions": m.repetitions,
                "warm-up s": m.warmup_s,
                "window s": f"{mine['window_s'].median():.1f}" if not mine.empty else "–",
                "self-check": f"{check.get('verdict', '–')} (speed-up {check.get('speedup', float('nan')):.2f}×)"
                if check else "–",
            })
    out = ["<h2>Run context</h2>", table_html(pd.DataFrame(rows), "no engine recorded"),
           f"<p class='note'>Per-query counters in this report: {html.escape(_source_text(time_accounting(run)))}."
           "</p>"]
    for warning in run_warnings(run, level_summary(run)):
        out.append(f'<p class="warning">{html.escape(warning)}</p>')
    return out


def _accounting_table(accounting: pd.DataFrame) -> pd.DataFrame:
    """The time accounting as the summary prints it: ms per query with its share of thread time."""
    return cells_frame(accounting, ["engine", "schema", "concurrency"], ACCOUNTING_HEADERS, accounting_cells)


def _profiles_section(run: Run, report_dir: Path | None = None) -> list[str]:
    """Links to the driver's py-spy profiles (speedscope JSON, open in speedscope.app), relative to where
    the report is written, so they open wherever ``--out`` put it (and still when both are moved together)."""
    if not run.paths:
        return []
    base = (report_dir or run.paths[0]).resolve()
    links = []
    for path in run.paths:
        for f in sorted((path / "pyspy").glob("*.speedscope.json")):
            href = Path(os.path.relpath(f.resolve(), base)).as_posix()
            links.append(f'<li><a href="{html.escape(quote(href))}">{html.escape(href)}</a></li>')
    if not links:
        return []
    return ["<h2>Driver profiles (py-spy)</h2>",
            "<p class='note'>Where the load generator's own threads spent their time, per level; open in "
            "speedscope. Links are relative to this report's file.</p>", "<ul>", *links, "</ul>"]


def _engines_line(run: Run) -> str:
    engines = {}
    for m in run.manifests:
        for e in m.engines:
            engines[e.get("label")] = f"{e.get('label')}: ClickHouse {e.get('clickhouse_version')} ({e.get('package')})"
    return "; ".join(engines.values()) or "no engine recorded"


def load_runs(paths: Sequence[str | Path]) -> Run:
    """Several runs as one; where two runs name their engines alike (two separate runs of
    ``embedded``), each engine becomes ``label@run_id`` so their numbers are not pooled.

    Each run is read once, and the per-query ProfileEvents stay in their files (see
    :func:`lockprof.analysis.load_run`)."""
    runs = [load_run(p) for p in paths]
    labels = [label for r in runs for label in r.levels["engine"].unique()]
    if len(labels) == len(set(labels)):
        return combine(runs)
    return combine(runs, [Relabel(suffix=f"@{r.manifest.run_id}") for r in runs])


def write_report(paths: str | Path | Sequence[str | Path], out: str | Path | None = None) -> Path:
    """Load the run(s), render, and write the HTML atomically (default: first run's report.html)."""
    run = load_runs([paths] if isinstance(paths, (str, Path)) else list(paths))
    target = Path(out) if out is not None else run.paths[0] / "report.html"
    store.atomic_write_bytes(target, render_report(run, report_dir=target.parent).encode("utf-8"))
    target.chmod(0o644)  # a report is meant to be shared; the atomic write leaves it private
    return target
