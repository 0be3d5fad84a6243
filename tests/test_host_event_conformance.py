"""Host-event conformance on every backend, plus SQLite-specific checks (corrupt rows, schema kind)."""

from __future__ import annotations

import sqlite3

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

    with SqliteHostEventStore.memory() as s:
        assert s.durability_tier() is DurabilityTier.INLINE
        assert s.register_subscription(draft("s", "k", "x")).handle == "trigger:1"
