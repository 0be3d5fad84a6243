"""Host events on SQLite: trigger subscriptions, idempotent occurrences, exactly-once deliveries.

Every mutation is one BEGIN IMMEDIATE transaction, so the idempotency lookup and the insert (and
the delivery `INSERT OR IGNORE`s) serialise across connections and processes. A row whose body
does not decode makes the whole read raise `CorruptRecord` naming that row: a listing never
silently drops a subscription (a dropped subscription would silently miss its events).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from ...errors import NotFound
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
from .connection import Database
from .host_events_schema import KIND, MIGRATIONS

__all__ = ["SqliteHostEventStore"]

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


def _load_occurrence(c: sqlite3.Connection, occurrence_id: str) -> tuple | None:
    return c.execute(
        f"SELECT {_OCC_COLS}, request_hash FROM host_event_occurrences WHERE occurrence_id = ?", (occurrence_id,)
    ).fetchone()


class SqliteHostEventStore:
    """Trigger subscriptions and host-event occurrences in one SQLite file. Thread-safe."""

    def __init__(self, path: str | Path, options: StoreOptions | None = None) -> None:
        self._opts = options or StoreOptions()
        self._clock = self._opts.clock
        self.path = str(path)
        self._db = Database(
            self.path,
            kind=KIND,
            migrations=MIGRATIONS,
            synchronous=self._opts.synchronous,
            busy_timeout_ms=self._opts.busy_timeout_ms,
            readonly=self._opts.readonly and self.path != ":memory:",
        )

    @classmethod
    def memory(cls, options: StoreOptions | None = None) -> "SqliteHostEventStore":
        """A private in-memory SQLite database (durability tier inline)."""
        return cls(":memory:", options)

    # -- plumbing ------------------------------------------------------------------------------
    def __enter__(self) -> "SqliteHostEventStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    @property
    def closed(self) -> bool:
        return self._db.closed

    @property
    def options(self) -> StoreOptions:
        return self._opts

    def durability_tier(self) -> DurabilityTier:
        return DurabilityTier.INLINE if self.path == ":memory:" else DurabilityTier.DURABLE

    # -- source keys ---------------------------------------------------------------------------
    def source_key_for_subscription(self, source_type: str, source: Any) -> str:
        return rules.source_key_for_subscription(source_type, source)

    def empty_source_key(self, source_type: str) -> str:
        return rules.empty_source_key(source_type)

    # -- subscriptions -------------------------------------------------------------------------
    def register_subscription(self, draft: TriggerSubscriptionDraft) -> TriggerSubscriptionRecord:
        rules.check_draft(draft)
        body = rules.encode_subscription_body(draft)
        with self._db.write("register trigger subscription") as c:
            n = c.execute("INSERT INTO host_event_subscription_seq DEFAULT VALUES").lastrowid
            # The counter's high-water mark lives in sqlite_sequence; older rows are not needed.
            c.execute("DELETE FROM host_event_subscription_seq WHERE n < ?", (n,))
            now = self._clock.now_ms()
            sub_id, handle = rules.subscription_id_for(n), rules.handle_for(n)
            c.execute(
                f"INSERT INTO host_event_subscriptions ({_SUB_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?)",
                (n, sub_id, handle, draft.session_id, draft.name, draft.source_type, draft.source_key,
                 draft.target_identity, now, now, body),
            )
            row = c.execute(f"SELECT {_SUB_COLS} FROM host_event_subscriptions WHERE seq = ?", (n,)).fetchone()
        return _sub(row)

    def list_subscriptions(self, filter: TriggerSubscriptionFilter | None = None) -> list[TriggerSubscriptionRecord]:
        """Subscriptions matching every set field of `filter`, in creation order."""
        flt = rules.check_filter(filter)
        cols = rules.filter_columns(flt)
        where = " AND ".join(f"{name} = ?" for name, _ in cols) or "1"
        with self._db.read("list trigger subscriptions") as c:
            rows = c.execute(
                f"SELECT {_SUB_COLS} FROM host_event_subscriptions WHERE {where} ORDER BY seq",
                tuple(value for _, value in cols),
            ).fetchall()
        return [_sub(r) for r in rows]

    def get_subscription(self, session_id: str, handle: str) -> TriggerSubscriptionRecord | None:
        v.check_id(session_id, "session_id")
        v.check_id(handle, "handle")
        with self._db.read("get trigger subscription") as c:
            row = c.execute(
                f"SELECT {_SUB_COLS} FROM host_event_subscriptions WHERE session_id = ? AND handle = ?",
                (session_id, handle),
            ).fetchone()
        return None if row is None else _sub(row)

    def cancel_subscription(self, session_id: str, handle: str) -> bool:
        """Disable the session's subscription `handle`; returns whether it was enabled before.

        Scoped by session: another session's handle gives False. A disabled row stays listable,
        and cancelling it again changes nothing (not even updated_at)."""
        v.check_id(session_id, "session_id")
        v.check_id(handle, "handle")
        with self._db.write("cancel trigger subscription") as c:
            row = c.execute(
                "SELECT enabled FROM host_event_subscriptions WHERE session_id = ? AND handle = ?",
                (session_id, handle),
            ).fetchone()
            d = rules.cancel_decision(None if row is None else bool(row[0]))
            if d.write:
                c.execute(
                    "UPDATE host_event_subscriptions SET enabled = 0, updated_at_ms = ? "
                    "WHERE session_id = ? AND handle = ?",
                    (self._clock.now_ms(), session_id, handle),
                )
        return d.previous

    def cancel_session_subscriptions(self, session_id: str) -> int:
        """Disable every enabled subscription of the session; returns how many were enabled."""
        v.check_id(session_id, "session_id")
        with self._db.write("cancel session trigger subscriptions") as c:
            return c.execute(
                "UPDATE host_event_subscriptions SET enabled = 0, updated_at_ms = ? "
                "WHERE session_id = ? AND enabled = 1",
                (self._clock.now_ms(), session_id),
            ).rowcount

    # -- occurrences ---------------------------------------------------------------------------
    def record_occurrence(self, request: HostEventOccurrenceRequest) -> HostEventOccurrenceRecord:
        """Record an event once per (source_type, source_key, idempotency_key).

        Recording the same request again returns the stored record (with its original
        occurred_at); the same key with another payload or source raises ReplayConflict."""
        rules.check_request(request)
        occ_id = rules.occurrence_id(request.source_type, request.source_key, request.idempotency_key)
        req_hash = rules.request_hash(request)
        body = rules.encode_occurrence_body(request)
        with self._db.write("record host event occurrence") as c:
            row = _load_occurrence(c, occ_id)
            if rules.decide_occurrence(None if row is None else row[7], req_hash, request):
                c.execute(
                    "INSERT INTO host_event_occurrences (occurrence_id, source_type, source_key, idempotency_key, "
                    "request_hash, occurred_at_ms, body) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (occ_id, request.source_type, request.source_key, request.idempotency_key, req_hash,
                     self._clock.now_ms(), body),
                )
                row = _load_occurrence(c, occ_id)
        return _occ(row)

    def get_occurrence(self, occurrence_id: str) -> HostEventOccurrenceRecord | None:
        v.check_id(occurrence_id, "occurrence_id")
        with self._db.read("get host event occurrence") as c:
            row = _load_occurrence(c, occurrence_id)
        return None if row is None else _occ(row)

    def list_occurrences(
        self, *, source_type: str | None = None, source_key: str | None = None, limit: int | None = None
    ) -> list[HostEventOccurrenceRecord]:
        """Occurrences in the order they were first recorded (optionally only the newest `limit`)."""
        v.check_optional_id(source_type, "source_type")
        v.check_optional_id(source_key, "source_key")
        v.check_nonneg_int(limit, "limit", optional=True)
        cols = [(n, x) for n, x in (("source_type", source_type), ("source_key", source_key)) if x is not None]
        where = " AND ".join(f"{n} = ?" for n, _ in cols) or "1"
        params: tuple = tuple(x for _, x in cols)
        sql = f"SELECT {_OCC_COLS} FROM host_event_occurrences WHERE {where} ORDER BY seq"
        if limit is not None:
            sql = f"SELECT * FROM ({sql} DESC LIMIT ?) ORDER BY seq"
            params += (limit,)
        with self._db.read("list host event occurrences") as c:
            rows = c.execute(sql, params).fetchall()
        return [_occ(r) for r in rows]

    # -- deliveries ----------------------------------------------------------------------------
    def reserve_matching_deliveries(self, occurrence_id: str) -> list[TriggerDeliveryReservation]:
        """Reserve every not-yet-reserved (occurrence, enabled matching subscription) pair.

        A subscription matches when it is enabled now and has the occurrence's exact source type
        and source key. Each pair is reserved once across calls, handles and processes; the result
        holds only the pairs this call reserved, in subscription creation order."""
        v.check_id(occurrence_id, "occurrence_id")
        out: list[TriggerDeliveryReservation] = []
        with self._db.write("reserve host event deliveries") as c:
            row = _load_occurrence(c, occurrence_id)
            if row is None:
                raise NotFound(f"unknown host event occurrence {occurrence_id!r}; record it first")
            occ = _occ(row)
            subs = c.execute(
                f"SELECT {_SUB_COLS} FROM host_event_subscriptions "
                "WHERE source_type = ? AND source_key = ? AND enabled = 1 ORDER BY seq",
                (occ.source_type, occ.source_key),
            ).fetchall()
            now = self._clock.now_ms()
            for r in subs:
                sub = _sub(r)
                pid = rules.delivery_process_id(occurrence_id, sub.subscription_id)
                n = c.execute(
                    "INSERT OR IGNORE INTO host_event_deliveries (occurrence_id, subscription_id, process_id, "
                    "created_at_ms) VALUES (?, ?, ?, ?)",
                    (occurrence_id, sub.subscription_id, pid, now),
                ).rowcount
                if n == 1:
                    out.append(TriggerDeliveryReservation(occurrence=occ, subscription=sub, process_id=pid))
        return out

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
        where = " AND ".join(f"{n} = ?" for n, _ in cols) or "1"
        with self._db.read("list host event deliveries") as c:
            rows = c.execute(
                "SELECT d.occurrence_id, d.subscription_id, s.session_id, s.handle, d.process_id, d.created_at_ms, d.seq "
                "FROM host_event_deliveries d JOIN host_event_subscriptions s ON s.subscription_id = d.subscription_id "
                f"WHERE {where} ORDER BY d.seq",
                tuple(x for _, x in cols),
            ).fetchall()
        return [
            TriggerDelivery(
                occurrence_id=r[0], subscription_id=r[1], session_id=r[2], handle=r[3], process_id=r[4],
                created_at_ms=r[5], sequence=r[6],
            )
            for r in rows
        ]
