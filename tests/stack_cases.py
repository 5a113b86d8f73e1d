"""Stacks shaped like ClickHouse's with known answers (lock, mode, whether it is a lock wait), shared by the
stack classification and flame graph tests of both layers."""

from __future__ import annotations

import pandas as pd

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


def stack_frame(cases: dict[str, int], plain: dict[str, int] | None = None) -> pd.DataFrame:
    rows = [(";".join(CASES[name][0]), n) for name, n in cases.items()]
    rows += [(";".join(NOT_LOCKS[name]), n) for name, n in (plain or {}).items()]
    return pd.DataFrame([{"query_id": "q", "trace_type": "Real", "event": "", "stack": s, "samples": n,
                          "weight": float(n)} for s, n in rows])
