"""Figures, each answering one question about a run. Renderers only: every number comes
from :mod:`lockprof.analysis`. Each function returns a matplotlib ``Figure`` built without
pyplot's global state, so the report, the notebooks and tests can make many safely.
"""

from __future__ import annotations

import zlib

import matplotlib
import numpy as np
import pandas as pd
from matplotlib import ticker as mticker
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lockprof.analysis.accounting import COMPONENT_TEXT, SOURCE_TEXT, time_accounting
from lockprof.analysis.budget import lock_budget
from lockprof.analysis.capacity import (
    FIGURE_CORES,
    capacity_ceilings,
    capacity_model,
    measured_points,
    throughput_curve,
)
from lockprof.analysis.levels import level_summary, query_timeline
from lockprof.analysis.load import Run
from lockprof.analysis.parts import has_parts_range, parts_dependence
from lockprof.analysis.scalability import (
    MIN_LEVELS_TO_DRAW,
    MIN_R_SQUARED,
    level_throughput,
    usl_fits,
    usl_throughput,
)
from lockprof.analysis.utilization import cpu_count, exclusive_ceilings, no_forecast_reason, wait_forecast

VERDICT_COLORS = {"faster": "#2a9d55", "slower": "#c0392b", "unchanged": "#7f8c8d", "inconclusive": "#e6a23c"}
MODEL_NAMES = {"md1": "M/D/1", "mm1": "M/M/1"}
AB_COLUMNS = ("label", "ratio", "ci_low", "ci_high", "verdict")
_PALETTE = matplotlib.colormaps["tab10"].colors
# One colour per lock and one hatch per mode, the same in every figure of every run.
LOCK_COLORS = {"parts": "#d62728", "table_rwlock": "#9467bd", "context": "#8c564b",
               "global_thread_pool": "#e377c2", "local_thread_pool": "#bcbd22"}
MODE_HATCHES = {"exclusive": "///", "shared": "...", "unknown": "xx"}
COMPONENT_COLORS = {"on_cpu": "#1f77b4", "cpu_wait": "#9ecae1", "io_wait": "#2ca02c", "own_threads": "#f2f2f2",
                    "other": "#bdbdbd"}
ENGINE_LINESTYLES = ["-", "--", ":", "-."]
ENGINE_MARKERS = ["o", "s", "^", "D"]


def lock_color(lock: str) -> str:
    """The lock's colour: fixed for the known locks, a stable pick from a wide palette for the others."""
    if lock in LOCK_COLORS:
        return LOCK_COLORS[lock]
    palette = matplotlib.colormaps["tab20b"].colors
    return matplotlib.colors.to_hex(palette[zlib.crc32(lock.encode()) % len(palette)])


def mode_hatch(mode: str) -> str:
    return MODE_HATCHES.get(mode, "xx")


def engine_style(engines: list[str], engine: str) -> tuple[str, str]:
    """(line style, marker) of an engine: the first engine solid with circles, the second dashed, ..."""
    i = sorted(engines).index(engine) if engine in engines else 0
    return ENGINE_LINESTYLES[i % len(ENGINE_LINESTYLES)], ENGINE_MARKERS[i % len(ENGINE_MARKERS)]


def _schema_colors(schemas: list[str]) -> dict[str, tuple]:
    return {schema: _PALETTE[i % len(_PALETTE)] for i, schema in enumerate(sorted(schemas))}


def _figure(width: float = 8.0, height: float = 4.5) -> Figure:
    # An Agg canvas of its own: no display and no global backend switch, so importing this
    # module leaves a notebook's inline backend alone.
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _series_label(engine: str, schema: str, engines: int) -> str:
    return f"{engine} / {schema}" if engines > 1 else schema


def _empty(ax: Axes, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])


NO_QUERY = "no measured level has a successful query"


def _empty_figure(title: str, message: str) -> Figure:
    fig = _figure(10, 3)
    ax = fig.subplots()
    ax.set_title(title)
    _empty(ax, message)
    return fig


def latency_vs_concurrency(run: Run) -> Figure:
    """How does query latency grow as more queries run at once?"""
    summary = level_summary(run)
    fig = _figure(10, 4.5)
    ax = fig.subplots()
    ax.set_title("Query latency as concurrency grows")
    if summary.empty or not (summary["p50_ms"] > 0).any():
        _empty(ax, "no measured level has a successful query")
        return fig
    engines = summary["engine"].nunique()
    all_engines = list(summary["engine"].unique())
    colors = _schema_colors(list(summary["schema"].unique()))
    for (engine, schema), g in summary.groupby(["engine", "schema"], sort=True):
        color = colors[schema]
        style, marker = engine_style(all_engines, engine)
        label = _series_label(engine, schema, engines)
        ax.plot(g["concurrency"], g["p50_ms"], marker=marker, linestyle=style, color=color, label=f"{label}: median")
        ax.plot(g["concurrency"], g["p99_ms"], marker=marker, linestyle=style, color=color, alpha=0.45,
                markerfacecolor="none", label=f"{label}: 99th percentile (faint)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(summary["concurrency"].unique()), labels=sorted(summary["concurrency"].unique()))
    ax.set_yscale("log")
    ax.set_xlabel("concurrent queries (workers)")
    ax.set_ylabel("latency (ms, log scale)")
    fig.legend(fontsize="small", loc="outside right upper")
    ax.grid(True, which="both", alpha=0.3)
    return fig


# Per level, about this many queries are drawn in the latency-over-time panels (an even sample, so the
# density stays true, plus the slowest ones, where a stall is), and this many points trace a CDF: a million
# queries draw in seconds, and the stalls stay visible.
MAX_POINTS_PER_LEVEL = 4000
SLOWEST_KEPT = 200
MAX_CDF_POINTS = 1500
TAIL_COLOR = "#c0392b"
BODY_COLOR = "#4c72b0"


def _level_title(engine: str, schema: str, concurrency: int, engines: int) -> str:
    return f"{_series_label(engine, schema, engines)}  c={concurrency}"


def _thin(level: pd.DataFrame, limit: int, rng: np.random.Generator) -> pd.DataFrame:
    """At most ``limit`` + ``SLOWEST_KEPT`` queries of one level: a seeded even sample of them all (the
    tail thinned like the rest, so what looks dense is dense), and the slowest ``SLOWEST_KEPT`` always."""
    if len(level) <= limit:
        return level
    keep = np.zeros(len(level), dtype=bool)
    keep[rng.choice(len(level), size=limit, replace=False)] = True
    keep[np.argsort(level["latency_ms"].to_numpy())[-SLOWEST_KEPT:]] = True
    return level[keep]


def latency_over_time(run: Run, columns: int = 4) -> Figure:
    """When were the slow queries slow: spread out, or together in a stall?

    One panel per level (small multiples, ``columns`` wide, one block of rows per engine and schema), each
    query's latency against when it started in the level's measured window(s), the queries at or above the
    level's p99 in red with the p99 as a dotted line. A stall is a column of red points: many slow queries
    that started within a moment of each other. Large levels are thinned to ``MAX_POINTS_PER_LEVEL`` points
    (every tail query kept) and drawn rasterized."""
    timeline = query_timeline(run)
    summary = level_summary(run).set_index(["engine", "schema", "concurrency"])
    levels = timeline[["engine", "schema", "concurrency"]].drop_duplicates().sort_values(
        ["engine", "schema", "concurrency"]).itertuples(index=False, name=None)
    levels = list(levels)
    if not levels:
        return _empty_figure("Latency of each query over its level's window", NO_QUERY)
    series = list(dict.fromkeys((e, s) for e, s, _ in levels))
    per_series = {key: [c for e, s, c in levels if (e, s) == key] for key in series}
    columns = max(1, min(columns, max(len(v) for v in per_series.values())))
    rows_of = {key: -(-len(v) // columns) for key, v in per_series.items()}
    rows = sum(rows_of.values())
    fig = _figure(3.0 * columns + 1.0, 1.9 * rows + 1.2)
    axes = fig.subplots(rows, columns, sharex=True, sharey=True, squeeze=False)
    fig.suptitle("Latency of each query against when it started in its level's measured window; "
                 "red: at or above the level's p99 (dotted)", fontsize="medium")
    engines = timeline["engine"].nunique()
    rng = np.random.default_rng(0)
    row = 0
    thinned = False
    by_level = dict(tuple(timeline.groupby(["engine", "schema", "concurrency"], sort=False)))
    for key in series:
        for i, c in enumerate(per_series[key]):
            ax = axes[row + i // columns, i % columns]
            level = by_level[(*key, c)]
            shown = _thin(level, MAX_POINTS_PER_LEVEL, rng)
            thinned |= len(shown) < len(level)
            body, tail = shown[~shown["tail"]], shown[shown["tail"]]
            ax.scatter(body["t_s"], body["latency_ms"], s=3, color=BODY_COLOR, alpha=0.35, linewidths=0,
                       rasterized=True)
            ax.scatter(tail["t_s"], tail["latency_ms"], s=9, color=TAIL_COLOR, linewidths=0, rasterized=True)
            p99 = float(summary.loc[(*key, c), "p99_ms"])
            ax.axhline(p99, color=TAIL_COLOR, linestyle=":", linewidth=1)
            for start in np.unique(level["t_s"] - level["window_t_s"])[1:]:  # where the next repetition begins
                ax.axvline(start, color="grey", linewidth=0.6)
            ax.set_title(f"{_level_title(*key, c, engines)}\np99 {p99:.3g} ms, {len(level):,} queries",
                         fontsize="small", loc="left")
            ax.grid(True, which="both", alpha=0.3)
        for j in range(len(per_series[key]), rows_of[key] * columns):  # the block's unused panels
            axes[row + j // columns, j % columns].set_visible(False)
        row += rows_of[key]
    axes[0, 0].set_yscale("log")
    for ax in axes[:, 0]:
        ax.set_ylabel("latency (ms, log)")
    for ax in axes[-1, :]:
        ax.set_xlabel("time in the level's window (s)")
    note = "repetitions' windows laid end to end (grey lines)" if (timeline["window"] > 0).any() else ""
    if thinned:
        note = "; ".join(n for n in (note, f"large levels drawn as an even sample of {MAX_POINTS_PER_LEVEL:,} "
                                           f"queries plus the {SLOWEST_KEPT} slowest") if n)
    if note:
        fig.supxlabel(note, x=0.01, ha="left", fontsize="x-small")
    return fig


def _cdf_points(latency: np.ndarray, limit: int = MAX_CDF_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """(latency, share of queries at or below it) at up to ``limit`` ranks, evenly spread, plus the slowest
    fifth of them exactly: the tail is where the curve is read. Shares are midpoints, (rank + ½) / n, so
    the slowest query sits below 1 and stays on a logit axis."""
    values = np.sort(latency)
    n = len(values)
    if n <= limit:
        ranks = np.arange(n)
    else:
        top = limit // 5
        ranks = np.unique(np.concatenate([np.linspace(0, n - 1, limit - top).round().astype(int),
                                          np.arange(n - top, n)]))
    return values[ranks], (ranks + 0.5) / n


def latency_cdf(run: Run, columns: int = 2) -> Figure:
    """How is latency spread at each level: where does the tail begin, and how far does it reach?

    One panel per engine and schema, one line per concurrency level (darker = more workers), the share of
    queries at or below each latency on a log latency axis. The share axis is a logit scale, so the
    median, p90, p99 and p99.9 are evenly spaced and the tail, where stalls show, is not squeezed into
    the top of the panel."""
    timeline = query_timeline(run)
    series = list(timeline[["engine", "schema"]].drop_duplicates().sort_values(["engine", "schema"]).itertuples(
        index=False, name=None))
    if not series:
        return _empty_figure("Latency distribution per level", NO_QUERY)
    columns = max(1, min(columns, len(series)))
    rows = -(-len(series) // columns)
    fig = _figure(5.5 * columns + 1.5, 3.4 * rows + 0.8)
    axes = fig.subplots(rows, columns, sharex=True, sharey=True, squeeze=False).ravel()
    fig.suptitle("Latency distribution per level (empirical CDF)", fontsize="medium")
    concurrencies = sorted(timeline["concurrency"].unique())
    cmap = matplotlib.colormaps["viridis"]
    color = {c: cmap(0.85 * i / max(len(concurrencies) - 1, 1)) for i, c in enumerate(concurrencies)}
    engines = timeline["engine"].nunique()
    top = 0.5
    for ax, (engine, schema) in zip(axes, series, strict=False):
        mine = timeline[(timeline["engine"] == engine) & (timeline["schema"] == schema)]
        for c, level in mine.groupby("concurrency", sort=True):
            x, y = _cdf_points(level["latency_ms"].to_numpy(dtype=float))
            ax.plot(x, y, drawstyle="steps-post", color=color[c], linewidth=1.4, label=f"c={c}")
            top = max(top, float(y[-1]))
        ax.set_title(_series_label(engine, schema, engines), fontsize="small", loc="left")
        ax.set_xscale("log")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_yscale("logit")
    ticks = [t for t in (0.01, 0.1, 0.5, 0.9, 0.99, 0.999, 0.9999) if t <= top]
    axes[0].set_yticks(ticks, labels=[f"{100 * t:g}%" for t in ticks])
    axes[0].yaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    axes[0].set_ylim(0.01, top)
    for ax in axes[len(series):]:
        ax.set_visible(False)
    for ax in axes[::columns]:
        ax.set_ylabel("queries at or below (%, logit scale)")
    for ax in axes[-columns:]:
        ax.set_xlabel("latency (ms, log scale)")
    handles = [matplotlib.lines.Line2D([], [], color=color[c], label=f"c={c}") for c in concurrencies]
    fig.legend(handles=handles, title="workers", fontsize="small", loc="outside right upper")
    return fig


def time_accounting_figure(run: Run) -> Figure:
    """Where does a query's thread time go: on a CPU, waiting for one, IO, which lock, or unaccounted?

    Left: milliseconds per query, with the mean wall latency marked; right: the same parts as shares of
    thread time, so that a fast level's make-up is as readable as a slow one's."""
    frame = time_accounting(run)
    budget = lock_budget(run)
    fig = _figure(12, max(3.0, 0.42 * len(frame) + 2.2))
    ms_ax, share_ax = fig.subplots(1, 2, sharey=True, width_ratios=[3, 2])
    if frame.empty:
        fig.suptitle("Where a query's thread time goes")
        for ax in (ms_ax, share_ax):
            _empty(ax, "no thread-time counters were recorded")
        return fig
    fig.suptitle(f"Where a query's thread time goes (from {SOURCE_TEXT[frame['source'].iloc[0]]})",
                 fontsize="medium")
    engines = frame["engine"].nunique()
    labels = [f"{_series_label(e, s, engines)}  c={c}"
              for e, s, c in zip(frame["engine"], frame["schema"], frame["concurrency"], strict=True)]
    keys = list(zip(frame["engine"], frame["schema"], frame["concurrency"], strict=True))
    segments: list[tuple[str, np.ndarray, dict]] = [
        (COMPONENT_TEXT[c], frame[f"{c}_ms"].to_numpy(dtype=float), {"color": COMPONENT_COLORS[c]})
        for c in ("on_cpu", "cpu_wait", "io_wait")
    ]
    if not budget.empty:
        for (lock, mode), rows in budget.groupby(["lock", "mode"], sort=True):
            per_level = rows.set_index(["engine", "schema", "concurrency"])["wait_us_per_query"].fillna(0.0)
            values = np.array([per_level.get(k, 0.0) for k in keys], dtype=float) / 1000.0
            if values.max() * 1000 >= 1.0:  # a lock waited for at least 1 µs per query somewhere
                segments.append((f"{lock.replace('_', ' ')} lock wait ({mode})", values,
                                 {"color": lock_color(lock), "hatch": mode_hatch(mode), "edgecolor": "white"}))
    for c in ("own_threads", "other"):  # own-thread waits: an echo of wall time, drawn pale and outlined
        segments.append((COMPONENT_TEXT[c], frame[f"{c}_ms"].to_numpy(dtype=float),
                         {"color": COMPONENT_COLORS[c], "edgecolor": "#969696", "linewidth": 0.5}))
    segments = [seg for seg in segments if np.nansum(seg[1]) > 0]
    whole = np.maximum(sum(np.nan_to_num(v) for _, v, _ in segments), 1e-12)
    y = np.arange(len(frame))
    for ax, scale in ((ms_ax, np.ones(len(frame))), (share_ax, 100.0 / whole)):
        left = np.zeros(len(frame))
        for label, values, style in segments:
            width = np.nan_to_num(values) * scale
            ax.barh(y, width, left=left, label=label if ax is ms_ax else None, **style)
            left += width
        ax.grid(True, axis="x", alpha=0.3)
    ms_ax.scatter(frame["latency_ms"], y, marker="|", s=300, color="black", zorder=3, label="wall latency (mean)")
    ms_ax.set_yticks(y, labels=labels)
    ms_ax.invert_yaxis()
    for ax in (ms_ax, share_ax):
        ax.set_ylabel("level (schema, concurrency)")
    ms_ax.set_xlabel("ms per query (summed over the query's threads)")
    share_ax.set_xlabel("share of thread time (%)")
    share_ax.set_xlim(0, 100)
    fig.legend(fontsize="small", loc="outside lower center", ncols=4)
    return fig


def lock_budget_figure(run: Run, top: int = 6) -> Figure:
    """Which locks do queries wait for and hold, in which mode, per level?"""
    budget = lock_budget(run)
    fig = _figure(11, 5.5)
    wait_ax, hold_ax = fig.subplots(1, 2, sharey=True)
    fig.suptitle("Lock time per query: colour = lock, hatch = mode (/// exclusive, ... shared)")
    if budget.empty:
        for ax in (wait_ax, hold_ax):
            _empty(ax, "no lock events were recorded")
        return fig
    engines = budget["engine"].nunique()
    levels = budget[["engine", "schema", "concurrency"]].drop_duplicates().sort_values(
        ["engine", "schema", "concurrency"])
    keys = list(levels.itertuples(index=False, name=None))
    labels = [f"{_series_label(e, s, engines)}  c={c}" for e, s, c in keys]
    ranking = budget.assign(t=budget[["wait_us_per_query", "hold_us_per_query"]].max(axis=1)).groupby(
        ["lock", "mode"])["t"].max().sort_values(ascending=False)
    shown = [k for k in ranking[ranking >= 1.0].index[:top]]
    y = np.arange(len(keys))
    for ax, column, title in ((wait_ax, "wait_us_per_query", "waiting"), (hold_ax, "hold_us_per_query", "holding")):
        left = np.zeros(len(keys))
        for lock, mode in shown:
            rows = budget[(budget["lock"] == lock) & (budget["mode"] == mode)]
            per_level = rows.set_index(["engine", "schema", "concurrency"])[column]
            values = np.array([per_level.get(k, np.nan) for k in keys], dtype=float)
            if np.nansum(values) <= 0:
                continue
            ax.barh(y, np.nan_to_num(values), left=left, color=lock_color(lock), hatch=mode_hatch(mode),
                    edgecolor="white", label=f"{lock.replace('_', ' ')} ({mode})")
            left += np.nan_to_num(values)
        ax.set_title(title)
        ax.set_ylabel("level (schema, concurrency)")
        ax.set_xlabel("lock time per query (µs)")
        ax.grid(True, axis="x", alpha=0.3)
    wait_ax.set_yticks(y, labels=labels)
    wait_ax.invert_yaxis()
    handles = {h.get_label(): h for ax in (wait_ax, hold_ax) for h in ax.containers}
    fig.legend(list(handles.values()), list(handles), fontsize="small", loc="outside lower center", ncols=4)
    source = budget["source"].iloc[0]
    fig.text(0.01, 0.005, f"source: {SOURCE_TEXT.get(source, source)}; bars absent where an engine has no such "
             "counter", fontsize="x-small")
    return fig


def throughput_figure(run: Run) -> Figure:
    """Does throughput scale with concurrency, and where would it stop?"""
    points = level_throughput(run)
    fits = usl_fits(run)
    ceilings = exclusive_ceilings(run)
    fig = _figure(11, 4.5)
    ax = fig.subplots()
    ax.set_title("Throughput vs concurrency")
    if points.empty:
        _empty(ax, "no measured levels")
        return fig
    engines = points["engine"].nunique()
    all_engines = list(points["engine"].unique())
    colors = _schema_colors(list(points["schema"].unique()))
    n_max = points["concurrency"].max()
    cores = cpu_count(run)
    reach = min(2 * n_max, 2 * cores) if cores else n_max  # never extrapolate past twice the cores
    y_max = points["throughput_qps"].max()
    off_scale = []
    drawn = []  # what the title may promise: only what is on the chart
    for (engine, schema), g in points.groupby(["engine", "schema"], sort=True):
        color = colors[schema]
        style, marker = engine_style(all_engines, engine)
        label = _series_label(engine, schema, engines)
        ax.plot(g["concurrency"], g["throughput_qps"], marker, color=color, label=f"{label}: measured")
        fit = fits[(fits["engine"] == engine) & (fits["schema"] == schema)]
        if not fit.empty and bool(fit["drawable"].iloc[0]):
            f = fit.iloc[0]
            n = np.linspace(1, max(reach, n_max), 200)
            ax.plot(n, usl_throughput(n, f["lambda_qps"], f["sigma"], f["kappa"]), linestyle=style, color=color,
                    alpha=0.7, label=f"{label}: USL fit (σ={f['sigma']:.2f}, κ={f['kappa']:.3f}, "
                                     f"r²={f['r_squared']:.2f})")
            drawn.append("scalability-law fit")
        elif not fit.empty:
            off_scale.append(f"{label}: no USL fit drawn (r²={f_r2(fit)}, {int(fit['levels'].iloc[0])} levels; "
                             f"needs r² ≥ {MIN_R_SQUARED} and {MIN_LEVELS_TO_DRAW}+ levels)")
        ceiling = ceilings[(ceilings["engine"] == engine) & (ceilings["schema"] == schema)]
        if not ceiling.empty:
            c = ceiling.sort_values("ceiling_qps").iloc[0]
            if c["ceiling_qps"] <= 3 * y_max:
                ax.axhline(c["ceiling_qps"], color=color, linestyle=":",
                           label=f"{label}: {c['lock'].replace('_', ' ')} lock ceiling 1/h")
                drawn.append("exclusive-lock ceiling")
            else:
                off_scale.append(f"{label}: {c['lock'].replace('_', ' ')} lock ceiling {c['ceiling_qps']:,.0f} q/s "
                                 "(above the chart)")
    for text in off_scale:  # a ceiling far above the data, or a poor fit: named, not drawn
        ax.plot([], [], " ", label=text)
    if drawn:
        ax.set_title("Throughput vs concurrency: measured, " + " and ".join(dict.fromkeys(drawn)))
    if "scalability-law fit" in drawn:  # σ is a shape, not a cause: say so where it is printed
        crowded = f" ({n_max} workers on {cores} cores here)" if cores and n_max > cores else ""
        fig.supxlabel(f"σ includes serialization from running more workers than cores{crowded}; a lock is named "
                      "only by the verdict from its wait counters, never by σ", x=0.01, ha="left", fontsize="x-small")
    ax.set_xlabel("concurrent queries (workers)")
    ax.set_ylabel("throughput (queries per second)")
    ax.set_ylim(bottom=0)
    fig.legend(fontsize="small", loc="outside right upper")
    ax.grid(True, alpha=0.3)
    return fig


def capacity_figure(run: Run, cores: int | None = None) -> Figure:
    """How would throughput grow with cores, and from which core count does an exclusive lock cap it? One panel
    per engine: the windows measured at the cores the engine had, the forecast line (the least of the CPU line and
    the lock ceilings) with its 95% interval, and each exclusive lock's ceiling 1/h, labelled."""
    model = capacity_model(run)
    most = max(FIGURE_CORES, cores or 0)
    engines = list(dict.fromkeys(model["engine"])) if not model.empty else []
    fig = _figure(5.5 * max(1, len(engines)) + 1, 5.5)
    if not engines:
        _empty(fig.subplots(), "no measured level to forecast from")
        return fig
    axes = fig.subplots(1, len(engines), sharey=True, squeeze=False)[0]
    points = measured_points(run)
    fewest = float(points["effective_cores"].min()) if points["effective_cores"].notna().any() else 1.0
    curve = throughput_curve(run, most, min_cores=min(1.0, max(fewest, 0.05)))
    ceilings = capacity_ceilings(run)
    colors = _schema_colors(list(model["schema"].unique()))
    schemas = model["schema"].nunique()
    for ax, engine in zip(axes, engines, strict=True):
        for schema in model.loc[model["engine"] == engine, "schema"]:
            color = colors[schema]
            label = f"{schema}: " if schemas > 1 else ""
            line = curve[(curve["engine"] == engine) & (curve["schema"] == schema)]
            ax.plot(line["cores"], line["forecast_qps"], "-", color=color, label=f"{label}forecast")
            if line["forecast_low_qps"].notna().any():
                ax.fill_between(line["cores"], line["forecast_low_qps"], line["forecast_high_qps"], color=color,
                                alpha=0.15, linewidth=0, label=f"{label}95% interval")
            measured = points[(points["engine"] == engine) & (points["schema"] == schema)]
            if not measured.empty:
                m = measured.iloc[0]
                busy = bool((measured["effective_cores"] < 0.95 * measured["cores"]).any())
                where = f"at the part of its {m['cores']} cores other processes left" if busy else \
                    f"on {m['cores']} core{'s' if m['cores'] != 1 else ''}"
                ax.plot(measured["effective_cores"], measured["throughput_qps"], "o", color=color, mfc="none",
                        label=f"{label}measured windows, concurrency {m['concurrency']}, {where}")
            locks = ceilings[(ceilings["engine"] == engine) & (ceilings["schema"] == schema) & ceilings["counted"]]
            for _, lock in locks.iterrows():
                color_lock = lock_color(str(lock["lock"]))
                ax.axhline(lock["ceiling_qps"], color=color_lock, linestyle=":", linewidth=1.5)
                crossing = (f", from {np.ceil(lock['crossing_cores']):,.0f} cores"
                            if np.isfinite(lock["crossing_cores"]) else "")
                ax.annotate(f"{str(lock['lock']).replace('_', ' ')} lock (exclusive): 1/h ≈ "
                            f"{lock['ceiling_qps']:,.0f} q/s{crossing}", (1.0, lock["ceiling_qps"]),
                            xytext=(2, 3), textcoords="offset points", color=color_lock, fontsize="small")
        if cores:
            ax.axvline(cores, color="#555555", linestyle="--", linewidth=0.8)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ticks = [2.0**k for k in range(int(np.floor(np.log2(max(fewest, 0.05)))), int(np.log2(most)) + 1)]
        ax.set_xticks(ticks, labels=[f"{t:g}" for t in ticks])
        ax.xaxis.set_minor_locator(mticker.NullLocator())
        ax.set_xlim(0.8 * min(1.0, max(fewest, 0.05)), most * 1.1)
        ax.set_title(f"{engine}: throughput vs cores")
        ax.set_xlabel("cores (log scale)")
        ax.grid(True, which="both", alpha=0.3)
        # below the panel: the forecast rises to the right and the ceilings' labels sit on the left
        ax.legend(fontsize="x-small", loc="upper center", bbox_to_anchor=(0.5, -0.16))
    top = max([*ceilings.loc[ceilings["counted"], "ceiling_qps"].dropna(), *curve["forecast_qps"].dropna(), 1.0])
    axes[0].set_ylim(top=2 * top)  # room above the highest ceiling for its label
    axes[0].set_ylabel("queries per second (log scale)")
    return fig


def f_r2(fit: pd.DataFrame) -> str:
    r2 = fit["r_squared"].iloc[0]
    return "n/a" if pd.isna(r2) else f"{r2:.2f}"


def has_wait_forecast(run: Run, model: str = "md1") -> bool:
    """Whether :func:`wait_forecast_figure` has anything to draw: a level above the base one with a positive
    forecast or measured wait (the log scale cannot show a zero, and the base level alone checks nothing)."""
    frame = wait_forecast(run, model=model)
    above = frame[frame["concurrency"] > frame["base_concurrency"]]
    values = above[["forecast_wait_us", "measured_wait_us"]].to_numpy(dtype=float)
    return bool((np.isfinite(values) & (values > 0)).any())


def wait_forecast_figure(run: Run, model: str = "md1") -> Figure:
    """Did queueing theory, fed only the lowest level, predict the lock wait at higher load?"""
    frame = wait_forecast(run, model=model)
    fig = _figure(10, 4.5)
    ax = fig.subplots()
    ax.set_title(f"Exclusive-lock wait: {MODEL_NAMES.get(model, model)} forecast from the lowest level vs measured")
    if not has_wait_forecast(run, model):
        _empty(ax, no_forecast_reason(run) or "every forecast and measured wait was zero: nothing to draw")
        return fig
    engines = frame["engine"].nunique()
    for i, ((engine, schema, lock), g) in enumerate(frame.groupby(["engine", "schema", "lock"], sort=True)):
        color = _PALETTE[i % len(_PALETTE)]
        label = f"{_series_label(engine, schema, engines)}, {lock.replace('_', ' ')} lock"
        # a zero wait has no place on the log scale: left out, never moved to a made-up small value
        ax.plot(g["concurrency"], g["measured_wait_us"].where(g["measured_wait_us"] > 0), "o-", color=color,
                label=f"{label}: measured")
        ax.plot(g["concurrency"], g["forecast_wait_us"].where(g["forecast_wait_us"] > 0), "x--", color=color,
                label=f"{label}: forecast")
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(frame["concurrency"].unique()), labels=sorted(frame["concurrency"].unique()))
    ax.set_yscale("log")
    ax.set_xlabel("concurrent queries (workers)")
    ax.set_ylabel("lock wait per query (µs, log scale)")
    fig.legend(fontsize="small", loc="outside right upper")
    ax.grid(True, which="both", alpha=0.3)
    return fig


def latency_vs_parts(run: Run) -> Figure:
    """Does latency, and the parts-lock hold, track the number of active parts?"""
    frame = parts_dependence(run)
    fig = _figure(10, 4.5)
    left, right = fig.subplots(1, 2)
    fig.suptitle("Latency and parts-lock hold vs active parts in the table")
    if not has_parts_range(frame):
        for ax in (left, right):
            _empty(ax, "the run has a single parts count; run a scenario that varies it (e.g. parts_growth)")
        return fig
    engines = frame["engine"].nunique()
    for i, ((engine, concurrency), g) in enumerate(frame.groupby(["engine", "concurrency"], sort=True)):
        color = _PALETTE[i % len(_PALETTE)]
        label = f"{engine}, c={concurrency}" if engines > 1 else f"{concurrency} concurrent"
        g = g.sort_values("active_parts")
        left.plot(g["active_parts"], g["p50_ms"], "o-", color=color, label=label)
        right.plot(g["active_parts"], g["parts_hold_us_per_query"], "o-", color=color, label=f"{label}: hold")
        right.plot(g["active_parts"], g["parts_wait_us_per_query"], "x--", color=color, alpha=0.6,
                   label=f"{label}: wait")
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_xlabel("active parts in the table (log scale)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
    left.set_ylabel("median latency (ms)")
    left.set_title("Median query latency")
    right.set_ylabel("parts lock per query (µs)")
    right.set_title("Parts-lock hold and wait")
    return fig


def ab_forest(frame: pd.DataFrame, title: str = "A/B: B ÷ A, with intervals", margin: float | None = 0.05) -> Figure:
    """Which points got faster or slower, and how sure are we?

    Frame contract (one row per compared point, e.g. a schema × concurrency × metric):
    ``label`` (str, the row's name), ``ratio`` (float > 0, B ÷ A, e.g. of medians;
    below 1 is less time), ``ci_low``/``ci_high`` (the interval of the ratio, NaN if none),
    ``verdict`` (one of faster, slower, unchanged, inconclusive; anything else is drawn grey).
    ``margin`` shades ± the minimum change: a point is "unchanged" only when its whole interval is inside.
    """
    missing = [c for c in AB_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"the A/B frame lacks columns {missing}; it needs {list(AB_COLUMNS)}")
    fig = _figure(8, max(2.5, 0.4 * len(frame) + 1.5))
    ax = fig.subplots()
    ax.set_title(title)
    if frame.empty:
        _empty(ax, "no compared points")
        return fig
    y = np.arange(len(frame))
    ratio = frame["ratio"].astype(float).to_numpy()
    low = frame["ci_low"].astype(float).fillna(frame["ratio"]).to_numpy()
    high = frame["ci_high"].astype(float).fillna(frame["ratio"]).to_numpy()
    colors = [VERDICT_COLORS.get(str(v), "#555555") for v in frame["verdict"]]
    ax.hlines(y, low, high, colors=colors, linewidth=2)
    ax.scatter(ratio, y, c=colors, zorder=3)
    for yi, r, v in zip(y, ratio, frame["verdict"], strict=True):
        ax.annotate(f" {r:.2f}× {v}", (r, yi), xytext=(6, 4), textcoords="offset points", fontsize="small")
    ax.axvline(1.0, color="black", linewidth=0.8)
    shaded = ""
    if margin:
        ax.axvspan(1 / (1 + margin), 1 + margin, color=VERDICT_COLORS["unchanged"], alpha=0.15)
        shaded = f"\nshaded: ±{margin:.0%}, unchanged only if the whole interval is inside"
    ax.set_xscale("log")
    _ratio_ticks(ax, np.concatenate([low, high, ratio]))
    ax.set_yticks(y, labels=frame["label"].astype(str))
    ax.set_ylabel("compared point")
    ax.invert_yaxis()
    ax.set_xlabel(f"ratio B ÷ A (log scale; 1 = no change;\nfor throughput, above 1 is better){shaded}")
    ax.margins(y=0.15)
    ax.grid(True, axis="x", which="both", alpha=0.3)
    return fig


RATIO_TICKS = (0.1, 0.2, 0.5, 0.67, 0.8, 0.9, 0.95, 1.0, 1.05, 1.1, 1.25, 1.5, 2.0, 5.0, 10.0)
COARSE_RATIO_TICKS = (0.1, 0.2, 0.5, 0.67, 1.0, 1.5, 2.0, 5.0, 10.0)  # a range wider than 3x: no crowding at 1


def _ratio_ticks(ax: Axes, values: np.ndarray) -> None:
    """Plain ratio ticks (0.9, 1, 1.1) within the drawn range, instead of powers of ten."""
    finite = values[np.isfinite(values) & (values > 0)]
    lo, hi = (min(finite.min(), 0.95), max(finite.max(), 1.05)) if finite.size else (0.95, 1.05)
    choice = COARSE_RATIO_TICKS if hi / lo > 3 else RATIO_TICKS
    ticks = [t for t in choice if lo / 1.02 <= t <= hi * 1.02]
    ax.set_xticks(ticks, labels=[f"{t:g}" for t in ticks])
    ax.xaxis.set_minor_formatter(mticker.NullFormatter())


def forest_frame(comparison: pd.DataFrame, metrics: tuple[str, ...] | None = None) -> pd.DataFrame:
    """The :func:`ab_forest` contract from an A/B comparison frame (``lockprof.analysis.ab``):
    one labelled row per compared point with a ratio; points without one are left out."""
    frame = comparison[comparison["ratio"].notna()]
    if metrics is not None:
        frame = frame[frame["metric"].isin(metrics)]
    lock = frame["lock"].fillna("") if "lock" in frame else pd.Series("", index=frame.index)
    mode = frame["mode"].fillna("") if "mode" in frame else pd.Series("", index=frame.index)
    locks = np.where(lock != "", " " + lock.str.replace("_", " ") + " (" + mode + ")", "")
    label = frame["schema"].astype(str) + " c=" + frame["concurrency"].astype(str) + " " + frame["metric"] + locks
    if {"engine_a", "engine_b"} <= set(frame) and frame[["engine_a", "engine_b"]].drop_duplicates().shape[0] > 1:
        label = frame["engine_b"].astype(str) + " vs " + frame["engine_a"].astype(str) + ": " + label  # which pair
    return pd.DataFrame({"label": label, "ratio": frame["ratio"], "ci_low": frame["ci_low"],
                         "ci_high": frame["ci_high"], "verdict": frame["verdict"]}).reset_index(drop=True)


def sampler_series(run: Run, events: list[str] | None = None, top: int = 4) -> Figure:
    """When during the run did the lock counters move, level by level?

    Plots ``system.events`` deltas of lock timers as a rate (µs of lock time per second
    of wall time) with the measured windows of each level shaded.
    """
    ev = run.events
    timers = run.locks[run.locks["role"].isin(["wait", "hold"])]["event"].unique()
    ev = ev[ev["event"].isin(events if events is not None else timers)]
    if events is None and not ev.empty:
        events = list(ev.groupby("event")["delta"].sum().sort_values(ascending=False).index[:top])
        ev = ev[ev["event"].isin(events)]
    rows = max(len(events or []), 1)
    fig = _figure(10, 1.9 * rows + 1)
    axes = np.atleast_1d(fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0])
    fig.suptitle("Lock counters over the run (system.events sampler), measured windows shaded")
    if ev.empty:
        _empty(axes[0], "the events sampler recorded no lock time")
        return fig
    levels = run.levels.sort_values("measure_start_s")
    for ax, event in zip(axes, events, strict=False):
        g = ev[ev["event"] == event].sort_values("t_s")
        all_engines = list(run.levels["engine"].unique())
        for engine, ge in g.groupby("engine"):
            # a cluster's replicas are polled together: one point per poll, summed over the replicas
            ge = ge.groupby("t_s", as_index=False).agg(delta=("delta", "sum"), interval_s=("interval_s", "max"))
            rate = (ge["delta"] / ge["interval_s"].where(ge["interval_s"] > 0)).to_numpy()
            t = ge["t_s"].to_numpy()
            # an engine is sampled only during its own levels: a gap longer than a few polls is a gap, not a line
            gap = np.flatnonzero(np.diff(t) > 3 * np.nanmedian(ge["interval_s"]))
            t, rate = np.insert(t, gap + 1, np.nan), np.insert(rate, gap + 1, np.nan)
            style, _ = engine_style(all_engines, engine)
            ax.plot(t, rate, linestyle=style, linewidth=1, drawstyle="steps-pre",
                    label=engine if g["engine"].nunique() > 1 else None)
        engines_shown = levels["engine"].nunique() > 1
        for i, (_, lv) in enumerate(levels.iterrows()):
            ax.axvspan(lv["measure_start_s"], lv["measure_end_s"], color=_PALETTE[i % len(_PALETTE)], alpha=0.12)
            if ax is axes[0]:
                middle = (lv["measure_start_s"] + lv["measure_end_s"]) / 2
                who = f"{lv['engine']}\n" if engines_shown else ""
                ax.text(middle, 0.97, f"{who}{lv['schema']}\nc={lv['concurrency']}",
                        transform=ax.get_xaxis_transform(), ha="center", va="top", fontsize="xx-small")
        ax.set_ylabel("lock time\n(µs per s)", fontsize="small")
        ax.set_title(event, fontsize="small", loc="left")
        ax.grid(True, alpha=0.3)
        if g["engine"].nunique() > 1:
            ax.legend(fontsize="x-small")
    axes[-1].set_xlabel("time since the run started (s)")
    return fig


def report_figures(run: Run) -> dict[str, Figure]:
    """The report's figures, in reading order, keyed by a short caption."""
    figures = {
        "Where a query's thread time goes": time_accounting_figure(run),
        "Latency vs concurrency": latency_vs_concurrency(run),
        "Latency of each query over time, per level": latency_over_time(run),
        "Latency distribution per level": latency_cdf(run),
        "Lock budget per query": lock_budget_figure(run),
        "Throughput vs concurrency": throughput_figure(run),
    }
    if has_wait_forecast(run):  # no empty panels: a figure appears only with something to show
        figures["Lock-wait forecast vs measured"] = wait_forecast_figure(run)
    if has_parts_range(parts_dependence(run)):
        figures["Latency vs active parts"] = latency_vs_parts(run)
    if not run.events.empty:
        figures["Lock counters over time"] = sampler_series(run)
    return figures
