"""Host events, written once: trigger subscriptions, idempotent occurrences, exactly-once delivery
reservations, and the registry's upkeep (prune, verify, shrink), over a `Db`.

Every mutation is one write transaction. Recording an occurrence locks its id first (the row may
not exist yet), so the idempotency lookup and the insert cannot interleave with another
recording; reserving deliveries locks the occurrence row, so each (occurrence, subscription)
pair is decided by exactly one transaction. Where the write transaction holds the whole database
(SQLite) those locks are no-ops. Inputs are checked and encoded before the transaction; decisions
are `rules.host_events`; statements are `backends.sql.host_events`.
"""

from __future__ import annotations

from typing import Any

from ..backends.sql import host_events as sql
from ..errors import NotFound
from ..model.host_events import (
    HostEventOccurrenceRecord,
    HostEventOccurrenceRequest,
    TriggerDelivery,
    TriggerDeliveryReservation,
    TriggerSubscriptionDraft,
    TriggerSubscriptionFilter,
    TriggerSubscriptionRecord,
)
from ..model.maintenance import RegistryDump
from ..rules import host_events as rules
from ..rules import validate as v
from .base import DbStore
from .maintenance import Checker
from .registry import RegistryMethods
from .tx import Tx

__all__ = ["HostEventEngine"]


class HostEventEngine(DbStore, RegistryMethods):
    """A host-event store over a database (`engine.tx.Db`). Thread-safe: every operation is one
    transaction of the database object.

    tier: the durability the backend gives. owns_db: close the database with the store.
    """

    _what = "host-event store"

    # -- source keys ---------------------------------------------------------------------------
    def source_key_for_subscription(self, source_type: str, source: Any) -> str:
        return rules.source_key_for_subscription(source_type, source)

    def empty_source_key(self, source_type: str) -> str:
        return rules.empty_source_key(source_type)

    # -- subscriptions -------------------------------------------------------------------------
    def register_subscription(self, draft: TriggerSubscriptionDraft) -> TriggerSubscriptionRecord:
        """A new, enabled subscription `trigger:{n}` / `subscription:{n}`; n never repeats."""
        rules.check_draft(draft)
        body = rules.encode_subscription_body(draft)

        def tx(t: Tx) -> TriggerSubscriptionRecord:
            return sql.insert_subscription(t, sql.take_numbers(t, "subscription"), draft, body, t.now())

        return self._write(tx, "register trigger subscription")

    def list_subscriptions(self, filter: TriggerSubscriptionFilter | None = None) -> list[TriggerSubscriptionRecord]:
        """Subscriptions matching every set field of `filter`, in creation order."""
        flt = rules.check_filter(filter)
        conds = [(n, bool(x) if n == "enabled" else x) for n, x in rules.filter_columns(flt)]
        return self._read(lambda t: sql.subscriptions(t, conds), "list trigger subscriptions")

    def get_subscription(self, session_id: str, handle: str) -> TriggerSubscriptionRecord | None:
        v.check_id(session_id, "session_id")
        v.check_id(handle, "handle")
        found = self._read(lambda t: sql.subscriptions(t, [("session_id", session_id), ("handle", handle)]),
                           "get trigger subscription")
        return found[0] if found else None

    def cancel_subscription(self, session_id: str, handle: str) -> bool:
        """Disable the session's subscription `handle`; returns whether it was enabled before.

        Scoped by session: another session's handle gives False. A disabled row stays listable,
        and cancelling it again changes nothing (not even updated_at)."""
        v.check_id(session_id, "session_id")
        v.check_id(handle, "handle")

        def tx(t: Tx) -> bool:
            enabled = sql.subscription_enabled(t, session_id, handle)
            d = rules.cancel_decision(None if enabled is None else bool(enabled))
            if d.write:
                sql.disable(t, session_id, t.now(), handle)
            return d.previous

        return self._write(tx, "cancel trigger subscription")

    def cancel_session_subscriptions(self, session_id: str) -> int:
        """Disable every enabled subscription of the session; returns how many were enabled."""
        v.check_id(session_id, "session_id")
        return self._write(lambda t: sql.disable(t, session_id, t.now()), "cancel session trigger subscriptions")

    # -- occurrences ---------------------------------------------------------------------------
    def record_occurrence(self, request: HostEventOccurrenceRequest) -> HostEventOccurrenceRecord:
        """Record an event once per (source_type, source_key, idempotency_key).

        Recording the same request again returns the stored record (with its original
        occurred_at); the same key with another payload or source raises ReplayConflict."""
        rules.check_request(request)
        occ_id = rules.occurrence_id(request.source_type, request.source_key, request.idempotency_key)
        req_hash = rules.request_hash(request)
        body = rules.encode_occurrence_body(request)

        def tx(t: Tx) -> HostEventOccurrenceRecord:
            t.lock("occurrence", occ_id)
            found = sql.load_occurrence(t, occ_id)
            if not rules.decide_occurrence(None if found is None else found[1], req_hash, request):
                return found[0]  # type: ignore[index]
            n = sql.take_numbers(t, "occurrence")
            now = t.now()
            sql.insert_occurrence(t, n, occ_id, request, req_hash, body, now)
            return rules.occurrence_record(
                sequence=n, occurrence_id=occ_id, source_type=request.source_type, source_key=request.source_key,
                idempotency_key=request.idempotency_key, occurred_at_ms=now, body=body,
            )

        return self._write(tx, "record host event occurrence")

    def get_occurrence(self, occurrence_id: str) -> HostEventOccurrenceRecord | None:
        v.check_id(occurrence_id, "occurrence_id")
        found = self._read(lambda t: sql.load_occurrence(t, occurrence_id), "get host event occurrence")
        return None if found is None else found[0]

    def list_occurrences(
        self, *, source_type: str | None = None, source_key: str | None = None, limit: int | None = None
    ) -> list[HostEventOccurrenceRecord]:
        """Occurrences in the order they were first recorded (optionally only the newest `limit`)."""
        v.check_optional_id(source_type, "source_type")
        v.check_optional_id(source_key, "source_key")
        v.check_nonneg_int(limit, "limit", optional=True)
        conds = [(n, x) for n, x in (("source_type", source_type), ("source_key", source_key)) if x is not None]
        return self._read(lambda t: sql.occurrences(t, conds, limit), "list host event occurrences")

    # -- deliveries ----------------------------------------------------------------------------
    def reserve_matching_deliveries(self, occurrence_id: str) -> list[TriggerDeliveryReservation]:
        """Reserve every not-yet-reserved (occurrence, enabled matching subscription) pair.

        A subscription matches when it is enabled now and has the occurrence's exact source type
        and source key. Each pair is reserved once across calls, handles and processes; the result
        holds only the pairs this call reserved, in subscription creation order. Every matching
        subscription is decoded before anything is written: a damaged one fails the whole call."""
        v.check_id(occurrence_id, "occurrence_id")

        def tx(t: Tx) -> list[TriggerDeliveryReservation]:
            found = sql.load_occurrence(t, occurrence_id, lock=True)
            if found is None:
                raise NotFound(f"unknown host event occurrence {occurrence_id!r}; record it first")
            occ = found[0]
            subs = sql.subscriptions(t, [("source_type", occ.source_type), ("source_key", occ.source_key),
                                         ("enabled", True)])
            if not subs:
                return []
            done = sql.reserved_subscription_ids(t, occurrence_id)
            fresh = [s for s in subs if s.subscription_id not in done]
            if not fresh:
                return []
            first = sql.take_numbers(t, "delivery", len(fresh))
            now = t.now()
            pids = [rules.delivery_process_id(occurrence_id, s.subscription_id) for s in fresh]
            sql.insert_deliveries(t, [(first + i, occurrence_id, s.subscription_id, pid, now)
                                      for i, (s, pid) in enumerate(zip(fresh, pids))])
            return [TriggerDeliveryReservation(occurrence=occ, subscription=s, process_id=pid)
                    for s, pid in zip(fresh, pids)]

        return self._write(tx, "reserve host event deliveries")

    def list_deliveries(
        self,
        *,
        occurrence_id: str | None = None,
        subscription_id: str | None = None,
        session_id: str | None = None,
    ) -> list[TriggerDelivery]:
        """Reserved deliveries in reservation order, optionally narrowed (AND)."""
        v.check_optional_id(occurrence_id, "occurrence_id")
        v.check_optional_id(subscription_id, "subscription_id")
        v.check_optional_id(session_id, "session_id")
        conds = [(n, x) for n, x in (("d.occurrence_id", occurrence_id), ("d.subscription_id", subscription_id),
                                     ("s.session_id", session_id)) if x is not None]
        return self._read(lambda t: sql.deliveries(t, conds), "list host event deliveries")

    # -- upkeep --------------------------------------------------------------------------------
    def prune_occurrences(self, older_than_ms: int, *, dry_run: bool = False) -> tuple[int, int]:
        """Delete occurrences recorded at least `older_than_ms` ago, with their delivery
        reservations. Returns (occurrences, deliveries). A pruned occurrence's idempotency key can
        be recorded again (as a new occurrence). `dry_run` counts, in one snapshot, what the real
        run would delete."""
        v.check_nonneg_int(older_than_ms, "older_than_ms")
        return (self._read if dry_run else self._write)(
            lambda t: sql.prune_occurrences(t, t.now() - older_than_ms, delete=not dry_run),
            "prune host event occurrences",
        )

    # -- maintenance (verify, shrink, dump and load: engine.registry) ---------------------------
    _spec = sql.DUMP

    def _check_rows(self, t: Tx, chk: Checker) -> None:
        """Every subscription, occurrence and delivery decoded the way the store decodes it, and
        every counter ahead of the numbers its rows use."""
        for r in sql.subscription_rows(t):
            chk.run("trigger subscription", r[1], sql.subscription, r)
        for r in sql.occurrence_rows(t):
            chk.run("host event occurrence", r[1], sql.occurrence, r)
        for r in sql.delivery_rows(t):
            chk.run("host event delivery", f"{r[1]}/{r[2]}", sql.delivery, r)
        for name, value, top in sql.counter_marks(t):
            chk.records += 1
            if value is None:
                chk.add("host event counter", name, "its row is missing")
            elif type(value) is not int:
                chk.add("host event counter", name, f"it holds {value!r}, expected an integer")
            elif value < top:
                chk.add("host event counter", name,
                        f"it stands at {value} but its rows use numbers up to {top}: a new one would repeat")

    def _counters(self, t: Tx) -> dict[str, int]:
        return sql.counters(t)

    def _raise_counters(self, t: Tx, dump: RegistryDump) -> None:
        tops = {name: top for name, _, top in sql.counter_marks(t)}
        sql.raise_counters(t, {name: max(dump.counters.get(name, 0), tops.get(name, 0)) for name in sql.COUNTERS})
