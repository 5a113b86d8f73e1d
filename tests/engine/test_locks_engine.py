"""The lock catalog, checked against the real engine's own event list."""

import pytest

from lockprof.locks import CATALOG_SQL, catalog


@pytest.fixture(scope="module")
def engine_catalog(engine):
    events = engine.admin.frame(CATALOG_SQL)
    return events, catalog(events).set_index("event")


@pytest.mark.parametrize(
    "event, lock, mode, role",
    [
        ("PartsLockWaitMicroseconds", "parts", "exclusive", "wait"),
        ("PartsLockHoldMicroseconds", "parts", "exclusive", "hold"),
        ("PartsLocks", "parts", "exclusive", "count"),
        ("SharedPartsLockWaitMicroseconds", "parts", "shared", "wait"),
        ("SharedPartsLockHoldMicroseconds", "parts", "shared", "hold"),
        ("SharedPartsLocks", "parts", "shared", "count"),
        ("RWLockReadersWaitMilliseconds", "table_rwlock", "shared", "wait"),
        ("RWLockWritersWaitMilliseconds", "table_rwlock", "exclusive", "wait"),
        ("ContextLockWaitMicroseconds", "context", "exclusive", "wait"),
        ("GlobalThreadPoolLockWaitMicroseconds", "global_thread_pool", "exclusive", "wait"),
        ("LocalThreadPoolLockWaitMicroseconds", "local_thread_pool", "exclusive", "wait"),
    ],
)
def test_engine_lock_events_are_classified(engine_catalog, event, lock, mode, role):
    _, cat = engine_catalog
    assert event in cat.index, f"{event} missing from the catalog built from the engine"
    row = cat.loc[event]
    assert (row["lock"], row["mode"], row["role"]) == (lock, mode, role)


def test_catalog_units_convert_to_microseconds(engine_catalog):
    _, cat = engine_catalog
    assert cat.loc["RWLockReadersWaitMilliseconds", "to_us"] == 1000.0
    assert cat.loc["PartsLockWaitMicroseconds", "to_us"] == 1.0


def test_catalog_holds_only_engine_events_and_no_lookalikes(engine_catalog):
    events, cat = engine_catalog
    assert set(cat.index) <= set(events["name"])
    for not_a_lock in ("Query", "SelectedParts", "CompressedReadBufferBlocks", "BackupLockFileReads"):
        assert not_a_lock not in cat.index
    # every catalog row carries the engine's own description
    assert (cat["description"].str.len() > 0).all()
