"""The report of a real run that has stacks carries the flame graph and names the lock the waits point at."""

from __future__ import annotations

import base64
import re
import shutil
from pathlib import Path

import pytest
from conftest import TINY, lockprof_cli
from stack_cases import stack_frame

from lockprof import store
from lockprof.report import FLAME_CAPTION, render_report


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("flame") / "tiny"
    result = lockprof_cli("run", str(TINY), "--concurrency", "1", "--duration", "0.3", "--warmup", "0",
                          "--out", str(out))
    assert result.returncode == 0, result.stderr + result.stdout
    return out


def test_report_of_a_run_with_stacks_has_the_flame_graph(small_run: Path, tmp_path: Path) -> None:
    from lockprof.analysis import load_run

    plain = render_report(load_run(small_run))
    assert FLAME_CAPTION not in plain and "<h2>Stack samples</h2>" not in plain

    run_dir = tmp_path / "with-stacks"
    shutil.copytree(small_run, run_dir)
    keys = load_run(run_dir).levels.iloc[0]
    stacks = stack_frame({"prefix_exclusive_std_mutex": 6, "rwlock_read": 2}, {"reading": 4}).assign(
        engine=keys["engine"], schema=keys["schema"], concurrency=keys["concurrency"], repetition=0)
    store.write_part(run_dir, "stacks", "x", stacks)
    result = lockprof_cli("report", str(run_dir))
    assert result.returncode == 0, result.stderr
    text = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "<h2>Stack samples</h2>" in text
    match = re.search(rf'<img alt="{FLAME_CAPTION}" src="data:image/png;base64,([^"]+)"', text)
    assert match and base64.b64decode(match.group(1))[:8] == b"\x89PNG\r\n\x1a\n"
    assert "75% of those point at the parts mutex, exclusive" in text
