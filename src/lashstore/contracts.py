"""The whole contract in one file: what every backend implements.

Sync classes are the core; `lashstore.aio` wraps any of them with the same method names.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, runtime_checkable

from .model.blobs import BlobDescriptor, BlobInfo
from .model.effects import EffectRecord, EffectScope, EffectStatus
from .model.host_events import (
    HostEventOccurrenceRecord,
    HostEventOccurrenceRequest,
    TriggerDelivery,
    TriggerDeliveryReservation,
    TriggerSubscriptionDraft,
    TriggerSubscriptionFilter,
    TriggerSubscriptionRecord,
)
from .model.process import (
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
from .model.session import (
    DurabilityTier,
    GcReport,
    GraphNode,
    HydratedSessionCheckpoint,
    PersistedSessionRead,
    RuntimeCommit,
    RuntimeCommitResult,
    SessionHeadMeta,
    SessionMeta,
    SessionPickerInfo,
    SessionReadScope,
    SessionRelation,
    SessionSummary,
    StoredSessionCheckpoint,
    TokenLedgerEntry,
    VacuumReport,
)

__all__ = ["SessionStore", "SessionStoreFactory", "ProcessRegistry", "HostEventStore", "EffectStore"]


@runtime_checkable
class SessionStore(Protocol):
    """One conversation's durable state (the reference's RuntimePersistence)."""

    @property
    def session_id(self) -> str | None:
        """The session this store holds: fixed at open, or bound by the first commit."""
        ...

    def durability_tier(self) -> DurabilityTier: ...

    # -- blobs ---------------------------------------------------------------------------------
    def put_blob(self, content: bytes, descriptor: BlobDescriptor | None = None) -> str:
        """Store bytes by their sha256; returns the ref. Compressed when the descriptor's hints and
        the store's profile say so."""
        ...

    def put_artifact_blob(self, descriptor: BlobDescriptor, content: bytes) -> str: ...

    def get_blob(self, ref: str) -> bytes | None:
        """The bytes, None when no such blob; `CorruptRecord` when stored bytes fail their hash."""
        ...

    def blob_info(self, ref: str) -> BlobInfo | None: ...

    def put_typed_blob(self, value: Any, descriptor: BlobDescriptor | None = None) -> str: ...

    def get_typed_blob(self, ref: str) -> Any:
        """The decoded value, None when absent; `CorruptRecord` when it does not decode."""
        ...

    # -- checkpoints and artifacts -------------------------------------------------------------
    def put_checkpoint(self, checkpoint: HydratedSessionCheckpoint) -> StoredSessionCheckpoint: ...

    def get_checkpoint(self, ref: str) -> HydratedSessionCheckpoint | None: ...

    def put_artifact(self, name: str, content: bytes, *, namespace: str = "default") -> str:
        """Store bytes under a name; named artifacts are GC roots. Returns the blob ref."""
        ...

    def get_artifact(self, name: str, *, namespace: str = "default") -> bytes | None: ...

    def delete_artifact(self, name: str, *, namespace: str = "default") -> bool: ...

    def list_artifacts(self, *, namespace: str | None = None) -> list[tuple[str, str, str]]:
        """(namespace, name, blob ref) of every named artifact."""
        ...

    # -- meta ----------------------------------------------------------------------------------
    def save_session_meta(self, meta: SessionMeta) -> None: ...

    def load_session_meta(self) -> SessionMeta | None: ...

    def load_picker_info(self) -> SessionPickerInfo | None: ...

    # -- reads ---------------------------------------------------------------------------------
    def load_head(self) -> SessionHeadMeta | None: ...

    def load_session(self, scope: SessionReadScope | None = None) -> PersistedSessionRead | None: ...

    def load_node(self, node_id: str) -> GraphNode | None: ...

    def load_usage(self) -> list[TokenLedgerEntry]:
        """The merged token ledger."""
        ...

    # -- writes --------------------------------------------------------------------------------
    def commit_runtime_state(self, commit: RuntimeCommit) -> RuntimeCommitResult: ...

    def tombstone_nodes(self, node_ids: list[str]) -> int:
        """Hide nodes from every read; returns how many live nodes were hidden."""
        ...

    def vacuum(self) -> VacuumReport: ...

    def gc_unreachable(self) -> GcReport: ...

    def close(self) -> None: ...


@runtime_checkable
class SessionStoreFactory(Protocol):
    """Creates, opens, lists and deletes the sessions of one deployment."""

    def durability_tier(self) -> DurabilityTier: ...

    def create_store(
        self,
        session_id: str,
        *,
        model: str = "",
        relation: SessionRelation | None = None,
        cwd: str | None = None,
        session_name: str | None = None,
    ) -> SessionStore:
        """Open the session's store, creating it (and its meta, once) if needed."""
        ...

    def open_store(self, session_id: str) -> SessionStore:
        """Open an existing session; `SessionNotFound` otherwise."""
        ...

    def has_session(self, session_id: str) -> bool: ...

    def delete_session(self, session_id: str) -> bool:
        """Remove the session; idempotent. True when something was removed."""
        ...

    def list_sessions(self) -> list[SessionSummary]:
        """Every session; one that cannot be read is listed with `error` set."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class ProcessRegistry(Protocol):
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


ScopeLike = EffectScope | tuple


@runtime_checkable
class HostEventStore(Protocol):
    """A trigger router: subscriptions, idempotent occurrences, exactly-once delivery reservations."""

    def durability_tier(self) -> DurabilityTier: ...

    def close(self) -> None: ...

    def source_key_for_subscription(self, source_type: str, source: Any) -> str:
        """`"source:{type}:sha256:" + stable_hash([type, source])`: stable and non-empty."""
        ...

    def register_subscription(self, draft: TriggerSubscriptionDraft) -> TriggerSubscriptionRecord:
        """A new, enabled subscription `trigger:{n}` / `subscription:{n}`; n never repeats."""
        ...

    def list_subscriptions(self, filter: TriggerSubscriptionFilter | None = None) -> list[TriggerSubscriptionRecord]:
        """Matching subscriptions (AND of the set filter fields), in creation order. A row that
        cannot be decoded raises CorruptRecord naming it (never silently skipped)."""
        ...

    def get_subscription(self, session_id: str, handle: str) -> TriggerSubscriptionRecord | None: ...

    def cancel_subscription(self, session_id: str, handle: str) -> bool:
        """Disable (never delete); returns the previous `enabled`. Scoped by session."""
        ...

    def cancel_session_subscriptions(self, session_id: str) -> int:
        """Disable every enabled subscription of the session; returns how many."""
        ...

    def record_occurrence(self, request: HostEventOccurrenceRequest) -> HostEventOccurrenceRecord:
        """Idempotent by (source_type, source_key, idempotency_key); ReplayConflict when that key
        was recorded with another payload or source."""
        ...

    def get_occurrence(self, occurrence_id: str) -> HostEventOccurrenceRecord | None: ...

    def list_occurrences(
        self, *, source_type: str | None = None, source_key: str | None = None, limit: int | None = None
    ) -> list[HostEventOccurrenceRecord]: ...

    def reserve_matching_deliveries(self, occurrence_id: str) -> list[TriggerDeliveryReservation]:
        """Reserve each (occurrence, enabled matching subscription) pair exactly once; NotFound
        for an unknown occurrence."""
        ...

    def list_deliveries(
        self,
        *,
        occurrence_id: str | None = None,
        subscription_id: str | None = None,
        session_id: str | None = None,
    ) -> list[TriggerDelivery]: ...


@runtime_checkable
class EffectStore(Protocol):
    """Durable memoisation of non-deterministic calls, keyed by (scope, replay key).

    `lashstore.durable_calls.EffectEngine` implements every operation below on top of four
    transactional primitives; a backend subclasses it."""

    @property
    def lease_ttl_ms(self) -> int: ...

    @property
    def strict(self) -> bool: ...

    def durability_tier(self) -> DurabilityTier: ...

    def close(self) -> None: ...

    def scoped(self, scope: ScopeLike, *, strict: bool = False) -> Any:
        """A ScopedEffectController; blank scope ids raise ValidationError (missing_effect_scope_id)."""
        ...

    def scoped_static(self, scope: ScopeLike) -> Any: ...

    def begin(self, scope: ScopeLike, replay_key: str, envelope: Any, *, policy: Any = None,
              strict: bool = False) -> Any:
        """Claim or replay; returns an EffectAttempt to settle (complete / fail / release)."""
        ...

    async def abegin(self, scope: ScopeLike, replay_key: str, envelope: Any, *, policy: Any = None,
                     strict: bool = False) -> Any: ...

    def execute(self, scope: ScopeLike, replay_key: str, envelope: Any, executor: Callable[[], Any], *,
                policy: Any = None, strict: bool = False) -> Any:
        """Run the executor once per key, outside any transaction; replay its recorded outcome."""
        ...

    async def aexecute(self, scope: ScopeLike, replay_key: str, envelope: Any,
                       executor: Callable[[], Awaitable[Any] | Any], *, policy: Any = None,
                       strict: bool = False) -> Any: ...

    def sleep(self, scope: ScopeLike, replay_key: str, duration_ms: int, *, policy: Any = None,
              strict: bool = False) -> None:
        """A durable sleep: returns at the due time recorded by its first claim."""
        ...

    async def asleep(self, scope: ScopeLike, replay_key: str, duration_ms: int, *, policy: Any = None,
                     strict: bool = False) -> None: ...

    def get_effect(self, scope: ScopeLike, replay_key: str) -> EffectRecord | None: ...

    def list_effects(
        self,
        scope: ScopeLike | None = None,
        *,
        session_id: str | None = None,
        status: EffectStatus | str | None = None,
        limit: int | None = None,
    ) -> list[EffectRecord]: ...

    def delete_effect(self, scope: ScopeLike, replay_key: str) -> bool: ...

    def delete_scope(self, scope: ScopeLike) -> int: ...
