"""The HTML report: self-contained, complete, honest about incomplete runs, and rendered by a real browser."""

from __future__ import annotations

import base64
import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import lockprof_cli
from synthetic_runs import Level, make_run

from lockprof.analysis import forecast_vs_measured, level_summary, load_run, verdict_lines
from lockprof.analysis.levels import INTERVAL_COLUMNS
from lockprof.report import load_runs, render_report

PNG = b"\x89PNG\r\n\x1a\n"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

# Injected at the top of <head>: records load errors, then after load reports how many
# images the browser decoded (non-zero natural width) in an element --dump-dom shows.
PROBE = """<script>
window.__errors = [];
window.addEventListener('error', function (e) {
  window.__errors.push(String(e.message || (e.target && e.target.tagName) || 'error'));
}, true);
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var decoded = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  var d = document.createElement('div');
  d.id = 'lockprof-probe';
  d.textContent = JSON.stringify({images: imgs.length, decoded: decoded, errors: window.__errors,
                                  h2: document.querySelectorAll('h2').length});
  document.body.appendChild(d);
});
</script>"""


@pytest.fixture(scope="module")
def report(tiny_run: Path) -> Path:
    result = lockprof_cli("report", str(tiny_run))
    assert result.returncode == 0, result.stderr
    path = tiny_run / "report.html"
    assert path.read_text(encoding="utf-8") and f"report: {path}" in result.stdout
    return path


def test_report_is_self_contained_with_decodable_figures(report):
    text = report.read_text(encoding="utf-8")
    sources = re.findall(r'<img[^>]*src="([^"]+)"', text)
    assert len(sources) >= 5
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == PNG
    # nothing to fetch: no external script, stylesheet, font or link
    assert not re.search(r'(src|href)="(https?:|//)', text)
    assert "<link" not in text


def test_report_carries_verdicts_tables_and_manifest(report, tiny_run):
    text = report.read_text(encoding="utf-8")
    run = load_run(tiny_run)
    shown = html.unescape(text.replace("<b>", "").replace("</b>", ""))  # as the reader sees it
    for sentence in verdict_lines(run):
        assert sentence in shown
    sections = ["Verdict: what costs the queries their time", "Run context", "Where the time goes", "Levels",
                "Lock budget per query", "Manifest"]
    if not forecast_vs_measured(run).empty:
        sections.append("Queueing forecast vs measured wait")
    for section in sections:
        assert f"<h2>{section}</h2>" in text
    # the answer comes first: the verdicts precede every table and figure
    assert text.index("<h2>Verdict") < text.index("<table") and text.index("<h2>Verdict") < text.index("<img")
    assert run.manifest["run_id"] in text
    assert "namespace_day" in text and "<table" in text
    assert "Incomplete run" not in text


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


def test_report_cli_writes_where_told_and_refuses_a_non_run(tiny_run, tmp_path):
    out = tmp_path / "sub" / "r.html"
    result = lockprof_cli("report", str(tiny_run), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert out.stat().st_size > 10_000
    hrefs = links(out.read_text(encoding="utf-8"))
    assert len(hrefs) == len(list((tiny_run / "pyspy").glob("*.speedscope.json")))
    for href in hrefs:  # every link opens from where the report was written
        assert (out.parent / href).is_file(), href
    bad = lockprof_cli("report", str(tmp_path))
    assert bad.returncode == 4
    assert "not a lockprof run directory" in bad.stderr


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian package: chromium)")
def test_headless_chromium_renders_every_figure_without_errors(report, tmp_path):
    page = tmp_path / "probe.html"
    page.write_text(report.read_text(encoding="utf-8").replace("<head>", "<head>" + PROBE, 1), encoding="utf-8")
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         "--virtual-time-budget=10000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    found = re.search(r'<div id="lockprof-probe">([^<]*)</div>', result.stdout)
    assert found, f"the page did not finish loading:\n{result.stderr[-2000:]}"
    probe = json.loads(found.group(1).replace("&quot;", '"'))
    images = len(re.findall(r"<img ", report.read_text(encoding="utf-8")))
    assert probe["images"] == images >= 5
    assert probe["decoded"] == images, probe
    assert probe["errors"] == []
    assert probe["h2"] >= 6


def test_two_runs_of_the_same_engine_are_kept_apart(tiny_run, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_run, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["run_id"] = "copy-run"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    run = load_runs([tiny_run, copy])
    original = load_run(tiny_run).manifest["run_id"]
    assert set(run.levels["engine"]) == {f"embedded@{original}", "embedded@copy-run"}
    assert len(run.queries) == 2 * len(load_run(tiny_run).queries)
    assert "embedded@copy-run" in render_report(run)


SLOW = '''
from lockprof import Query, Scenario, Schema

scenario = Scenario(
    name="slow",
    schemas=[Schema("t", "CREATE TABLE {table} (x UInt8) ENGINE = MergeTree ORDER BY x",
                    populate=["INSERT INTO {table} VALUES (1)"])],
    queries=[Query("slow", "SELECT sleepEachRow(0.5) FROM numbers(600) SETTINGS max_block_size = 1 FORMAT Null")],
    concurrency=[1],
    warmup_s=0.0,
    duration_s=1.0,
)
'''


def test_report_and_summary_of_a_run_whose_level_failed(tmp_path):
    """Every query cut at the end of its window: the level fails (exit 5), and the run still reads."""
    scenario = tmp_path / "slow.py"
    scenario.write_text(SLOW)
    out = tmp_path / "run"
    result = lockprof_cli("run", str(scenario), "--out", str(out), "--samplers", "events,query_log")
    assert result.returncode == 5, result.stdout + result.stderr
    report = lockprof_cli("report", str(out))
    assert report.returncode == 0, report.stderr
    assert "Traceback" not in report.stderr
    summary = lockprof_cli("summary", str(out))
    assert summary.returncode == 0 and "Traceback" not in summary.stderr
    # cancelled queries are not a query's cost: no verdict is drawn from them
    assert "no verdict can be given" in " ".join(summary.stdout.split())


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
