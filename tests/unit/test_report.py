"""The HTML report: self-contained, complete, honest about incomplete runs, and rendered by a real browser."""

from __future__ import annotations

import html
import re

import numpy as np
import pytest
from synthetic_runs import Level, make_run

from lockprof.analysis import level_summary
from lockprof.analysis.levels import INTERVAL_COLUMNS
from lockprof.report import render_report


def test_an_incomplete_run_is_flagged():
    run = make_run([Level("s", 1, 50, 5.0, hold_us=100.0)], status="incomplete")
    html = render_report(run)
    assert "Incomplete run" in html
    assert "synthetic: incomplete" in html


def test_rare_exclusive_holds_give_no_ceiling_and_say_so():
    run = make_run([Level("s", 1, 1000, 10.0, hold_us=24.0), Level("s", 4, 1000, 5.0, hold_us=24.0)])
    events = run.query_events
    taken = events["query_id"].str.rsplit("-", n=1).str[1].astype(int) % 1000 < 5  # 0.5% of the queries
    run.query_events = events[(events["event"] != "PartsLocks") | taken]
    text = render_report(run)
    assert "Exclusive holds were rare" in text and "so no ceiling is given" in text
    assert "reported a hold time" not in text
    assert "41,667" not in text  # the 1/h of a 24 µs hold: no table row may give it
    assert "ceiling q/s" in text  # the utilization table's short headers, the ceiling column in view


def links(text: str) -> list[str]:
    return [html.unescape(h) for h in re.findall(r'<a href="([^"]+)"', text)]


def test_profile_links_are_relative_to_the_report_file(tmp_path):
    run = make_run([Level("s", 1, 50, 5.0, hold_us=100.0)])
    run.paths = [tmp_path / "runs" / "r1"]
    (run.paths[0] / "pyspy").mkdir(parents=True)
    (run.paths[0] / "pyspy" / "embedded-00000.speedscope.json").write_text("{}")
    for report_dir in (run.paths[0], tmp_path / "elsewhere" / "deeper", tmp_path / "runs"):
        hrefs = links(render_report(run, report_dir=report_dir))
        assert len(hrefs) == 1
        assert not hrefs[0].startswith("/"), "a link must be relative, so the run and report can move together"
        assert (report_dir / hrefs[0]).resolve() == (run.paths[0] / "pyspy" / "embedded-00000.speedscope.json")
    assert links(render_report(run)) == ["pyspy/embedded-00000.speedscope.json"]  # by default, beside the run


# --- The Levels table's 95% intervals of p50 and p99 (lockprof.analysis.levels.level_summary) ----------------


def latencies_run(latency: np.ndarray, window_s: float = 20.0, repetitions: int = 1):
    """One level (c=2) whose queries, evenly spread over each repetition's window, took ``latency`` in order."""
    per = len(latency) // repetitions
    run = make_run([Level("s", 2, per, window_s) for _ in range(repetitions)])
    run.levels["repetition"] = range(repetitions)
    run.queries["repetition"] = np.repeat(range(repetitions), per)
    run.queries["latency_ms"] = latency
    return run


def test_intervals_contain_the_estimates_and_leave_them_unchanged():
    latency = np.random.default_rng(3).lognormal(2.0, 0.5, 2000)
    summary = level_summary(latencies_run(latency)).iloc[0]
    assert summary["p50_ms"] == np.median(latency) and summary["p99_ms"] == np.percentile(latency, 99)
    for q in ("p50", "p99"):
        assert summary[f"{q}_ci_low_ms"] < summary[f"{q}_ms"] < summary[f"{q}_ci_high_ms"]
    assert summary["p99_ci_high_ms"] - summary["p99_ci_low_ms"] > summary["p50_ci_high_ms"] - summary["p50_ci_low_ms"]
    again = level_summary(latencies_run(latency)).iloc[0]  # seeded: the same run gives the same interval
    assert again[INTERVAL_COLUMNS].tolist() == summary[INTERVAL_COLUMNS].tolist()
    constant = level_summary(latencies_run(np.full(500, 7.0))).iloc[0]
    assert constant[INTERVAL_COLUMNS].tolist() == [7.0] * 4


def test_a_stall_widens_the_p99_interval_as_independent_queries_would_not():
    """40 slow queries of 2000 in 20 s: started within one second (a stall), the p99 depends on whether that
    second is resampled; spread over the window, it hardly moves. Resampling queries one by one would
    give both the same interval."""
    body = np.random.default_rng(4).uniform(5.0, 10.0, 2000)
    stalled, spread = body.copy(), body.copy()
    stalled[1000:1040] = 400.0  # one second's worth of consecutive queries
    spread[::50] = 400.0
    width = {}
    for name, latency in (("stalled", stalled), ("spread", spread)):
        row = level_summary(latencies_run(latency)).iloc[0]
        assert row["p99_ms"] == pytest.approx(np.percentile(latency, 99))
        width[name] = row["p99_ci_high_ms"] - row["p99_ci_low_ms"]
    assert width["stalled"] > 10 * width["spread"]


def test_repetitions_that_disagree_widen_the_interval_and_a_short_window_gives_none():
    latency = np.concatenate([np.full(500, 10.0), np.full(500, 20.0)]) + np.tile(np.linspace(0, 0.1, 500), 2)
    row = level_summary(latencies_run(latency, repetitions=2)).iloc[0]
    assert row["p50_ci_low_ms"] <= 10.1 and row["p50_ci_high_ms"] >= 20.0  # either repetition could be typical
    short = level_summary(latencies_run(np.linspace(1, 2, 100), window_s=2.0)).iloc[0]
    assert np.isnan(short[INTERVAL_COLUMNS].to_numpy(dtype=float)).all()  # two 1-s blocks: nothing to resample


def test_the_levels_table_shows_the_intervals():
    latency = np.random.default_rng(3).lognormal(2.0, 0.5, 2000)
    run = latencies_run(latency)
    row = level_summary(run).iloc[0]
    text = render_report(run)
    assert "p50 95% interval" in text and "p99 95% interval" in text
    assert "–".join(f"{row[c]:#.3g}".rstrip(".") for c in ("p99_ci_low_ms", "p99_ci_high_ms")) in text
