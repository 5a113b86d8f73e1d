"""The lock catalog's classification of event names."""

from lockprof.locks import classify


def test_generic_names_get_a_mode_only_when_the_name_says_it():
    assert classify("FilesystemCachePriorityReadLockMicroseconds").mode == "shared"
    assert classify("FilesystemCachePriorityWriteLockMicroseconds").mode == "exclusive"
    assert classify("FilesystemCachePriorityReadLockMicroseconds").lock == "filesystem_cache_priority"
    assert classify("KeeperReadRequestQueueLockWaitMicroseconds").mode == "unknown"
    assert classify("BlobKillerThreadLockBlobsErrors") is None
