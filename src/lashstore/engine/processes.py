"""The process registry, written once: every method of `contracts.ProcessRegistry` over a `Db`.

Every mutation is one write transaction: it loads the rows a decision needs, asks
`rules.process`, and writes the answer before committing, so an error leaves nothing behind (a
refused append stores no event). Where rows lock one by one (PostgreSQL) the process row
(`FOR UPDATE`) serialises everything that changes one process (appends, completion, leases,
acks); registration takes a lock on the id, since its row does not exist yet; lease fencing
tokens come from one counter row updated in the claiming transaction, so they rise in commit
order. "Now" is the transaction's (`tx.now()`), read after its locks are taken.

Waits (`wait_event_after`, `await_process`) re-read the database after every notification and
at least every 40 ms (`engine.waits`). A write that can end a wait notifies its process's topic
(`tx.notify`); the backend turns that into a wake-up of the waiters it can reach.
Statements are `backends.sql.processes`; decisions are `rules.process`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import msgspec

from ..backends.sql import processes as sql
from ..errors import ValidationError
from ..model.process import (
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
from ..model.session import DurabilityTier
from ..options import StoreOptions
from ..rules import process as rules
from ..rules import validate as v
from ..rules.process import PayloadValidator, PreparedAppend, ProcessRow
from ..model.maintenance import RegistryDump
from .base import DbStore
from .maintenance import Checker
from .registry import RegistryMethods
from .tx import Db, Tx
from .waits import Notifier, wait_for

__all__ = ["ProcessEngine", "process_topic"]


def process_topic(process_id: str) -> str:
    """The notification topic that wakes waiters on a process (PostgreSQL's NOTIFY payloads are
    limited to 8000 bytes, so a long id is hashed)."""
    if len(process_id.encode("utf-8")) <= 1000:
        return "p:" + process_id
    return "p#" + hashlib.sha256(process_id.encode("utf-8")).hexdigest()


def _check_fence(process_id: str, lease: ProcessLease | None) -> None:
    if lease is not None:
        rules.check_lease_arg(lease)
        if lease.process_id != process_id:
            raise ValidationError(f"the lease is for process `{lease.process_id}`, not `{process_id}`")


class ProcessEngine(DbStore, RegistryMethods):
    """Processes, their events and wakes, handle grants and leases, in one database.

    db: the database (`engine.tx.Db`); owns_db: close it with the registry.
    validator: checks event payloads against their declared JSON Schema (default `jsonschema`).
    tier: the durability the backend gives.
    notifier: woken when a waiter should look again. A backend that can reach waiters in other
        threads (or processes) notifies it after commits, or overrides `_notifier`/`_wake_all`.
    Thread-safe: every operation is one transaction of the database object.
    """

    def __init__(
        self,
        db: Db,
        *,
        options: StoreOptions | None = None,
        validator: PayloadValidator | None = None,
        tier: DurabilityTier = DurabilityTier.DURABLE,
        owns_db: bool = True,
        notifier: Notifier | None = None,
    ) -> None:
        super().__init__(db, options=options, tier=tier, owns_db=owns_db)
        self._validator = validator or rules.default_validator()
        self._local = notifier or Notifier()

    _what = "process registry"

    def close(self) -> None:
        super().close()
        # Waiters in other threads see the closed registry at once instead of sleeping out a poll.
        self._wake_all()

    def _notifier(self, topic: str) -> Notifier:
        """What wakes a waiter on `topic` (held for the whole wait)."""
        return self._local

    def _wake_all(self) -> None:
        self._local.notify()

    # -- registration --------------------------------------------------------------------------
    def register_process(self, registration: ProcessRegistration) -> ProcessRecord:
        """Register a process, or return the stored record when the same registration (same
        hash, whatever its status now) is registered again. Another registration under the
        same id is a ReplayConflict."""
        prep = rules.prepare_registration(registration, self._validator)
        pid = prep.registration.id

        def tx(t: Tx) -> ProcessRow:
            t.lock("process", pid)
            row = sql.load_process(t, pid)
            if row is not None:
                rules.check_same_registration(pid, row.registration_hash, prep.registration_hash)
                return row
            row = rules.new_process_row(prep, t.now())
            sql.insert_process(t, row, prep)
            return row

        return rules.decode_record(self._write(tx, "register process"))

    def get_process(self, process_id: str) -> ProcessRecord | None:
        """The record, None when unknown; CorruptRecord when it is stored but does not decode."""
        v.check_id(process_id, "process_id")
        row = self._read(lambda t: sql.load_process(t, process_id), "get process")
        return None if row is None else rules.decode_record(row)

    def set_external_ref(self, process_id: str, ref: ProcessExternalRef) -> ProcessRecord:
        """Record where the work runs. Set once: the same ref again changes nothing, another
        ref is a ReplayConflict. Allowed on finished processes."""
        new, data = rules.prepare_external_ref(process_id, ref)

        def tx(t: Tx) -> ProcessRow:
            row = _require(t, process_id, lock=True)
            if rules.decide_external_ref(process_id, rules.decode_record(row).external_ref, new):
                now = t.now()
                sql.set_external_ref(t, process_id, data, now)
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
        rows = self._read(lambda t: sql.list_processes(t, st, lim), "list processes")
        return [rules.decode_record(r) for r in rows]

    def prune_terminal_processes(self, older_than_ms: int) -> int:
        """Delete processes that finished at least `older_than_ms` ago (by the store's clock),
        with their events, wakes, grants and lease. Running processes are never touched.
        Returns how many processes were deleted."""
        rules.check_age(older_than_ms)

        def tx(t: Tx) -> int:
            pids = sql.prunable(t, t.now() - older_than_ms)
            n = sql.delete_processes(t, pids)
            for pid in pids:
                t.notify(process_topic(pid))  # waiters on a pruned process learn it is gone
            return n

        return self._write(tx, "prune terminal processes")

    # -- handle grants -------------------------------------------------------------------------
    def grant_handle(
        self, owner_scope: ProcessScope, process_id: str, descriptor: ProcessHandleDescriptor | None = None
    ) -> ProcessHandleGrant:
        """Give `owner_scope` a handle on the process (replacing its descriptor if it had one)."""
        rules.check_scope(owner_scope, "owner_scope")
        v.check_id(process_id, "process_id")
        d = rules.check_descriptor(descriptor)
        scope_id = owner_scope.id()

        def tx(t: Tx) -> None:
            if not sql.exists(t, process_id, lock="key share"):
                raise rules.unknown_process(process_id)
            sql.upsert_grant(t, scope_id, owner_scope.session_id, process_id, d.kind, d.label, t.now())

        self._write(tx, "grant process handle")
        return ProcessHandleGrant(session_id=owner_scope.session_id, process_id=process_id, descriptor=d,
                                  scope_id=scope_id)

    def revoke_handle(self, owner_scope: ProcessScope, process_id: str) -> bool:
        """Remove the scope's handle; True when there was one."""
        rules.check_scope(owner_scope, "owner_scope")
        v.check_id(process_id, "process_id")
        scope_id = owner_scope.id()
        return self._write(lambda t: sql.delete_grant(t, scope_id, process_id) > 0, "revoke process handle")

    def transfer_handle_grants(
        self, from_scope: ProcessScope, to_scope: ProcessScope, process_ids: list[str]
    ) -> list[ProcessHandleGrant]:
        """Move handles (with their descriptors) from one scope to another, all or nothing.
        A process not granted to `from_scope` refuses the whole transfer. Appends no events."""
        pids = rules.check_transfer(from_scope, to_scope, process_ids)
        src, dst = from_scope.id(), to_scope.id()

        def tx(t: Tx) -> list[ProcessHandleGrant]:
            out: list[ProcessHandleGrant] = []
            now = t.now()
            for pid in pids:
                found = sql.grant_descriptor(t, src, pid)
                if found is None or sql.delete_grant(t, src, pid) == 0:
                    raise rules.not_granted(pid, from_scope)
                sql.upsert_grant(t, dst, to_scope.session_id, pid, found[0], found[1], now)
                out.append(ProcessHandleGrant(session_id=to_scope.session_id, process_id=pid,
                                              descriptor=ProcessHandleDescriptor(*found), scope_id=dst))
            return out

        return self._write(tx, "transfer process handles")

    def _grant_entries(self, scope: ProcessScope, live_only: bool) -> list[tuple[ProcessHandleGrant, ProcessRecord]]:
        rules.check_scope(scope, "scope")
        scope_id = scope.id()
        rows = self._read(lambda t: sql.grant_entries(t, scope_id, live_only), "list process handles")
        return [(rules.decode_grant(g), rules.decode_record(p)) for g, p in rows]

    def list_handle_grants(self, scope: ProcessScope) -> list[tuple[ProcessHandleGrant, ProcessRecord]]:
        """(grant, record) of every process the scope holds a handle on, ordered by process id."""
        return self._grant_entries(scope, False)

    def list_live_handle_grants(self, scope: ProcessScope) -> list[tuple[ProcessHandleGrant, ProcessRecord]]:
        """As `list_handle_grants`, running processes only."""
        return self._grant_entries(scope, True)

    def has_handle_grant(self, scope: ProcessScope, process_id: str) -> bool:
        rules.check_scope(scope, "scope")
        v.check_id(process_id, "process_id")
        scope_id = scope.id()
        return self._read(lambda t: sql.has_grant(t, scope_id, process_id), "has process handle")

    def handle_grants_for_process(self, process_id: str) -> list[ProcessHandleGrant]:
        """Every grant of the process, ordered by (session id, scope id)."""
        v.check_id(process_id, "process_id")

        def tx(t: Tx) -> list[Any]:
            if not sql.exists(t, process_id):
                raise rules.unknown_process(process_id)
            return sql.grants_for_process(t, process_id)

        return [rules.decode_grant(g) for g in self._read(tx, "process handles")]

    def delete_session_process_state(self, session_id: str) -> ProcessSessionDeleteReport:
        """Forget a deleted session: revoke every handle its scopes hold, drop the wakes still
        pending for it, and report which live processes lost their last handle (cancel them)
        and which are still held elsewhere. Appends no events."""
        v.check_id(session_id, "session_id")

        def tx(t: Tx) -> tuple[int, list[tuple[str, bool, int]], int]:
            now = t.now()
            pids = sql.session_grant_processes(t, session_id)
            revoked = sql.delete_session_grants(t, session_id, pids)
            affected = [(pid, status != "running", remaining) for pid, status, remaining in sql.grant_counts(t, pids)]
            return revoked, affected, sql.drop_session_wakes(t, session_id, now)

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
    def _append(self, t: Tx, prep: PreparedAppend, lease: ProcessLease | None
                ) -> tuple[ProcessEventAppendResult, ProcessRow]:
        pid = prep.process_id
        row = _require(t, pid, lock=True)
        record = rules.decode_record(row)
        if prep.replay_key is not None:
            stored = sql.event_by_replay_key(t, pid, prep.replay_key)
            if stored is not None:
                return rules.replay_result(record, prep, stored), row
        now = t.now()
        if lease is not None:
            rules.check_lease_held(pid, sql.load_lease(t, pid), lease, now)
        new = rules.decide_new_event(record, prep, sql.next_sequence(t, pid), now, self._validator)
        sql.insert_event(t, pid, new.row)
        if new.terminal is not None:
            state, output = new.terminal
            sql.finish_process(t, pid, state, output, now)
            row = row._replace(status=state, await_output=output, terminal_at_ms=now, updated_at_ms=now)
        t.notify(process_topic(pid))
        return new.result, row

    def append_event(
        self, process_id: str, request: ProcessEventAppendRequest, *, lease: ProcessLease | None = None
    ) -> ProcessEventAppendResult:
        """Append an event (sequence = last + 1, from 1), or with a stored replay key return the
        stored event. With `lease`, a new event is written only while that lease is live
        (LeaseExpired otherwise), in the same transaction. A refused append stores nothing."""
        prep = rules.prepare_append(process_id, request)
        _check_fence(process_id, lease)
        return self._write(lambda t: self._append(t, prep, lease)[0], "append process event")

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
        prep = rules.prepare_append(process_id, rules.completion_request(process_id, output))
        _check_fence(process_id, lease)

        def tx(t: Tx) -> ProcessRow:
            _, row = self._append(t, prep, lease)
            if lease is not None:
                sql.release_lease(t, process_id, lease.lease_token)
            return row

        return rules.decode_record(self._write(tx, "complete process"))

    def _events(self, process_id: str, after: int, where: str, *, event_type: str | None = None,
                pending_wakes: bool = False, limit: int | None = None) -> list[ProcessEvent]:
        def tx(t: Tx) -> list[Any]:
            if not sql.exists(t, process_id):
                raise rules.unknown_process(process_id)
            return sql.events(t, process_id, after, event_type=event_type, pending_wakes=pending_wakes, limit=limit)

        return [rules.decode_event(process_id, e) for e in self._read(tx, where)]

    def events_after(
        self, process_id: str, after_sequence: int, *, event_type: str | None = None, limit: int | None = None
    ) -> list[ProcessEvent]:
        """Events with sequence > after_sequence, ascending; optionally of one type, at most `limit`."""
        v.check_id(process_id, "process_id")
        v.check_nonneg_int(after_sequence, "after_sequence")
        if event_type is not None:
            v.check_id(event_type, "event_type")
        lim = rules.check_limit(limit)
        return self._events(process_id, after_sequence, "process events", event_type=event_type, limit=lim)

    def wake_events_after(self, process_id: str, after_sequence: int) -> list[ProcessEvent]:
        """Events after the cursor whose wake materialised and is not acknowledged yet."""
        v.check_id(process_id, "process_id")
        v.check_nonneg_int(after_sequence, "after_sequence")
        return self._events(process_id, after_sequence, "process wake events", pending_wakes=True)

    def ack_wake(self, process_id: str, sequence: int) -> bool:
        """Acknowledge a delivered wake; True when it was pending. Only wake events can be
        acknowledged (ValidationError otherwise)."""
        v.check_id(process_id, "process_id")
        v.check_nonneg_int(sequence, "sequence")

        def tx(t: Tx) -> bool:
            if not sql.exists(t, process_id, lock="update"):
                raise rules.unknown_process(process_id)
            found = sql.wake_state(t, process_id, sequence)
            rules.check_ackable(process_id, sequence, None if found is None else found[:2])
            assert found is not None
            if found[2]:
                return False
            sql.ack_wake(t, process_id, sequence, t.now())
            return True

        return self._write(tx, "ack process wake")

    def _wait(self, process_id: str, check: Callable[[], Any], timeout: float, what: str) -> Any:
        return wait_for(check, self._notifier(process_topic(process_id)), timeout, poll=True, what=what)

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

        def check() -> ProcessEvent | None:
            found = self._events(process_id, after_sequence, "wait for process event", event_type=event_type, limit=1)
            return found[0] if found else None

        what = f"event `{event_type or '*'}` of process `{process_id}` after sequence {after_sequence}"
        return self._wait(process_id, check, t_s, what)

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

        def tx(t: Tx) -> Any:
            status = sql.process_status(t, process_id)
            if status is None:
                raise rules.unknown_process(process_id)
            last = sql.last_fencing(t)
            current = sql.load_lease(t, process_id)
            d = rules.decide_claim(process_id, status, current, owner_id, ttl_ms, t.now(), token, last + 1)
            sql.put_lease(t, process_id, d.row)
            if d.new:
                sql.set_last_fencing(t, d.row.fencing_token)
            return d.row

        return rules.lease_from_row(process_id, self._write(tx, "claim process lease"))

    def renew_process_lease(self, lease: ProcessLease, ttl_ms: int) -> ProcessLease:
        """Extend a live lease to now + ttl_ms; LeaseExpired when it is no longer held."""
        rules.check_lease_arg(lease)
        rules.check_lease_args(lease.process_id, lease.owner_id, ttl_ms)
        pid = lease.process_id

        def tx(t: Tx) -> int:
            sql.exists(t, pid, lock="update")
            now = t.now()
            rules.check_lease_held(pid, sql.load_lease(t, pid), lease, now)
            sql.extend_lease(t, pid, now + ttl_ms)
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
            sql.exists(t, pid, lock="update")
            if not rules.completion_matches(sql.load_lease(t, pid), completion):
                return False
            return sql.release_lease(t, pid, completion.lease_token) > 0

        return self._write(tx, "complete process lease")

    def release_process_lease(self, lease: ProcessLease) -> bool:
        """`complete_process_lease(lease.completion())`."""
        rules.check_lease_arg(lease)
        return self.complete_process_lease(lease.completion())

    def get_process_lease(self, process_id: str) -> ProcessLease | None:
        """The lease held on the process (possibly expired: compare `expires_at_epoch_ms` with
        the clock), or None when nobody holds one."""
        v.check_id(process_id, "process_id")
        row = self._read(lambda t: sql.load_lease(t, process_id), "get process lease")
        return rules.lease_from_row(process_id, row) if rules.lease_present(row) else None

    # -- maintenance (verify, shrink, dump and load: engine.registry) ---------------------------
    _spec = sql.DUMP

    def _check_rows(self, t: Tx, chk: Checker) -> None:
        for table, what, key, decode in _VERIFIED:
            for r in sql.scan(t, table):
                chk.run(what, key(r), decode, r)
        chk.run("process lease fencing", "1", lambda: sql.last_fencing(t, lock=False))

    def _counters(self, t: Tx) -> dict[str, int]:
        return {"fencing": sql.last_fencing(t, lock=False)}

    def _raise_counters(self, t: Tx, dump: RegistryDump) -> None:
        fencing_at = sql.DUMP["process_leases"][0].index("fencing_token")
        tokens = [r[fencing_at] for r in dump.tables.get("process_leases", [])]
        top = max([dump.counters.get("fencing", 0)] + [n for n in tokens if type(n) is int])
        if top > sql.last_fencing(t):
            sql.set_last_fencing(t, top)


def _require(t: Tx, pid: str, *, lock: bool = False) -> ProcessRow:
    row = sql.load_process(t, pid, lock=lock)
    if row is None:
        raise rules.unknown_process(pid)
    return row


def _decode_lease(r: tuple) -> ProcessLease | None:
    row = sql.lease_row(r[0], r[1:])
    return rules.lease_from_row(r[0], row) if rules.lease_present(row) else None


#: What verify reads: (table, what a row is, its key, how the registry decodes it).
_VERIFIED: tuple[tuple[str, str, Callable[[tuple], str], Callable[[tuple], Any]], ...] = (
    ("processes", "process", lambda r: str(r[0]), lambda r: rules.decode_record(sql.process_row(r))),
    ("process_events", "process event", lambda r: f"{r[0]}#{r[1]}",
     lambda r: rules.decode_event(r[0], sql.event_row(r[0], r[1:]))),
    ("process_handle_grants", "process handle grant", lambda r: f"{r[0]}/{r[1]}",
     lambda r: rules.decode_grant(sql.grant_row(r))),
    ("process_leases", "process lease", lambda r: str(r[0]), _decode_lease),
)
