"""The deployment-wide process registry on SQLite (one file, kind "process registry").

Every mutation is one `BEGIN IMMEDIATE` transaction: it loads the rows a decision needs, asks
`lashstore.rules.process`, and writes the answer before committing, so an error leaves nothing
behind (a failed append stores no event). Waiters are woken at once by appends made through any
handle on the same file in this process, and poll (5 ms doubling to 40 ms) for other processes.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import msgspec

from ...errors import ValidationError
from ...model.process import (
    ProcessAwaitOutput,
    ProcessEvent,
    ProcessEventAppendRequest,
    ProcessEventAppendResult,
    ProcessExternalRef,
    ProcessHandleDescriptor,
    ProcessHandleGrant,
    ProcessLease,
    ProcessLeaseCompletion,
    ProcessRecord,
    ProcessRegistration,
    ProcessScope,
    ProcessSessionDeleteReport,
)
from ...model.session import DurabilityTier
from ...options import StoreOptions
from ...rules import process as rules
from ...rules import validate as v
from ...rules.process import (
    EVENT_COLUMNS,
    GRANT_COLUMNS,
    LEASE_COLUMNS,
    PROCESS_COLUMNS,
    EventRow,
    GrantRow,
    LeaseRow,
    PayloadValidator,
    PreparedAppend,
    ProcessRow,
)
from .connection import Database
from .process_schema import KIND, MIGRATIONS

__all__ = ["SqliteProcessRegistry"]

_P_COLS = ", ".join(f"p.{c.strip()}" for c in PROCESS_COLUMNS.split(","))
_G_COLS = ", ".join(f"g.{c.strip()}" for c in GRANT_COLUMNS.split(","))
_NG = len(GRANT_COLUMNS.split(","))


def _load_process(c: sqlite3.Connection, pid: str) -> ProcessRow | None:
    r = c.execute(f"SELECT {PROCESS_COLUMNS} FROM processes WHERE process_id = ?", (pid,)).fetchone()
    return None if r is None else ProcessRow(*r)


def _require(c: sqlite3.Connection, pid: str) -> ProcessRow:
    row = _load_process(c, pid)
    if row is None:
        raise rules.unknown_process(pid)
    return row


def _exists(c: sqlite3.Connection, pid: str) -> bool:
    return c.execute("SELECT 1 FROM processes WHERE process_id = ?", (pid,)).fetchone() is not None


def _load_lease(c: sqlite3.Connection, pid: str) -> LeaseRow | None:
    r = c.execute(f"SELECT {LEASE_COLUMNS} FROM process_leases WHERE process_id = ?", (pid,)).fetchone()
    return None if r is None else LeaseRow(*r)


def _events(c: sqlite3.Connection, pid: str, where: str, params: tuple, limit: int | None) -> list[ProcessEvent]:
    sql = f"SELECT {EVENT_COLUMNS} FROM process_events WHERE process_id = ? AND {where} ORDER BY sequence"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return [rules.decode_event(pid, EventRow(*r)) for r in c.execute(sql, (pid, *params))]


def _upsert_grant(c: sqlite3.Connection, scope: ProcessScope, pid: str, d: ProcessHandleDescriptor, now: int) -> None:
    c.execute(
        "INSERT INTO process_handle_grants (scope_id, process_id, session_id, kind, label, granted_at_ms) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (scope_id, process_id) DO UPDATE SET "
        "session_id = excluded.session_id, kind = excluded.kind, label = excluded.label, "
        "granted_at_ms = excluded.granted_at_ms",
        (scope.id(), pid, scope.session_id, d.kind, d.label, now),
    )


def _release_lease(c: sqlite3.Connection, pid: str, token: str) -> int:
    # The fencing token stays: the next lease gets a larger one.
    return c.execute(
        "UPDATE process_leases SET owner_id = NULL, lease_token = NULL, claimed_at_ms = 0, expires_at_ms = 0 "
        "WHERE process_id = ? AND lease_token = ?",
        (pid, token),
    ).rowcount


class SqliteProcessRegistry:
    """Processes, their events and wakes, handle grants and leases, in one SQLite file.

    Thread-safe (one connection used under a lock); several handles and OS processes may share
    the file. `validator` checks event payloads against their declared JSON Schema (default:
    `jsonschema`). Lease times come from `options.clock`.
    """

    def __init__(
        self,
        path: str | Path,
        options: StoreOptions | None = None,
        *,
        validator: PayloadValidator | None = None,
    ) -> None:
        self._opts = options or StoreOptions()
        self.path = str(path)
        self._db = Database(
            self.path,
            kind=KIND,
            migrations=MIGRATIONS,
            synchronous=self._opts.synchronous,
            busy_timeout_ms=self._opts.busy_timeout_ms,
            readonly=self._opts.readonly and self.path != ":memory:",
        )
        self._clock = self._opts.clock
        self._validator = validator or rules.default_validator()
        self._memory = self.path == ":memory:"
        self._notifier = rules.Notifier() if self._memory else rules.shared_notifier(os.path.realpath(self.path))

    @classmethod
    def memory(cls, options: StoreOptions | None = None, **kw: Any) -> "SqliteProcessRegistry":
        """A private in-memory SQLite database (durability tier inline)."""
        return cls(":memory:", options, **kw)

    # -- plumbing ------------------------------------------------------------------------------
    def __enter__(self) -> "SqliteProcessRegistry":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()
        # Let waiters in other threads see the closed store instead of sleeping out their poll.
        self._notifier.notify()

    @property
    def closed(self) -> bool:
        return self._db.closed

    @property
    def options(self) -> StoreOptions:
        return self._opts

    def durability_tier(self) -> DurabilityTier:
        return DurabilityTier.INLINE if self._memory else DurabilityTier.DURABLE

    # -- registration --------------------------------------------------------------------------
    def register_process(self, registration: ProcessRegistration) -> ProcessRecord:
        """Register a process, or return the stored record when the same registration (same
        hash, whatever its status now) is registered again. Another registration under the
        same id is a ReplayConflict."""
        prep = rules.prepare_registration(registration, self._validator)
        pid = prep.registration.id
        with self._db.write("register process") as c:
            row = _load_process(c, pid)
            if row is not None:
                rules.check_same_registration(pid, row.registration_hash, prep.registration_hash)
                return rules.decode_record(row)
            row = rules.new_process_row(prep, self._clock.now_ms())
            c.execute(
                "INSERT INTO processes (process_id, registration_hash, owner_session_id, owner_scope_id, "
                "host_profile_id, status, created_at_ms, updated_at_ms, terminal_at_ms, registration, "
                "external_ref, await_output) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    row.process_id,
                    row.registration_hash,
                    prep.owner_session_id,
                    prep.owner_scope_id,
                    prep.host_profile_id,
                    row.status,
                    row.created_at_ms,
                    row.updated_at_ms,
                    row.terminal_at_ms,
                    row.registration,
                    row.external_ref,
                    row.await_output,
                ),
            )
        return rules.decode_record(row)

    def get_process(self, process_id: str) -> ProcessRecord | None:
        """The record, None when unknown; CorruptRecord when it is stored but does not decode."""
        v.check_id(process_id, "process_id")
        with self._db.read("get process") as c:
            row = _load_process(c, process_id)
        return None if row is None else rules.decode_record(row)

    def set_external_ref(self, process_id: str, ref: ProcessExternalRef) -> ProcessRecord:
        """Record where the work runs. Set once: the same ref again changes nothing, another
        ref is a ReplayConflict. Allowed on finished processes."""
        new, data = rules.prepare_external_ref(process_id, ref)
        with self._db.write("set external ref") as c:
            row = _require(c, process_id)
            current = rules.decode_record(row).external_ref
            if rules.decide_external_ref(process_id, current, new):
                now = self._clock.now_ms()
                c.execute(
                    "UPDATE processes SET external_ref = ?, updated_at_ms = ? WHERE process_id = ?",
                    (data, now, process_id),
                )
                row = row._replace(external_ref=data, updated_at_ms=now)
        return rules.decode_record(row)

    def list_non_terminal(self) -> list[ProcessRecord]:
        """Running processes, ordered by id."""
        return self.list_processes("running")

    def list_processes(self, status: str | None = None, limit: int | None = None) -> list[ProcessRecord]:
        """Every process (or those in `status`), ordered by id, at most `limit`."""
        st = rules.check_status_filter(status)
        lim = rules.check_limit(limit)
        sql = f"SELECT {PROCESS_COLUMNS} FROM processes"
        params: tuple = ()
        if st is not None:
            sql += " WHERE status = ?"
            params = (st,)
        sql += " ORDER BY process_id"
        if lim is not None:
            sql += f" LIMIT {lim}"
        with self._db.read("list processes") as c:
            rows = [ProcessRow(*r) for r in c.execute(sql, params)]
        return [rules.decode_record(r) for r in rows]

    def prune_terminal_processes(self, older_than_ms: int) -> int:
        """Delete processes that finished at least `older_than_ms` ago (by the store's clock),
        with their events, wakes, grants and lease. Running processes are never touched.
        Returns how many processes were deleted."""
        rules.check_age(older_than_ms)
        with self._db.write("prune terminal processes") as c:
            cutoff = self._clock.now_ms() - older_than_ms
            n = c.execute(
                "DELETE FROM processes WHERE terminal_at_ms IS NOT NULL AND terminal_at_ms <= ?", (cutoff,)
            ).rowcount
        if n:
            self._notifier.notify()  # waiters on a pruned process learn it is gone
        return n

    # -- handle grants -------------------------------------------------------------------------
    def grant_handle(
        self, owner_scope: ProcessScope, process_id: str, descriptor: ProcessHandleDescriptor | None = None
    ) -> ProcessHandleGrant:
        """Give `owner_scope` a handle on the process (replacing its descriptor if it had one)."""
        rules.check_scope(owner_scope, "owner_scope")
        v.check_id(process_id, "process_id")
        d = rules.check_descriptor(descriptor)
        with self._db.write("grant process handle") as c:
            if not _exists(c, process_id):
                raise rules.unknown_process(process_id)
            _upsert_grant(c, owner_scope, process_id, d, self._clock.now_ms())
        return ProcessHandleGrant(
            session_id=owner_scope.session_id, process_id=process_id, descriptor=d, scope_id=owner_scope.id()
        )

    def revoke_handle(self, owner_scope: ProcessScope, process_id: str) -> bool:
        """Remove the scope's handle; True when there was one."""
        rules.check_scope(owner_scope, "owner_scope")
        v.check_id(process_id, "process_id")
        with self._db.write("revoke process handle") as c:
            return (
                c.execute(
                    "DELETE FROM process_handle_grants WHERE scope_id = ? AND process_id = ?",
                    (owner_scope.id(), process_id),
                ).rowcount
                > 0
            )

    def transfer_handle_grants(
        self, from_scope: ProcessScope, to_scope: ProcessScope, process_ids: list[str]
    ) -> list[ProcessHandleGrant]:
        """Move handles (with their descriptors) from one scope to another, all or nothing.
        A process not granted to `from_scope` refuses the whole transfer. Appends no events."""
        pids = rules.check_transfer(from_scope, to_scope, process_ids)
        out: list[ProcessHandleGrant] = []
        with self._db.write("transfer process handles") as c:
            now = self._clock.now_ms()
            for pid in pids:
                r = c.execute(
                    "SELECT kind, label FROM process_handle_grants WHERE scope_id = ? AND process_id = ?",
                    (from_scope.id(), pid),
                ).fetchone()
                if r is None:
                    raise rules.not_granted(pid, from_scope)
                d = ProcessHandleDescriptor(r[0], r[1])
                c.execute(
                    "DELETE FROM process_handle_grants WHERE scope_id = ? AND process_id = ?", (from_scope.id(), pid)
                )
                _upsert_grant(c, to_scope, pid, d, now)
                out.append(
                    ProcessHandleGrant(session_id=to_scope.session_id, process_id=pid, descriptor=d, scope_id=to_scope.id())
                )
        return out

    def _grant_entries(self, scope: ProcessScope, live_only: bool) -> list[tuple[ProcessHandleGrant, ProcessRecord]]:
        rules.check_scope(scope, "scope")
        live = " AND p.status = 'running'" if live_only else ""
        with self._db.read("list process handles") as c:
            rows = c.execute(
                f"SELECT {_G_COLS}, {_P_COLS} FROM process_handle_grants g "
                f"JOIN processes p ON p.process_id = g.process_id WHERE g.scope_id = ?{live} ORDER BY g.process_id",
                (scope.id(),),
            ).fetchall()
        return [(rules.decode_grant(GrantRow(*r[:_NG])), rules.decode_record(ProcessRow(*r[_NG:]))) for r in rows]

    def list_handle_grants(self, scope: ProcessScope) -> list[tuple[ProcessHandleGrant, ProcessRecord]]:
        """(grant, record) of every process the scope holds a handle on, ordered by process id."""
        return self._grant_entries(scope, False)

    def list_live_handle_grants(self, scope: ProcessScope) -> list[tuple[ProcessHandleGrant, ProcessRecord]]:
        """As `list_handle_grants`, running processes only."""
        return self._grant_entries(scope, True)

    def has_handle_grant(self, scope: ProcessScope, process_id: str) -> bool:
        rules.check_scope(scope, "scope")
        v.check_id(process_id, "process_id")
        with self._db.read("has process handle") as c:
            return (
                c.execute(
                    "SELECT 1 FROM process_handle_grants WHERE scope_id = ? AND process_id = ?",
                    (scope.id(), process_id),
                ).fetchone()
                is not None
            )

    def handle_grants_for_process(self, process_id: str) -> list[ProcessHandleGrant]:
        """Every grant of the process, ordered by (session id, scope id)."""
        v.check_id(process_id, "process_id")
        with self._db.read("process handles") as c:
            if not _exists(c, process_id):
                raise rules.unknown_process(process_id)
            rows = c.execute(
                f"SELECT {GRANT_COLUMNS} FROM process_handle_grants WHERE process_id = ? ORDER BY session_id, scope_id",
                (process_id,),
            ).fetchall()
        return [rules.decode_grant(GrantRow(*r)) for r in rows]

    def delete_session_process_state(self, session_id: str) -> ProcessSessionDeleteReport:
        """Forget a deleted session: revoke every handle its scopes hold, drop the wakes still
        pending for it, and report which live processes lost their last handle (cancel them)
        and which are still held elsewhere. Appends no events."""
        v.check_id(session_id, "session_id")
        with self._db.write("delete session process state") as c:
            now = self._clock.now_ms()
            pids = [
                r[0]
                for r in c.execute(
                    "SELECT DISTINCT process_id FROM process_handle_grants WHERE session_id = ?", (session_id,)
                )
            ]
            revoked = c.execute("DELETE FROM process_handle_grants WHERE session_id = ?", (session_id,)).rowcount
            affected = []
            for pid in pids:
                status, remaining = c.execute(
                    "SELECT status, (SELECT count(*) FROM process_handle_grants g WHERE g.process_id = p.process_id) "
                    "FROM processes p WHERE p.process_id = ?",
                    (pid,),
                ).fetchone()
                affected.append((pid, status != "running", remaining))
            wakes = c.execute(
                "UPDATE process_events SET wake_acked_at_ms = ? WHERE wake_target_session_id = ? "
                "AND wake_id IS NOT NULL AND wake_acked_at_ms IS NULL",
                (now, session_id),
            ).rowcount
        cancel, preserved = rules.classify_after_revoke(affected)
        return ProcessSessionDeleteReport(
            session_id=session_id,
            revoked_handle_count=revoked,
            deleted_wake_count=wakes,
            cancel_process_ids=cancel,
            preserved_process_ids=preserved,
        )

    # -- events --------------------------------------------------------------------------------
    def _append_tx(
        self, c: sqlite3.Connection, prep: PreparedAppend, lease: ProcessLease | None
    ) -> tuple[ProcessEventAppendResult, ProcessRow]:
        pid = prep.process_id
        row = _require(c, pid)
        record = rules.decode_record(row)
        if prep.replay_key is not None:
            stored = c.execute(
                f"SELECT {EVENT_COLUMNS} FROM process_events WHERE process_id = ? AND replay_key = ?",
                (pid, prep.replay_key),
            ).fetchone()
            if stored is not None:
                return rules.replay_result(record, prep, EventRow(*stored)), row
        now = self._clock.now_ms()
        if lease is not None:
            rules.check_lease_held(pid, _load_lease(c, pid), lease, now)
        seq = c.execute(
            "SELECT coalesce(max(sequence), 0) + 1 FROM process_events WHERE process_id = ?", (pid,)
        ).fetchone()[0]
        new = rules.decide_new_event(record, prep, seq, now, self._validator)
        e = new.row
        c.execute(
            f"INSERT INTO process_events (process_id, {EVENT_COLUMNS}) VALUES ({', '.join('?' * 14)})",
            (pid, *e),
        )
        if new.terminal is not None:
            state, output = new.terminal
            c.execute(
                "UPDATE processes SET status = ?, await_output = ?, terminal_at_ms = ?, updated_at_ms = ? "
                "WHERE process_id = ?",
                (state, output, now, now, pid),
            )
            row = row._replace(status=state, await_output=output, terminal_at_ms=now, updated_at_ms=now)
        return new.result, row

    @staticmethod
    def _check_fence(process_id: str, lease: ProcessLease | None) -> None:
        if lease is not None:
            rules.check_lease_arg(lease)
            if lease.process_id != process_id:
                raise ValidationError(f"the lease is for process `{lease.process_id}`, not `{process_id}`")

    def append_event(
        self, process_id: str, request: ProcessEventAppendRequest, *, lease: ProcessLease | None = None
    ) -> ProcessEventAppendResult:
        """Append an event (sequence = last + 1, from 1), or with a stored replay key return the
        stored event. With `lease`, a new event is written only while that lease is live
        (LeaseExpired otherwise), in the same transaction. A refused append stores nothing."""
        prep = rules.prepare_append(process_id, request)
        self._check_fence(process_id, lease)
        with self._db.write("append process event") as c:
            result, _ = self._append_tx(c, prep, lease)
        if not result.replayed:
            self._notifier.notify()
        return result

    def cancel_requested(self, process_id: str, reason: str | None = None) -> ProcessEventAppendResult:
        """Record a cancellation request (not terminal); retrying with the same reason is a replay."""
        return self.append_event(process_id, ProcessEventAppendRequest.cancel_requested(process_id, reason))

    def complete_process(
        self, process_id: str, output: ProcessAwaitOutput, *, lease: ProcessLease | None = None
    ) -> ProcessRecord:
        """End the process with `output` (success -> completed, failure -> failed, cancelled ->
        cancelled) through the keyed terminal event; the same output again is a replay.

        With `lease`: refused (LeaseExpired) unless the lease is live, and the lease is released
        in the same transaction as the terminal event."""
        request = rules.completion_request(process_id, output)
        prep = rules.prepare_append(process_id, request)
        self._check_fence(process_id, lease)
        with self._db.write("complete process") as c:
            result, row = self._append_tx(c, prep, lease)
            if lease is not None:
                _release_lease(c, process_id, lease.lease_token)
        if not result.replayed:
            self._notifier.notify()
        return rules.decode_record(row)

    def events_after(
        self, process_id: str, after_sequence: int, *, event_type: str | None = None, limit: int | None = None
    ) -> list[ProcessEvent]:
        """Events with sequence > after_sequence, ascending; optionally of one type, at most `limit`."""
        v.check_id(process_id, "process_id")
        v.check_nonneg_int(after_sequence, "after_sequence")
        if event_type is not None:
            v.check_id(event_type, "event_type")
        lim = rules.check_limit(limit)
        where, params = "sequence > ?", (after_sequence,)
        if event_type is not None:
            where, params = "sequence > ? AND event_type = ?", (after_sequence, event_type)
        with self._db.read("process events") as c:
            if not _exists(c, process_id):
                raise rules.unknown_process(process_id)
            return _events(c, process_id, where, params, lim)

    def wake_events_after(self, process_id: str, after_sequence: int) -> list[ProcessEvent]:
        """Events after the cursor whose wake materialised and is not acknowledged yet."""
        v.check_id(process_id, "process_id")
        v.check_nonneg_int(after_sequence, "after_sequence")
        with self._db.read("process wake events") as c:
            if not _exists(c, process_id):
                raise rules.unknown_process(process_id)
            return _events(
                c, process_id, "sequence > ? AND wake_id IS NOT NULL AND wake_acked_at_ms IS NULL", (after_sequence,), None
            )

    def ack_wake(self, process_id: str, sequence: int) -> bool:
        """Acknowledge a delivered wake; True when it was pending. Only wake events can be
        acknowledged (ValidationError otherwise)."""
        v.check_id(process_id, "process_id")
        v.check_nonneg_int(sequence, "sequence")
        with self._db.write("ack process wake") as c:
            if not _exists(c, process_id):
                raise rules.unknown_process(process_id)
            r = c.execute(
                "SELECT event_type, wake_id, wake_acked_at_ms FROM process_events WHERE process_id = ? AND sequence = ?",
                (process_id, sequence),
            ).fetchone()
            rules.check_ackable(process_id, sequence, None if r is None else (r[0], r[1] is not None))
            if r[2] is not None:
                return False
            c.execute(
                "UPDATE process_events SET wake_acked_at_ms = ? WHERE process_id = ? AND sequence = ?",
                (self._clock.now_ms(), process_id, sequence),
            )
            return True

    def wait_event_after(
        self, process_id: str, event_type: str | None, after_sequence: int, *, timeout: float
    ) -> ProcessEvent:
        """The first event after the cursor of `event_type` (any type when None), waiting up to
        `timeout` seconds for it (WaitTimeout). An unknown process fails at once."""
        v.check_id(process_id, "process_id")
        if event_type is not None:
            v.check_id(event_type, "event_type")
        v.check_nonneg_int(after_sequence, "after_sequence")
        t = rules.check_timeout(timeout)
        where, params = "sequence > ?", (after_sequence,)
        if event_type is not None:
            where, params = "sequence > ? AND event_type = ?", (after_sequence, event_type)

        def check() -> ProcessEvent | None:
            with self._db.read("wait for process event") as c:
                if not _exists(c, process_id):
                    raise rules.unknown_process(process_id)
                found = _events(c, process_id, where, params, 1)
            return found[0] if found else None

        what = f"event `{event_type or '*'}` of process `{process_id}` after sequence {after_sequence}"
        return rules.wait_for(check, self._notifier, t, poll=True, what=what)

    def await_process(self, process_id: str, *, timeout: float) -> ProcessAwaitOutput:
        """The output of the finished process, waiting up to `timeout` seconds (WaitTimeout)."""
        v.check_id(process_id, "process_id")
        t = rules.check_timeout(timeout)

        def check() -> ProcessAwaitOutput | None:
            with self._db.read("await process") as c:
                row = _require(c, process_id)
            if row.await_output is None:
                return None
            return rules.decode_record(row).status.await_output

        return rules.wait_for(check, self._notifier, t, poll=True, what=f"completion of process `{process_id}`")

    # -- leases --------------------------------------------------------------------------------
    def claim_process_lease(self, process_id: str, owner_id: str, ttl_ms: int) -> ProcessLease:
        """Lease a running process for `ttl_ms`. Another owner's live lease is a LeaseConflict;
        the holder claiming again extends its lease (same token and fencing token); otherwise a
        new lease with a larger fencing token than any before it."""
        rules.check_lease_args(process_id, owner_id, ttl_ms)
        token = self._opts.ids.token()
        with self._db.write("claim process lease") as c:
            r = c.execute("SELECT status FROM processes WHERE process_id = ?", (process_id,)).fetchone()
            if r is None:
                raise rules.unknown_process(process_id)
            current = _load_lease(c, process_id)
            now = self._clock.now_ms()
            last = c.execute("SELECT last_fencing_token FROM process_lease_fencing WHERE id = 1").fetchone()[0]
            d = rules.decide_claim(process_id, r[0], current, owner_id, ttl_ms, now, token, last + 1)
            c.execute(
                f"INSERT INTO process_leases (process_id, {LEASE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (process_id) DO UPDATE SET owner_id = excluded.owner_id, lease_token = excluded.lease_token, "
                "fencing_token = excluded.fencing_token, claimed_at_ms = excluded.claimed_at_ms, "
                "expires_at_ms = excluded.expires_at_ms",
                (process_id, *d.row),
            )
            if d.new:
                c.execute("UPDATE process_lease_fencing SET last_fencing_token = ? WHERE id = 1", (d.row.fencing_token,))
        return rules.lease_from_row(process_id, d.row)

    def renew_process_lease(self, lease: ProcessLease, ttl_ms: int) -> ProcessLease:
        """Extend a live lease to now + ttl_ms; LeaseExpired when it is no longer held."""
        rules.check_lease_arg(lease)
        rules.check_lease_args(lease.process_id, lease.owner_id, ttl_ms)
        pid = lease.process_id
        with self._db.write("renew process lease") as c:
            now = self._clock.now_ms()
            rules.check_lease_held(pid, _load_lease(c, pid), lease, now)
            c.execute("UPDATE process_leases SET expires_at_ms = ? WHERE process_id = ?", (now + ttl_ms, pid))
        return msgspec.structs.replace(lease, expires_at_epoch_ms=now + ttl_ms)

    def complete_process_lease(self, completion: ProcessLeaseCompletion) -> bool:
        """Release the lease if `completion` still names it; a stale one changes nothing (False)."""
        if not isinstance(completion, ProcessLeaseCompletion):
            raise ValidationError(f"expected a ProcessLeaseCompletion, got {type(completion).__name__}")
        v.check_id(completion.process_id, "completion.process_id")
        with self._db.write("complete process lease") as c:
            if not rules.completion_matches(_load_lease(c, completion.process_id), completion):
                return False
            return _release_lease(c, completion.process_id, completion.lease_token) > 0

    def release_process_lease(self, lease: ProcessLease) -> bool:
        """`complete_process_lease(lease.completion())`."""
        rules.check_lease_arg(lease)
        return self.complete_process_lease(lease.completion())

    def get_process_lease(self, process_id: str) -> ProcessLease | None:
        """The lease held on the process (possibly expired: compare `expires_at_epoch_ms` with
        the clock), or None when nobody holds one."""
        v.check_id(process_id, "process_id")
        with self._db.read("get process lease") as c:
            row = _load_lease(c, process_id)
        return rules.lease_from_row(process_id, row) if rules.lease_present(row) else None
