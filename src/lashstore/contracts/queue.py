"""Queued work: batches a session's runtime claims as fenced leases and completes in its commit."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ..model.queue import ClaimBoundary, QueuedWorkBatch, QueuedWorkBatchDraft, QueuedWorkClaim

__all__ = ["QueuedWork"]


@runtime_checkable
class QueuedWork(Protocol):
    def enqueue_queued_work(self, draft: QueuedWorkBatchDraft) -> QueuedWorkBatch:
        """Append a batch; with a source key, an earlier batch with that key is returned instead
        (also after it finished: check its `state`)."""
        ...

    def claim_ready_queued_work(self, session_id: str, owner_id: str, boundary: ClaimBoundary, lease_ttl_ms: int,
                                max_batches: int) -> QueuedWorkClaim | None:
        """Claim the head of the session's queue (and its join group) as a lease, or None."""
        ...

    def claim_ready_queued_work_by_batch_ids(self, session_id: str, owner_id: str, boundary: ClaimBoundary,
                                             lease_ttl_ms: int, batch_ids: list[str]) -> QueuedWorkClaim | None:
        """Claim exactly these batches, in this order, if they are what a claim would take now."""
        ...

    def renew_queued_work_claim(self, claim: QueuedWorkClaim, lease_ttl_ms: int) -> QueuedWorkClaim:
        """Extend a live claim; QueuedWorkClaimExpired (and nothing written) if it no longer holds."""
        ...

    def abandon_queued_work_claim(self, claim: QueuedWorkClaim) -> int:
        """Hand the claim's batches back (fencing tokens are kept). Returns how many."""
        ...

    def cancel_queued_work_batch(self, session_id: str, batch_id: str) -> QueuedWorkBatch | None:
        """Cancel a batch nobody holds; None when it is unknown, finished or live-claimed."""
        ...

    def list_queued_work(self, session_id: str) -> list[QueuedWorkBatch]: ...

    def list_pending_queued_work(self, session_id: str) -> list[QueuedWorkBatch]: ...

    def list_claimed_queued_work(self, session_id: str) -> list[tuple[QueuedWorkBatch, str, str, int]]:
        """(batch, claim id, owner, expiry) of every live-claimed batch."""
        ...

    def queue_sessions(self) -> list[str]:
        """Sessions with queued work in the store's database."""
        ...
