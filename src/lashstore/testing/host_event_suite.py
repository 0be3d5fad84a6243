"""Host-event conformance: checklist section D (D1-D5), spec §8.2 C-3/C-4, and lashstore's own
decisions (numeric ordering past trigger:10 (W-26), idempotency scoped by source (W-27), a
second cancel changes nothing (W-28), occurrence conflicts, bad input refused before writing).

Each scenario is a plain function taking a `HostEventHarness`:

    harness = HostEventHarness(
        name="mybackend",
        expected_tier=DurabilityTier.DURABLE,
        open_store=lambda options: MyHostEventStore(url, options=options),
        reopen_store=lambda store: MyHostEventStore(url, options=store.options),
    )
    for scenario in HOST_EVENT_SCENARIOS + HOST_EVENT_REOPEN_SCENARIOS:
        scenario(harness)
    harness.close()
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..clock import ManualClock
from ..errors import NotFound, ReplayConflict, ValidationError
from ..model.host_events import (
    HostEventOccurrenceRequest,
    TriggerSubscriptionDraft,
    TriggerSubscriptionFilter,
)
from ..model.session import DurabilityTier
from ..options import StoreOptions
from ..rules.host_events import deterministic_delivery_process_id, occurrence_id, source_key_for_subscription

__all__ = [
    "HostEventHarness",
    "memory_host_event_harness",
    "sqlite_host_event_harness",
    "HOST_EVENT_SCENARIOS",
    "HOST_EVENT_REOPEN_SCENARIOS",
]


@dataclasses.dataclass
class HostEventHarness:
    """open_store(options): a fresh, empty store. reopen_store(store): a second handle on the
    same storage, or None for a backend that does not survive its process."""

    name: str
    expected_tier: DurabilityTier
    open_store: Callable[[StoreOptions | None], Any]
    reopen_store: Callable[[Any], Any] | None = None
    _opened: list[Any] = dataclasses.field(default_factory=list, repr=False)

    @property
    def durable(self) -> bool:
        return self.reopen_store is not None

    def make(self, options: StoreOptions | None = None) -> Any:
        store = self.open_store(options)
        self._opened.append(store)
        return store

    def reopen(self, store: Any) -> Any:
        if self.reopen_store is None:
            return None
        other = self.reopen_store(store)
        self._opened.append(other)
        return other

    def close(self) -> None:
        opened, self._opened = self._opened, []
        for obj in reversed(opened):
            obj.close()


def memory_host_event_harness() -> HostEventHarness:
    from ..backends.memory.host_events import MemoryHostEventStore

    return HostEventHarness(
        name="memory",
        expected_tier=DurabilityTier.INLINE,
        open_store=lambda options: MemoryHostEventStore(options),
    )


def sqlite_host_event_harness(directory: str | Path) -> HostEventHarness:
    from ..backends.sqlite.host_events import SqliteHostEventStore

    root = Path(directory)
    counter = itertools.count(1)
    return HostEventHarness(
        name="sqlite",
        expected_tier=DurabilityTier.DURABLE,
        open_store=lambda options: SqliteHostEventStore(root / f"host-events-{next(counter)}.db", options),
        reopen_store=lambda store: SqliteHostEventStore(store.path, store.options),
    )


# -- fixtures of the checklist ---------------------------------------------------------------------

TYPE = "ui.button.pressed"
MODULE = "lashlang:v1:sha256:module"


def draft(session: str, key: str, name: str, source_type: str = TYPE) -> TriggerSubscriptionDraft:
    """The checklist's draft; its lashlang fields become the opaque target."""
    return TriggerSubscriptionDraft(
        session_id=session,
        name=name,
        source_type=source_type,
        source_key=key,
        source={},
        target={
            "event_ty": {"object": [{"name": "button", "ty": "str", "optional": False}]},
            "module_ref": MODULE,
            "required_surface_ref": "lashlang-surface:v1:sha256:surface",
            "process_ref": {"component": "process", "pos": 1},
            "process_name": name,
            "input_template": {"event": {"kind": "event"}},
        },
        target_identity=f"{MODULE}/process:1/{name}",
    )


def occ(key: str, idem: str, payload: Any = None, source_type: str = TYPE) -> HostEventOccurrenceRequest:
    return HostEventOccurrenceRequest(
        source_type=source_type,
        source_key=key,
        payload={"button": "Blue"} if payload is None else payload,
        idempotency_key=idem,
        source={},
    )


def K(store: Any) -> str:
    return store.source_key_for_subscription(TYPE, {})


# -- checklist section D ---------------------------------------------------------------------------


def d1_host_event_store_reports_declared_tier(h: HostEventHarness) -> None:
    assert h.make().durability_tier() == h.expected_tier


def d2_host_event_source_key_is_stable(h: HostEventHarness) -> None:
    s = h.make()
    a = s.source_key_for_subscription(TYPE, {"button": "Blue"})
    b = s.source_key_for_subscription(TYPE, {"button": "Blue"})
    assert a == b and a
    # The derivation of checklist §2 item 5, independent of key order.
    assert a == source_key_for_subscription(TYPE, {"button": "Blue"})
    assert a.startswith(f"source:{TYPE}:sha256:")
    assert s.source_key_for_subscription(TYPE, {"x": 1, "y": 2}) == s.source_key_for_subscription(TYPE, {"y": 2, "x": 1})
    assert s.source_key_for_subscription(TYPE, {"button": "Red"}) != a


def d3_host_event_store_registers_lists_and_cancels(h: HostEventHarness) -> None:
    s = h.make()
    k = K(s)
    f = s.register_subscription(draft("session-a", k, "first"))
    sec = s.register_subscription(draft("session-b", k, "second"))
    assert f.subscription_id and f.handle and f.handle != sec.handle
    assert f.enabled and f.created_at_ms == f.updated_at_ms
    a = s.list_subscriptions(TriggerSubscriptionFilter.for_session("session-a"))
    assert [x.handle for x in a] == [f.handle]
    both = s.list_subscriptions(TriggerSubscriptionFilter(source_type=TYPE, source_key=k, enabled=True))
    assert len(both) == 2
    assert s.cancel_subscription("session-b", f.handle) is False
    assert s.cancel_subscription("session-a", f.handle) is True
    after = s.list_subscriptions(TriggerSubscriptionFilter(session_id="session-a", handle=f.handle))
    assert len(after) == 1 and after[0].enabled is False
    assert s.cancel_subscription("session-a", f.handle) is False
    assert s.cancel_subscription("session-a", "trigger:999") is False


def d4_host_event_store_records_and_reserves_idempotently(h: HostEventHarness) -> None:
    s = h.make()
    k = K(s)
    sub = s.register_subscription(draft("session-a", k, "on_button"))
    o = s.record_occurrence(occ(k, "button-blue-1"))
    assert o.occurrence_id and o.source_type == TYPE and o.source_key == k
    assert o.payload == {"button": "Blue"} and o.idempotency_key == "button-blue-1"
    r = s.reserve_matching_deliveries(o.occurrence_id)
    assert len(r) == 1
    assert r[0].subscription.handle == sub.handle
    assert r[0].occurrence.occurrence_id == o.occurrence_id
    assert r[0].process_id == deterministic_delivery_process_id(o.occurrence_id, sub.subscription_id)
    assert s.reserve_matching_deliveries(o.occurrence_id) == []
    again = s.record_occurrence(occ(k, "button-blue-1"))
    assert again.occurrence_id == o.occurrence_id and again.occurred_at_ms == o.occurred_at_ms
    assert s.reserve_matching_deliveries(again.occurrence_id) == []
    assert s.cancel_subscription("session-a", sub.handle) is True
    o2 = s.record_occurrence(occ(k, "button-blue-2"))
    assert s.reserve_matching_deliveries(o2.occurrence_id) == []


def d5_host_event_store_survives_reopen(h: HostEventHarness) -> None:
    s = h.make()
    k = K(s)
    sub = s.register_subscription(draft("session-a", k, "on_button"))
    o = s.record_occurrence(occ(k, "button-blue-1"))
    assert len(s.reserve_matching_deliveries(o.occurrence_id)) == 1
    s2 = h.reopen(s)
    listed = s2.list_subscriptions(TriggerSubscriptionFilter.for_session("session-a"))
    assert [x.handle for x in listed] == [sub.handle]
    assert listed[0] == sub
    replay = s2.record_occurrence(occ(k, "button-blue-1"))
    assert replay.occurrence_id == o.occurrence_id and replay == o
    assert s2.reserve_matching_deliveries(replay.occurrence_id) == []
    n = s2.record_occurrence(occ(k, "button-blue-2"))
    r = s2.reserve_matching_deliveries(n.occurrence_id)
    assert len(r) == 1 and r[0].subscription.handle == sub.handle


# -- spec §8.2 ---------------------------------------------------------------------------------------


def c03_host_events_persist_subscriptions_and_reserve_idempotently_after_reopen(h: HostEventHarness) -> None:
    s = h.make()
    k = K(s)
    sub = s.register_subscription(draft("session-a", k, "on_button"))
    assert sub.handle == "trigger:1" and sub.subscription_id == "subscription:1"
    s.close()
    s2 = h.reopen(s)
    found = s2.list_subscriptions(TriggerSubscriptionFilter(source_type=TYPE, enabled=True))
    assert len(found) == 1 and found[0].source_key == k
    o = s2.record_occurrence(occ(k, "button-blue-1"))
    r = s2.reserve_matching_deliveries(o.occurrence_id)
    assert [x.subscription.handle for x in r] == [sub.handle]
    assert s2.record_occurrence(occ(k, "button-blue-1")).occurrence_id == o.occurrence_id
    assert s2.reserve_matching_deliveries(o.occurrence_id) == []


def c04_host_event_store_cancels_by_session_and_handle(h: HostEventHarness) -> None:
    s = h.make()
    k = K(s)
    first = s.register_subscription(draft("session-a", k, "first"))
    second = s.register_subscription(draft("session-b", k, "second"))
    assert s.cancel_subscription("session-b", first.handle) is False
    assert s.cancel_subscription("session-b", second.handle) is True
    o = s.record_occurrence(occ(k, "after-cancel"))
    r = s.reserve_matching_deliveries(o.occurrence_id)
    assert [x.subscription.subscription_id for x in r] == [first.subscription_id]


# -- lashstore's decisions -------------------------------------------------------------------------


def h01_first_handle_is_trigger_1_and_numbers_are_consecutive(h: HostEventHarness) -> None:
    s = h.make()
    k = K(s)
    subs = [s.register_subscription(draft("s", k, f"n{i}")) for i in range(3)]
    assert [x.handle for x in subs] == ["trigger:1", "trigger:2", "trigger:3"]
    assert [x.subscription_id for x in subs] == ["subscription:1", "subscription:2", "subscription:3"]
    assert [x.sequence for x in subs] == [1, 2, 3]


def h02_subscriptions_list_in_creation_order_past_trigger_10(h: HostEventHarness) -> None:
    """W-26: trigger:2 lists before trigger:10, in every listing and in reservations."""
    s = h.make()
    k = K(s)
    subs = [s.register_subscription(draft("s", k, f"n{i}")) for i in range(12)]
    want = [f"trigger:{n}" for n in range(1, 13)]
    assert [x.handle for x in s.list_subscriptions()] == want
    assert [x.handle for x in s.list_subscriptions(TriggerSubscriptionFilter.for_session("s"))] == want
    r = s.reserve_matching_deliveries(s.record_occurrence(occ(k, "e")).occurrence_id)
    assert [x.subscription.handle for x in r] == want
    assert [x.handle for x in s.list_deliveries()] == want
    assert subs[-1].handle == "trigger:12"


def h03_occurrence_key_reused_with_another_request_conflicts(h: HostEventHarness) -> None:
    s = h.make()
    k = K(s)
    o = s.record_occurrence(occ(k, "dup"))
    try:
        s.record_occurrence(occ(k, "dup", payload={"button": "Red"}))
    except ReplayConflict as e:
        assert "dup" in str(e)
    else:
        raise AssertionError("a reused idempotency key with another payload must conflict")
    try:
        s.record_occurrence(occ(k, "dup").with_source({"other": True}))
    except ReplayConflict:
        pass
    else:
        raise AssertionError("a reused idempotency key with another source must conflict")
    assert s.list_occurrences() == [o]


def h04_idempotency_key_is_scoped_by_source_type_and_key(h: HostEventHarness) -> None:
    """W-27: the same idempotency key from another source is another occurrence."""
    s = h.make()
    k = K(s)
    other_key = s.source_key_for_subscription(TYPE, {"panel": 2})
    a = s.record_occurrence(occ(k, "evt-1"))
    b = s.record_occurrence(occ(other_key, "evt-1", payload={"button": "Red"}))
    c = s.record_occurrence(occ(k, "evt-1", payload={"x": 1}, source_type="webhook.github"))
    assert len({a.occurrence_id, b.occurrence_id, c.occurrence_id}) == 3
    assert a.occurrence_id == occurrence_id(TYPE, k, "evt-1")
    assert c.occurrence_id == occurrence_id("webhook.github", k, "evt-1")
    assert [x.occurrence_id for x in s.list_occurrences()] == [a.occurrence_id, b.occurrence_id, c.occurrence_id]
    assert [x.occurrence_id for x in s.list_occurrences(source_key=other_key)] == [b.occurrence_id]
    assert [x.occurrence_id for x in s.list_occurrences(source_type="webhook.github")] == [c.occurrence_id]


def h05_second_cancel_changes_nothing(h: HostEventHarness) -> None:
    """W-28: cancelling a disabled subscription does not move updated_at."""
    clock = ManualClock(1_000)
    s = h.make(StoreOptions(clock=clock))
    sub = s.register_subscription(draft("s", K(s), "x"))
    assert sub.created_at_ms == sub.updated_at_ms == 1_000
    clock.advance(10)
    assert s.cancel_subscription("s", sub.handle) is True
    assert s.get_subscription("s", sub.handle).updated_at_ms == 1_010
    clock.advance(10)
    assert s.cancel_subscription("s", sub.handle) is False
    got = s.get_subscription("s", sub.handle)
    assert got.updated_at_ms == 1_010 and got.enabled is False and got.created_at_ms == 1_000


def h06_cancel_session_subscriptions_disables_only_that_session(h: HostEventHarness) -> None:
    s = h.make()
    k = K(s)
    a1 = s.register_subscription(draft("a", k, "1"))
    a2 = s.register_subscription(draft("a", k, "2"))
    b1 = s.register_subscription(draft("b", k, "3"))
    assert s.cancel_subscription("a", a2.handle) is True
    assert s.cancel_session_subscriptions("a") == 1
    assert s.cancel_session_subscriptions("a") == 0
    assert s.cancel_session_subscriptions("nobody") == 0
    assert [x.handle for x in s.list_subscriptions(TriggerSubscriptionFilter(enabled=False))] == [a1.handle, a2.handle]
    r = s.reserve_matching_deliveries(s.record_occurrence(occ(k, "e")).occurrence_id)
    assert [x.subscription.handle for x in r] == [b1.handle]


def h07_reservation_matches_exact_type_and_key_and_later_subscriptions(h: HostEventHarness) -> None:
    s = h.make()
    k = K(s)
    other = s.source_key_for_subscription(TYPE, {"panel": 2})
    exact = s.register_subscription(draft("s", k, "exact"))
    s.register_subscription(draft("s", other, "other key"))
    s.register_subscription(draft("s", k, "other type", source_type="ui.button.released"))
    o = s.record_occurrence(occ(k, "e1"))
    assert [x.subscription.handle for x in s.reserve_matching_deliveries(o.occurrence_id)] == [exact.handle]
    # Matching is evaluated when reserving: a subscription registered after the occurrence
    # receives it on the next reserve (the reference's behaviour), still exactly once.
    late = s.register_subscription(draft("s2", k, "late"))
    r = s.reserve_matching_deliveries(o.occurrence_id)
    assert [x.subscription.handle for x in r] == [late.handle]
    assert r[0].process_id == deterministic_delivery_process_id(o.occurrence_id, late.subscription_id)
    assert s.reserve_matching_deliveries(o.occurrence_id) == []


def h08_unknown_occurrence_is_not_found(h: HostEventHarness) -> None:
    s = h.make()
    try:
        s.reserve_matching_deliveries("host_event:nope")
    except NotFound as e:
        assert "host_event:nope" in str(e)
    else:
        raise AssertionError("reserving for an unknown occurrence must fail")
    assert s.get_occurrence("host_event:nope") is None


def _refused(fn: Callable[[], object]) -> None:
    try:
        fn()
    except ValidationError:
        return
    raise AssertionError("expected ValidationError")


def h09_bad_input_is_refused_before_writing(h: HostEventHarness) -> None:
    s = h.make()
    k = K(s)
    _refused(lambda: s.register_subscription(draft("", k, "x")))
    _refused(lambda: s.register_subscription(draft("s", " ", "x")))
    _refused(lambda: s.register_subscription(draft("s", k, "x", source_type="")))
    bad_target = draft("s", k, "x")
    bad_target.target = {"client": object()}
    _refused(lambda: s.register_subscription(bad_target))
    _refused(lambda: s.register_subscription({"session_id": "s"}))  # type: ignore[arg-type]
    _refused(lambda: s.record_occurrence(occ(k, "")))
    _refused(lambda: s.record_occurrence(occ("", "e")))
    _refused(lambda: s.record_occurrence(occ(k, "e", source_type=" ")))
    _refused(lambda: s.record_occurrence(occ(k, "e", payload={1: "int key"})))
    _refused(lambda: s.record_occurrence(occ(k, "e", payload=float("nan"))))
    _refused(lambda: s.list_subscriptions(TriggerSubscriptionFilter(enabled="yes")))  # type: ignore[arg-type]
    _refused(lambda: s.source_key_for_subscription("", {}))
    _refused(lambda: s.cancel_subscription("", "trigger:1"))
    try:
        s.record_occurrence(occ(k, "e", payload={"x": 1}).with_source({"y": {1, 2}}))
    except ValidationError as e:
        assert "source" in str(e)
    else:
        raise AssertionError("a set is not JSON-compatible")
    assert s.list_subscriptions() == [] and s.list_occurrences() == [] and s.list_deliveries() == []
    # A refused registration used no number: the first real one is still trigger:1.
    assert s.register_subscription(draft("s", k, "x")).handle == "trigger:1"


def h10_opaque_target_round_trips_and_filters_by_name_and_identity(h: HostEventHarness) -> None:
    s = h.make()
    k = K(s)
    d = draft("s", k, "on_blue")
    d.target = {"nested": [1, 2.5, None, True, "x"], "bytes": b"\x00\x01"}
    sub = s.register_subscription(d)
    s.register_subscription(draft("s", k, "on_red"))
    assert sub.target == d.target and sub.source == {} and sub.name == "on_blue"
    assert [x.handle for x in s.list_subscriptions(TriggerSubscriptionFilter(name="on_blue"))] == [sub.handle]
    ident = f"{MODULE}/process:1/on_red"
    got = s.list_subscriptions(TriggerSubscriptionFilter(target_identity=ident))
    assert [x.name for x in got] == ["on_red"]
    assert s.list_subscriptions(TriggerSubscriptionFilter(name="on_blue", target_identity=ident)) == []
    assert s.get_subscription("s", sub.handle) == sub
    assert s.get_subscription("other", sub.handle) is None


def h11_stored_payloads_are_copies(h: HostEventHarness) -> None:
    s = h.make()
    k = K(s)
    payload = {"button": "Blue", "tags": ["a"]}
    o = s.record_occurrence(occ(k, "e", payload=payload))
    payload["tags"].append("mutated")
    assert s.get_occurrence(o.occurrence_id).payload == {"button": "Blue", "tags": ["a"]}
    # The replay hash is of the request as first recorded: the original payload still replays.
    assert s.record_occurrence(occ(k, "e", payload={"button": "Blue", "tags": ["a"]})).occurrence_id == o.occurrence_id


def h12_lists_occurrences_and_deliveries(h: HostEventHarness) -> None:
    s = h.make()
    k = K(s)
    a = s.register_subscription(draft("a", k, "1"))
    b = s.register_subscription(draft("b", k, "2"))
    o1 = s.record_occurrence(occ(k, "e1"))
    o2 = s.record_occurrence(occ(k, "e2"))
    s.reserve_matching_deliveries(o1.occurrence_id)
    s.reserve_matching_deliveries(o2.occurrence_id)
    assert [x.occurrence_id for x in s.list_occurrences()] == [o1.occurrence_id, o2.occurrence_id]
    assert [x.occurrence_id for x in s.list_occurrences(limit=1)] == [o2.occurrence_id]
    assert s.list_occurrences(limit=0) == []
    all_d = s.list_deliveries()
    assert [(d.occurrence_id, d.handle) for d in all_d] == [
        (o1.occurrence_id, a.handle),
        (o1.occurrence_id, b.handle),
        (o2.occurrence_id, a.handle),
        (o2.occurrence_id, b.handle),
    ]
    assert all(d.process_id == deterministic_delivery_process_id(d.occurrence_id, d.subscription_id) for d in all_d)
    assert [d.handle for d in s.list_deliveries(session_id="b")] == [b.handle, b.handle]
    assert [d.occurrence_id for d in s.list_deliveries(occurrence_id=o2.occurrence_id)] == [o2.occurrence_id] * 2
    assert len(s.list_deliveries(subscription_id=a.subscription_id, occurrence_id=o1.occurrence_id)) == 1


# -- durable backends --------------------------------------------------------------------------------


def h13_subscription_counter_survives_reopen(h: HostEventHarness) -> None:
    s = h.make()
    k = K(s)
    s.register_subscription(draft("s", k, "1"))
    s.register_subscription(draft("s", k, "2"))
    s.close()
    s2 = h.reopen(s)
    assert s2.register_subscription(draft("s", k, "3")).handle == "trigger:3"
    assert [x.handle for x in s2.list_subscriptions()] == ["trigger:1", "trigger:2", "trigger:3"]


def h14_concurrent_handles_reserve_each_pair_once(h: HostEventHarness) -> None:
    """Several handles on one storage reserve the same occurrences at once: every
    (occurrence, subscription) pair is handed out exactly once in total."""
    s = h.make()
    k = K(s)
    subs = [s.register_subscription(draft(f"s{i}", k, str(i))) for i in range(3)]
    occs = [s.record_occurrence(occ(k, f"e{i}")).occurrence_id for i in range(10)]
    handles = [s] + [h.reopen(s) for _ in range(3)]
    got: list[tuple[str, str]] = []
    lock = threading.Lock()
    start = threading.Barrier(len(handles))
    errors: list[BaseException] = []

    def run(store: Any) -> None:
        try:
            start.wait(timeout=10)
            for o in occs:
                for r in store.reserve_matching_deliveries(o):
                    with lock:
                        got.append((r.occurrence.occurrence_id, r.subscription.subscription_id))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=run, args=(x,)) for x in handles]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert sorted(got) == sorted((o, x.subscription_id) for o in occs for x in subs)
    assert len(s.list_deliveries()) == len(occs) * len(subs)


HOST_EVENT_SCENARIOS: list[Callable[[HostEventHarness], None]] = [
    d1_host_event_store_reports_declared_tier,
    d2_host_event_source_key_is_stable,
    d3_host_event_store_registers_lists_and_cancels,
    d4_host_event_store_records_and_reserves_idempotently,
    c04_host_event_store_cancels_by_session_and_handle,
    h01_first_handle_is_trigger_1_and_numbers_are_consecutive,
    h02_subscriptions_list_in_creation_order_past_trigger_10,
    h03_occurrence_key_reused_with_another_request_conflicts,
    h04_idempotency_key_is_scoped_by_source_type_and_key,
    h05_second_cancel_changes_nothing,
    h06_cancel_session_subscriptions_disables_only_that_session,
    h07_reservation_matches_exact_type_and_key_and_later_subscriptions,
    h08_unknown_occurrence_is_not_found,
    h09_bad_input_is_refused_before_writing,
    h10_opaque_target_round_trips_and_filters_by_name_and_identity,
    h11_stored_payloads_are_copies,
    h12_lists_occurrences_and_deliveries,
]

HOST_EVENT_REOPEN_SCENARIOS: list[Callable[[HostEventHarness], None]] = [
    d5_host_event_store_survives_reopen,
    c03_host_events_persist_subscriptions_and_reserve_idempotently_after_reopen,
    h13_subscription_counter_survives_reopen,
    h14_concurrent_handles_reserve_each_pair_once,
]
