"""Figures: each draws what its frame says, with plain titles and units; parts dependence has known slopes."""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
import pytest
from figure_checks import assert_readable
from matplotlib.figure import Figure
from synthetic_runs import Level, make_run

from lockprof import plots
from lockprof.analysis import has_parts_range, parts_dependence, parts_slopes
from lockprof.report import render_report


def parts_run():
    # Latency 2 ms + 0.5 ms per 1000 parts; parts-lock hold 10 µs + 3 µs per 1000 parts.
    return make_run([Level(f"p{n}", c, 100 * c, 10.0, hold_us=10 + 3 * n / 1000, latency_ms=2 + 0.5 * n / 1000,
                           active_parts=n) for n in (1000, 4000, 16000) for c in (1, 2, 4)])


def test_parts_dependence_recovers_known_slopes():
    frame = parts_dependence(parts_run())
    assert has_parts_range(frame)
    assert frame["active_parts"].tolist()[:3] == [1000, 4000, 16000]
    slopes = parts_slopes(frame).set_index(["concurrency", "metric"])
    for c in (1, 2, 4):
        assert slopes.loc[(c, "p50_ms"), "per_1000_parts"] == pytest.approx(0.5)
        assert slopes.loc[(c, "parts_hold_us_per_query"), "per_1000_parts"] == pytest.approx(3.0)
        assert slopes.loc[(c, "p50_ms"), "r_squared"] == pytest.approx(1.0)


def test_one_parts_count_gives_no_slope_and_a_note():
    frame = parts_dependence(make_run([Level("a", 1, 10, 1.0, hold_us=5.0)]))
    assert not has_parts_range(frame)
    slopes = parts_slopes(frame)
    assert slopes["per_1000_parts"].isna().all()
    assert slopes["note"].str.contains("1 parts count").all()


def test_two_parts_counts_are_not_fitted():
    """A line through two points always fits (r² = 1) and proves nothing."""
    frame = parts_dependence(make_run([Level(f"p{n}", 1, 10, 1.0, hold_us=n / 100, active_parts=n)
                                       for n in (1000, 4000)]))
    slopes = parts_slopes(frame)
    assert slopes["per_1000_parts"].isna().all() and slopes["r_squared"].isna().all()
    assert slopes["note"].str.contains("2 parts count").all()


def test_throughput_figure_draws_the_ceiling_when_it_is_in_view():
    # hold 20 ms per query: ceiling 50 q/s, reached by the measured 40 q/s.
    run = make_run([Level("s", c, q, 10.0, hold_us=20_000.0) for c, q in ((1, 200), (2, 300), (4, 400))])
    fig = plots.throughput_figure(run)
    assert_readable(fig)
    ax = fig.axes[0]
    flat = [line for line in ax.lines if len(set(line.get_ydata())) == 1 and len(line.get_ydata()) == 2]
    assert any(line.get_ydata()[0] == pytest.approx(50.0) for line in flat), "the 1/h ceiling line is missing"
    assert ax.get_ylabel() == "throughput (queries per second)"


def test_throughput_figure_names_an_off_scale_ceiling_instead_of_drawing_it():
    run = make_run([Level("s", c, q, 10.0, hold_us=10.0) for c, q in ((1, 200), (2, 300), (4, 400))])
    fig = plots.throughput_figure(run)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any("100,000 q/s (above the chart)" in label for label in labels)
    # neither the ceiling (off the chart) nor a fit (3 levels) is drawn: the title promises neither
    assert fig.axes[0].get_title() == "Throughput vs concurrency"


def test_throughput_title_names_what_is_drawn():
    ceiling = plots.throughput_figure(make_run([Level("s", c, q, 10.0, hold_us=20_000.0)
                                                for c, q in ((1, 200), (2, 300), (4, 400))]))
    assert ceiling.axes[0].get_title() == "Throughput vs concurrency: measured, exclusive-lock ceiling"
    # five levels on a USL curve (λ = 100, σ = 0.1, κ = 0): the fit is drawn, and no lock is held
    usl = [(c, round(10 * 100 * c / (1 + 0.1 * (c - 1)))) for c in (1, 2, 4, 8, 16)]
    fit = plots.throughput_figure(make_run([Level("s", c, q, 10.0) for c, q in usl]))
    assert fit.axes[0].get_title() == "Throughput vs concurrency: measured, scalability-law fit"


def forecast_run(wait_at_8: float):
    return make_run([Level("s", 1, 100, 10.0, hold_us=500.0), Level("s", 8, 1000, 10.0, hold_us=500.0,
                                                                    wait_us=wait_at_8)])


def test_the_wait_forecast_figure_appears_only_with_something_to_draw():
    drawn = plots.report_figures(forecast_run(wait_at_8=40.0))
    assert "Lock-wait forecast vs measured" in drawn
    fig = drawn["Lock-wait forecast vs measured"]
    assert_readable(fig)
    ys = np.concatenate([np.asarray(line.get_ydata(), dtype=float) for line in fig.axes[0].lines])
    assert np.nanmin(ys) > 1.0, "a zero wait must be left out, not drawn at a made-up small value"
    # one level only: the forecast is the base level's zero, nothing to check
    one = make_run([Level("s", 1, 100, 10.0, hold_us=500.0)])
    assert not plots.has_wait_forecast(one)
    assert "Lock-wait forecast vs measured" not in plots.report_figures(one)
    # readers share the lock: nothing exclusive to forecast
    shared = make_run([Level("s", c, 100 * c, 10.0, hold_us=50.0, mode="shared") for c in (1, 4)])
    assert "Lock-wait forecast vs measured" not in plots.report_figures(shared)
    assert "Lock-wait forecast" not in render_report(shared)


def test_lock_budget_figure_stacks_wait_and_hold():
    run = make_run([Level("s", 1, 100, 10.0, hold_us=300.0, wait_us=100.0),
                    Level("s", 4, 300, 10.0, hold_us=300.0, wait_us=900.0)])
    fig = plots.lock_budget_figure(run)
    assert_readable(fig)
    wait, hold = fig.axes[0], fig.axes[1]
    assert sorted(round(p.get_width(), 6) for p in wait.patches) == [100.0, 900.0]
    assert sorted(round(p.get_width(), 6) for p in hold.patches) == [300.0, 300.0]
    # the lock's colour and its mode's hatch, the same in both panels
    assert {p.get_hatch() for p in wait.patches + hold.patches} == {plots.mode_hatch("exclusive")}
    parts = matplotlib.colors.to_rgb(plots.lock_color("parts"))
    assert all(np.allclose(p.get_facecolor()[:3], parts) for p in wait.patches + hold.patches)


def test_time_accounting_figure_stacks_the_parts_of_thread_time():
    run = make_run([Level("s", 1, 100, 5.0, wait_us=1_000.0, counters={
        "RealTimeMicroseconds": 10_000, "OSCPUVirtualTimeMicroseconds": 6_000, "OSCPUWaitMicroseconds": 2_000})])
    fig = plots.time_accounting_figure(run)
    assert_readable(fig)
    ms_ax, share_ax = fig.axes[0], fig.axes[1]
    assert sorted(round(p.get_width(), 6) for p in ms_ax.patches) == [1.0, 1.0, 2.0, 6.0]  # lock, other, wait, cpu
    assert sum(p.get_width() for p in share_ax.patches) == pytest.approx(100.0)


def stall_run(queries: int = 500, engine: str = "embedded"):
    """Two levels of 10-11 ms queries; at c=4, ten queries in a row (started within 0.2 s) took 400 ms."""
    run = make_run([Level("s", 1, queries, 10.0), Level("s", 4, queries, 10.0)], engine=engine)
    run.queries["latency_ms"] += np.random.default_rng(1).uniform(0, 1, len(run.queries))
    level = run.queries.index[run.queries["concurrency"] == 4]
    stalled = level[100:110]
    run.queries.loc[stalled, "latency_ms"] = 400.0
    return run, run.queries.loc[stalled]


def combined(*runs):
    """Runs of different engines as one, as ``load_runs`` makes them."""
    frames = {t: pd.concat([getattr(r, t) for r in runs], ignore_index=True)
              for t in ("queries", "levels", "events", "metrics", "query_events", "locks", "driver", "driver_stacks",
                        "stacks")}
    return type(runs[0])(paths=[], manifests=[m for r in runs for m in r.manifests], **frames)


def test_latency_over_time_marks_a_stall_in_red():
    run, stalled = stall_run()
    fig = plots.latency_over_time(run)
    assert_readable(fig)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == 2  # one per level
    c4 = next(ax for ax in panels if "c=4" in ax.get_title("left"))
    body, tail = c4.collections
    assert tail.get_facecolor()[0][:3] == pytest.approx(matplotlib.colors.to_rgb(plots.TAIL_COLOR))
    start = run.levels.set_index("concurrency").at[4, "measure_start_s"]
    drawn = sorted(map(tuple, np.round(tail.get_offsets(), 6)))
    assert drawn == sorted(zip(np.round(stalled["start_s"] - start, 6), stalled["latency_ms"], strict=True))
    assert len(body.get_offsets()) == 490 and body.get_rasterized()
    p99 = [line.get_ydata()[0] for line in c4.lines if line.get_linestyle() == ":"]
    assert p99 == [pytest.approx(np.percentile(run.queries.loc[run.queries["concurrency"] == 4, "latency_ms"], 99))]
    assert "p99 400 ms" in c4.get_title("left")


def test_latency_over_time_thins_a_large_level_but_keeps_its_tail():
    run, stalled = stall_run(queries=3 * plots.MAX_POINTS_PER_LEVEL)
    fig = plots.latency_over_time(run)
    for ax in (a for a in fig.axes if a.get_visible()):
        body, tail = ax.collections
        assert len(body.get_offsets()) + len(tail.get_offsets()) <= plots.MAX_POINTS_PER_LEVEL + plots.SLOWEST_KEPT
    c4 = next(ax for ax in fig.axes if "c=4" in ax.get_title("left"))
    drawn = c4.collections[1].get_offsets()[:, 1]
    assert (drawn == 400.0).sum() == 10, "the slowest queries, the stall, are always drawn"
    # the tail is thinned like the rest: about 1% of what is drawn, plus the slowest kept, not all 120
    assert len(drawn) < 0.01 * plots.MAX_POINTS_PER_LEVEL + plots.SLOWEST_KEPT + 30
    assert "even sample" in fig.get_supxlabel()


def test_latency_figures_stay_readable_with_many_levels_and_engines():
    levels = [Level(schema, c, 40, 2.0, latency_ms=5.0 * c) for schema in ("a", "b") for c in (1, 2, 4, 8, 16, 32, 64,
                                                                                               128)]
    run = combined(make_run(levels, engine="old"), make_run(levels, engine="new"))
    over = plots.latency_over_time(run)
    assert_readable(over)
    panels = [ax for ax in over.axes if ax.get_visible()]
    assert len(panels) == 32 and len({ax.get_title("left") for ax in panels}) == 32
    assert over.get_size_inches()[0] <= 14  # small multiples, wrapped four to a row
    assert {ax.get_title("left").split("\n")[0] for ax in panels} >= {"new / a  c=128", "old / b  c=1"}
    cdf = plots.latency_cdf(run)
    assert_readable(cdf)
    panels = [ax for ax in cdf.axes if ax.get_visible()]
    assert sorted(ax.get_title("left") for ax in panels) == ["new / a", "new / b", "old / a", "old / b"]
    assert all(len(ax.lines) == 8 for ax in panels)  # one line per level
    assert panels[0].get_xscale() == "log"


def test_latency_cdf_reaches_the_stall():
    run, _ = stall_run()
    fig = plots.latency_cdf(run)
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.lines}
    x, y = lines["c=4"].get_xdata(), lines["c=4"].get_ydata()
    assert x[-1] == 400.0 and np.all(np.diff(x) >= 0) and np.all((y > 0) & (y < 1))
    assert y[np.searchsorted(x, 400.0)] == pytest.approx(490.5 / 500)  # 98% of the queries were faster
    assert lines["c=1"].get_xdata().max() < 11.0


def test_every_figure_renders_on_synthetic_runs():
    run = parts_run()
    for name, fig in plots.report_figures(run).items():
        assert isinstance(fig, Figure), name
        assert_readable(fig)
    assert "Latency vs active parts" in plots.report_figures(run)
    assert {"Latency of each query over time, per level", "Latency distribution per level"} <= set(
        plots.report_figures(run))


AB = pd.DataFrame({
    "label": ["day c=1 latency", "day c=4 latency", "ns c=4 parts lock wait", "ns c=4 throughput"],
    "ratio": [0.5, 1.01, 2.0, 0.9],
    "ci_low": [0.45, 0.9, 1.5, np.nan],
    "ci_high": [0.55, 1.1, 2.6, np.nan],
    "verdict": ["faster", "unchanged", "slower", "inconclusive"],
})


def test_ab_forest_draws_one_interval_per_point_coloured_by_verdict():
    fig = plots.ab_forest(AB)
    assert_readable(fig)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == AB["label"].tolist()
    segments = ax.collections[0].get_segments()
    assert len(segments) == 4
    assert segments[2][0][0] == pytest.approx(1.5) and segments[2][1][0] == pytest.approx(2.6)
    colors = ax.collections[1].get_facecolors()
    assert tuple(np.round(colors[0][:3], 3)) != tuple(np.round(colors[2][:3], 3))  # faster vs slower


def test_ab_forest_refuses_a_frame_without_the_contract():
    with pytest.raises(ValueError, match="ci_low"):
        plots.ab_forest(AB.drop(columns=["ci_low"]))


def test_forest_frame_from_a_comparison():
    comparison = pd.DataFrame({"schema": ["day", "day"], "concurrency": [1, 4], "metric": ["latency_ms", "x"],
                               "lock": [np.nan, "parts"], "mode": [np.nan, "shared"], "ratio": [0.8, np.nan],
                               "ci_low": [0.7, np.nan], "ci_high": [0.9, np.nan], "verdict": ["faster", "error"]})
    forest = plots.forest_frame(comparison)
    assert forest.to_dict("records") == [{"label": "day c=1 latency_ms", "ratio": 0.8, "ci_low": 0.7,
                                          "ci_high": 0.9, "verdict": "faster"}]


def test_forest_labels_name_the_engine_pair_only_when_there_are_several():
    """With three engines (a sweep), the same point appears once per pair: each label says which pair it is."""
    from lockprof.plots import forest_frame

    rows = [{"schema": "s", "concurrency": 1, "metric": "latency_ms", "lock": "", "mode": "", "engine_a": "25.8",
             "engine_b": b, "ratio": r, "ci_low": r * 0.9, "ci_high": r * 1.1, "verdict": "faster"}
            for b, r in (("26.1", 0.5), ("26.9", 0.4))]
    labels = forest_frame(pd.DataFrame(rows))["label"].tolist()
    assert labels == ["26.1 vs 25.8: s c=1 latency_ms", "26.9 vs 25.8: s c=1 latency_ms"]
    assert forest_frame(pd.DataFrame(rows[:1]))["label"].tolist() == ["s c=1 latency_ms"]
