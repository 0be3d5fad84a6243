"""Effect-replay conformance on every backend, plus SQLite-specific checks."""

from __future__ import annotations

import sqlite3

import pytest

from lashstore.backends.sqlite.effects import SqliteEffectStore
from lashstore.errors import CorruptRecord, StoreClosed, UnsupportedSchema
from lashstore.testing.effect_suite import (
    EFFECT_REOPEN_SCENARIOS,
    EFFECT_SCENARIOS,
    TURN,
    memory_effect_harness,
    sqlite_effect_harness,
)


@pytest.fixture(params=["memory", "sqlite"])
def harness(request, tmp_path):
    h = memory_effect_harness() if request.param == "memory" else sqlite_effect_harness(tmp_path)
    yield h
    h.close()


@pytest.fixture(params=["sqlite"])
def durable_harness(request, tmp_path):
    h = sqlite_effect_harness(tmp_path)
    yield h
    h.close()


def _on_every_backend(scenario):
    def test(harness):
        scenario(harness)

    test.__name__ = f"test_{scenario.__name__}"
    return test


def _on_durable_backends(scenario):
    def test(durable_harness):
        scenario(durable_harness)

    test.__name__ = f"test_{scenario.__name__}"
    return test


for _s in EFFECT_SCENARIOS:
    globals()[f"test_{_s.__name__}"] = _on_every_backend(_s)
for _s in EFFECT_REOPEN_SCENARIOS:
    globals()[f"test_{_s.__name__}"] = _on_durable_backends(_s)


# -- SQLite only -----------------------------------------------------------------------------------


def _corrupt(path, column: str, value) -> None:
    conn = sqlite3.connect(path)
    conn.execute(f"UPDATE effect_replay SET {column} = ?", (value,))
    conn.commit()
    conn.close()


def test_corrupt_outcome_is_corrupt_record_not_a_rerun(tmp_path):
    path = tmp_path / "e.db"
    with SqliteEffectStore(path) as s:
        s.execute(TURN, "k", {}, lambda: "fine")
    _corrupt(path, "outcome", b"\xc1")
    calls = []
    with SqliteEffectStore(path) as s:
        with pytest.raises(CorruptRecord):
            s.execute(TURN, "k", {}, lambda: calls.append(1))
        with pytest.raises(CorruptRecord):
            s.list_effects()
    assert calls == []


def test_corrupt_error_is_corrupt_record(tmp_path):
    from lashstore.errors import EffectError

    path = tmp_path / "e.db"

    def fail():
        raise EffectError("x", "y")

    with SqliteEffectStore(path) as s:
        with pytest.raises(EffectError):
            s.execute(TURN, "k", {}, fail)
    _corrupt(path, "error", b"not msgpack of an error")
    with SqliteEffectStore(path) as s:
        with pytest.raises(CorruptRecord):
            s.execute(TURN, "k", {}, fail)


def test_completed_row_without_outcome_is_corrupt(tmp_path):
    path = tmp_path / "e.db"
    with SqliteEffectStore(path) as s:
        s.execute(TURN, "k", {}, lambda: 1)
    _corrupt(path, "outcome", None)
    with SqliteEffectStore(path) as s:
        with pytest.raises(CorruptRecord):
            s.execute(TURN, "k", {}, lambda: 1)


def test_file_of_another_kind_is_refused(tmp_path):
    from lashstore.backends.sqlite.host_events import SqliteHostEventStore

    path = tmp_path / "host_events.db"
    SqliteHostEventStore(path).close()
    with pytest.raises(UnsupportedSchema):
        SqliteEffectStore(path)


def test_closed_store_refuses_calls_and_stops_its_heartbeat(tmp_path):
    s = SqliteEffectStore(tmp_path / "e.db", lease_ttl_ms=30)
    att = s.begin(TURN, "k", {})
    hb = s._heartbeat
    s.close()
    assert hb._thread is None or not hb._thread.is_alive()
    with pytest.raises(StoreClosed):
        s.execute(TURN, "k2", {}, lambda: 1)
    assert not att.replayed


def test_heartbeat_renews_the_lease_in_the_database(tmp_path):
    import time

    with SqliteEffectStore(tmp_path / "e.db", lease_ttl_ms=90) as s:
        att = s.begin(TURN, "k", {})
        first = s.get_effect(TURN, "k").lease_expires_at_ms
        time.sleep(0.25)
        later = s.get_effect(TURN, "k").lease_expires_at_ms
        assert later > first + 100, (first, later)
        assert s._heartbeat.renewals >= 2
        att.complete("x")
        assert s.get_effect(TURN, "k").lease_expires_at_ms == 0
