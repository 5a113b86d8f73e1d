"""Failure is a result, stated loudly: broken scenarios, failing levels, user code that raises,
queries that outlive their level, and signals — each on the real engine through the real CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
from conftest import ROOT, lockprof_cli, wait_for

from lockprof import store

HEADER = """
from lockprof import Background, Query, Scenario, Schema
SCHEMA = Schema("s", "CREATE TABLE {table} (k UInt32, v Float64) ENGINE = MergeTree PARTITION BY k % 4 ORDER BY k",
                populate=["INSERT INTO {table} SELECT number, number FROM numbers(1000)"])
"""
QUICK = ["--concurrency", "1", "--duration", "0.5", "--warmup", "0", "--samplers", "events"]


def write_scenario(tmp_path: Path, body: str, name: str = "scenario.py") -> Path:
    path = tmp_path / name
    path.write_text(HEADER + textwrap.dedent(body))
    return path


def one_message(stderr: str) -> None:
    assert "Traceback" not in stderr, stderr
    assert stderr.count("lockprof: error:") == 1, stderr


@pytest.mark.parametrize(
    "query, expected",
    [
        ('Query("bad", "SELECT no_such_column FROM {table}")', "UNKNOWN_IDENTIFIER"),
        ('Query("typo", "SELEC 1")', "SYNTAX_ERROR"),
        ('Query("missing", "SELECT count() FROM {table} WHERE k = {k:UInt32}")', "k"),
        ('Query("wrong_type", "SELECT count() FROM {table} WHERE k = {k:UInt32}", params=lambda r: {"k": "x"})',
         "wrong_type"),
        ('Query("raises", "SELECT 1", params=lambda r: {"k": 1 // 0})', "ZeroDivisionError"),
    ],
)
def test_a_query_the_engine_rejects_is_a_broken_scenario_before_any_run(tmp_path, query, expected):
    name = query.split('"')[1]
    path = write_scenario(tmp_path, f"scenario = Scenario('broken_{name}', [SCHEMA], [{query}])\n")
    out = tmp_path / "run"
    result = lockprof_cli("run", str(path), "--out", str(out), *QUICK)
    assert result.returncode == 2, result.stderr
    one_message(result.stderr)
    assert f"query {name!r}" in result.stderr and expected in result.stderr
    assert not out.exists()


def test_a_params_function_that_raises_sometimes_fails_the_level_but_no_thread(tmp_path):
    path = write_scenario(tmp_path, """
        calls = {"n": 0}
        def params(rng):
            calls["n"] += 1
            if calls["n"] % 3 == 0:
                raise ValueError("no tenant left")
            return {"k": rng.randrange(1000)}
        scenario = Scenario("flaky_params", [SCHEMA],
                            [Query("q", "SELECT count() FROM {table} WHERE k = {k:UInt32}", params=params)])
    """)
    out = tmp_path / "run"
    result = lockprof_cli("run", str(path), "--out", str(out), "--concurrency", "2", *QUICK[2:])
    assert result.returncode == 5, result.stderr
    assert "Traceback" not in result.stderr
    assert "ValueError: no tenant left" in result.stderr and "LEVEL FAILED" in result.stderr
    manifest = store.read_manifest(out)
    assert manifest["status"] == "complete"  # every level ran: a failed level is a result, not an unfinished run
    [failed] = manifest["failed_levels"]
    assert "scenario.py:" in failed["first_error"] and 0.05 < failed["error_share"] < 1
    queries = store.read_table(out, "queries").sort_values("start_s")
    # no thread stopped at its first failure: each has records after it
    for worker in (0, 1):
        mine = queries[queries["worker"] == worker].reset_index(drop=True)
        first_failure = mine["error"].notna().idxmax()
        assert mine["error"].notna().any() and len(mine) > first_failure + 1


SLOW_QUERY = 'Query("slow", "SELECT sleepEachRow(0.5) FROM numbers(600) SETTINGS max_block_size = 1 FORMAT Null")'


def test_a_query_longer_than_the_window_is_cancelled_and_the_level_fails(tmp_path):
    path = write_scenario(tmp_path, f"scenario = Scenario('slow_query', [SCHEMA], [{SLOW_QUERY}])\n")
    out = tmp_path / "run"
    # the query would take 300 s; the run must end long before (the bound is generous: a busy machine)
    result = lockprof_cli("run", str(path), "--out", str(out), *QUICK, timeout=120)
    assert result.returncode == 5, result.stderr
    queries = store.read_table(out, "queries")
    assert queries["cancelled"].all() and queries["error"].notna().all()
    [failed] = store.read_manifest(out)["failed_levels"]
    assert "TIMEOUT_EXCEEDED" in failed["first_error"] or "QUERY_WAS_CANCELLED" in failed["first_error"]


def _start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lockprof", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (from /proc), so a test can check none survives."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pids: set[int]) -> set[int]:
    out = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            out.add(pid)
    return out


WAIT_S = 180.0  # generous: the machine may be busy


def wait_until_measuring(proc: subprocess.Popen, out: Path) -> set[int]:
    """Wait until a first level is stored and py-spy samples the worker; return the processes below lockprof."""
    wait_for(lambda: list(out.glob("levels/*.parquet")) or proc.poll() is not None, timeout=WAIT_S, what="first level")
    assert proc.poll() is None, proc.communicate()
    wait_for(lambda: len(descendants(proc.pid)) >= 2, timeout=WAIT_S, what="worker and py-spy")
    return descendants(proc.pid)


def pyspy_dirs(pid: int) -> list[Path]:
    return list(Path(tempfile.gettempdir()).glob(f"lockprof-pyspy-{pid}-*"))


@pytest.mark.parametrize("how", ["SIGTERM", "two Ctrl-C"])
def test_a_stop_signal_cancels_the_level_and_leaves_a_readable_run_and_no_orphan(tmp_path, how):
    path = write_scenario(tmp_path, f"scenario = Scenario('stop_signal', [SCHEMA], [{SLOW_QUERY}])\n")
    out = tmp_path / "run"
    # two levels: the first is cut at the end of its 2 s window, the second is where the signal arrives
    proc = _start(["run", str(path), "--out", str(out), "--concurrency", "1", "--duration", "2", "--warmup", "0",
                   "--repetitions", "2"])
    below = wait_until_measuring(proc, out)
    if how == "SIGTERM":  # sent to lockprof alone, as `timeout` or a container stop does
        proc.send_signal(signal.SIGTERM)
    else:
        os.killpg(proc.pid, signal.SIGINT)
        os.killpg(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)  # the query would run for 300 s
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    manifest = store.read_manifest(out)
    assert manifest["status"] == "incomplete"
    assert any("interrupted" in f for f in manifest["failures"])
    wait_for(lambda: not alive(below), timeout=30, what="end of the worker and py-spy")
    assert not pyspy_dirs(proc.pid)
    assert not [p for p in out.rglob(".*")], "temporary files left behind"


def test_ctrl_c_during_a_long_dataset_build_acts_at_once_and_leaves_nothing(tmp_path):
    path = write_scenario(tmp_path, """
        scenario = Scenario("endless_build",
            [Schema("s", "CREATE TABLE {table} (x UInt64) ENGINE = MergeTree ORDER BY x",
                    populate=["INSERT INTO {table} SELECT number FROM numbers(600) WHERE sleepEachRow(0.5) = 0 "
                              "SETTINGS max_block_size = 1"])],
            [Query("q", "SELECT count() FROM {table}")])
    """)
    out = tmp_path / "run"
    proc = _start(["run", str(path), "--out", str(out)])
    wait_for(lambda: len(descendants(proc.pid)) >= 1, timeout=WAIT_S, what="worker")
    below = descendants(proc.pid)
    time.sleep(1.0)  # let the worker reach the build (a Ctrl-C while it starts must work too)
    os.killpg(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)  # the build would take 300 s
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "interrupted" in stderr
    assert not out.exists()
    wait_for(lambda: not alive(below), timeout=30, what="end of the worker")


DAMAGE = [
    ("ALTER TABLE {t} DROP PARTITION 0", "active parts 3 differ from the 4"),
    # the same parts and rows, other values
    ("ALTER TABLE {t} DROP PARTITION 0; INSERT INTO {t} SELECT number * 4, number + 0.5 FROM numbers(250)",
     "checksum"),
]


@pytest.mark.parametrize("damage, reason", DAMAGE)
def test_a_damaged_cached_dataset_is_rebuilt_and_says_why(engine, damage, reason):
    from lockprof.dataset import ensure_dataset
    from lockprof.scenario import Query, Scenario, Schema

    schema = Schema("s", "CREATE TABLE {table} (k UInt32, v Float64) ENGINE = MergeTree PARTITION BY k % 4 ORDER BY k",
                    populate=["INSERT INTO {table} SELECT number, number FROM numbers(1000)"])
    scenario = Scenario(f"damaged_{DAMAGE.index((damage, reason))}", [schema], [Query("q", "SELECT 1")])
    built = ensure_dataset(engine.admin, scenario, schema)
    assert (built.active_parts, built.rows, built.cached) == (4, 1000, False)
    assert ensure_dataset(engine.admin, scenario, schema).cached  # intact: reused
    for statement in damage.split("; "):
        engine.admin.execute(statement.replace("{t}", built.full_name))
    again = ensure_dataset(engine.admin, scenario, schema)
    assert not again.cached and reason in again.rebuilt_because
    assert (again.active_parts, again.rows) == (4, 1000)
    assert ensure_dataset(engine.admin, scenario, schema).cached


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB file system for a run directory (needs the right to mount; skipped without it)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip("cannot mount a small file system here")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_ends_the_run_cleanly_and_the_manifest_says_why(tmp_path, small_disk):
    path = write_scenario(tmp_path, """
        scenario = Scenario("disk_full", [SCHEMA], [Query("q", "SELECT k, v, repeat('x', 200) FROM {table} LIMIT 10")])
    """)
    out = small_disk / "run"
    # many levels, each storing its queries and ProfileEvents: the 1 MiB fills up part-way
    result = lockprof_cli("run", str(path), "--out", str(out), "--concurrency", "1,2", "--duration", "1",
                          "--warmup", "0", "--repetitions", "40", timeout=900)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.count("lockprof: error:") == 1 and "No space left" in result.stderr, result.stderr
    manifest = store.read_manifest(out)
    assert manifest["status"] == "incomplete"
    assert any("No space left" in f for f in manifest["failures"])
    # what was written stays readable, and every stored level is whole
    levels, queries = store.read_table(out, "levels"), store.read_table(out, "queries")
    assert len(levels) >= 1
    assert set(zip(queries["concurrency"], queries["repetition"])) == set(zip(levels["concurrency"],
                                                                            levels["repetition"]))
    assert not [p for p in out.rglob(".*")], "temporary files left behind"


def test_when_lockprof_itself_is_killed_its_worker_and_py_spy_die_too(tmp_path):
    path = write_scenario(tmp_path, f"scenario = Scenario('killed', [SCHEMA], [{SLOW_QUERY}])\n")
    out = tmp_path / "run"
    proc = _start(["run", str(path), "--out", str(out), "--concurrency", "1", "--duration", "2", "--warmup", "0",
                   "--repetitions", "2"])
    below = wait_until_measuring(proc, out)
    proc.kill()  # nothing can be cleaned up in-process: the kernel must end the children
    proc.communicate(timeout=60)
    wait_for(lambda: not alive(below), timeout=30, what="end of the worker and py-spy")
    store.read_manifest(out)  # still readable, marked incomplete
    assert store.read_manifest(out)["status"] == "incomplete"
    # py-spy's directory of the killed run goes with it (lockprof's reaper), not at the next run
    wait_for(lambda: not pyspy_dirs(proc.pid), timeout=30, what="py-spy's directory removed")


def _prepared_worker(tmp_path: Path):
    from lockprof.clock import RunClock
    from lockprof.engines.registry import parse_spec
    from lockprof.protocol import PrepareRequest
    from lockprof.workerproc import WorkerProcess

    path = write_scenario(tmp_path, "scenario = Scenario('idle', [SCHEMA], [Query('q', 'SELECT 1')])\n")
    spec = parse_spec("embedded")
    worker = WorkerProcess("embedded", spec.python)
    worker.request(PrepareRequest(engine=spec.as_request(), engine_label="embedded", scenario_path=str(path),
                                  schemas=["s"], clock_origin=RunClock().origin, samplers=[]))
    return worker


def test_ctrl_c_between_requests_leaves_the_worker_to_answer_its_exit(tmp_path):
    # Ctrl-C reaches the whole process group: a worker waiting for its next request must not die of it
    # (the orchestrator decides what comes next), nor must its exit wait on a reply.
    worker = _prepared_worker(tmp_path)
    try:
        worker.interrupt()
        with pytest.raises(subprocess.TimeoutExpired):
            worker.proc.wait(timeout=1)  # alive: the old worker died of the signal within ~0.2 s
        worker.close()
        assert worker.proc.returncode == 0
    finally:
        worker.kill()


def test_a_stuck_worker_is_killed_with_its_threads_stacks_in_its_log(tmp_path):
    worker = _prepared_worker(tmp_path)
    try:
        worker.kill_stuck("stuck (a test)")
        assert worker.proc.wait(timeout=30) == -signal.SIGKILL
        assert worker.stuck == "stuck (a test)"
        log = worker.log_text()
        assert "Current thread" in log and "lockprof/worker.py" in log, log[-2000:]
    finally:
        worker.kill()


def test_a_worker_killed_in_a_single_engine_run_keeps_and_summarises_what_was_measured(tmp_path):
    path = write_scenario(tmp_path, "scenario = Scenario('killed_worker', [SCHEMA], [Query('q', 'SELECT 1')])\n")
    out = tmp_path / "run"
    proc = _start(["run", str(path), "--out", str(out), "--concurrency", "1,2,4", "--duration", "2", "--warmup", "0",
                   "--samplers", "off"])
    wait_for(lambda: list(out.glob("levels/*.parquet")) or proc.poll() is not None, timeout=WAIT_S, what="first level")
    assert proc.poll() is None, proc.communicate()
    [worker] = [p for p in descendants(proc.pid) if b"lockprof.worker" in Path(f"/proc/{p}/cmdline").read_bytes()]
    os.kill(worker, signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1, stderr
    assert f"run directory: {out}" in stdout and "Levels" in stdout
    manifest = store.read_manifest(out)
    assert manifest["status"] == "incomplete" and any("died" in f or "killed" in f for f in manifest["failures"])


def test_two_ctrl_c_in_the_first_level_keep_that_level(tmp_path):
    path = write_scenario(tmp_path, "scenario = Scenario('two_ctrl_c', [SCHEMA], [Query('q', 'SELECT count() FROM "
                                    "{table}')])\n")
    out = tmp_path / "run"
    proc = _start(["run", str(path), "--out", str(out), "--concurrency", "1", "--duration", "60", "--warmup", "0"])
    wait_for(lambda: len(descendants(proc.pid)) >= 2 or proc.poll() is not None,
             timeout=WAIT_S, what="the first level's py-spy")
    assert proc.poll() is None, proc.communicate()
    [worker] = [p for p in descendants(proc.pid) if b"lockprof.worker" in Path(f"/proc/{p}/cmdline").read_bytes()]
    busy_from = cpu_seconds(worker)
    wait_for(lambda: cpu_seconds(worker) > busy_from + 0.5, timeout=WAIT_S, what="the level's queries running")
    os.killpg(proc.pid, signal.SIGINT)
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    levels = store.read_table(out, "levels")
    assert len(levels) == 1 and levels["interrupted"].all(), stderr
    assert store.read_manifest(out)["status"] == "incomplete"


def cpu_seconds(pid: int) -> float:
    """CPU time a process has used so far (user + system), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
