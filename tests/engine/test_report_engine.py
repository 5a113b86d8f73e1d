"""The HTML report of real runs: self-contained, complete, honest about failed levels, and rendered by a real
browser."""

from __future__ import annotations

import base64
import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import lockprof_cli

from lockprof.analysis import forecast_vs_measured, load_run, verdict_lines
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


def links(text: str) -> list[str]:
    return [html.unescape(h) for h in re.findall(r'<a href="([^"]+)"', text)]


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
