"""Lock classification of stacks shaped like ClickHouse's, with known answers; folded and speedscope exports."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from stack_cases import CASES, NOT_LOCKS

from lockprof.samplers.trace_log import fold
from lockprof.stacks import classify, classify_frame, lock_summary, to_folded, to_speedscope, write_exports


@pytest.mark.parametrize("name", sorted(CASES))
def test_lock_stacks_are_classified_by_lock_and_mode(name: str) -> None:
    frames, (lock, mode, waiting) = CASES[name]
    site = classify(frames)
    assert site is not None, name
    assert (site.lock, site.mode, site.waiting) == (lock, mode, waiting)


@pytest.mark.parametrize("name", sorted(NOT_LOCKS))
def test_stacks_outside_locking_code_have_no_lock(name: str) -> None:
    assert classify(NOT_LOCKS[name]) is None


def _frame() -> pd.DataFrame:
    rows = [
        ("q1", "Real", "", CASES["prefix_exclusive_std_mutex"][0], 6),
        ("q1", "Real", "", NOT_LOCKS["reading"], 2),
        ("q2", "Real", "", CASES["postfix_shared"][0], 1),
        ("q2", "Real", "", NOT_LOCKS["copying_parts"], 1),
        ("q2", "ProfileEvent", "SharedPartsLockWaitMicroseconds", CASES["profile_event_shared_wait_counter"][0], 40),
    ]
    return pd.DataFrame(
        [{"query_id": q, "trace_type": t, "event": e, "stack": ";".join(f), "samples": 1 if t == "ProfileEvent"
          else n, "weight": float(n)} for q, t, e, f, n in rows]
    )


def test_lock_summary_gives_each_lock_mode_its_share_of_samples() -> None:
    summary = lock_summary(_frame())
    real = summary[summary["trace_type"] == "Real"].set_index(["lock", "mode"])
    assert real.loc[("parts", "exclusive"), "share"] == pytest.approx(0.6)
    assert real.loc[("parts", "shared"), "share"] == pytest.approx(0.1)
    event = summary[summary["trace_type"] == "ProfileEvent"].iloc[0]
    assert (event["lock"], event["mode"], event["weight"]) == ("parts", "shared", 40.0)


def test_folded_text_is_root_first_and_heaviest_first() -> None:
    text = to_folded(_frame(), weight="weight")
    lines = text.splitlines()
    assert lines[0].startswith("start_thread;")
    assert lines[0].endswith(" 40")
    assert any(line.endswith("__lll_lock_wait 6") for line in lines)
    assert all(len(line.rsplit(" ", 1)) == 2 for line in lines)


def test_speedscope_file_has_one_sampled_profile_per_trace_type(tmp_path) -> None:
    doc = to_speedscope(_frame(), "tiny")
    assert [p["name"] for p in doc["profiles"]] == ["tiny ProfileEvent", "tiny Real"]
    real = doc["profiles"][1]
    assert real["type"] == "sampled" and sum(real["weights"]) == 10
    names = [f["name"] for f in doc["shared"]["frames"]]
    first = [names[i] for i in real["samples"][0]]
    assert first[0] == "start_thread" and first[-1] == "__lll_lock_wait"
    paths = write_exports(_frame(), tmp_path, "level")
    assert {p.name for p in paths} == {"level.folded", "level.speedscope.json"}
    assert json.loads((tmp_path / "level.speedscope.json").read_text())["exporter"] == "lockprof"


def test_trace_log_rows_fold_leaf_last_and_unsymbolized_frames_keep_their_address() -> None:
    raw = pd.DataFrame({
        "query_id": ["r-1", "r-1"], "trace_type": ["Real", "Real"], "event": ["", ""],
        "frames": [["main", "DB::MergeTreeData::lockParts() const", ""], ["main", "DB::f;g", "x"]],
        "addresses": [[1, 2, 255], [1, 3, 4]], "samples": [3, 2], "weight": [3, 2],
    })
    folded = fold(raw)
    assert set(folded["stack"]) == {"main;DB::MergeTreeData::lockParts() const;0xff", "main;DB::f:g;x"}
    classified = classify_frame(folded)
    assert classified["lock"].isna().all()  # lockParts with no mutex on top: not waiting on it
