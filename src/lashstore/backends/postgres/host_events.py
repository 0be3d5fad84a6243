"""Host events on PostgreSQL: trigger subscriptions, idempotent occurrences, exactly-once deliveries.

Numbers that order listings (`trigger:{n}`, occurrence and delivery order) come from counter rows
updated in the writing transaction, never from SEQUENCEs, so they are dense and in commit order
(upstream bug 8). Recording an occurrence takes a transaction advisory lock on its id (the row
may not exist yet); reserving deliveries locks the occurrence row, and each (occurrence,
subscription) pair is inserted once (`ON CONFLICT DO NOTHING`). A row whose body does not decode
makes the whole read raise `CorruptRecord` naming that row (never silently dropped).
"""

from __future__ import annotations

from typing import Any

from ...errors import NotFound, StoreClosed
from ...model.host_events import (
    HostEventOccurrenceRecord,
    HostEventOccurrenceRequest,
    TriggerDelivery,
    TriggerDeliveryReservation,
    TriggerSubscriptionDraft,
    TriggerSubscriptionFilter,
    TriggerSubscriptionRecord,
)
from ...model.session import DurabilityTier
from ...options import StoreOptions
from ...rules import host_events as rules
from ...rules import validate as v
from .connection import PostgresDatabase, Tx, open_database, uses_database_clock

__all__ = ["PostgresHostEventStore", "COMPONENT"]

COMPONENT = "host events"

_SUB_COLS = (
    "seq, subscription_id, handle, session_id, name, source_type, source_key, target_identity, "
    "enabled, created_at_ms, updated_at_ms, body"
)
_OCC_COLS = "seq, occurrence_id, source_type, source_key, idempotency_key, occurred_at_ms, body"


def _sub(r: tuple) -> TriggerSubscriptionRecord:
    return rules.subscription_record(
        sequence=r[0],
        subscription_id=r[1],
        handle=r[2],
        session_id=r[3],
        name=r[4],
        source_type=r[5],
        source_key=r[6],
        target_identity=r[7],
        enabled=r[8],
        created_at_ms=r[9],
        updated_at_ms=r[10],
        body=r[11],
    )


def _occ(r: tuple) -> HostEventOccurrenceRecord:
    return rules.occurrence_record(
        sequence=r[0],
        occurrence_id=r[1],
        source_type=r[2],
        source_key=r[3],
        idempotency_key=r[4],
        occurred_at_ms=r[5],
        body=r[6],
    )


def _load_occurrence(t: Tx, occurrence_id: str, lock: str = "") -> tuple | None:
    return t.one(
        f"SELECT {_OCC_COLS}, request_hash FROM host_event_occurrences WHERE occurrence_id = %s{lock}",
        (occurrence_id,),
    )


def _next(t: Tx, counter: str, n: int = 1) -> int:
    """Take `n` numbers from a counter row; returns the first."""
    last = t.one("UPDATE host_event_counters SET value = value + %s WHERE name = %s RETURNING value", (n, counter))[0]  # type: ignore[index]
    return int(last) - n + 1


class PostgresHostEventStore:
    """Trigger subscriptions and host-event occurrences in the deployment's schema. Thread-safe."""

    def __init__(
        self,
        database: PostgresDatabase | str,
        options: StoreOptions | None = None,
        *,
        schema: str | None = None,
    ) -> None:
        self._opts = options or StoreOptions()
        self._clock = self._opts.clock
        self._tx_clock = None if uses_database_clock(self._opts) else self._clock
        self._db, self._owns_db = open_database(database, schema)
        try:
            self._db.ensure(COMPONENT)
        except BaseException:
            if self._owns_db:
                self._db.close()
            raise
        self._closed = False

    # -- plumbing ------------------------------------------------------------------------------
    def __enter__(self) -> "PostgresHostEventStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closed = True
        if self._owns_db:
            self._db.close()

    @property
    def closed(self) -> bool:
        return self._closed or self._db.closed

    @property
    def options(self) -> StoreOptions:
        return self._opts

    @property
    def database(self) -> PostgresDatabase:
        return self._db

    @property
    def schema(self) -> str:
        return self._db.schema

    def durability_tier(self) -> DurabilityTier:
        return DurabilityTier.DURABLE

    def _write(self, fn: Any, where: str) -> Any:
        if self._closed:
            raise StoreClosed(f"postgres host-event store ({self.schema}) is closed")
        return self._db.write(fn, where, clock=self._tx_clock)

    def _read(self, fn: Any, where: str) -> Any:
        if self._closed:
            raise StoreClosed(f"postgres host-event store ({self.schema}) is closed")
        return self._db.read(fn, where, clock=self._tx_clock)

    # -- source keys ---------------------------------------------------------------------------
    def source_key_for_subscription(self, source_type: str, source: Any) -> str:
        return rules.source_key_for_subscription(source_type, source)

    def empty_source_key(self, source_type: str) -> str:
        return rules.empty_source_key(source_type)

    # -- subscriptions -------------------------------------------------------------------------
    def register_subscription(self, draft: TriggerSubscriptionDraft) -> TriggerSubscriptionRecord:
        rules.check_draft(draft)
        body = rules.encode_subscription_body(draft)

        def tx(t: Tx) -> tuple:
            n = _next(t, "subscription")
            now = t.now()
            sub_id, handle = rules.subscription_id_for(n), rules.handle_for(n)
            return t.one(
                f"INSERT INTO host_event_subscriptions ({_SUB_COLS}) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, true, %s, %s, %s) "
                f"RETURNING {_SUB_COLS}",
                (n, sub_id, handle, draft.session_id, draft.name, draft.source_type, draft.source_key,
                 draft.target_identity, now, now, body),
            )  # type: ignore[return-value]

        return _sub(self._write(tx, "register trigger subscription"))

    def list_subscriptions(self, filter: TriggerSubscriptionFilter | None = None) -> list[TriggerSubscriptionRecord]:
        """Subscriptions matching every set field of `filter`, in creation order."""
        flt = rules.check_filter(filter)
        cols = [(n, bool(x) if n == "enabled" else x) for n, x in rules.filter_columns(flt)]
        where = " AND ".join(f"{name} = %s" for name, _ in cols) or "true"
        rows = self._read(
            lambda t: t.all(
                f"SELECT {_SUB_COLS} FROM host_event_subscriptions WHERE {where} ORDER BY seq",
                tuple(value for _, value in cols),
            ),
            "list trigger subscriptions",
        )
        return [_sub(r) for r in rows]

    def get_subscription(self, session_id: str, handle: str) -> TriggerSubscriptionRecord | None:
        v.check_id(session_id, "session_id")
        v.check_id(handle, "handle")
        row = self._read(
            lambda t: t.one(
                f"SELECT {_SUB_COLS} FROM host_event_subscriptions WHERE session_id = %s AND handle = %s",
                (session_id, handle),
            ),
            "get trigger subscription",
        )
        return None if row is None else _sub(row)

    def cancel_subscription(self, session_id: str, handle: str) -> bool:
        """Disable the session's subscription `handle`; returns whether it was enabled before.

        Scoped by session: another session's handle gives False. A disabled row stays listable,
        and cancelling it again changes nothing (not even updated_at)."""
        v.check_id(session_id, "session_id")
        v.check_id(handle, "handle")

        def tx(t: Tx) -> bool:
            row = t.one(
                "SELECT enabled FROM host_event_subscriptions WHERE session_id = %s AND handle = %s FOR UPDATE",
                (session_id, handle),
            )
            d = rules.cancel_decision(None if row is None else bool(row[0]))
            if d.write:
                t.execute(
                    "UPDATE host_event_subscriptions SET enabled = false, updated_at_ms = %s "
                    "WHERE session_id = %s AND handle = %s",
                    (t.now(), session_id, handle),
                )
            return d.previous

        return self._write(tx, "cancel trigger subscription")

    def cancel_session_subscriptions(self, session_id: str) -> int:
        """Disable every enabled subscription of the session; returns how many were enabled."""
        v.check_id(session_id, "session_id")
        return self._write(
            lambda t: t.rowcount(
                "UPDATE host_event_subscriptions SET enabled = false, updated_at_ms = %s "
                "WHERE session_id = %s AND enabled",
                (t.now(), session_id),
            ),
            "cancel session trigger subscriptions",
        )

    # -- occurrences ---------------------------------------------------------------------------
    def record_occurrence(self, request: HostEventOccurrenceRequest) -> HostEventOccurrenceRecord:
        """Record an event once per (source_type, source_key, idempotency_key).

        Recording the same request again returns the stored record (with its original
        occurred_at); the same key with another payload or source raises ReplayConflict."""
        rules.check_request(request)
        occ_id = rules.occurrence_id(request.source_type, request.source_key, request.idempotency_key)
        req_hash = rules.request_hash(request)
        body = rules.encode_occurrence_body(request)

        def tx(t: Tx) -> tuple:
            t.lock("occurrence", occ_id)
            row = _load_occurrence(t, occ_id)
            if rules.decide_occurrence(None if row is None else row[7], req_hash, request):
                n = _next(t, "occurrence")
                t.execute(
                    "INSERT INTO host_event_occurrences (seq, occurrence_id, source_type, source_key, "
                    "idempotency_key, request_hash, occurred_at_ms, body) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    (n, occ_id, request.source_type, request.source_key, request.idempotency_key, req_hash,
                     t.now(), body),
                )
                row = _load_occurrence(t, occ_id)
            return row  # type: ignore[return-value]

        return _occ(self._write(tx, "record host event occurrence"))

    def get_occurrence(self, occurrence_id: str) -> HostEventOccurrenceRecord | None:
        v.check_id(occurrence_id, "occurrence_id")
        row = self._read(lambda t: _load_occurrence(t, occurrence_id), "get host event occurrence")
        return None if row is None else _occ(row)

    def list_occurrences(
        self, *, source_type: str | None = None, source_key: str | None = None, limit: int | None = None
    ) -> list[HostEventOccurrenceRecord]:
        """Occurrences in the order they were first recorded (optionally only the newest `limit`)."""
        v.check_optional_id(source_type, "source_type")
        v.check_optional_id(source_key, "source_key")
        v.check_nonneg_int(limit, "limit", optional=True)
        cols = [(n, x) for n, x in (("source_type", source_type), ("source_key", source_key)) if x is not None]
        where = " AND ".join(f"{n} = %s" for n, _ in cols) or "true"
        params: tuple = tuple(x for _, x in cols)
        q = f"SELECT {_OCC_COLS} FROM host_event_occurrences WHERE {where} ORDER BY seq"
        if limit is not None:
            q = f"SELECT * FROM ({q} DESC LIMIT %s) newest ORDER BY seq"
            params += (limit,)
        rows = self._read(lambda t: t.all(q, params), "list host event occurrences")
        return [_occ(r) for r in rows]

    # -- deliveries ----------------------------------------------------------------------------
    def reserve_matching_deliveries(self, occurrence_id: str) -> list[TriggerDeliveryReservation]:
        """Reserve every not-yet-reserved (occurrence, enabled matching subscription) pair.

        A subscription matches when it is enabled now and has the occurrence's exact source type
        and source key. Each pair is reserved once across calls, handles and processes; the result
        holds only the pairs this call reserved, in subscription creation order."""
        v.check_id(occurrence_id, "occurrence_id")

        def tx(t: Tx) -> list[TriggerDeliveryReservation]:
            # Locking the occurrence serialises reservations of one occurrence: each pair is
            # decided by exactly one transaction.
            row = _load_occurrence(t, occurrence_id, " FOR UPDATE")
            if row is None:
                raise NotFound(f"unknown host event occurrence {occurrence_id!r}; record it first")
            occ = _occ(row)
            subs = [
                _sub(r)
                for r in t.all(
                    f"SELECT {_SUB_COLS} FROM host_event_subscriptions "
                    "WHERE source_type = %s AND source_key = %s AND enabled ORDER BY seq",
                    (occ.source_type, occ.source_key),
                )
            ]
            if not subs:
                return []
            done = {
                r[0]
                for r in t.all(
                    "SELECT subscription_id FROM host_event_deliveries WHERE occurrence_id = %s", (occurrence_id,)
                )
            }
            fresh = [s for s in subs if s.subscription_id not in done]
            if not fresh:
                return []
            first = _next(t, "delivery", len(fresh))
            now = t.now()
            out: list[TriggerDeliveryReservation] = []
            rows = []
            for i, sub in enumerate(fresh):
                pid = rules.delivery_process_id(occurrence_id, sub.subscription_id)
                rows.append((first + i, occurrence_id, sub.subscription_id, pid, now))
                out.append(TriggerDeliveryReservation(occurrence=occ, subscription=sub, process_id=pid))
            t.many(
                "INSERT INTO host_event_deliveries (seq, occurrence_id, subscription_id, process_id, created_at_ms) "
                "VALUES (%s, %s, %s, %s, %s)",
                rows,
            )
            return out

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
        cols = [
            (n, x)
            for n, x in (("d.occurrence_id", occurrence_id), ("d.subscription_id", subscription_id), ("s.session_id", session_id))
            if x is not None
        ]
        where = " AND ".join(f"{n} = %s" for n, _ in cols) or "true"
        rows = self._read(
            lambda t: t.all(
                "SELECT d.occurrence_id, d.subscription_id, s.session_id, s.handle, d.process_id, d.created_at_ms, d.seq "
                "FROM host_event_deliveries d JOIN host_event_subscriptions s ON s.subscription_id = d.subscription_id "
                f"WHERE {where} ORDER BY d.seq",
                tuple(x for _, x in cols),
            ),
            "list host event deliveries",
        )
        return [
            TriggerDelivery(
                occurrence_id=r[0], subscription_id=r[1], session_id=r[2], handle=r[3], process_id=r[4],
                created_at_ms=r[5], sequence=r[6],
            )
            for r in rows
        ]
