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
from postgres_support import postgres_url  # noqa: F401 - the fixture


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
    with SqliteProcessRegistry(":memory:") as reg:
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


# -- one implementation: maintenance, memory, and waiting outside rules/ -----------------------------


def _sound_registry(reg):
    from lashstore.model.process import ProcessScope

    reg.register_process(ProcessRegistration.new("p").with_extra_event_types(ProcessEventType("tick")))
    reg.append_event("p", ProcessEventAppendRequest(event_type="tick", payload={"n": 1}))
    reg.grant_handle(ProcessScope("s"), "p")
    reg.claim_process_lease("p", "me", 60_000)
    return reg


def test_verify_counts_every_row_of_a_sound_registry(harness):
    reg = _sound_registry(harness.make())
    # process, event, grant, lease, and the fencing counter
    assert reg.verify() == (5, [])
    before, after, done = reg.shrink()
    assert min(before, after) >= 0 and done is True
    assert reg.location == reg.path  # the file, or ":memory:"
    assert reg.verify() == (5, [])


def test_verify_names_damaged_rows_and_reads_refuse_them(db_dir):
    path = db_dir / "p.db"
    _sound_registry(SqliteProcessRegistry(path)).close()
    with sqlite3.connect(path) as c:
        c.execute("UPDATE process_events SET payload = x'c1'")
        c.execute("UPDATE process_leases SET fencing_token = 'abc'")
    with SqliteProcessRegistry(path) as reg:
        records, problems = reg.verify()
        assert records == 5
        found = {(p.what, p.key) for p in problems}
        assert ("process event payload", "p#1") in found and ("process lease", "p") in found
        assert all(p.location == str(path) for p in problems)
        with pytest.raises(CorruptRecord):
            reg.get_process_lease("p")
        with pytest.raises(CorruptRecord):
            reg.events_after("p", 0)


def test_memory_registry_is_sqlite_in_memory():
    from lashstore.backends.memory.processes import MemoryProcessRegistry

    with MemoryProcessRegistry() as reg:
        assert isinstance(reg, SqliteProcessRegistry)
        assert reg.location == ":memory:" and reg.durability_tier() == DurabilityTier.INLINE
        assert reg.verify() == (1, [])  # the fencing counter


def test_rules_decide_and_do_not_wait():
    import inspect

    from lashstore.engine import waits
    from lashstore.rules import process as rules

    for name in ("Notifier", "shared_notifier", "wait_for", "POLL_START_S", "POLL_CAP_S"):
        assert not hasattr(rules, name) and hasattr(waits, name)
    source = inspect.getsource(rules)
    assert "import time" not in source and "Condition" not in source


def test_verify_on_postgres(postgres_url):  # noqa: F811
    import psycopg

    from lashstore.backends.postgres.processes import PostgresProcessRegistry
    from lashstore.testing.postgres import fresh_schema

    schema = fresh_schema("pverify")
    with PostgresProcessRegistry(postgres_url, schema=schema) as reg:
        _sound_registry(reg)
        assert reg.location == f"postgresql:{schema}"
        assert reg.verify() == (5, [])
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f"UPDATE {schema}.process_events SET semantics = '\\xc1'::bytea")
        records, problems = reg.verify()
        assert records == 5 and [(p.what, p.key) for p in problems] == [("process event semantics", "p#1")]
