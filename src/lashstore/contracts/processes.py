"""The process registry: background processes, their events and wakes, handle grants, leases."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

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
from .maintenance import RegistryMaintenance

__all__ = ["ProcessRegistry"]


@runtime_checkable
class ProcessRegistry(RegistryMaintenance, Protocol):
    """Processes of a whole deployment. Thread-safe; waits take a timeout in seconds."""

    def durability_tier(self) -> DurabilityTier: ...

    # -- registration --------------------------------------------------------------------------
    def register_process(self, registration: ProcessRegistration) -> ProcessRecord:
        """Register, or return the stored record for the same registration (same hash, whatever
        its status). Another registration under the same id: ReplayConflict."""
        ...

    def get_process(self, process_id: str) -> ProcessRecord | None:
        """None when unknown; CorruptRecord when stored but undecodable."""
        ...

    def set_external_ref(self, process_id: str, ref: ProcessExternalRef) -> ProcessRecord:
        """Set once: the same ref is a no-op, another ref a ReplayConflict; UnknownProcess."""
        ...

    def list_non_terminal(self) -> list[ProcessRecord]:
        """Running processes ordered by id."""
        ...

    def list_processes(self, status: str | None = None, limit: int | None = None) -> list[ProcessRecord]:
        """All processes (or one status: running, completed, failed, cancelled), ordered by id."""
        ...

    def prune_terminal_processes(self, older_than_ms: int) -> int:
        """Delete processes that finished at least `older_than_ms` ago (store clock), with their
        events, wakes, grants and lease. Returns how many were deleted."""
        ...

    # -- handle grants -------------------------------------------------------------------------
    def grant_handle(
        self, owner_scope: ProcessScope, process_id: str, descriptor: ProcessHandleDescriptor | None = None
    ) -> ProcessHandleGrant: ...

    def revoke_handle(self, owner_scope: ProcessScope, process_id: str) -> bool:
        """True when the scope held a handle."""
        ...

    def transfer_handle_grants(
        self, from_scope: ProcessScope, to_scope: ProcessScope, process_ids: list[str]
    ) -> list[ProcessHandleGrant]:
        """All or nothing; a process not granted to `from_scope` is a ValidationError."""
        ...

    def list_handle_grants(self, scope: ProcessScope) -> list[tuple[ProcessHandleGrant, ProcessRecord]]:
        """Ordered by process id."""
        ...

    def list_live_handle_grants(self, scope: ProcessScope) -> list[tuple[ProcessHandleGrant, ProcessRecord]]: ...

    def has_handle_grant(self, scope: ProcessScope, process_id: str) -> bool: ...

    def handle_grants_for_process(self, process_id: str) -> list[ProcessHandleGrant]:
        """Ordered by (session id, scope id); UnknownProcess."""
        ...

    def delete_session_process_state(self, session_id: str) -> ProcessSessionDeleteReport:
        """Revoke the session's handles (all its scopes), drop its pending wakes, and report
        which live processes to cancel (no handle left) and which are preserved."""
        ...

    # -- events --------------------------------------------------------------------------------
    def append_event(
        self, process_id: str, request: ProcessEventAppendRequest, *, lease: ProcessLease | None = None
    ) -> ProcessEventAppendResult:
        """Dense sequence from 1; replay keys make it idempotent; a refused append stores nothing.
        With `lease`, a new event is written only while that lease is live (LeaseExpired)."""
        ...

    def cancel_requested(self, process_id: str, reason: str | None = None) -> ProcessEventAppendResult: ...

    def complete_process(
        self, process_id: str, output: ProcessAwaitOutput, *, lease: ProcessLease | None = None
    ) -> ProcessRecord:
        """Keyed terminal event; with `lease`, fenced by it and releasing it atomically."""
        ...

    def events_after(
        self, process_id: str, after_sequence: int, *, event_type: str | None = None, limit: int | None = None
    ) -> list[ProcessEvent]: ...

    def wake_events_after(self, process_id: str, after_sequence: int) -> list[ProcessEvent]:
        """Events after the cursor with a materialised, unacknowledged wake."""
        ...

    def ack_wake(self, process_id: str, sequence: int) -> bool:
        """True when the wake was pending; ValidationError for a missing or non-wake event."""
        ...

    def wait_event_after(
        self, process_id: str, event_type: str | None, after_sequence: int, *, timeout: float
    ) -> ProcessEvent:
        """First matching event after the cursor, waiting up to `timeout` s (WaitTimeout)."""
        ...

    def await_process(self, process_id: str, *, timeout: float) -> ProcessAwaitOutput:
        """The finished process's output, waiting up to `timeout` s (WaitTimeout)."""
        ...

    # -- leases --------------------------------------------------------------------------------
    def claim_process_lease(self, process_id: str, owner_id: str, ttl_ms: int) -> ProcessLease:
        """LeaseConflict ("already leased") for another owner's live lease or a finished process;
        the holder re-claiming extends its lease in place (same token and fencing)."""
        ...

    def renew_process_lease(self, lease: ProcessLease, ttl_ms: int) -> ProcessLease:
        """LeaseExpired ("missing or expired") unless the lease is still held and unexpired."""
        ...

    def complete_process_lease(self, completion: ProcessLeaseCompletion) -> bool:
        """Release by token; a stale completion is a no-op returning False."""
        ...

    def release_process_lease(self, lease: ProcessLease) -> bool: ...

    def get_process_lease(self, process_id: str) -> ProcessLease | None: ...

    def close(self) -> None: ...
