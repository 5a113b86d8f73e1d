"""Lock classification of stacks shaped like ClickHouse's, with known answers; folded and speedscope exports."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from lockprof.samplers.trace_log import fold
from lockprof.stacks import classify, classify_frame, lock_summary, to_folded, to_speedscope, write_exports

QUERY = [
    "start_thread",
    "ThreadPoolImpl<std::__1::thread>::worker(std::__1::__list_iterator<std::__1::thread, void*>)",
    "DB::HTTPHandler::processQuery(DB::HTTPServerRequest&, DB::HTMLForm&, DB::HTTPServerResponse&)",
    "DB::executeQuery(DB::ReadBuffer&, DB::WriteBuffer&, bool, std::__1::shared_ptr<DB::Context>)",
    "DB::InterpreterSelectQueryAnalyzer::getQueryPlan()",
    "DB::ReadFromMergeTree::selectRangesToRead() const",
]
FUTEX = ["syscall"]

CASES = {
    # Before 25.11: the planner copies the parts vector under the exclusive std::mutex.
    "prefix_exclusive_std_mutex": (
        QUERY + ["DB::MergeTreeData::getDataPartsVectorForInternalUsage(...) const",
                 "DB::MergeTreeData::lockParts() const", "std::__1::mutex::lock()", "pthread_mutex_lock",
                 "__lll_lock_wait"],
        ("parts", "exclusive", True),
    ),
    # From 25.11: readers take the parts SharedMutex shared.
    "postfix_shared": (
        QUERY + ["DB::MergeTreeData::getDataPartsVectorForInternalUsage(...) const",
                 "DB::MergeTreeData::readLockParts() const",
                 "DB::DataPartsSharedLock::DataPartsSharedLock(DB::SharedMutex&)",
                 "std::__1::shared_lock<DB::SharedMutex>::shared_lock[abi:v15000](DB::SharedMutex&)",
                 "DB::SharedMutex::lock_shared()", "DB::futexWait(void*, unsigned int)"] + FUTEX,
        ("parts", "shared", True),
    ),
    "postfix_exclusive_writer": (
        ["DB::MergeTreeSink::finishDelayedChunk()", "DB::MergeTreeData::Transaction::commit(DB::DataPartsLock*)",
         "DB::MergeTreeData::lockParts()",
         "DB::DataPartsLock::DataPartsLock(DB::SharedMutex&, DB::MergeTreeData const*)",
         "std::__1::unique_lock<DB::SharedMutex>::unique_lock[abi:v15000](DB::SharedMutex&)",
         "DB::SharedMutex::lock()"] + FUTEX,
        ("parts", "exclusive", True),
    ),
    # A ProfileEvent sample: taken inside the counter increment in the lock's constructor, not waiting.
    "profile_event_shared_wait_counter": (
        QUERY + ["DB::MergeTreeData::readLockParts() const",
                 "DB::DataPartsSharedLock::DataPartsSharedLock(DB::SharedMutex&)",
                 "ProfileEvents::increment(unsigned long, unsigned long)",
                 "DB::TraceSender::send(DB::TraceType, StackTrace const&, DB::TraceSender::Extras)"],
        ("parts", "shared", False),
    ),
    "rwlock_read": (
        QUERY + ["DB::IStorage::lockForShare(String const&, std::__1::chrono::duration<long long, "
                 "std::__1::ratio<1l, 1000l>> const&)",
                 "DB::IStorage::tryLockTimed(std::__1::shared_ptr<DB::RWLockImpl> const&, DB::RWLockImpl::Type, "
                 "String const&, std::__1::chrono::duration<long long, std::__1::ratio<1l, 1000l>> const&) const",
                 "DB::RWLockImpl::getLock(DB::RWLockImpl::Type, String const&, std::__1::chrono::duration<long "
                 "long, std::__1::ratio<1l, 1000l>> const&, bool)",
                 "std::__1::condition_variable::wait(std::__1::unique_lock<std::__1::mutex>&)",
                 "pthread_cond_wait"],
        ("table_rwlock", "shared", True),
    ),
    "rwlock_write": (
        ["DB::InterpreterAlterQuery::execute()",
         "DB::IStorage::lockForAlter(std::__1::chrono::duration<long long, std::__1::ratio<1l, 1000l>> const&)",
         "DB::IStorage::tryLockTimed(...) const", "DB::RWLockImpl::getLock(DB::RWLockImpl::Type, ...)",
         "std::__1::condition_variable::wait(std::__1::unique_lock<std::__1::mutex>&)", "pthread_cond_wait"],
        ("table_rwlock", "exclusive", True),
    ),
    "context_shared": (
        QUERY + ["DB::Context::getSettingsCopy() const",
                 "DB::SharedMutexHelper<DB::ContextSharedMutex, DB::SharedMutex>::lock_shared()",
                 "DB::ContextSharedMutex::lockSharedImpl()",
                 "DB::SharedMutexHelper<DB::ContextSharedMutex, DB::SharedMutex>::lockSharedImpl()",
                 "DB::SharedMutex::lock_shared()"] + FUTEX,
        ("context", "shared", True),
    ),
    "context_exclusive": (
        QUERY + ["DB::Context::setSetting(std::__1::basic_string_view<char> const&, DB::Field const&)",
                 "DB::SharedMutexHelper<DB::ContextSharedMutex, DB::SharedMutex>::lock()",
                 "DB::ContextSharedMutex::lockImpl()",
                 "DB::SharedMutexHelper<DB::ContextSharedMutex, DB::SharedMutex>::lockImpl()",
                 "DB::SharedMutex::lock()"] + FUTEX,
        ("context", "exclusive", True),
    ),
    "global_thread_pool_schedule": (
        QUERY + ["DB::PipelineExecutor::spawnThreads()",
                 "void ThreadPoolImpl<std::__1::thread>::scheduleImpl<void>(std::__1::function<void ()>, "
                 "Priority, std::__1::optional<unsigned long>, bool)",
                 "std::__1::unique_lock<std::__1::mutex>::unique_lock[abi:v15000](std::__1::mutex&)",
                 "std::__1::mutex::lock()", "pthread_mutex_lock", "__lll_lock_wait"],
        ("global_thread_pool", "exclusive", True),
    ),
    "local_thread_pool_schedule": (
        QUERY + ["void ThreadPoolImpl<ThreadFromGlobalPoolImpl<false, true>>::scheduleImpl<void>(...)",
                 "std::__1::mutex::lock()", "pthread_mutex_lock", "__lll_lock_wait"],
        ("local_thread_pool", "exclusive", True),
    ),
    "unknown_mutex": (
        QUERY + ["DB::SomeCache::get(unsigned long)", "std::__1::mutex::lock()", "pthread_mutex_lock",
                 "__lll_lock_wait"],
        ("other_mutex", "exclusive", True),
    ),
}

NOT_LOCKS = {
    # An idle pool thread parked on its condition variable is waiting for work, not for a lock.
    "idle_pool_worker": ["start_thread", "ThreadPoolImpl<std::__1::thread>::worker(...)",
                         "std::__1::condition_variable::wait(std::__1::unique_lock<std::__1::mutex>&)",
                         "pthread_cond_wait", "__futex_abstimed_wait_common"],
    # Copying the parts vector while holding the lock is CPU work, not acquisition.
    "copying_parts": QUERY + ["DB::MergeTreeData::getDataPartsVectorForInternalUsage(...) const",
                              "std::__1::vector<std::__1::shared_ptr<DB::IMergeTreeDataPart const>>::push_back(...)"],
    "reading": QUERY + ["DB::MergeTreeRangeReader::read(unsigned long, DB::MarkRanges&)", "LZ4_decompress_fast"],
}


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
