"""--cpus without an engine: parsing, the cores chosen, refusals, the sweep's labels and the manifest keys."""

from __future__ import annotations

import os

import pytest
from conftest import TINY, lockprof_cli

from lockprof import cpus, store
from lockprof.engines.registry import parse
from lockprof.errors import EngineError


def test_counts_are_parsed_whole_ones_as_int():
    assert cpus.parse_counts("1,2") == [1, 2]
    assert cpus.parse_counts(" 4 ") == [4]
    assert cpus.parse_counts("1.5,2") == [1.5, 2]
    assert isinstance(cpus.parse_counts("2.0")[0], int)


@pytest.mark.parametrize("text", ["0", "-1", "1,0", "x", "", ",", "nan", "inf", "1,1"])
def test_a_count_that_is_no_positive_number_is_refused_with_exit_3(text):
    with pytest.raises(EngineError) as caught:
        cpus.parse_counts(text)
    assert caught.value.exit_code == 3
    assert "--cpus" in str(caught.value)


def test_the_lowest_allowed_cores_are_chosen():
    assert cpus.pinning(1, [3, 5, 7]).cpu_ids == (3,)
    assert cpus.pinning(2, [3, 5, 7]).cpu_ids == (3, 5)
    assert cpus.pinning(3, [3, 5, 7]) == cpus.Pinning(3, (3, 5, 7))


def test_more_cores_than_allowed_are_refused_naming_the_allowed_set():
    with pytest.raises(EngineError, match=r"--cpus 3: lockprof may use only 2 core\(s\) here \(CPU ids 4,6\)"):
        cpus.pinning(3, [4, 6])


def test_a_fractional_count_is_refused_with_the_reason_where_no_cpu_quota_can_be_made():
    try:
        pin = cpus.pinning(1.5, [0, 1])
    except EngineError as exc:
        refusal = str(exc)
    else:
        pytest.skip(f"this machine lets lockprof create a cgroup with the CPU controller ({pin.cgroup})")
    assert "--cpus 1.5: fractional cores need a CPU quota (cgroup v2 cpu.max)" in refusal
    assert "give whole cores" in refusal


def test_a_fractional_count_is_refused_on_the_command_line_where_no_cpu_quota_can_be_made(tmp_path):
    try:
        cpus.pinning(0.5, [0])
    except EngineError:
        pass
    else:
        pytest.skip("this machine lets lockprof create a cgroup with the CPU controller")
    result = lockprof_cli("run", str(TINY), "--cpus", "0.5", "--out", str(tmp_path / "run"))
    assert result.returncode == 3, result.stderr
    assert "--cpus 0.5: fractional cores need a CPU quota" in result.stderr, result.stderr
    assert not (tmp_path / "run").exists()


def test_one_count_keeps_the_label_and_several_multiply_the_engines():
    allowed = cpus.allowed_cpus()
    one = cpus.pin_specs([parse("embedded")], [1])
    assert [s.label for s in one] == ["embedded"] and one[0].pin.cpu_ids == (allowed[0],)
    specs = [parse("embedded"), parse("embedded?max_threads=1")]
    swept = cpus.pin_specs(specs, [1, len(allowed)])
    assert [s.label for s in swept] == ["embedded@1cpu", f"embedded@{len(allowed)}cpu",
                                        "embedded+max_threads=1@1cpu", f"embedded+max_threads=1@{len(allowed)}cpu"]
    assert [s.pin.cpus for s in swept] == [1, len(allowed)] * 2
    assert cpus.pin_specs(specs, None) == specs


def test_sweep_labels_are_file_names_as_they_are():
    for count in (1, 2, 16, 1.5):
        name = cpus.label("26.9", count)
        assert store.file_name(name) == name


def test_the_manifest_keys_of_a_pinned_and_an_unpinned_engine():
    spec = cpus.pin_specs([parse("embedded")], [1])[0]
    assert cpus.record(spec) == {"cpus": 1, "pinned_cpu_ids": [cpus.allowed_cpus()[0]]}
    assert cpus.record(parse("embedded")) == {}


def test_a_server_lockprof_did_not_start_cannot_be_pinned():
    with pytest.raises(EngineError, match="server lockprof did not start"):
        cpus.pin_specs([parse("embedded"), parse("http://default@127.0.0.1:8123")], [1])


def test_cpus_allowed_lists_are_read_as_the_kernel_writes_them():
    assert cpus.expand_list("0-2,5,7-8\n") == [0, 1, 2, 5, 7, 8]
    assert cpus.expand_list("3") == [3]
    assert cpus.observed(os.getpid())["cpu_ids"] == cpus.allowed_cpus()
    assert cpus.observed(None) == {}


@pytest.mark.parametrize("value, message", [
    ("0", "a core count must be a positive number, got '0'"),
    ("-2", "a core count must be a positive number, got '-2'"),
    (str(len(os.sched_getaffinity(0)) + 1), "lockprof may use only"),
])
def test_the_command_refuses_a_bad_count_with_exit_3_before_any_engine_starts(tmp_path, value, message):
    result = lockprof_cli("run", str(TINY), f"--cpus={value}", "--out", str(tmp_path / "run"))
    assert result.returncode == 3, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_a_worker_that_cannot_take_its_cores_dies_saying_so():
    """The pinning happens in the child before exec; if it fails there the worker ends with the reason in its log,
    which the orchestrator reports as the worker's death (an engine error), not as a traceback."""
    from lockprof.protocol import ExitRequest
    from lockprof.workerproc import WorkerCrashed, WorkerProcess

    worker = WorkerProcess("pinned", None, cpus.Pinning(1, (4096,)))  # no such CPU
    with pytest.raises(WorkerCrashed, match="could not be held to its --cpus cores"):
        worker.request(ExitRequest())
    worker.close()
