"""The statements of host events, written once for SQLite and PostgreSQL.

Numbers that order listings (`trigger:{n}`, occurrence and delivery order) come from the rows of
`host_event_counters`, updated in the writing transaction: never a SEQUENCE or AUTOINCREMENT, so
they are dense, in commit order (upstream bug 8), and never repeat. Every row read is checked
column by column (SQLite keeps whatever a tool writes into the file) and decoded; a damaged row
is a `CorruptRecord` naming it, never skipped and never "not found".
"""

from __future__ import annotations

from typing import Any

from ...errors import CorruptRecord
from ...model.host_events import (
    HostEventOccurrenceRecord,
    HostEventOccurrenceRequest,
    TriggerDelivery,
    TriggerSubscriptionDraft,
    TriggerSubscriptionRecord,
)
from ...rules import host_events as rules
from ...engine.tx import Tx
from ..common import check_columns

COUNTERS = ("subscription", "occurrence", "delivery")
TABLES = ("host_event_counters", "host_event_subscriptions", "host_event_occurrences", "host_event_deliveries")

#: Every row of the store, as its dump holds them (`backends.sql.rows`); the counters travel
#: beside them (`counters`, `raise_counters`).
DUMP: dict[str, tuple[tuple[str, ...], str]] = {
    "host_event_subscriptions": (
        ("seq", "subscription_id", "handle", "session_id", "name", "source_type", "source_key", "target_identity",
         "enabled", "created_at_ms", "updated_at_ms", "body"),
        "seq",
    ),
    "host_event_occurrences": (
        ("seq", "occurrence_id", "source_type", "source_key", "idempotency_key", "request_hash", "occurred_at_ms",
         "body"),
        "seq",
    ),
    "host_event_deliveries": (("seq", "occurrence_id", "subscription_id", "process_id", "created_at_ms"), "seq"),
}

_SUB_COLS = (
    "seq, subscription_id, handle, session_id, name, source_type, source_key, target_identity, "
    "enabled, created_at_ms, updated_at_ms, body"
)
_SUB_SPEC = (("seq", "i"), ("subscription_id", "s"), ("handle", "s"), ("session_id", "s"), ("name", "s?"),
             ("source_type", "s"), ("source_key", "s"), ("target_identity", "s?"), ("created_at_ms", "I"),
             ("updated_at_ms", "I"), ("body", "b"))  # and `enabled`, a boolean (an integer 0/1 on SQLite)
_OCC_COLS = "seq, occurrence_id, source_type, source_key, idempotency_key, occurred_at_ms, body, request_hash"
_OCC_SPEC = (("seq", "i"), ("occurrence_id", "s"), ("source_type", "s"), ("source_key", "s"),
             ("idempotency_key", "s"), ("occurred_at_ms", "I"), ("body", "b"), ("request_hash", "s"))
_DEL_COLS = "d.seq, d.occurrence_id, d.subscription_id, s.session_id, s.handle, d.process_id, d.created_at_ms"
_DEL_SPEC = (("seq", "i"), ("occurrence_id", "s"), ("subscription_id", "s"), ("session_id", "s"), ("handle", "s"),
             ("process_id", "s"), ("created_at_ms", "I"))


def _where(conds: list[tuple[str, Any]]) -> tuple[str, list[Any]]:
    """The WHERE clause (or nothing) of the (column, value) pairs, all equal, and its parameters."""
    if not conds:
        return "", []
    return " WHERE " + " AND ".join(f"{c} = ?" for c, _ in conds), [x for _, x in conds]


# -- counters -------------------------------------------------------------------------------------


def take_numbers(t: Tx, counter: str, n: int = 1) -> int:
    """Take `n` numbers from a counter; returns the first. The row stays locked (or the whole
    database is) until the transaction ends, so numbers are handed out in commit order."""
    row = t.one("UPDATE host_event_counters SET value = value + ? WHERE name = ? RETURNING value", (n, counter))
    if row is None:
        raise CorruptRecord("host event counter", counter, "its row is missing")
    return int(row[0]) - n + 1


def counters(t: Tx) -> dict[str, int]:
    """Every counter's last number handed out."""
    return {name: int(value) for name, value in t.all("SELECT name, value FROM host_event_counters")}


def raise_counters(t: Tx, values: dict[str, int]) -> None:
    """Move counters forward to at least `values` (a copy or an import must not hand out a
    number its rows already use); never backwards."""
    for name, value in values.items():
        if name in COUNTERS and value:
            t.execute(f"UPDATE host_event_counters SET value = {t.dialect.greatest}(value, ?) WHERE name = ?",
                      (int(value), name))


def counter_marks(t: Tx) -> list[tuple[str, Any, int]]:
    """(counter, its stored value (None when its row is missing), the highest number its rows use)."""
    values = dict(t.all("SELECT name, value FROM host_event_counters"))
    tops = t.one(
        "SELECT (SELECT coalesce(max(seq), 0) FROM host_event_subscriptions), "
        "(SELECT coalesce(max(seq), 0) FROM host_event_occurrences), "
        "(SELECT coalesce(max(seq), 0) FROM host_event_deliveries)"
    )
    # A mistyped seq (reported with its row) must not hide the other findings.
    return [(name, values.get(name), top if type(top) is int else 0) for name, top in zip(COUNTERS, tops or (0, 0, 0))]


# -- subscriptions ---------------------------------------------------------------------------------


def subscription(r: tuple) -> TriggerSubscriptionRecord:
    """A subscription row (_SUB_COLS, in order) as its record; CorruptRecord when damaged."""
    check_columns((*r[:8], *r[9:]), _SUB_SPEC, "trigger subscription", r[1])
    if type(r[8]) is not bool and not (type(r[8]) is int and r[8] in (0, 1)):
        raise CorruptRecord("trigger subscription", str(r[1]), f"column enabled holds {r[8]!r}, expected a boolean")
    return rules.subscription_record(
        sequence=r[0], subscription_id=r[1], handle=r[2], session_id=r[3], name=r[4], source_type=r[5],
        source_key=r[6], target_identity=r[7], enabled=r[8], created_at_ms=r[9], updated_at_ms=r[10], body=bytes(r[11]),
    )


def insert_subscription(t: Tx, n: int, draft: TriggerSubscriptionDraft, body: bytes,
                        now: int) -> TriggerSubscriptionRecord:
    row = t.one(
        f"INSERT INTO host_event_subscriptions ({_SUB_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        f"RETURNING {_SUB_COLS}",
        (n, rules.subscription_id_for(n), rules.handle_for(n), draft.session_id, draft.name, draft.source_type,
         draft.source_key, draft.target_identity, True, now, now, body),
    )
    return subscription(row)  # type: ignore[arg-type]


def subscriptions(t: Tx, conds: list[tuple[str, Any]]) -> list[TriggerSubscriptionRecord]:
    """Subscriptions whose columns equal the values of `conds`, in creation order."""
    where, params = _where(conds)
    return [subscription(r) for r in t.all(f"SELECT {_SUB_COLS} FROM host_event_subscriptions{where} ORDER BY seq",
                                            params)]


def subscription_enabled(t: Tx, session_id: str, handle: str) -> Any:
    """The `enabled` of the session's subscription (locked until the transaction ends), or None."""
    row = t.one(
        f"SELECT enabled FROM host_event_subscriptions WHERE session_id = ? AND handle = ?{t.dialect.for_update}",
        (session_id, handle),
    )
    return None if row is None else row[0]


def disable(t: Tx, session_id: str, now: int, handle: str | None = None) -> int:
    """Disable the session's enabled subscriptions (or only `handle`); returns how many."""
    extra, params = ("", []) if handle is None else (" AND handle = ?", [handle])
    return t.rowcount(
        f"UPDATE host_event_subscriptions SET enabled = ?, updated_at_ms = ? WHERE session_id = ?{extra} AND enabled",
        (False, now, session_id, *params),
    )


# -- occurrences -----------------------------------------------------------------------------------


def occurrence(r: tuple) -> HostEventOccurrenceRecord:
    """An occurrence row (_OCC_COLS, in order) as its record; CorruptRecord when damaged."""
    check_columns(r, _OCC_SPEC, "host event occurrence", r[1])
    return rules.occurrence_record(
        sequence=r[0], occurrence_id=r[1], source_type=r[2], source_key=r[3], idempotency_key=r[4],
        occurred_at_ms=r[5], body=bytes(r[6]),
    )


def load_occurrence(t: Tx, occurrence_id: str, *, lock: bool = False) -> tuple[HostEventOccurrenceRecord, str] | None:
    """(the occurrence, its request hash), or None."""
    row = t.one(
        f"SELECT {_OCC_COLS} FROM host_event_occurrences WHERE occurrence_id = ?{t.dialect.for_update if lock else ''}",
        (occurrence_id,),
    )
    return None if row is None else (occurrence(row), row[7])


def insert_occurrence(t: Tx, n: int, occurrence_id: str, request: HostEventOccurrenceRequest, request_hash: str,
                      body: bytes, now: int) -> None:
    t.execute(
        "INSERT INTO host_event_occurrences (seq, occurrence_id, source_type, source_key, idempotency_key, "
        "request_hash, occurred_at_ms, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (n, occurrence_id, request.source_type, request.source_key, request.idempotency_key, request_hash, now, body),
    )


def occurrences(t: Tx, conds: list[tuple[str, Any]], limit: int | None) -> list[HostEventOccurrenceRecord]:
    """Occurrences matching `conds` in recording order; with `limit`, only the newest `limit`."""
    where, params = _where(conds)
    q = f"SELECT {_OCC_COLS} FROM host_event_occurrences{where} ORDER BY seq"
    if limit is not None:
        q = f"SELECT * FROM ({q} DESC LIMIT ?) newest ORDER BY seq"
        params.append(limit)
    return [occurrence(r) for r in t.all(q, params)]


def prune_occurrences(t: Tx, cutoff: int, *, delete: bool) -> tuple[int, int]:
    """(occurrences, deliveries) recorded at or before `cutoff`; deleted unless only counted.

    The doomed occurrences are locked first (where rows lock), so a reservation in flight for one
    of them finishes before its deliveries are counted."""
    lock = t.dialect.for_update if delete else ""
    doomed = t.all(f"SELECT occurrence_id FROM host_event_occurrences WHERE occurred_at_ms <= ?{lock}", (cutoff,))
    old = "SELECT occurrence_id FROM host_event_occurrences WHERE occurred_at_ms <= ?"
    row = t.one(f"SELECT count(*) FROM host_event_deliveries WHERE occurrence_id IN ({old})", (cutoff,))
    deliveries = int(row[0])  # type: ignore[index]
    if not delete:
        return len(doomed), deliveries
    t.execute(f"DELETE FROM host_event_deliveries WHERE occurrence_id IN ({old})", (cutoff,))
    return t.rowcount("DELETE FROM host_event_occurrences WHERE occurred_at_ms <= ?", (cutoff,)), deliveries


# -- deliveries ------------------------------------------------------------------------------------


def reserved_subscription_ids(t: Tx, occurrence_id: str) -> set[str]:
    return {r[0] for r in t.all("SELECT subscription_id FROM host_event_deliveries WHERE occurrence_id = ?",
                                (occurrence_id,))}


def insert_deliveries(t: Tx, rows: list[tuple[int, str, str, str, int]]) -> None:
    """(seq, occurrence_id, subscription_id, process_id, created_at_ms) rows."""
    t.many("INSERT INTO host_event_deliveries (seq, occurrence_id, subscription_id, process_id, created_at_ms) "
           "VALUES (?, ?, ?, ?, ?)", rows)


def delivery(r: tuple) -> TriggerDelivery:
    """A delivery row (_DEL_COLS, in order) as its record; CorruptRecord when damaged."""
    key = f"{r[1]}/{r[2]}"
    if r[3] is None and r[4] is None:
        raise CorruptRecord("host event delivery", key, "its subscription is missing")
    check_columns(r, _DEL_SPEC, "host event delivery", key)
    return TriggerDelivery(occurrence_id=r[1], subscription_id=r[2], session_id=r[3], handle=r[4], process_id=r[5],
                           created_at_ms=r[6], sequence=r[0])


def deliveries(t: Tx, conds: list[tuple[str, Any]]) -> list[TriggerDelivery]:
    """Deliveries matching `conds` (columns of `d`, the delivery, and `s`, its subscription), in
    reservation order."""
    where, params = _where(conds)
    return [delivery(r) for r in t.all(
        f"SELECT {_DEL_COLS} FROM host_event_deliveries d "
        f"JOIN host_event_subscriptions s ON s.subscription_id = d.subscription_id{where} ORDER BY d.seq",
        params,
    )]


# -- verify ----------------------------------------------------------------------------------------


def subscription_rows(t: Tx) -> list[tuple]:
    return t.all(f"SELECT {_SUB_COLS} FROM host_event_subscriptions ORDER BY subscription_id")


def occurrence_rows(t: Tx) -> list[tuple]:
    return t.all(f"SELECT {_OCC_COLS} FROM host_event_occurrences ORDER BY occurrence_id")


def delivery_rows(t: Tx) -> list[tuple]:
    """Every delivery, also one whose subscription is gone (which a listing's join would hide)."""
    return t.all(
        f"SELECT {_DEL_COLS} FROM host_event_deliveries d "
        "LEFT JOIN host_event_subscriptions s ON s.subscription_id = d.subscription_id ORDER BY d.occurrence_id, "
        "d.subscription_id"
    )
