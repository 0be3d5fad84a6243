"""Queued work: batches of items per session, claimed as fenced leases."""

from __future__ import annotations

import enum
from typing import Any

import msgspec

__all__ = [
    "DeliveryPolicy",
    "SlotPolicy",
    "ClaimBoundary",
    "QueuedWorkClaimBoundary",
    "BatchState",
    "QueuedWorkItem",
    "QueuedWorkBatchDraft",
    "QueuedWorkBatch",
    "QueuedWorkClaim",
    "QueuedWorkCompletion",
    "QUEUED_WORK_CLAIM_TTL_MS",
    "process_wake_batch_draft",
]

#: The runtime's usual claim lease (15 minutes), as in the reference.
QUEUED_WORK_CLAIM_TTL_MS = 900_000


class DeliveryPolicy(str, enum.Enum):
    """When a batch may be handed to a running turn."""

    EARLIEST_SAFE_BOUNDARY = "earliest_safe_boundary"
    AFTER_CURRENT_TURN_COMMIT = "after_current_turn_commit"


class SlotPolicy(str, enum.Enum):
    """`exclusive` batches are claimed alone; `join` batches group with matching neighbours."""

    JOIN = "join"
    EXCLUSIVE = "exclusive"


class ClaimBoundary(str, enum.Enum):
    """Where the claimer stands: inside a turn at a checkpoint, or idle between turns."""

    ACTIVE_TURN_CHECKPOINT = "active_turn_checkpoint"
    IDLE = "idle"


QueuedWorkClaimBoundary = ClaimBoundary


class BatchState(str, enum.Enum):
    QUEUED = "queued"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class QueuedWorkItem(msgspec.Struct):
    item_id: str
    payload: Any


class QueuedWorkBatchDraft(msgspec.Struct, kw_only=True):
    """What `enqueue_queued_work` takes.

    merge_key: join batches group only with neighbours of the same delivery policy and the same
    non-None merge key; None never merges (unlike the reference, where the default key merged).
    source_key: makes the enqueue idempotent per session, also after the batch is consumed.
    """

    session_id: str
    payloads: list[Any]
    delivery_policy: DeliveryPolicy = DeliveryPolicy.EARLIEST_SAFE_BOUNDARY
    slot_policy: SlotPolicy = SlotPolicy.EXCLUSIVE
    merge_key: str | None = None
    source_key: str | None = None
    available_at_ms: int = 0

    def with_source_key(self, key: str) -> "QueuedWorkBatchDraft":
        return msgspec.structs.replace(self, source_key=key)

    def with_merge_key(self, key: str | None) -> "QueuedWorkBatchDraft":
        return msgspec.structs.replace(self, merge_key=key)

    def with_available_at_ms(self, at_ms: int) -> "QueuedWorkBatchDraft":
        return msgspec.structs.replace(self, available_at_ms=at_ms)


class QueuedWorkBatch(msgspec.Struct, kw_only=True):
    batch_id: str
    session_id: str
    enqueue_seq: int
    source_key: str | None
    delivery_policy: DeliveryPolicy
    slot_policy: SlotPolicy
    merge_key: str | None
    available_at_ms: int
    enqueued_at_ms: int
    items: list[QueuedWorkItem]
    state: BatchState = BatchState.QUEUED


class QueuedWorkCompletion(msgspec.Struct):
    """Proof that a claim's batches were handled; consumed inside `commit_runtime_state`."""

    session_id: str
    claim_id: str
    lease_token: str
    batch_ids: list[str] = msgspec.field(default_factory=list)


class QueuedWorkClaim(msgspec.Struct, kw_only=True):
    session_id: str
    claim_id: str
    owner_id: str
    lease_token: str
    fencing_token: int
    claimed_at_epoch_ms: int
    expires_at_epoch_ms: int
    batches: list[QueuedWorkBatch]

    @property
    def batch_ids(self) -> list[str]:
        return [b.batch_id for b in self.batches]

    def completion(self) -> QueuedWorkCompletion:
        return QueuedWorkCompletion(self.session_id, self.claim_id, self.lease_token, self.batch_ids)


def process_wake_batch_draft(wake: Any) -> QueuedWorkBatchDraft:
    """The queued-work draft that delivers a process wake to its target session.

    Exclusive, earliest-safe-boundary, one `{"type": "process_wake", "wake": ...}` payload, and
    the source key `process:{process_id}:event:{sequence}:wake`, so a replayed wake is enqueued
    once (also after its batch was consumed).
    """
    w = msgspec.to_builtins(wake)
    return QueuedWorkBatchDraft(
        session_id=w["target_session_id"],
        payloads=[{"type": "process_wake", "wake": w}],
        delivery_policy=DeliveryPolicy.EARLIEST_SAFE_BOUNDARY,
        slot_policy=SlotPolicy.EXCLUSIVE,
        source_key=f"process:{w['process_id']}:event:{w['sequence']}:wake",
    )
