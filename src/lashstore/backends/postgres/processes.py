"""The deployment-wide process registry on PostgreSQL (component "process registry").

Every mutation is one transaction that loads the rows a decision needs, asks
`lashstore.rules.process`, and writes the answer before committing, so an error leaves nothing
behind. Concurrency: the process row (`SELECT ... FOR UPDATE`) serialises everything that
changes one process (appends, completion, leases, acks); registration takes a transaction
advisory lock on the id (the row does not exist yet); lease fencing tokens come from a counter
row updated in the claiming transaction, so they rise in commit order. Lease times use the
database clock unless the options inject a clock (see `connection.uses_database_clock`).

Waits (`wait_event_after`, `await_process`) poll with backoff, and an append NOTIFYs the
process's topic inside its transaction, which wakes waiters in every process at its commit.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

from ...errors import StoreClosed, ValidationError
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
from .connection import PostgresDatabase, Tx, open_database, uses_database_clock

__all__ = ["PostgresProcessRegistry", "COMPONENT", "process_topic"]

COMPONENT = "process registry"

_P_COLS = ", ".join(f"p.{c.strip()}" for c in PROCESS_COLUMNS.split(","))
_G_COLS = ", ".join(f"g.{c.strip()}" for c in GRANT_COLUMNS.split(","))
_NG = len(GRANT_COLUMNS.split(","))


def process_topic(process_id: str) -> str:
    """The NOTIFY payload that wakes waiters on a process (payloads are limited to 8000 bytes)."""
    if len(process_id.encode("utf-8")) <= 1000:
        return "p:" + process_id
    return "p#" + hashlib.sha256(process_id.encode("utf-8")).hexdigest()


def _load_process(t: Tx, pid: str, lock: str = "") -> ProcessRow | None:
    r = t.one(f"SELECT {PROCESS_COLUMNS} FROM processes WHERE process_id = %s{lock}", (pid,))
    return None if r is None else ProcessRow(*r)


def _require(t: Tx, pid: str, lock: str = "") -> ProcessRow:
    row = _load_process(t, pid, lock)
    if row is None:
        raise rules.unknown_process(pid)
    return row


def _exists(t: Tx, pid: str, lock: str = "") -> bool:
    return t.one(f"SELECT 1 FROM processes WHERE process_id = %s{lock}", (pid,)) is not None


def _load_lease(t: Tx, pid: str) -> LeaseRow | None:
    r = t.one(f"SELECT {LEASE_COLUMNS} FROM process_leases WHERE process_id = %s", (pid,))
    return None if r is None else LeaseRow(*r)


def _events(t: Tx, pid: str, where: str, params: tuple, limit: int | None) -> list[ProcessEvent]:
    q = f"SELECT {EVENT_COLUMNS} FROM process_events WHERE process_id = %s AND {where} ORDER BY sequence"
    if limit is not None:
        q += f" LIMIT {int(limit)}"
    return [rules.decode_event(pid, EventRow(*r)) for r in t.all(q, (pid, *params))]


def _upsert_grant(t: Tx, scope: ProcessScope, pid: str, d: ProcessHandleDescriptor, now: int) -> None:
    t.execute(
        "INSERT INTO process_handle_grants (scope_id, process_id, session_id, kind, label, granted_at_ms) "
        "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (scope_id, process_id) DO UPDATE SET "
        "session_id = excluded.session_id, kind = excluded.kind, label = excluded.label, "
        "granted_at_ms = excluded.granted_at_ms",
        (scope.id(), pid, scope.session_id, d.kind, d.label, now),
    )


def _release_lease(t: Tx, pid: str, token: str) -> int:
    # The fencing token stays: the next lease gets a larger one.
    return t.rowcount(
        "UPDATE process_leases SET owner_id = NULL, lease_token = NULL, claimed_at_ms = 0, expires_at_ms = 0 "
        "WHERE process_id = %s AND lease_token = %s",
        (pid, token),
    )


_FOR_UPDATE = " FOR UPDATE"
_FOR_KEY_SHARE = " FOR KEY SHARE"


class PostgresProcessRegistry:
    """Processes, their events and wakes, handle grants and leases, in the deployment's schema.

    database: a `PostgresDatabase` shared with the deployment, or a URL (then owned).
    `validator` checks event payloads against their declared JSON Schema (default `jsonschema`).
    Thread-safe; any number of registry objects and OS processes may share the schema.
    """

    def __init__(
        self,
        database: PostgresDatabase | str,
        options: StoreOptions | None = None,
        *,
        validator: PayloadValidator | None = None,
        schema: str | None = None,
    ) -> None:
        self._opts = options or StoreOptions()
        self._db, self._owns_db = open_database(database, schema)
        try:
            self._db.ensure(COMPONENT)
        except BaseException:
            if self._owns_db:
                self._db.close()
            raise
        self._clock = self._opts.clock
        self._tx_clock = None if uses_database_clock(self._opts) else self._clock
        self._validator = validator or rules.default_validator()
        self._closed = False

    # -- plumbing ------------------------------------------------------------------------------
    def __enter__(self) -> "PostgresProcessRegistry":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closed = True
        if self._owns_db:
            self._db.close()
        else:
            # Let waiters in other threads see the closed registry instead of sleeping out a poll.
            self._db.hub.wake_all()

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

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed(f"postgres process registry ({self.schema}) is closed")

    def _write(self, fn: Any, where: str) -> Any:
        self._check_open()
        return self._db.write(fn, where, clock=self._tx_clock)

    def _read(self, fn: Any, where: str) -> Any:
        self._check_open()
        return self._db.read(fn, where, clock=self._tx_clock)

    # -- registration --------------------------------------------------------------------------
    def register_process(self, registration: ProcessRegistration) -> ProcessRecord:
        """Register a process, or return the stored record when the same registration (same
        hash, whatever its status now) is registered again. Another registration under the
        same id is a ReplayConflict."""
        prep = rules.prepare_registration(registration, self._validator)
        pid = prep.registration.id

        def tx(t: Tx) -> ProcessRow:
            t.lock("process", pid)
            row = _load_process(t, pid)
            if row is not None:
                rules.check_same_registration(pid, row.registration_hash, prep.registration_hash)
                return row
            row = rules.new_process_row(prep, t.now())
            t.execute(
                "INSERT INTO processes (process_id, registration_hash, owner_session_id, owner_scope_id, "
                "host_profile_id, status, created_at_ms, updated_at_ms, terminal_at_ms, registration, "
                "external_ref, await_output) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
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
            return row

        return rules.decode_record(self._write(tx, "register process"))

    def get_process(self, process_id: str) -> ProcessRecord | None:
        """The record, None when unknown; CorruptRecord when it is stored but does not decode."""
        v.check_id(process_id, "process_id")
        row = self._read(lambda t: _load_process(t, process_id), "get process")
        return None if row is None else rules.decode_record(row)

    def set_external_ref(self, process_id: str, ref: ProcessExternalRef) -> ProcessRecord:
        """Record where the work runs. Set once: the same ref again changes nothing, another
        ref is a ReplayConflict. Allowed on finished processes."""
        new, data = rules.prepare_external_ref(process_id, ref)

        def tx(t: Tx) -> ProcessRow:
            row = _require(t, process_id, _FOR_UPDATE)
            current = rules.decode_record(row).external_ref
            if rules.decide_external_ref(process_id, current, new):
                now = t.now()
                t.execute(
                    "UPDATE processes SET external_ref = %s, updated_at_ms = %s WHERE process_id = %s",
                    (data, now, process_id),
                )
                row = row._replace(external_ref=data, updated_at_ms=now)
            return row

        return rules.decode_record(self._write(tx, "set external ref"))

    def list_non_terminal(self) -> list[ProcessRecord]:
        """Running processes, ordered by id."""
        return self.list_processes("running")

    def list_processes(self, status: str | None = None, limit: int | None = None) -> list[ProcessRecord]:
        """Every process (or those in `status`), ordered by id, at most `limit`."""
        st = rules.check_status_filter(status)
        lim = rules.check_limit(limit)
        q = f"SELECT {PROCESS_COLUMNS} FROM processes"
        params: tuple = ()
        if st is not None:
            q += " WHERE status = %s"
            params = (st,)
        q += " ORDER BY process_id"
        if lim is not None:
            q += f" LIMIT {lim}"
        rows = self._read(lambda t: [ProcessRow(*r) for r in t.all(q, params)], "list processes")
        return [rules.decode_record(r) for r in rows]

    def prune_terminal_processes(self, older_than_ms: int) -> int:
        """Delete processes that finished at least `older_than_ms` ago (by the store's clock),
        with their events, wakes, grants and lease. Running processes are never touched.
        Returns how many processes were deleted."""
        rules.check_age(older_than_ms)

        def tx(t: Tx) -> int:
            cutoff = t.now() - older_than_ms
            pruned = t.all(
                "DELETE FROM processes WHERE terminal_at_ms IS NOT NULL AND terminal_at_ms <= %s RETURNING process_id",
                (cutoff,),
            )
            for (pid,) in pruned:
                t.notify(process_topic(pid))  # waiters on a pruned process learn it is gone
            return len(pruned)

        return self._write(tx, "prune terminal processes")

    # -- handle grants -------------------------------------------------------------------------
    def grant_handle(
        self, owner_scope: ProcessScope, process_id: str, descriptor: ProcessHandleDescriptor | None = None
    ) -> ProcessHandleGrant:
        """Give `owner_scope` a handle on the process (replacing its descriptor if it had one)."""
        rules.check_scope(owner_scope, "owner_scope")
        v.check_id(process_id, "process_id")
        d = rules.check_descriptor(descriptor)

        def tx(t: Tx) -> None:
            if not _exists(t, process_id, _FOR_KEY_SHARE):
                raise rules.unknown_process(process_id)
            _upsert_grant(t, owner_scope, process_id, d, t.now())

        self._write(tx, "grant process handle")
        return ProcessHandleGrant(
            session_id=owner_scope.session_id, process_id=process_id, descriptor=d, scope_id=owner_scope.id()
        )

    def revoke_handle(self, owner_scope: ProcessScope, process_id: str) -> bool:
        """Remove the scope's handle; True when there was one."""
        rules.check_scope(owner_scope, "owner_scope")
        v.check_id(process_id, "process_id")
        return self._write(
            lambda t: t.rowcount(
                "DELETE FROM process_handle_grants WHERE scope_id = %s AND process_id = %s",
                (owner_scope.id(), process_id),
            )
            > 0,
            "revoke process handle",
        )

    def transfer_handle_grants(
        self, from_scope: ProcessScope, to_scope: ProcessScope, process_ids: list[str]
    ) -> list[ProcessHandleGrant]:
        """Move handles (with their descriptors) from one scope to another, all or nothing.
        A process not granted to `from_scope` refuses the whole transfer. Appends no events."""
        pids = rules.check_transfer(from_scope, to_scope, process_ids)

        def tx(t: Tx) -> list[ProcessHandleGrant]:
            out: list[ProcessHandleGrant] = []
            now = t.now()
            for pid in pids:
                r = t.one(
                    "DELETE FROM process_handle_grants WHERE scope_id = %s AND process_id = %s RETURNING kind, label",
                    (from_scope.id(), pid),
                )
                if r is None:
                    raise rules.not_granted(pid, from_scope)
                d = ProcessHandleDescriptor(r[0], r[1])
                _upsert_grant(t, to_scope, pid, d, now)
                out.append(
                    ProcessHandleGrant(session_id=to_scope.session_id, process_id=pid, descriptor=d, scope_id=to_scope.id())
                )
            return out

        return self._write(tx, "transfer process handles")

    def _grant_entries(self, scope: ProcessScope, live_only: bool) -> list[tuple[ProcessHandleGrant, ProcessRecord]]:
        rules.check_scope(scope, "scope")
        live = " AND p.status = 'running'" if live_only else ""
        rows = self._read(
            lambda t: t.all(
                f"SELECT {_G_COLS}, {_P_COLS} FROM process_handle_grants g "
                f"JOIN processes p ON p.process_id = g.process_id WHERE g.scope_id = %s{live} ORDER BY g.process_id",
                (scope.id(),),
            ),
            "list process handles",
        )
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
        return self._read(
            lambda t: t.one(
                "SELECT 1 FROM process_handle_grants WHERE scope_id = %s AND process_id = %s",
                (scope.id(), process_id),
            )
            is not None,
            "has process handle",
        )

    def handle_grants_for_process(self, process_id: str) -> list[ProcessHandleGrant]:
        """Every grant of the process, ordered by (session id, scope id)."""
        v.check_id(process_id, "process_id")

        def tx(t: Tx) -> list[tuple]:
            if not _exists(t, process_id):
                raise rules.unknown_process(process_id)
            return t.all(
                f"SELECT {GRANT_COLUMNS} FROM process_handle_grants WHERE process_id = %s ORDER BY session_id, scope_id",
                (process_id,),
            )

        return [rules.decode_grant(GrantRow(*r)) for r in self._read(tx, "process handles")]

    def delete_session_process_state(self, session_id: str) -> ProcessSessionDeleteReport:
        """Forget a deleted session: revoke every handle its scopes hold, drop the wakes still
        pending for it, and report which live processes lost their last handle (cancel them)
        and which are still held elsewhere. Appends no events."""
        v.check_id(session_id, "session_id")

        def tx(t: Tx) -> tuple[int, list[tuple[str, bool, int]], int]:
            now = t.now()
            deleted = t.all(
                "DELETE FROM process_handle_grants WHERE session_id = %s RETURNING process_id", (session_id,)
            )
            pids = sorted({r[0] for r in deleted})
            affected: list[tuple[str, bool, int]] = []
            if pids:
                for pid, status, remaining in t.all(
                    "SELECT p.process_id, p.status, (SELECT count(*) FROM process_handle_grants g "
                    "WHERE g.process_id = p.process_id) FROM processes p WHERE p.process_id = ANY(%s)",
                    (pids,),
                ):
                    affected.append((pid, status != "running", int(remaining)))
            wakes = t.rowcount(
                "UPDATE process_events SET wake_acked_at_ms = %s WHERE wake_target_session_id = %s "
                "AND wake_id IS NOT NULL AND wake_acked_at_ms IS NULL",
                (now, session_id),
            )
            return len(deleted), affected, wakes

        revoked, affected, wakes = self._write(tx, "delete session process state")
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
        self, t: Tx, prep: PreparedAppend, lease: ProcessLease | None
    ) -> tuple[ProcessEventAppendResult, ProcessRow]:
        pid = prep.process_id
        row = _require(t, pid, _FOR_UPDATE)
        record = rules.decode_record(row)
        if prep.replay_key is not None:
            stored = t.one(
                f"SELECT {EVENT_COLUMNS} FROM process_events WHERE process_id = %s AND replay_key = %s",
                (pid, prep.replay_key),
            )
            if stored is not None:
                return rules.replay_result(record, prep, EventRow(*stored)), row
        now = t.now()
        if lease is not None:
            rules.check_lease_held(pid, _load_lease(t, pid), lease, now)
        seq = t.one(
            "SELECT coalesce(max(sequence), 0) + 1 FROM process_events WHERE process_id = %s", (pid,)
        )[0]  # type: ignore[index]
        new = rules.decide_new_event(record, prep, seq, now, self._validator)
        e = new.row
        t.execute(
            f"INSERT INTO process_events (process_id, {EVENT_COLUMNS}) VALUES ({', '.join(['%s'] * 14)})",
            (pid, *e),
        )
        if new.terminal is not None:
            state, output = new.terminal
            t.execute(
                "UPDATE processes SET status = %s, await_output = %s, terminal_at_ms = %s, updated_at_ms = %s "
                "WHERE process_id = %s",
                (state, output, now, now, pid),
            )
            row = row._replace(status=state, await_output=output, terminal_at_ms=now, updated_at_ms=now)
        t.notify(process_topic(pid))
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
        return self._write(lambda t: self._append_tx(t, prep, lease)[0], "append process event")

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

        def tx(t: Tx) -> ProcessRow:
            _, row = self._append_tx(t, prep, lease)
            if lease is not None:
                _release_lease(t, process_id, lease.lease_token)
            return row

        return rules.decode_record(self._write(tx, "complete process"))

    def events_after(
        self, process_id: str, after_sequence: int, *, event_type: str | None = None, limit: int | None = None
    ) -> list[ProcessEvent]:
        """Events with sequence > after_sequence, ascending; optionally of one type, at most `limit`."""
        v.check_id(process_id, "process_id")
        v.check_nonneg_int(after_sequence, "after_sequence")
        if event_type is not None:
            v.check_id(event_type, "event_type")
        lim = rules.check_limit(limit)
        where, params = "sequence > %s", (after_sequence,)
        if event_type is not None:
            where, params = "sequence > %s AND event_type = %s", (after_sequence, event_type)

        def tx(t: Tx) -> list[ProcessEvent]:
            if not _exists(t, process_id):
                raise rules.unknown_process(process_id)
            return _events(t, process_id, where, params, lim)

        return self._read(tx, "process events")

    def wake_events_after(self, process_id: str, after_sequence: int) -> list[ProcessEvent]:
        """Events after the cursor whose wake materialised and is not acknowledged yet."""
        v.check_id(process_id, "process_id")
        v.check_nonneg_int(after_sequence, "after_sequence")

        def tx(t: Tx) -> list[ProcessEvent]:
            if not _exists(t, process_id):
                raise rules.unknown_process(process_id)
            return _events(
                t, process_id, "sequence > %s AND wake_id IS NOT NULL AND wake_acked_at_ms IS NULL",
                (after_sequence,), None,
            )

        return self._read(tx, "process wake events")

    def ack_wake(self, process_id: str, sequence: int) -> bool:
        """Acknowledge a delivered wake; True when it was pending. Only wake events can be
        acknowledged (ValidationError otherwise)."""
        v.check_id(process_id, "process_id")
        v.check_nonneg_int(sequence, "sequence")

        def tx(t: Tx) -> bool:
            if not _exists(t, process_id, _FOR_UPDATE):
                raise rules.unknown_process(process_id)
            r = t.one(
                "SELECT event_type, wake_id, wake_acked_at_ms FROM process_events "
                "WHERE process_id = %s AND sequence = %s",
                (process_id, sequence),
            )
            rules.check_ackable(process_id, sequence, None if r is None else (r[0], r[1] is not None))
            if r[2] is not None:  # type: ignore[index]
                return False
            t.execute(
                "UPDATE process_events SET wake_acked_at_ms = %s WHERE process_id = %s AND sequence = %s",
                (t.now(), process_id, sequence),
            )
            return True

        return self._write(tx, "ack process wake")

    def _wait(self, process_id: str, check: Any, timeout: float, what: str) -> Any:
        hub = self._db.hub
        hub.start()
        notifier = hub.notifier(process_topic(process_id))  # held for the whole wait
        return rules.wait_for(check, notifier, timeout, poll=True, what=what)

    def wait_event_after(
        self, process_id: str, event_type: str | None, after_sequence: int, *, timeout: float
    ) -> ProcessEvent:
        """The first event after the cursor of `event_type` (any type when None), waiting up to
        `timeout` seconds for it (WaitTimeout). An unknown process fails at once."""
        v.check_id(process_id, "process_id")
        if event_type is not None:
            v.check_id(event_type, "event_type")
        v.check_nonneg_int(after_sequence, "after_sequence")
        t_s = rules.check_timeout(timeout)
        where, params = "sequence > %s", (after_sequence,)
        if event_type is not None:
            where, params = "sequence > %s AND event_type = %s", (after_sequence, event_type)

        def look(t: Tx) -> ProcessEvent | None:
            if not _exists(t, process_id):
                raise rules.unknown_process(process_id)
            found = _events(t, process_id, where, params, 1)
            return found[0] if found else None

        what = f"event `{event_type or '*'}` of process `{process_id}` after sequence {after_sequence}"
        return self._wait(process_id, lambda: self._read(look, "wait for process event"), t_s, what)

    def await_process(self, process_id: str, *, timeout: float) -> ProcessAwaitOutput:
        """The output of the finished process, waiting up to `timeout` seconds (WaitTimeout)."""
        v.check_id(process_id, "process_id")
        t_s = rules.check_timeout(timeout)

        def check() -> ProcessAwaitOutput | None:
            row = self._read(lambda t: _require(t, process_id), "await process")
            if row.await_output is None:
                return None
            return rules.decode_record(row).status.await_output

        return self._wait(process_id, check, t_s, f"completion of process `{process_id}`")

    # -- leases --------------------------------------------------------------------------------
    def claim_process_lease(self, process_id: str, owner_id: str, ttl_ms: int) -> ProcessLease:
        """Lease a running process for `ttl_ms`. Another owner's live lease is a LeaseConflict;
        the holder claiming again extends its lease (same token and fencing token); otherwise a
        new lease with a larger fencing token than any before it."""
        rules.check_lease_args(process_id, owner_id, ttl_ms)
        token = self._opts.ids.token()

        def tx(t: Tx) -> LeaseRow:
            r = t.one("SELECT status FROM processes WHERE process_id = %s FOR UPDATE", (process_id,))
            if r is None:
                raise rules.unknown_process(process_id)
            last = t.one("SELECT last_fencing_token FROM process_lease_fencing WHERE id = 1 FOR UPDATE")[0]  # type: ignore[index]
            current = _load_lease(t, process_id)
            now = t.refresh_now() if t.uses_database_clock else t.now()
            d = rules.decide_claim(process_id, r[0], current, owner_id, ttl_ms, now, token, last + 1)
            t.execute(
                f"INSERT INTO process_leases (process_id, {LEASE_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (process_id) DO UPDATE SET owner_id = excluded.owner_id, "
                "lease_token = excluded.lease_token, fencing_token = excluded.fencing_token, "
                "claimed_at_ms = excluded.claimed_at_ms, expires_at_ms = excluded.expires_at_ms",
                (process_id, *d.row),
            )
            if d.new:
                t.execute(
                    "UPDATE process_lease_fencing SET last_fencing_token = %s WHERE id = 1", (d.row.fencing_token,)
                )
            return d.row

        return rules.lease_from_row(process_id, self._write(tx, "claim process lease"))

    def renew_process_lease(self, lease: ProcessLease, ttl_ms: int) -> ProcessLease:
        """Extend a live lease to now + ttl_ms; LeaseExpired when it is no longer held."""
        rules.check_lease_arg(lease)
        rules.check_lease_args(lease.process_id, lease.owner_id, ttl_ms)
        pid = lease.process_id

        def tx(t: Tx) -> int:
            t.execute("SELECT 1 FROM processes WHERE process_id = %s FOR UPDATE", (pid,))
            now = t.now()
            rules.check_lease_held(pid, _load_lease(t, pid), lease, now)
            t.execute("UPDATE process_leases SET expires_at_ms = %s WHERE process_id = %s", (now + ttl_ms, pid))
            return now + ttl_ms

        expires = self._write(tx, "renew process lease")
        return msgspec.structs.replace(lease, expires_at_epoch_ms=expires)

    def complete_process_lease(self, completion: ProcessLeaseCompletion) -> bool:
        """Release the lease if `completion` still names it; a stale one changes nothing (False)."""
        if not isinstance(completion, ProcessLeaseCompletion):
            raise ValidationError(f"expected a ProcessLeaseCompletion, got {type(completion).__name__}")
        v.check_id(completion.process_id, "completion.process_id")
        pid = completion.process_id

        def tx(t: Tx) -> bool:
            t.execute("SELECT 1 FROM processes WHERE process_id = %s FOR UPDATE", (pid,))
            if not rules.completion_matches(_load_lease(t, pid), completion):
                return False
            return _release_lease(t, pid, completion.lease_token) > 0

        return self._write(tx, "complete process lease")

    def release_process_lease(self, lease: ProcessLease) -> bool:
        """`complete_process_lease(lease.completion())`."""
        rules.check_lease_arg(lease)
        return self.complete_process_lease(lease.completion())

    def get_process_lease(self, process_id: str) -> ProcessLease | None:
        """The lease held on the process (possibly expired: compare `expires_at_epoch_ms` with
        the clock), or None when nobody holds one."""
        v.check_id(process_id, "process_id")
        row = self._read(lambda t: _load_lease(t, process_id), "get process lease")
        return rules.lease_from_row(process_id, row) if rules.lease_present(row) else None
