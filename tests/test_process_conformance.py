"""Process-registry conformance (checklist B plus lashstore's own decisions), on every backend."""

from __future__ import annotations

import sqlite3

import pytest

from lashstore.backends.sqlite.processes import SqliteProcessRegistry
from lashstore.errors import CorruptRecord, UnsupportedSchema
from lashstore.model.process import ProcessEventAppendRequest, ProcessEventType, ProcessRegistration
from lashstore.model.session import DurabilityTier
from lashstore.testing.process_suite import (
    PROCESS_REOPEN_SCENARIOS,
    PROCESS_SCENARIOS,
    memory_process_harness,
    sqlite_process_harness,
)


@pytest.fixture(params=["memory", "sqlite"])
def harness(request, tmp_path):
    h = memory_process_harness() if request.param == "memory" else sqlite_process_harness(tmp_path)
    yield h
    h.close()


@pytest.fixture(params=["sqlite"])
def durable_harness(request, tmp_path):
    h = sqlite_process_harness(tmp_path)
    yield h
    h.close()


def _on_every_backend(scenario):
    def test(harness):
        scenario(harness)

    test.__name__ = f"test_{scenario.__name__}"
    test.__doc__ = scenario.__doc__
    return test


def _on_durable_backends(scenario):
    def test(durable_harness):
        scenario(durable_harness)

    test.__name__ = f"test_{scenario.__name__}"
    test.__doc__ = scenario.__doc__
    return test


for _s in PROCESS_SCENARIOS:
    globals()[f"test_{_s.__name__}"] = _on_every_backend(_s)
for _s in PROCESS_REOPEN_SCENARIOS:
    globals()[f"test_{_s.__name__}"] = _on_durable_backends(_s)


# -- SQLite only -----------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite"])
def db_dir(request, tmp_path):
    return tmp_path


def _registry_with_event(path):
    reg = SqliteProcessRegistry(path)
    reg.register_process(ProcessRegistration.new("p").with_extra_event_types(ProcessEventType("tick")))
    reg.append_event("p", ProcessEventAppendRequest(event_type="tick", payload={"n": 1}))
    return reg


def test_undecodable_rows_are_corrupt_not_missing(db_dir):
    for column, table in [("registration", "processes"), ("payload", "process_events"), ("semantics", "process_events")]:
        path = db_dir / f"{column}.db"
        _registry_with_event(path).close()
        with sqlite3.connect(path) as c:
            c.execute(f"UPDATE {table} SET {column} = x'c1'")  # 0xc1 is never valid msgpack
        reg = SqliteProcessRegistry(path)
        try:
            with pytest.raises(CorruptRecord):
                reg.get_process("p") if table == "processes" else reg.events_after("p", 0)
        finally:
            reg.close()


def test_registry_file_is_its_own_kind(db_dir):
    from lashstore.backends.sqlite.store import SqliteSessionStore

    path = db_dir / "p.db"
    SqliteProcessRegistry(path).close()
    with pytest.raises(UnsupportedSchema, match="process registry"):
        SqliteSessionStore(path)
    session_file = db_dir / "s.db"
    SqliteSessionStore(session_file).close()
    with pytest.raises(UnsupportedSchema, match="not a process registry"):
        SqliteProcessRegistry(session_file)


def test_in_memory_sqlite_registry_is_inline(db_dir):
    with SqliteProcessRegistry.memory() as reg:
        assert reg.durability_tier() == DurabilityTier.INLINE
        reg.register_process(ProcessRegistration.new("p"))
        assert reg.get_process("p") is not None


def test_predicates_live_in_columns_and_the_file_stays_consistent(db_dir):
    path = db_dir / "p.db"
    _registry_with_event(path).close()
    with sqlite3.connect(path) as c:
        assert c.execute("SELECT status, owner_session_id FROM processes").fetchone() == ("running", "root")
        assert c.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert c.execute("PRAGMA foreign_key_check").fetchall() == []
