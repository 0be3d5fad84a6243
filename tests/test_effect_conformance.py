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

from postgres_support import postgres_url  # noqa: F401 - the fixture of the [postgres] cases


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


# -- registry maintenance, on every backend ----------------------------------------------------------

HOUR = 3_600_000


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def any_harness(request, tmp_path):
    if request.param == "memory":
        h = memory_effect_harness()
    elif request.param == "sqlite":
        h = sqlite_effect_harness(tmp_path)
    else:
        from lashstore.testing.postgres import postgres_effect_harness

        h = postgres_effect_harness(request.getfixturevalue("postgres_url"))
    yield h
    h.close()


def test_the_store_meets_the_contract(any_harness):
    from lashstore.contracts import EffectStore

    s = any_harness.make()
    assert isinstance(s, EffectStore)
    assert isinstance(s.location, str) and s.location
    assert s.database is not None and s.options is not None and not s.closed


def test_prune_effects_removes_old_finished_records_only(any_harness):
    from lashstore.clock import ManualClock
    from lashstore.errors import EffectError, ValidationError
    from lashstore.options import StoreOptions

    clock = ManualClock()
    s = any_harness.make(StoreOptions(clock=clock), heartbeat=False)

    def fail():
        raise EffectError("gone", "for good")

    s.execute(TURN, "old", {}, lambda: 1)
    with pytest.raises(EffectError):
        s.execute(TURN, "old-failed", {}, fail)
    running = s.begin(TURN, "running", {})
    clock.advance(2 * HOUR)
    s.execute(TURN, "new", {}, lambda: 2)
    with pytest.raises(ValidationError):
        s.prune_effects(-1)
    assert s.prune_effects(HOUR, dry_run=True) == 2
    assert len(s.list_effects()) == 4
    assert s.prune_effects(HOUR) == 2
    assert [r.replay_key for r in s.list_effects()] == ["running", "new"]
    assert s.prune_effects(HOUR) == 0
    assert s.prune_effects(0) == 1  # "new": the in-progress record is never pruned
    running.complete(3)
    assert s.execute(TURN, "old", {}, lambda: "ran again") == "ran again"


def test_verify_decodes_every_record(any_harness):
    s = any_harness.make()
    for i in range(3):
        s.execute(TURN, f"k{i}", {"i": i}, lambda i=i: {"n": i})
    s.begin(TURN, "open", {})
    records, problems = s.verify()
    assert (records, problems) == (4, [])
    before, after, done = s.shrink()
    assert before >= 0 and after >= 0 and isinstance(done, bool)


def test_closed_store_refuses_maintenance(any_harness):
    s = any_harness.make()
    s.close()
    for call in (lambda: s.prune_effects(0), s.verify, lambda: s.get_effect(TURN, "k"), s.list_effects):
        with pytest.raises(StoreClosed):
            call()
    assert s.closed


# -- registry maintenance, SQLite ---------------------------------------------------------------------


def test_verify_names_each_damaged_record_and_changes_nothing(tmp_path):
    from lashstore.options import StoreOptions

    path = tmp_path / "effects.db"
    with SqliteEffectStore(path) as s:
        for key in ("a", "b", "c"):
            s.execute(TURN, key, {}, lambda: key)
    conn = sqlite3.connect(path)
    conn.execute("UPDATE effect_replay SET outcome = x'c1' WHERE replay_key = 'a'")
    conn.execute("UPDATE effect_replay SET lease_expires_at_ms = 'soon' WHERE replay_key = 'b'")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with SqliteEffectStore(path, StoreOptions(readonly=True), heartbeat=False) as s:
        assert s.location == str(path)
        records, problems = s.verify()
        with pytest.raises(CorruptRecord):
            s.get_effect(TURN, "b")  # a value of the wrong type is damage, never a raw TypeError
    assert records == 3
    # The text in an integer column is found twice: by the file's type check and by decoding.
    assert sorted(p.what for p in problems) == ["effect", "effect outcome", "effect_replay"]
    assert {p.location for p in problems} == {str(path)}
    assert sum("lease_expires_at_ms" in p.detail for p in problems) == 2
    assert path.read_bytes() == before


def test_shrink_gives_space_back(tmp_path):
    path = tmp_path / "effects.db"
    with SqliteEffectStore(path) as s:
        for i in range(50):
            s.execute(TURN, f"k{i}", {}, lambda: "x" * 5000)
        s.delete_scope(TURN)
        before, after, checkpointed = s.shrink()
        assert after < before and checkpointed
        assert s.list_effects() == []
