"""Host-event conformance on every backend, plus SQLite-specific checks (corrupt rows, schema kind)."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import msgspec
import pytest

from lashstore.backends.sqlite.host_events import SqliteHostEventStore
from lashstore.errors import CorruptRecord, StoreClosed, UnsupportedSchema
from lashstore.model.host_events import TriggerSubscriptionFilter
from lashstore.testing.host_event_suite import (
    HOST_EVENT_REOPEN_SCENARIOS,
    HOST_EVENT_SCENARIOS,
    draft,
    memory_host_event_harness,
    occ,
    sqlite_host_event_harness,
)
from postgres_support import postgres_url  # noqa: F401 - the fixture (requested by the postgres runs only)


@pytest.fixture(params=["memory", "sqlite"])
def harness(request, tmp_path):
    h = memory_host_event_harness() if request.param == "memory" else sqlite_host_event_harness(tmp_path)
    yield h
    h.close()


@pytest.fixture(params=["sqlite"])
def durable_harness(request, tmp_path):
    h = sqlite_host_event_harness(tmp_path)
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


for _s in HOST_EVENT_SCENARIOS:
    globals()[f"test_{_s.__name__}"] = _on_every_backend(_s)
for _s in HOST_EVENT_REOPEN_SCENARIOS:
    globals()[f"test_{_s.__name__}"] = _on_durable_backends(_s)


# -- SQLite only -----------------------------------------------------------------------------------


def test_corrupt_subscription_row_fails_the_listing_naming_it(tmp_path):
    path = tmp_path / "h.db"
    with SqliteHostEventStore(path) as s:
        k = s.source_key_for_subscription("t", {})
        s.register_subscription(draft("s", k, "ok", source_type="t"))
        bad = s.register_subscription(draft("s", k, "bad", source_type="t"))
    conn = sqlite3.connect(path)
    conn.execute("UPDATE host_event_subscriptions SET body = x'c1' WHERE subscription_id = ?", (bad.subscription_id,))
    conn.commit()
    conn.close()
    with SqliteHostEventStore(path) as s:
        with pytest.raises(CorruptRecord) as e:
            s.list_subscriptions()
        assert bad.subscription_id in str(e.value)
        # A listing that does not touch the damaged row still works.
        assert [x.name for x in s.list_subscriptions(TriggerSubscriptionFilter(name="ok"))] == ["ok"]
        # A reservation over it fails whole: nothing is reserved behind the caller's back.
        o = s.record_occurrence(occ(k, "e", source_type="t"))
        with pytest.raises(CorruptRecord):
            s.reserve_matching_deliveries(o.occurrence_id)
        assert s.list_deliveries() == []


def test_corrupt_occurrence_body_is_corrupt_record(tmp_path):
    path = tmp_path / "h.db"
    with SqliteHostEventStore(path) as s:
        o = s.record_occurrence(occ("k", "e"))
    conn = sqlite3.connect(path)
    conn.execute("UPDATE host_event_occurrences SET body = 'text, not msgpack'")
    conn.commit()
    conn.close()
    with SqliteHostEventStore(path) as s:
        with pytest.raises(CorruptRecord):
            s.get_occurrence(o.occurrence_id)
        with pytest.raises(CorruptRecord):
            s.record_occurrence(occ("k", "e"))


def test_file_of_another_kind_is_refused(tmp_path):
    from lashstore.backends.sqlite.effects import SqliteEffectStore

    path = tmp_path / "effects.db"
    SqliteEffectStore(path).close()
    with pytest.raises(UnsupportedSchema):
        SqliteHostEventStore(path)


def test_closed_store_refuses_calls(tmp_path):
    s = SqliteHostEventStore(tmp_path / "h.db")
    s.close()
    with pytest.raises(StoreClosed):
        s.list_subscriptions()


def test_memory_sqlite_is_inline(tmp_path):
    from lashstore.model.session import DurabilityTier

    with SqliteHostEventStore(":memory:") as s:
        assert s.durability_tier() is DurabilityTier.INLINE
        assert s.register_subscription(draft("s", "k", "x")).handle == "trigger:1"


# -- upkeep: prune, verify, shrink, location (every backend) ---------------------------------------


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def any_harness(request, tmp_path):
    if request.param == "postgres":
        from lashstore.testing.postgres import postgres_host_event_harness

        h = postgres_host_event_harness(request.getfixturevalue("postgres_url"))
    else:
        h = memory_host_event_harness() if request.param == "memory" else sqlite_host_event_harness(tmp_path)
    yield h
    h.close()


def test_prune_occurrences_deletes_old_ones_with_their_deliveries(any_harness):
    from lashstore.clock import ManualClock
    from lashstore.errors import ValidationError
    from lashstore.options import StoreOptions

    clock = ManualClock(1_000_000)
    s = any_harness.make(StoreOptions(clock=clock))
    k = s.source_key_for_subscription("t", {})
    subs = [s.register_subscription(draft(f"s{i}", k, str(i), source_type="t")) for i in range(2)]
    old = s.record_occurrence(occ(k, "old", source_type="t"))
    assert len(s.reserve_matching_deliveries(old.occurrence_id)) == 2
    clock.advance(1_000)
    new = s.record_occurrence(occ(k, "new", source_type="t"))
    assert len(s.reserve_matching_deliveries(new.occurrence_id)) == 2
    assert s.prune_occurrences(1_001) == (0, 0)
    assert s.prune_occurrences(500, dry_run=True) == (1, 2)
    assert len(s.list_occurrences()) == 2 and len(s.list_deliveries()) == 4
    assert s.prune_occurrences(500) == (1, 2)
    assert s.list_occurrences() == [new]
    assert {d.occurrence_id for d in s.list_deliveries()} == {new.occurrence_id}
    assert s.get_occurrence(old.occurrence_id) is None
    # A pruned key records again, as a new occurrence numbered past every earlier one, and its
    # deliveries are reserved again.
    again = s.record_occurrence(occ(k, "old", source_type="t"))
    assert again.occurrence_id == old.occurrence_id and again.sequence == 3
    r = s.reserve_matching_deliveries(again.occurrence_id)
    assert [x.subscription.handle for x in r] == [x.handle for x in subs]
    assert [d.sequence for d in s.list_deliveries(occurrence_id=again.occurrence_id)] == [5, 6]
    with pytest.raises(ValidationError):
        s.prune_occurrences(-1)


def test_verify_shrink_and_location(any_harness):
    s = any_harness.make()
    k = s.source_key_for_subscription("t", {})
    s.register_subscription(draft("s", k, "x", source_type="t"))
    o = s.record_occurrence(occ(k, "e", source_type="t"))
    s.reserve_matching_deliveries(o.occurrence_id)
    records, problems = s.verify()
    assert problems == [] and records == 3 + 3  # a row of each kind, and the three counters
    assert isinstance(s.location, str) and s.location
    before, after, done = s.shrink()
    assert before >= 0 and after >= 0 and done in (True, False)
    assert s.database is not None and s.options is not None and not s.closed


def test_verify_names_each_damaged_row_and_a_counter_behind_its_rows(tmp_path):
    path = tmp_path / "h.db"
    with SqliteHostEventStore(path) as s:
        k = s.source_key_for_subscription("t", {})
        bad = s.register_subscription(draft("s", k, "bad", source_type="t"))
        s.register_subscription(draft("s", k, "ok", source_type="t"))
        o = s.record_occurrence(occ(k, "e", source_type="t"))
        s.reserve_matching_deliveries(o.occurrence_id)
    conn = sqlite3.connect(path)
    conn.execute("UPDATE host_event_subscriptions SET body = x'c1' WHERE subscription_id = ?", (bad.subscription_id,))
    conn.execute("UPDATE host_event_occurrences SET occurred_at_ms = 'soon'")
    conn.execute("UPDATE host_event_counters SET value = 1 WHERE name = 'subscription'")
    conn.commit()
    conn.close()
    with SqliteHostEventStore(path) as s:
        records, problems = s.verify()
    found = {(p.what, p.key) for p in problems}
    assert ("trigger subscription", bad.subscription_id) in found
    assert ("host event occurrence", o.occurrence_id) in found
    assert ("host event counter", "subscription") in found
    assert all(p.location == str(path) for p in problems)
    # The integrity check of the file reports the mistyped column too.
    assert any(p.what == "host_event_occurrences" for p in problems)


# -- the schema migration from the previous release (SQLite) ----------------------------------------

RELEASE_0_1_0 = Path(__file__).resolve().parent / "fixtures" / "release_0_1_0"


def _previous_release_file(tmp_path) -> Path:
    path = tmp_path / "host_events.db"
    shutil.copy(RELEASE_0_1_0 / "sqlite" / "host_events.db", path)
    return path


def _sql(path, query, params=()):
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(query, params).fetchall()
        conn.commit()
        return rows
    finally:
        conn.close()


def _jsonable(records):
    return json.loads(json.dumps([msgspec.to_builtins(r) for r in records], sort_keys=True))


def test_a_version_1_file_migrates_and_reads_back_the_same(tmp_path):
    path = _previous_release_file(tmp_path)
    assert _sql(path, "PRAGMA user_version") == [(1,)]
    want = json.loads((RELEASE_0_1_0 / "expected.json").read_text())["host_events"]
    with SqliteHostEventStore(path) as s:
        assert _jsonable(s.list_subscriptions()) == want["subscriptions"]
        assert _jsonable(s.list_occurrences()) == want["occurrences"]
        assert _jsonable(s.list_deliveries()) == want["deliveries"]
        assert s.verify() == (3 + 1 + 2 + 3, [])
    assert _sql(path, "PRAGMA user_version") == [(2,)]
    assert dict(_sql(path, "SELECT name, value FROM host_event_counters")) == {
        "subscription": 3, "occurrence": 1, "delivery": 2}
    assert _sql(path, "SELECT name FROM sqlite_master WHERE name = 'host_event_subscription_seq'") == []
    with SqliteHostEventStore(path) as s:
        # Numbers go on from where version 1 left off.
        k = want["subscriptions"][0]["source_key"]
        assert s.register_subscription(draft("beta", k, "s3", source_type="ui.button")).handle == "trigger:4"
        o = s.record_occurrence(occ(k, "press-2", source_type="ui.button"))
        assert o.sequence == 2
        r = s.reserve_matching_deliveries(o.occurrence_id)
        assert [x.subscription.handle for x in r] == ["trigger:1", "trigger:3", "trigger:4"]
        assert [d.sequence for d in s.list_deliveries(occurrence_id=o.occurrence_id)] == [3, 4, 5]


def test_migration_never_reuses_a_number_of_a_removed_row(tmp_path):
    """Version 1 kept its high-water marks in sqlite_sequence: the newest subscription, occurrence
    and delivery removed before the migration still never get their numbers again."""
    path = _previous_release_file(tmp_path)
    _sql(path, "DELETE FROM host_event_deliveries")
    _sql(path, "DELETE FROM host_event_occurrences")
    _sql(path, "DELETE FROM host_event_subscriptions WHERE seq = 3")
    with SqliteHostEventStore(path) as s:
        assert s.register_subscription(draft("beta", "k", "x")).handle == "trigger:4"
        assert s.record_occurrence(occ("k", "e")).sequence == 2


def test_migration_counts_from_the_rows_where_sqlite_sequence_lags(tmp_path):
    path = _previous_release_file(tmp_path)
    _sql(path, "DELETE FROM sqlite_sequence")
    with SqliteHostEventStore(path) as s:
        assert s.register_subscription(draft("beta", "k", "x")).handle == "trigger:4"
        assert s.record_occurrence(occ("k", "e")).sequence == 2


def test_a_new_file_starts_its_counters_at_zero(tmp_path):
    path = tmp_path / "h.db"
    SqliteHostEventStore(path).close()
    assert _sql(path, "PRAGMA user_version") == [(2,)]
    assert dict(_sql(path, "SELECT name, value FROM host_event_counters")) == {
        "subscription": 0, "occurrence": 0, "delivery": 0}
