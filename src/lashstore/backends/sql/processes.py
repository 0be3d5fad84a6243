"""The statements of the process registry, written once for SQLite and PostgreSQL.

Each function takes an open transaction (`engine.tx.Tx`) and stores or loads rows; every row read
is checked column by column (`check_columns`: a SQLite file can hold anything), so a damaged row
is a CorruptRecord, never "not found". Row locks (`lock=True`) are `FOR UPDATE` where rows lock
one by one (PostgreSQL) and nothing where the write transaction holds the whole database.
No RETURNING: SQLite has it only since 3.35, and Python may be linked against an older one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from ...engine.tx import Tx, any_of
from ...errors import CorruptRecord
from ...rules.process import (
    EVENT_COLUMNS,
    GRANT_COLUMNS,
    LEASE_COLUMNS,
    PROCESS_COLUMNS,
    EventRow,
    GrantRow,
    LeaseRow,
    PreparedRegistration,
    ProcessRow,
)
from ..common import check_columns

__all__ = [
    "process_row", "event_row", "grant_row", "lease_row",
    "load_process", "exists", "process_status", "insert_process", "set_external_ref", "list_processes",
    "prunable", "delete_processes",
    "upsert_grant", "delete_grant", "grant_descriptor", "grant_entries", "has_grant", "grants_for_process",
    "session_grant_processes", "delete_session_grants", "grant_counts", "drop_session_wakes",
    "event_by_replay_key", "next_sequence", "insert_event", "finish_process", "events", "wake_state", "ack_wake",
    "load_lease", "last_fencing", "put_lease", "set_last_fencing", "extend_lease", "release_lease",
    "scan", "DUMP",
]

# Bound on the values of one IN list (SQLite before 3.32 allows 999 parameters per statement).
_CHUNK = 500

_PROCESS_SPEC = (("process_id", "s"), ("registration_hash", "s"), ("status", "s"), ("created_at_ms", "I"),
                 ("updated_at_ms", "I"), ("terminal_at_ms", "I?"), ("registration", "b"), ("external_ref", "b?"),
                 ("await_output", "b?"))
_EVENT_SPEC = (("sequence", "i"), ("event_type", "s"), ("payload_hash", "s"), ("replay_key", "s?"),
               ("occurred_at_ms", "I"), ("terminal_state", "s?"), ("wake_id", "s?"), ("wake_target_session_id", "s?"),
               ("wake_target_scope_id", "s?"), ("wake_acked_at_ms", "I?"), ("payload", "b"), ("invocation", "b"),
               ("semantics", "b"))
_GRANT_SPEC = (("scope_id", "s"), ("process_id", "s"), ("session_id", "s"), ("kind", "s?"), ("label", "s?"))
_LEASE_SPEC = (("owner_id", "s?"), ("lease_token", "s?"), ("fencing_token", "i"), ("claimed_at_ms", "I"),
               ("expires_at_ms", "I"))

_P_COLS = ", ".join(f"p.{c.strip()}" for c in PROCESS_COLUMNS.split(","))
_G_COLS = ", ".join(f"g.{c.strip()}" for c in GRANT_COLUMNS.split(","))
_NG = len(_GRANT_SPEC)


def _bytes(v: Any) -> Any:
    return bytes(v) if isinstance(v, (memoryview, bytearray)) else v


# -- row mapping ---------------------------------------------------------------------------------


def process_row(r: Sequence[Any]) -> ProcessRow:
    """A row of PROCESS_COLUMNS, checked."""
    check_columns(r, _PROCESS_SPEC, "process", r[0])
    return ProcessRow(*r[:6], _bytes(r[6]), _bytes(r[7]), _bytes(r[8]))


def event_row(pid: str, r: Sequence[Any]) -> EventRow:
    """A row of EVENT_COLUMNS, checked."""
    check_columns(r, _EVENT_SPEC, "process event", f"{pid}#{r[0]}")
    return EventRow(*r[:10], _bytes(r[10]), _bytes(r[11]), _bytes(r[12]))


def grant_row(r: Sequence[Any]) -> GrantRow:
    check_columns(r, _GRANT_SPEC, "process handle grant", f"{r[0]}/{r[1]}")
    return GrantRow(*r)


def lease_row(pid: str, r: Sequence[Any]) -> LeaseRow:
    check_columns(r, _LEASE_SPEC, "process lease", pid)
    return LeaseRow(*r)


def _chunks(values: list[Any]) -> Iterator[list[Any]]:
    for i in range(0, len(values), _CHUNK):
        yield values[i:i + _CHUNK]


# -- processes -----------------------------------------------------------------------------------


def load_process(t: Tx, pid: str, *, lock: bool = False) -> ProcessRow | None:
    r = t.one(f"SELECT {PROCESS_COLUMNS} FROM processes WHERE process_id = ?{t.dialect.for_update if lock else ''}",
              (pid,))
    return None if r is None else process_row(r)


def exists(t: Tx, pid: str, *, lock: str = "") -> bool:
    """Whether the process is registered; `lock`: "update" (its row stays this transaction's) or
    "key share" (it cannot be deleted meanwhile)."""
    suffix = {"": "", "update": t.dialect.for_update, "key share": t.dialect.for_key_share}[lock]
    return t.one(f"SELECT 1 FROM processes WHERE process_id = ?{suffix}", (pid,)) is not None


def process_status(t: Tx, pid: str) -> str | None:
    """The process's status, its row locked; None when unknown."""
    r = t.one(f"SELECT status FROM processes WHERE process_id = ?{t.dialect.for_update}", (pid,))
    if r is None:
        return None
    check_columns(r, (("status", "s"),), "process", pid)
    return r[0]


def insert_process(t: Tx, row: ProcessRow, prep: PreparedRegistration) -> None:
    t.execute(
        "INSERT INTO processes (process_id, registration_hash, owner_session_id, owner_scope_id, host_profile_id, "
        "status, created_at_ms, updated_at_ms, terminal_at_ms, registration, external_ref, await_output) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (row.process_id, row.registration_hash, prep.owner_session_id, prep.owner_scope_id, prep.host_profile_id,
         row.status, row.created_at_ms, row.updated_at_ms, row.terminal_at_ms, row.registration, row.external_ref,
         row.await_output),
    )


def set_external_ref(t: Tx, pid: str, data: bytes, now: int) -> None:
    t.execute("UPDATE processes SET external_ref = ?, updated_at_ms = ? WHERE process_id = ?", (data, now, pid))


def list_processes(t: Tx, status: str | None, limit: int | None) -> list[ProcessRow]:
    q, params = f"SELECT {PROCESS_COLUMNS} FROM processes", []
    if status is not None:
        q += " WHERE status = ?"
        params.append(status)
    q += " ORDER BY process_id"
    if limit is not None:
        q += " LIMIT ?"
        params.append(limit)
    return [process_row(r) for r in t.all(q, params)]


def prunable(t: Tx, cutoff: int) -> list[str]:
    """Ids of the processes that finished at or before `cutoff` (locked)."""
    return [r[0] for r in t.all(
        f"SELECT process_id FROM processes WHERE terminal_at_ms IS NOT NULL AND terminal_at_ms <= ?"
        f"{t.dialect.for_update}", (cutoff,))]


def delete_processes(t: Tx, pids: list[str]) -> int:
    """Delete the processes; their events, grants and lease go with them (ON DELETE CASCADE)."""
    n = 0
    for part in _chunks(pids):
        cond, params = any_of(t, "process_id", part)
        n += t.rowcount(f"DELETE FROM processes WHERE {cond}", params)
    return n


# -- handle grants -------------------------------------------------------------------------------


def upsert_grant(t: Tx, scope_id: str, session_id: str, pid: str, kind: str | None, label: str | None,
                 now: int) -> None:
    t.execute(
        "INSERT INTO process_handle_grants (scope_id, process_id, session_id, kind, label, granted_at_ms) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (scope_id, process_id) DO UPDATE SET session_id = excluded.session_id, "
        "kind = excluded.kind, label = excluded.label, granted_at_ms = excluded.granted_at_ms",
        (scope_id, pid, session_id, kind, label, now),
    )


def delete_grant(t: Tx, scope_id: str, pid: str) -> int:
    return t.rowcount("DELETE FROM process_handle_grants WHERE scope_id = ? AND process_id = ?", (scope_id, pid))


def grant_descriptor(t: Tx, scope_id: str, pid: str) -> tuple[str | None, str | None] | None:
    """(kind, label) of the scope's grant on the process (locked), None when it has none."""
    r = t.one(f"SELECT kind, label FROM process_handle_grants WHERE scope_id = ? AND process_id = ?"
              f"{t.dialect.for_update}", (scope_id, pid))
    if r is None:
        return None
    check_columns(r, _GRANT_SPEC[3:], "process handle grant", f"{scope_id}/{pid}")
    return r[0], r[1]


def grant_entries(t: Tx, scope_id: str, live_only: bool) -> list[tuple[GrantRow, ProcessRow]]:
    live = " AND p.status = 'running'" if live_only else ""
    rows = t.all(
        f"SELECT {_G_COLS}, {_P_COLS} FROM process_handle_grants g JOIN processes p ON p.process_id = g.process_id "
        f"WHERE g.scope_id = ?{live} ORDER BY g.process_id",
        (scope_id,),
    )
    return [(grant_row(r[:_NG]), process_row(r[_NG:])) for r in rows]


def has_grant(t: Tx, scope_id: str, pid: str) -> bool:
    return t.one("SELECT 1 FROM process_handle_grants WHERE scope_id = ? AND process_id = ?",
                 (scope_id, pid)) is not None


def grants_for_process(t: Tx, pid: str) -> list[GrantRow]:
    return [grant_row(r) for r in t.all(
        f"SELECT {GRANT_COLUMNS} FROM process_handle_grants WHERE process_id = ? ORDER BY session_id, scope_id",
        (pid,))]


def session_grant_processes(t: Tx, session_id: str) -> list[str]:
    """The processes the session's scopes hold handles on (their grants locked), sorted."""
    rows = t.all(f"SELECT process_id FROM process_handle_grants WHERE session_id = ?{t.dialect.for_update}",
                 (session_id,))
    return sorted({r[0] for r in rows})


def delete_session_grants(t: Tx, session_id: str, pids: list[str]) -> int:
    """Delete the session's grants on `pids` (those `session_grant_processes` found)."""
    n = 0
    for part in _chunks(pids):
        cond, params = any_of(t, "process_id", part)
        n += t.rowcount(f"DELETE FROM process_handle_grants WHERE session_id = ? AND {cond}", [session_id, *params])
    return n


def grant_counts(t: Tx, pids: list[str]) -> list[tuple[str, str, int]]:
    """(process id, status, grants left in any scope) of each process."""
    out: list[tuple[str, str, int]] = []
    for part in _chunks(pids):
        cond, params = any_of(t, "p.process_id", part)
        for r in t.all(
            "SELECT p.process_id, p.status, (SELECT count(*) FROM process_handle_grants g "
            f"WHERE g.process_id = p.process_id) FROM processes p WHERE {cond}",
            params,
        ):
            check_columns(r, (("process_id", "s"), ("status", "s")), "process", r[0])
            out.append((r[0], r[1], int(r[2])))
    return out


def drop_session_wakes(t: Tx, session_id: str, now: int) -> int:
    """Acknowledge every wake still pending for the session."""
    return t.rowcount(
        "UPDATE process_events SET wake_acked_at_ms = ? WHERE wake_target_session_id = ? AND wake_id IS NOT NULL "
        "AND wake_acked_at_ms IS NULL",
        (now, session_id),
    )


# -- events --------------------------------------------------------------------------------------


def event_by_replay_key(t: Tx, pid: str, key: str) -> EventRow | None:
    r = t.one(f"SELECT {EVENT_COLUMNS} FROM process_events WHERE process_id = ? AND replay_key = ?", (pid, key))
    return None if r is None else event_row(pid, r)


def next_sequence(t: Tx, pid: str) -> int:
    r = t.one("SELECT coalesce(max(sequence), 0) + 1 FROM process_events WHERE process_id = ?", (pid,))
    check_columns(r, (("sequence", "i"),), "process event", pid)
    return r[0]  # type: ignore[index]


def insert_event(t: Tx, pid: str, e: EventRow) -> None:
    t.execute(f"INSERT INTO process_events (process_id, {EVENT_COLUMNS}) VALUES ({', '.join('?' * 14)})", (pid, *e))


def finish_process(t: Tx, pid: str, state: str, output: bytes, now: int) -> None:
    t.execute(
        "UPDATE processes SET status = ?, await_output = ?, terminal_at_ms = ?, updated_at_ms = ? WHERE process_id = ?",
        (state, output, now, now, pid),
    )


def events(t: Tx, pid: str, after: int, *, event_type: str | None = None, pending_wakes: bool = False,
           limit: int | None = None) -> list[EventRow]:
    """Events after the sequence `after`, ascending: of one type, or only those whose wake is
    still pending; at most `limit`."""
    q, params = f"SELECT {EVENT_COLUMNS} FROM process_events WHERE process_id = ? AND sequence > ?", [pid, after]
    if event_type is not None:
        q += " AND event_type = ?"
        params.append(event_type)
    if pending_wakes:
        q += " AND wake_id IS NOT NULL AND wake_acked_at_ms IS NULL"
    q += " ORDER BY sequence"
    if limit is not None:
        q += " LIMIT ?"
        params.append(limit)
    return [event_row(pid, r) for r in t.all(q, params)]


def wake_state(t: Tx, pid: str, sequence: int) -> tuple[str, bool, bool] | None:
    """(event type, whether its wake materialised, whether it is acknowledged), None when the
    event does not exist."""
    r = t.one("SELECT event_type, wake_id, wake_acked_at_ms FROM process_events WHERE process_id = ? AND sequence = ?",
              (pid, sequence))
    if r is None:
        return None
    check_columns(r, (("event_type", "s"), ("wake_id", "s?"), ("wake_acked_at_ms", "I?")), "process event",
                  f"{pid}#{sequence}")
    return r[0], r[1] is not None, r[2] is not None


def ack_wake(t: Tx, pid: str, sequence: int, now: int) -> None:
    t.execute("UPDATE process_events SET wake_acked_at_ms = ? WHERE process_id = ? AND sequence = ?",
              (now, pid, sequence))


# -- leases --------------------------------------------------------------------------------------


def load_lease(t: Tx, pid: str) -> LeaseRow | None:
    r = t.one(f"SELECT {LEASE_COLUMNS} FROM process_leases WHERE process_id = ?", (pid,))
    return None if r is None else lease_row(pid, r)


def last_fencing(t: Tx, *, lock: bool = True) -> int:
    """The last fencing token handed out by the registry (its counter row locked)."""
    r = t.one(f"SELECT last_fencing_token FROM process_lease_fencing WHERE id = 1{t.dialect.for_update if lock else ''}")
    if r is None:
        raise CorruptRecord("process lease fencing", "1", "the fencing counter row is missing")
    check_columns(r, (("last_fencing_token", "i"),), "process lease fencing", "1")
    return r[0]


def put_lease(t: Tx, pid: str, row: LeaseRow) -> None:
    t.execute(
        f"INSERT INTO process_leases (process_id, {LEASE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (process_id) "
        "DO UPDATE SET owner_id = excluded.owner_id, lease_token = excluded.lease_token, "
        "fencing_token = excluded.fencing_token, claimed_at_ms = excluded.claimed_at_ms, "
        "expires_at_ms = excluded.expires_at_ms",
        (pid, *row),
    )


def set_last_fencing(t: Tx, token: int) -> None:
    t.execute("UPDATE process_lease_fencing SET last_fencing_token = ? WHERE id = 1", (token,))


def extend_lease(t: Tx, pid: str, expires: int) -> None:
    t.execute("UPDATE process_leases SET expires_at_ms = ? WHERE process_id = ?", (expires, pid))


def release_lease(t: Tx, pid: str, token: str) -> int:
    # The fencing token stays: the next lease gets a larger one.
    return t.rowcount(
        "UPDATE process_leases SET owner_id = NULL, lease_token = NULL, claimed_at_ms = 0, expires_at_ms = 0 "
        "WHERE process_id = ? AND lease_token = ?",
        (pid, token),
    )


# -- verify, dump and load ------------------------------------------------------------------------

#: Every row of the registry, as its dump holds them (`backends.sql.rows`).
DUMP: dict[str, tuple[tuple[str, ...], str]] = {
    "processes": (
        ("process_id", "registration_hash", "owner_session_id", "owner_scope_id", "host_profile_id", "status",
         "created_at_ms", "updated_at_ms", "terminal_at_ms", "registration", "external_ref", "await_output"),
        "process_id",
    ),
    "process_events": (
        ("process_id", "sequence", "event_type", "payload_hash", "replay_key", "occurred_at_ms", "terminal_state",
         "wake_id", "wake_target_session_id", "wake_target_scope_id", "wake_acked_at_ms", "payload", "invocation",
         "semantics"),
        "process_id, sequence",
    ),
    "process_handle_grants": (
        ("scope_id", "process_id", "session_id", "kind", "label", "granted_at_ms"),
        "scope_id, process_id",
    ),
    "process_leases": (
        ("process_id", "owner_id", "lease_token", "fencing_token", "claimed_at_ms", "expires_at_ms"),
        "process_id",
    ),
}

_SCANS = {
    "processes": f"SELECT {PROCESS_COLUMNS} FROM processes ORDER BY process_id",
    "process_events": f"SELECT process_id, {EVENT_COLUMNS} FROM process_events ORDER BY process_id, sequence",
    "process_handle_grants": f"SELECT {GRANT_COLUMNS} FROM process_handle_grants ORDER BY process_id, scope_id",
    "process_leases": f"SELECT process_id, {LEASE_COLUMNS} FROM process_leases ORDER BY process_id",
}


def scan(t: Tx, table: str) -> list[tuple]:
    """Every row of a registry table, unchecked (verify maps each one and reports what fails)."""
    return t.all(_SCANS[table])
