"""Nothing silent: the hostile cases of issue 31 that need no engine.

Each test is a case that used to give a wrong result with exit 0 (or a wrong code and no
message); the engine cases are in ``test_silent_engine.py``. The property-based tests throw
arbitrary labels, settings and option values at parsing and path building.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lockprof import store
from lockprof.analysis import load_run
from lockprof.engines.embedded import parse_spec
from lockprof.errors import EngineError


def cases(n: int) -> settings:
    """The same n cases every run (no example database), fast enough for the fast layer."""
    return settings(
        max_examples=n, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck)
    )


def labelled_run(path: Path, labels: list[str]) -> Path:
    """A run directory with one level of one query per engine label, its parts named as the worker names them."""
    store.RunDir(path, {"run_id": "r", "engines": [{"label": label} for label in labels]}).finish("complete")
    for seq, label in enumerate(labels):
        keys = {"engine": label, "schema": "s", "concurrency": 1, "repetition": 0}
        part = store.part_name(label, seq)
        store.write_part(
            path,
            "queries",
            part,
            pd.DataFrame([{**keys, "role": "query", "phase": "measure", "latency_ms": 1.0, "error": None}]),
        )
        store.write_part(path, "levels", part, pd.DataFrame([{**keys, "seq": seq, "queries": 1, "errors": 0}]))
    return path


# --- item 1: a label is user text, not a file name -------------------------------------------------


@pytest.mark.parametrize(
    "label",
    [
        "embedded+session_timezone=Europe/Berlin",
        "..",
        ".hidden",
        "a/../../b",
        "",
        "x" * 400,
        "c:\\tmp",
        "embedded#2",
        "tab\there",
        "é/ü",
    ],
)
def test_a_label_that_is_no_file_name_round_trips_through_the_run_directory(tmp_path, label):
    run = load_run(labelled_run(tmp_path / "run", ["embedded", label]))
    assert sorted(run.levels["engine"]) == sorted(["embedded", label])
    assert sorted(run.queries["engine"]) == sorted(["embedded", label])
    for table in ("queries", "levels"):  # every part lies directly in its table's folder, none hidden
        files = [p.relative_to(tmp_path / "run" / table) for p in (tmp_path / "run" / table).rglob("*")]
        assert all(len(f.parts) == 1 and not f.name.startswith(".") for f in files), files


@cases(500)
@given(st.text(min_size=0, max_size=300))
def test_file_names_are_safe_distinct_and_reversible(text):
    name = store.file_name(text)
    assert name and "/" not in name and "\\" not in name and "\0" not in name and not name.startswith(".")
    assert len(name.encode()) <= store.MAX_FILE_NAME
    if store.text_of(name) != text:  # only a name too long to keep is cut, and then ends in the text's hash
        assert name.endswith("~" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16])
    assert store.part_path(Path("/r"), "queries", store.part_name(text, 7)).parent == Path("/r/queries")


@cases(40)
@given(st.lists(st.text(min_size=0, max_size=40), min_size=1, max_size=4, unique=True))
def test_any_labels_round_trip_through_a_run_directory(tmp_path_factory, labels):
    path = labelled_run(tmp_path_factory.mktemp("run") / "run", labels)
    assert sorted(load_run(path).levels["engine"]) == sorted(labels)


def test_a_part_name_not_built_by_file_name_is_refused_not_written(tmp_path):
    for bad in ("a/b", ".a", "", "a\\b"):
        with pytest.raises(ValueError, match="file_name"):
            store.write_part(tmp_path, "queries", bad, pd.DataFrame({"x": [1]}))
    assert not os.listdir(tmp_path)


SETTING_NAME = st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_]{0,20}\Z")
SETTING_VALUE = st.text(alphabet=st.characters(blacklist_characters="&=", blacklist_categories=("Cs",)), max_size=30)


@cases(60)
@given(st.dictionaries(SETTING_NAME, SETTING_VALUE, max_size=4))
def test_an_embedded_spec_with_any_settings_parses_to_a_label_that_round_trips(tmp_path_factory, settings_):
    text = "embedded" + ("?" + "&".join(f"{k}={v}" for k, v in settings_.items()) if settings_ else "")
    spec = parse_spec(text)
    assert spec.options.get("settings", {}) == settings_
    path = labelled_run(tmp_path_factory.mktemp("run") / "run", [spec.label])
    assert load_run(path).levels["engine"].tolist() == [spec.label]


@cases(300)
@given(st.text(max_size=60))
def test_any_engine_spec_text_parses_or_is_refused_with_an_engine_error(text):
    from lockprof.engines.registry import parse

    try:
        spec = parse(text)
    except EngineError as exc:
        assert str(exc)
    else:
        assert spec.label and spec.public_spec is not None


# --- item 2: an unknown engine setting is refused, with the nearest known name ---------------------

KNOWN = ["max_threads", "max_block_size", "session_timezone", "max_untracked_memory", "insert_distributed_sync"]


def test_a_misspelled_setting_is_named_with_the_nearest_known_one():
    from lockprof.engines.sql import unknown_setting

    assert unknown_setting(["max_threads", "session_timezone"], KNOWN) is None
    assert unknown_setting(["max_threadz"], KNOWN) == "unknown setting 'max_threadz'; did you mean 'max_threads'?"
    assert "system.settings" in unknown_setting(["qqq"], KNOWN)


@cases(200)
@given(st.sampled_from(KNOWN), st.integers(0, 30), st.characters(min_codepoint=97, max_codepoint=122))
def test_any_name_not_known_is_refused_and_every_known_one_passes(known, at, letter):
    from lockprof.engines.sql import unknown_setting

    name = known[:at] + letter + known[at + 1 :]
    problem = unknown_setting([name], KNOWN)
    assert (problem is None) == (name in KNOWN)
    if problem:
        assert problem.startswith(f"unknown setting {name!r}")


# --- item 3: Scenario(settings=...) is checked, and what is recorded is what is sent ----------------


def scenario_with(**fields):
    from lockprof import Query, Scenario, Schema

    return Scenario(
        name="s",
        schemas=[Schema("a", "CREATE TABLE {table} (k UInt8) ENGINE = Memory")],
        queries=[Query("q", "SELECT 1")],
        **fields,
    )


@pytest.mark.parametrize(
    "settings_, message",
    [
        ({"log_comment": "x"}, "set by lockprof"),
        ({"max_execution_time": 5}, "set by lockprof"),
        ({"max threads": 1}, "not a setting name"),
        ({"max_threads": [1]}, "string or a finite number"),
        ({"max_threads": float("nan")}, "string or a finite number"),
        ([("a", 1)], "must be a dict"),
    ],
)
def test_scenario_settings_lockprof_could_not_honour_are_refused(settings_, message):
    from lockprof.errors import ScenarioError

    with pytest.raises(ScenarioError, match=message):
        scenario_with(settings=settings_)


@cases(200)
@given(
    st.dictionaries(
        st.text(max_size=12),
        st.one_of(st.text(max_size=8), st.integers(), st.floats(), st.booleans(), st.none()),
        max_size=3,
    )
)
def test_any_scenario_settings_are_accepted_or_refused_as_a_broken_scenario(settings_):
    from lockprof.errors import ScenarioError

    try:
        scenario = scenario_with(settings=settings_)
    except ScenarioError as exc:
        assert str(exc).startswith("settings:") or "; settings:" in str(exc)
    else:
        assert scenario.describe()["settings"] == settings_


# --- items 4 and 9: background failures and queries cut at the window's end are no query errors ----


def records(queries: int = 0, errors: int = 0, censored: int = 0, background: int = 0, bg_errors: int = 0):
    """Measured records of one level: ok queries, failed ones, ones cut at the window's end, background statements."""
    rows = []

    def add(role: str, error: str | None, cut: bool = False) -> None:
        rows.append(
            {
                "role": role,
                "phase": "measure",
                "start_s": float(len(rows)),
                "error": error,
                "cancelled": cut,
                "censored": cut,
            }
        )

    for i in range(queries):
        add("query", f"Code: 60. DB::Exception: Unknown table 't{i}'. (UNKNOWN_TABLE)" if i < errors else None)
    for _ in range(censored):
        add("query", "Code: 159. DB::Exception: Timeout exceeded: elapsed 2.06 seconds. (TIMEOUT_EXCEEDED)", True)
    for i in range(background):
        add("background", "Code: 252. DB::Exception: Too many parts (TOO_MANY_PARTS)" if i < bg_errors else None)
    return pd.DataFrame(rows)


def test_background_failures_are_counted_apart_and_never_fail_the_level():
    from lockprof.driver import level_counts, level_verdict

    level = records(queries=376, background=80, bg_errors=71)
    assert level_counts(level) == {
        "queries": 376,
        "errors": 0,
        "censored": 0,
        "background": 80,
        "background_errors": 71,
    }
    verdict = level_verdict(level, level, [], False)
    assert not verdict["failed"] and verdict["error_share"] == 0 and verdict["first_error"] is None
    assert "TOO_MANY_PARTS" in verdict["first_background_error"]


def test_queries_cut_at_the_windows_end_are_censored_not_failed():
    from lockprof.driver import level_counts, level_verdict

    level = records(queries=13, censored=2)
    assert level_counts(level)["queries"] == 13 and level_counts(level)["censored"] == 2
    assert level_counts(level)["errors"] == 0
    assert not level_verdict(level, level, [], False)["failed"]
    nothing = level_verdict(records(censored=4), records(censored=4), [], False)
    assert nothing["failed"] and "4 were still running when it closed" in nothing["first_error"]
    assert "--duration" in nothing["first_error"]


def test_real_query_errors_still_fail_the_level_and_each_kind_is_said_once():
    from lockprof.driver import level_verdict

    verdict = level_verdict(
        records(queries=20, errors=2, censored=3), records(queries=20, errors=2, censored=3), [], False
    )
    assert verdict["failed"] and verdict["error_share"] == pytest.approx(0.1)
    assert verdict["first_error"].startswith("Code: 60.") and len(verdict["error_kinds"]) == 1


def test_a_window_with_one_query_per_thread_says_it_measured_too_little():
    import dataclasses

    from lockprof.protocol import LevelReply
    from lockprof.run import Step, level_note

    reply = LevelReply(measure_start_s=0.0, measure_end_s=2.0, queries=2, errors=0, censored=2, background=0,
                       background_errors=0, interrupted=False, failed=False, error_share=0.0)
    note = level_note(reply, Step("e", "s", 2, 0))
    assert "too few to measure" in note and "--duration" in note and "2 still running when the window closed" in note
    assert "too few" not in level_note(dataclasses.replace(reply, queries=40), Step("e", "s", 2, 0))


# --- item 6: a run directory missing levels/ or queries/ is damaged, not empty ----------------------


@pytest.mark.parametrize("missing", ["levels", "queries"])
@pytest.mark.parametrize("command", ["summary", "report", "compare"])
def test_a_run_directory_missing_its_levels_or_queries_is_refused_with_exit_4(tmp_path, capsys, missing, command):
    import shutil

    from lockprof.cli import main

    path = labelled_run(tmp_path / "run", ["a", "b"])
    shutil.rmtree(path / missing)
    assert main([command, str(path)]) == 4
    err = capsys.readouterr().err
    assert err.count("lockprof: error:") == 1 and "damaged run directory" in err and f"{missing}/" in err
    assert not (path / "report.html").exists()


# --- items 7 and 16: user code's failures name the user's file and line ------------------------------


def test_a_failure_inside_the_standard_library_names_the_users_line_that_called_it():
    import random

    from lockprof.driver import user_code_error

    def params(rng):
        return {"k": rng.choice([])}  # IndexError raised inside random.py

    try:
        params(random.Random(1))
    except IndexError as exc:
        message = user_code_error("params of 'q'", exc)
    line = params.__code__.co_firstlineno + 1
    assert message.startswith(f"params of 'q' raised at test_silent.py:{line}: IndexError"), message


def test_sys_exit_in_user_code_is_named_like_any_other_failure():
    from lockprof.driver import user_code_error

    try:
        raise SystemExit(5)
    except SystemExit as exc:
        assert "SystemExit: 5" in user_code_error("params of 'q'", exc)


# --- item 8: a scenario that ends the process while loading is a broken scenario ---------------------


@pytest.mark.parametrize(
    "body, said",
    [
        ("import sys\nsys.exit(0)\n", "called sys.exit(0) while loading"),
        ("raise SystemExit(5)\n", "called sys.exit(5) while loading"),
        ("import os\nos._exit(3)\n", "ended the process (exit code 3)"),
        ("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n", "ended the process (signal 9)"),
    ],
)
def test_a_scenario_that_exits_while_loading_is_exit_2_with_one_message(tmp_path, capsys, body, said):
    from lockprof.cli import main

    (tmp_path / "exits.py").write_text(body)
    assert main(["run", str(tmp_path / "exits.py"), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("lockprof: error:") == 1 and said in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


# --- items 15 and 17: output files that cannot be written, and `compare RUN RUN` -----------------------


@pytest.fixture(scope="module")
def ab_run(tmp_path_factory) -> Path:
    from ab_synthetic import synthetic_run, write_run

    return write_run(synthetic_run(1.0), tmp_path_factory.mktemp("ab") / "run")


def unwritable(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "a_dir").mkdir(exist_ok=True)
    return {
        "is a directory": tmp_path / "a_dir",
        "is a file, not a directory": tmp_path / "a_file" / "out",
        "cannot write in /proc": Path("/proc/lockprof-out"),
    }


@pytest.mark.parametrize("command", [["report", "--out"], ["compare", "--csv"]])
def test_an_output_file_that_cannot_be_written_is_exit_1_before_any_work(ab_run, tmp_path, capsys, command):
    from lockprof.cli import main

    for said, target in unwritable(tmp_path).items():
        assert main([command[0], str(ab_run), command[1], str(target)]) == 1, said
        err = capsys.readouterr().err
        assert err.count("lockprof: error:") == 1 and said in err and "Traceback" not in err, err


def test_compare_writes_its_csv_whole(ab_run, tmp_path, capsys):
    from lockprof.cli import main

    assert main(["compare", str(ab_run), "--csv", str(tmp_path / "new" / "ab.csv")]) == 0
    assert len(pd.read_csv(tmp_path / "new" / "ab.csv")) > 0 and not list((tmp_path / "new").glob(".*"))


def test_compare_of_a_run_with_itself_says_what_to_do(ab_run, capsys):
    from lockprof.cli import main

    assert main(["compare", str(ab_run), str(ab_run) + "/"]) == 1
    err = capsys.readouterr().err
    assert "is given twice" in err and "lockprof compare RUN_A RUN_B" in err


def test_a_summary_to_a_full_disk_is_one_message(ab_run):
    import subprocess
    import sys

    manifest = store.read_manifest(ab_run)
    manifest.scenario = {**manifest.scenario, "name": "ab"}  # what summary's title needs
    store.write_manifest(ab_run / store.MANIFEST, manifest)

    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [sys.executable, "-m", "lockprof", "summary", str(ab_run)],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=300,
        )
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip() == "lockprof: error: cannot write the output: No space left on device"


@pytest.mark.parametrize(
    "option",
    [
        ["--duration", "0"],
        ["--duration", "-1"],
        ["--duration", "nan"],
        ["--interval", "0"],
        ["--interval", "inf"],
        ["--settle", "-1"],
    ],
)
def test_observe_refuses_a_nonsense_option_before_reaching_the_server(tmp_path, capsys, option):
    from lockprof.cli import main

    out = tmp_path / "run"
    assert main(["observe", "--engine", "http://u@127.0.0.1:9", *option, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("lockprof: error:") == 1 and option[0] in err and "Traceback" not in err
    assert not out.exists()


@cases(150)
@given(
    st.sampled_from(["--duration", "--warmup", "--repetitions", "--concurrency", "--rate", "--sample-interval"]),
    st.text(max_size=12),
)
def test_any_run_option_value_is_accepted_or_refused_as_a_bad_option(option, value):
    from lockprof.cli import build_parser
    from lockprof.errors import LockprofError

    try:
        args = build_parser().parse_args(["run", "x.py", f"{option}={value}"])
    except LockprofError as exc:
        assert exc.exit_code == 1
    else:
        parsed = vars(args)[{"--rate": "rates", "--sample-interval": "sample_interval"}.get(option, option[2:])]
        values = parsed if isinstance(parsed, list) else [parsed]
        assert all(v == v and abs(v) != float("inf") and v >= 0 for v in values)


# --- item 16: errors about user code name the user's file and line -----------------------------------


def test_a_scenario_with_bad_fields_is_named_at_the_line_that_built_it(tmp_path, capsys):
    from lockprof.cli import main

    (tmp_path / "bad.py").write_text(
        "from lockprof import Query, Scenario, Schema\n\nscenario = Scenario('bad', [], [Query('q', 'SELECT 1')])\n"
    )
    assert main(["run", str(tmp_path / "bad.py"), "--out", str(tmp_path / "run")]) == 2
    assert f"{tmp_path / 'bad.py'}:3: at least one schema is needed" in capsys.readouterr().err


# --- items 13 and 17: SIGTERM is an interruption (130), and what lockprof started ends with it ---------


def children_matching(pid: int, text: bytes) -> list[int]:
    """Processes below ``pid`` whose command line holds ``text``."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                if int(stat.read_text().rsplit(")", 1)[1].split()[1]) != parent:
                    continue
                child = int(stat.parent.name)
                todo.append(child)
                if text in (stat.parent / "cmdline").read_bytes():
                    found.append(child)
            except (OSError, ValueError, IndexError):
                continue
    return found


def wait_until(condition, timeout: float = 60.0):
    import time

    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"gave up waiting for {condition}"
        time.sleep(0.05)
    return value


def test_sigterm_while_the_scenario_loads_is_an_interruption_and_leaves_no_process(tmp_path):
    import signal
    import subprocess
    import sys

    (tmp_path / "slow.py").write_text("import time\ntime.sleep(600)\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "lockprof", "run", str(tmp_path / "slow.py"), "--out", str(tmp_path / "run")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    [loader] = wait_until(lambda: children_matching(proc.pid, b"load_scenario"))
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip() == "lockprof: interrupted"
    wait_until(lambda: not Path(f"/proc/{loader}").exists() or b") Z" in Path(f"/proc/{loader}/stat").read_bytes())
    assert not (tmp_path / "run").exists()


def test_an_interrupted_build_step_stops_its_child(tmp_path):
    """What `engines install` runs (pip) is stopped when lockprof is interrupted, not left to finish alone."""
    import signal
    import subprocess
    import sys

    step = (
        "import signal, sys; from lockprof.cli import _terminated; from lockprof.engines import managed; "
        "signal.signal(signal.SIGTERM, _terminated); "  # what the lockprof program installs
        "managed._run([sys.executable, '-c', 'import time; print(\"up\", flush=True); time.sleep(600)'], "
        "print, 'sleeping', echo=('up',))"
    )
    proc = subprocess.Popen([sys.executable, "-c", step], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    [child] = wait_until(lambda: children_matching(proc.pid, b"time.sleep(600)"))
    assert proc.stdout.readline().strip() == "up"
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    wait_until(lambda: not Path(f"/proc/{child}").exists() or b") Z" in Path(f"/proc/{child}/stat").read_bytes())


def test_a_killed_builders_half_built_environment_is_removed_by_the_next_build(tmp_path):
    from lockprof.engines import managed

    home = tmp_path / "engines"
    (home / ".26.1.building-999999-abcdef" / "lib").mkdir(parents=True)
    (home / ".26.3.building-999999-abcdef").mkdir()
    managed._remove_abandoned_builds(home, "26.1")
    assert [p.name for p in home.iterdir()] == [".26.3.building-999999-abcdef"]


def test_a_watched_temporary_directory_goes_with_its_process_even_on_kill_9(tmp_path):
    import signal
    import subprocess
    import sys

    victim = tmp_path / "lockprof-pyspy-x"
    code = (
        f"import os, signal, pathlib; from lockprof import reaper; p = pathlib.Path({str(victim)!r}); "
        "p.mkdir(); (p / 'f').write_text('x'); reaper.watch(p); print('ready', flush=True); "
        "os.kill(os.getpid(), signal.SIGKILL)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL and proc.stdout.strip() == "ready", proc.stderr
    wait_until(lambda: not victim.exists())


def test_the_reaper_ends_once_its_paths_are_released(tmp_path):
    from lockprof import reaper

    kept = tmp_path / "kept"
    kept.mkdir()
    reaper.watch(kept)
    [pid] = wait_until(lambda: children_matching(os.getpid(), b"watched = set()"))  # once it has started
    reaper.release(kept)
    assert not Path(f"/proc/{pid}").exists()  # ended and waited for
    assert kept.exists()  # released paths are its owner's business
