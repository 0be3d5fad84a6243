"""The process registry in plain Python: the reference backend and the oracle of the tests.

It stores the same encoded rows as SQLite and asks `lashstore.rules.process` for every decision,
all of which are made before anything is changed, so a refused call leaves nothing behind.
Durability tier `inline`: it lives as long as the process. Waiters are woken by this registry's
own notifier; there is nobody else to poll for.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

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
from ...rules.process import EventRow, GrantRow, LeaseRow, PayloadValidator, PreparedAppend, ProcessRow

__all__ = ["MemoryProcessRegistry"]


@dataclass
class _Tables:
    processes: dict[str, ProcessRow] = field(default_factory=dict)
    events: dict[str, list[EventRow]] = field(default_factory=dict)  # index = sequence - 1
    replay: dict[tuple[str, str], int] = field(default_factory=dict)  # (pid, key) -> sequence
    grants: dict[tuple[str, str], GrantRow] = field(default_factory=dict)  # (scope id, pid)
    leases: dict[str, LeaseRow] = field(default_factory=dict)
    last_fencing: int = 0


class MemoryProcessRegistry:
    """Same methods and decisions as `SqliteProcessRegistry`; nothing survives the process."""

    def __init__(self, options: StoreOptions | None = None, *, validator: PayloadValidator | None = None) -> None:
        self._opts = options or StoreOptions()
        self._clock = self._opts.clock
        self._validator = validator or rules.default_validator()
        self._t = _Tables()
        self._mutex = threading.RLock()
        self._notifier = rules.Notifier()
        self._closed = False
        self.path = ":memory:"

    # -- plumbing ------------------------------------------------------------------------------
    def __enter__(self) -> "MemoryProcessRegistry":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closed = True
        self._notifier.notify()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def options(self) -> StoreOptions:
        return self._opts

    def durability_tier(self) -> DurabilityTier:
        return DurabilityTier.INLINE

    def _lock(self) -> threading.RLock:
        if self._closed:
            raise StoreClosed("memory process registry is closed")
        return self._mutex

    def _require(self, pid: str) -> ProcessRow:
        row = self._t.processes.get(pid)
        if row is None:
            raise rules.unknown_process(pid)
        return row

    # -- registration --------------------------------------------------------------------------
    def register_process(self, registration: ProcessRegistration) -> ProcessRecord:
        prep = rules.prepare_registration(registration, self._validator)
        pid = prep.registration.id
        with self._lock():
            row = self._t.processes.get(pid)
            if row is not None:
                rules.check_same_registration(pid, row.registration_hash, prep.registration_hash)
                return rules.decode_record(row)
            row = rules.new_process_row(prep, self._clock.now_ms())
            self._t.processes[pid] = row
        return rules.decode_record(row)

    def get_process(self, process_id: str) -> ProcessRecord | None:
        v.check_id(process_id, "process_id")
        with self._lock():
            row = self._t.processes.get(process_id)
        return None if row is None else rules.decode_record(row)

    def set_external_ref(self, process_id: str, ref: ProcessExternalRef) -> ProcessRecord:
        new, data = rules.prepare_external_ref(process_id, ref)
        with self._lock():
            row = self._require(process_id)
            if rules.decide_external_ref(process_id, rules.decode_record(row).external_ref, new):
                row = row._replace(external_ref=data, updated_at_ms=self._clock.now_ms())
                self._t.processes[process_id] = row
        return rules.decode_record(row)

    def list_non_terminal(self) -> list[ProcessRecord]:
        return self.list_processes("running")

    def list_processes(self, status: str | None = None, limit: int | None = None) -> list[ProcessRecord]:
        st = rules.check_status_filter(status)
        lim = rules.check_limit(limit)
        with self._lock():
            rows = [self._t.processes[p] for p in sorted(self._t.processes)]
        rows = [r for r in rows if st is None or r.status == st][:lim]
        return [rules.decode_record(r) for r in rows]

    def _delete_process(self, pid: str) -> None:
        t = self._t
        del t.processes[pid]
        t.events.pop(pid, None)
        t.leases.pop(pid, None)
        for key in [k for k in t.replay if k[0] == pid]:
            del t.replay[key]
        for key in [k for k in t.grants if k[1] == pid]:
            del t.grants[key]

    def prune_terminal_processes(self, older_than_ms: int) -> int:
        rules.check_age(older_than_ms)
        with self._lock():
            cutoff = self._clock.now_ms() - older_than_ms
            doomed = [
                pid for pid, r in self._t.processes.items() if r.terminal_at_ms is not None and r.terminal_at_ms <= cutoff
            ]
            for pid in doomed:
                self._delete_process(pid)
        if doomed:
            self._notifier.notify()
        return len(doomed)

    # -- handle grants -------------------------------------------------------------------------
    def grant_handle(
        self, owner_scope: ProcessScope, process_id: str, descriptor: ProcessHandleDescriptor | None = None
    ) -> ProcessHandleGrant:
        rules.check_scope(owner_scope, "owner_scope")
        v.check_id(process_id, "process_id")
        d = rules.check_descriptor(descriptor)
        with self._lock():
            self._require(process_id)
            self._t.grants[(owner_scope.id(), process_id)] = GrantRow(
                owner_scope.id(), process_id, owner_scope.session_id, d.kind, d.label
            )
        return ProcessHandleGrant(
            session_id=owner_scope.session_id, process_id=process_id, descriptor=d, scope_id=owner_scope.id()
        )

    def revoke_handle(self, owner_scope: ProcessScope, process_id: str) -> bool:
        rules.check_scope(owner_scope, "owner_scope")
        v.check_id(process_id, "process_id")
        with self._lock():
            return self._t.grants.pop((owner_scope.id(), process_id), None) is not None

    def transfer_handle_grants(
        self, from_scope: ProcessScope, to_scope: ProcessScope, process_ids: list[str]
    ) -> list[ProcessHandleGrant]:
        pids = rules.check_transfer(from_scope, to_scope, process_ids)
        with self._lock():
            g = self._t.grants
            moving = []
            for pid in pids:  # check all before changing any: all or nothing
                row = g.get((from_scope.id(), pid))
                if row is None:
                    raise rules.not_granted(pid, from_scope)
                moving.append(row)
            out = []
            for row in moving:
                del g[(from_scope.id(), row.process_id)]
                g[(to_scope.id(), row.process_id)] = GrantRow(
                    to_scope.id(), row.process_id, to_scope.session_id, row.kind, row.label
                )
                out.append(
                    ProcessHandleGrant(
                        session_id=to_scope.session_id,
                        process_id=row.process_id,
                        descriptor=ProcessHandleDescriptor(row.kind, row.label),
                        scope_id=to_scope.id(),
                    )
                )
        return out

    def _grant_entries(self, scope: ProcessScope, live_only: bool) -> list[tuple[ProcessHandleGrant, ProcessRecord]]:
        rules.check_scope(scope, "scope")
        sid = scope.id()
        with self._lock():
            rows = sorted(
                ((g, self._t.processes[g.process_id]) for (s, _), g in self._t.grants.items() if s == sid),
                key=lambda e: e[0].process_id,
            )
        if live_only:
            rows = [e for e in rows if e[1].status == "running"]
        return [(rules.decode_grant(g), rules.decode_record(p)) for g, p in rows]

    def list_handle_grants(self, scope: ProcessScope) -> list[tuple[ProcessHandleGrant, ProcessRecord]]:
        return self._grant_entries(scope, False)

    def list_live_handle_grants(self, scope: ProcessScope) -> list[tuple[ProcessHandleGrant, ProcessRecord]]:
        return self._grant_entries(scope, True)

    def has_handle_grant(self, scope: ProcessScope, process_id: str) -> bool:
        rules.check_scope(scope, "scope")
        v.check_id(process_id, "process_id")
        with self._lock():
            return (scope.id(), process_id) in self._t.grants

    def handle_grants_for_process(self, process_id: str) -> list[ProcessHandleGrant]:
        v.check_id(process_id, "process_id")
        with self._lock():
            self._require(process_id)
            rows = sorted(
                (g for (_, p), g in self._t.grants.items() if p == process_id),
                key=lambda g: (g.session_id, g.scope_id),
            )
        return [rules.decode_grant(g) for g in rows]

    def delete_session_process_state(self, session_id: str) -> ProcessSessionDeleteReport:
        v.check_id(session_id, "session_id")
        with self._lock():
            t = self._t
            now = self._clock.now_ms()
            doomed = [k for k, g in t.grants.items() if g.session_id == session_id]
            pids = sorted({k[1] for k in doomed})
            for k in doomed:
                del t.grants[k]
            affected = []
            for pid in pids:
                remaining = sum(1 for (_, p) in t.grants if p == pid)
                affected.append((pid, t.processes[pid].status != "running", remaining))
            wakes = 0
            for pid, events in t.events.items():
                for i, e in enumerate(events):
                    if e.wake_id is not None and e.wake_acked_at_ms is None and e.wake_target_session_id == session_id:
                        events[i] = e._replace(wake_acked_at_ms=now)
                        wakes += 1
        cancel, preserved = rules.classify_after_revoke(affected)
        return ProcessSessionDeleteReport(
            session_id=session_id,
            revoked_handle_count=len(doomed),
            deleted_wake_count=wakes,
            cancel_process_ids=cancel,
            preserved_process_ids=preserved,
        )

    # -- events --------------------------------------------------------------------------------
    def _append_locked(self, prep: PreparedAppend, lease: ProcessLease | None) -> tuple[ProcessEventAppendResult, ProcessRow]:
        t = self._t
        pid = prep.process_id
        row = self._require(pid)
        record = rules.decode_record(row)
        events = t.events.get(pid, [])
        if prep.replay_key is not None:
            seq = t.replay.get((pid, prep.replay_key))
            if seq is not None:
                return rules.replay_result(record, prep, events[seq - 1]), row
        now = self._clock.now_ms()
        if lease is not None:
            rules.check_lease_held(pid, t.leases.get(pid), lease, now)
        new = rules.decide_new_event(record, prep, len(events) + 1, now, self._validator)
        # Every check has passed; from here on nothing can fail.
        t.events.setdefault(pid, []).append(new.row)
        if prep.replay_key is not None:
            t.replay[(pid, prep.replay_key)] = new.row.sequence
        if new.terminal is not None:
            state, output = new.terminal
            row = row._replace(status=state, await_output=output, terminal_at_ms=now, updated_at_ms=now)
            t.processes[pid] = row
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
        prep = rules.prepare_append(process_id, request)
        self._check_fence(process_id, lease)
        with self._lock():
            result, _ = self._append_locked(prep, lease)
        if not result.replayed:
            self._notifier.notify()
        return result

    def cancel_requested(self, process_id: str, reason: str | None = None) -> ProcessEventAppendResult:
        return self.append_event(process_id, ProcessEventAppendRequest.cancel_requested(process_id, reason))

    def complete_process(
        self, process_id: str, output: ProcessAwaitOutput, *, lease: ProcessLease | None = None
    ) -> ProcessRecord:
        request = rules.completion_request(process_id, output)
        prep = rules.prepare_append(process_id, request)
        self._check_fence(process_id, lease)
        with self._lock():
            result, row = self._append_locked(prep, lease)
            if lease is not None:
                self._release(process_id, lease.lease_token)
        if not result.replayed:
            self._notifier.notify()
        return rules.decode_record(row)

    def _events(self, pid: str, after: int, keep: Callable[[EventRow], bool], limit: int | None) -> list[ProcessEvent]:
        with self._lock():
            self._require(pid)
            rows = [e for e in self._t.events.get(pid, [])[after:] if keep(e)][:limit]
        return [rules.decode_event(pid, e) for e in rows]

    def events_after(
        self, process_id: str, after_sequence: int, *, event_type: str | None = None, limit: int | None = None
    ) -> list[ProcessEvent]:
        v.check_id(process_id, "process_id")
        v.check_nonneg_int(after_sequence, "after_sequence")
        if event_type is not None:
            v.check_id(event_type, "event_type")
        lim = rules.check_limit(limit)
        return self._events(process_id, after_sequence, lambda e: event_type is None or e.event_type == event_type, lim)

    def wake_events_after(self, process_id: str, after_sequence: int) -> list[ProcessEvent]:
        v.check_id(process_id, "process_id")
        v.check_nonneg_int(after_sequence, "after_sequence")
        return self._events(
            process_id, after_sequence, lambda e: e.wake_id is not None and e.wake_acked_at_ms is None, None
        )

    def ack_wake(self, process_id: str, sequence: int) -> bool:
        v.check_id(process_id, "process_id")
        v.check_nonneg_int(sequence, "sequence")
        with self._lock():
            self._require(process_id)
            events = self._t.events.get(process_id, [])
            e = events[sequence - 1] if 1 <= sequence <= len(events) else None
            rules.check_ackable(process_id, sequence, None if e is None else (e.event_type, e.wake_id is not None))
            assert e is not None
            if e.wake_acked_at_ms is not None:
                return False
            events[sequence - 1] = e._replace(wake_acked_at_ms=self._clock.now_ms())
            return True

    def wait_event_after(
        self, process_id: str, event_type: str | None, after_sequence: int, *, timeout: float
    ) -> ProcessEvent:
        v.check_id(process_id, "process_id")
        if event_type is not None:
            v.check_id(event_type, "event_type")
        v.check_nonneg_int(after_sequence, "after_sequence")
        t = rules.check_timeout(timeout)

        def check() -> ProcessEvent | None:
            found = self._events(
                process_id, after_sequence, lambda e: event_type is None or e.event_type == event_type, 1
            )
            return found[0] if found else None

        what = f"event `{event_type or '*'}` of process `{process_id}` after sequence {after_sequence}"
        return rules.wait_for(check, self._notifier, t, poll=False, what=what)

    def await_process(self, process_id: str, *, timeout: float) -> ProcessAwaitOutput:
        v.check_id(process_id, "process_id")
        t = rules.check_timeout(timeout)

        def check() -> ProcessAwaitOutput | None:
            with self._lock():
                row = self._require(process_id)
            if row.await_output is None:
                return None
            return rules.decode_record(row).status.await_output

        return rules.wait_for(check, self._notifier, t, poll=False, what=f"completion of process `{process_id}`")

    # -- leases --------------------------------------------------------------------------------
    def claim_process_lease(self, process_id: str, owner_id: str, ttl_ms: int) -> ProcessLease:
        rules.check_lease_args(process_id, owner_id, ttl_ms)
        token = self._opts.ids.token()
        with self._lock():
            row = self._require(process_id)
            now = self._clock.now_ms()
            d = rules.decide_claim(
                process_id, row.status, self._t.leases.get(process_id), owner_id, ttl_ms, now, token, self._t.last_fencing + 1
            )
            self._t.leases[process_id] = d.row
            if d.new:
                self._t.last_fencing = d.row.fencing_token
        return rules.lease_from_row(process_id, d.row)

    def renew_process_lease(self, lease: ProcessLease, ttl_ms: int) -> ProcessLease:
        rules.check_lease_arg(lease)
        rules.check_lease_args(lease.process_id, lease.owner_id, ttl_ms)
        pid = lease.process_id
        with self._lock():
            now = self._clock.now_ms()
            row = self._t.leases.get(pid)
            rules.check_lease_held(pid, row, lease, now)
            assert row is not None
            self._t.leases[pid] = row._replace(expires_at_ms=now + ttl_ms)
        return msgspec.structs.replace(lease, expires_at_epoch_ms=now + ttl_ms)

    def _release(self, pid: str, token: str) -> bool:
        row = self._t.leases.get(pid)
        if row is None or row.lease_token != token:
            return False
        self._t.leases[pid] = LeaseRow(None, None, row.fencing_token, 0, 0)
        return True

    def complete_process_lease(self, completion: ProcessLeaseCompletion) -> bool:
        if not isinstance(completion, ProcessLeaseCompletion):
            raise ValidationError(f"expected a ProcessLeaseCompletion, got {type(completion).__name__}")
        v.check_id(completion.process_id, "completion.process_id")
        with self._lock():
            if not rules.completion_matches(self._t.leases.get(completion.process_id), completion):
                return False
            return self._release(completion.process_id, completion.lease_token)

    def release_process_lease(self, lease: ProcessLease) -> bool:
        rules.check_lease_arg(lease)
        return self.complete_process_lease(lease.completion())

    def get_process_lease(self, process_id: str) -> ProcessLease | None:
        v.check_id(process_id, "process_id")
        with self._lock():
            row = self._t.leases.get(process_id)
        return rules.lease_from_row(process_id, row) if rules.lease_present(row) else None
