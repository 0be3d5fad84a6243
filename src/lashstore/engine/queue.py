"""Queued work, written once: enqueue, claim, renew, abandon, cancel, list; completion rides on
the turn commit (`_check_completions` / `_consume_completions`, called by the session engine)."""

from __future__ import annotations

from typing import Any

import msgspec

from ..backends.sql import queue as sql
from ..codec import pack
from ..errors import QueuedWorkClaimExpired, StoreBusy
from ..model.queue import ClaimBoundary, QueuedWorkBatch, QueuedWorkBatchDraft, QueuedWorkClaim
from ..model.session import RuntimeCommit
from ..rules import queue as rules
from ..rules import validate as v
from .tx import Tx

__all__ = ["QueueMethods", "HeadBusy"]

_MAX_HEAD_WAITS = 1000


class HeadBusy(Exception):
    """The head of the queue is locked by another transaction (PostgreSQL's SKIP LOCKED claim):
    the claim rolls back, waits for that transaction, and claims again."""

    def __init__(self, head: int) -> None:
        self.head = head


class QueueMethods:
    _opts: Any

    def _write(self, fn: Any, where: str) -> Any: ...  # the session engine's

    def _read(self, fn: Any, where: str) -> Any: ...

    # -- enqueue -------------------------------------------------------------------------------
    def enqueue_queued_work(self, draft: QueuedWorkBatchDraft) -> QueuedWorkBatch:
        """Append a batch; with a source key, an earlier batch with that key is returned instead
        (also after it was completed or cancelled: check its `state`)."""
        rules.check_draft(draft)
        payloads = [pack(p) for p in draft.payloads]
        batch_id = self._opts.ids.new_id("qwb_")
        sid = draft.session_id

        def tx(t: Tx) -> QueuedWorkBatch:
            # Enqueues of one session are one at a time (where rows lock one by one): the
            # source-key check cannot race, and queue order is commit order.
            t.lock("queue", sid)
            if draft.source_key is not None:
                found = sql.by_source_key(t, sid, draft.source_key)
                if found is not None:
                    return found
            sql.insert_batch(t, batch_id, draft, payloads, t.now())
            return sql.batches_by_id(t, [batch_id])[0]

        return self._write(tx, "enqueue queued work")

    # -- claims --------------------------------------------------------------------------------
    def _claim(self, session_id: str, owner_id: str, boundary: Any, ttl_ms: int, max_batches: int,
               exact: list[str] | None) -> QueuedWorkClaim | None:
        boundary = rules.check_claim_args(session_id, owner_id, boundary, ttl_ms, max_batches)
        limit = min(max_batches, rules.MAX_CLAIM_BATCHES)
        if limit == 0:
            return None
        claim_id = self._opts.ids.new_id("qwc_")
        token = self._opts.ids.token()

        def tx(t: Tx) -> QueuedWorkClaim | None:
            # Only the head of a queue can be claimed, so claims of one session form a line.
            t.lock("claim", session_id)
            found = getattr(t.dialect, "claim_candidates", sql.candidates)(t, session_id, limit)
            chosen = rules.select_claim(found, boundary, limit)
            if not chosen or (exact is not None and [b.batch_id for b in chosen] != exact):
                return None
            now = t.now()
            expires = now + ttl_ms
            ids = [b.batch_id for b in chosen]
            if sql.take(t, ids, claim_id, owner_id, token, now, expires) != len(ids):
                # The rows are this transaction's (locked, or the whole database is): cannot happen.
                raise QueuedWorkClaimExpired(session_id, claim_id, "lost a race for a batch")
            return QueuedWorkClaim(
                session_id=session_id, claim_id=claim_id, owner_id=owner_id, lease_token=token,
                fencing_token=chosen[0].fencing_token + 1, claimed_at_epoch_ms=now, expires_at_epoch_ms=expires,
                batches=sql.batches_by_id(t, ids),
            )

        for _ in range(_MAX_HEAD_WAITS):
            try:
                return self._write(tx, "claim queued work")
            except HeadBusy as busy:
                head = busy.head
            # The claim rolled back holding nothing; wait for the transaction that holds the head,
            # then claim again. Nobody waits while holding rows, so claimers cannot deadlock.
            self._write(lambda t: t.dialect.wait_for_queue_head(t, head), "claim queued work: wait for the head")
        raise StoreBusy(f"claim queued work: the head of session {session_id!r}'s queue stayed contended; retry")

    def claim_ready_queued_work(self, session_id: str, owner_id: str, boundary: ClaimBoundary, lease_ttl_ms: int,
                                max_batches: int) -> QueuedWorkClaim | None:
        """Claim the head of the session's queue (and its join group) as a lease, or None."""
        return self._claim(session_id, owner_id, boundary, lease_ttl_ms, max_batches, None)

    def claim_ready_queued_work_by_batch_ids(self, session_id: str, owner_id: str, boundary: ClaimBoundary,
                                             lease_ttl_ms: int, batch_ids: list[str]) -> QueuedWorkClaim | None:
        """Claim exactly these batches, in this order, if they are what a claim would take now.

        Never skips earlier work; when the ids do not match, nothing is written."""
        ids = v.check_id_list(batch_ids, "batch_ids")
        if not ids:
            return None
        return self._claim(session_id, owner_id, boundary, lease_ttl_ms, len(ids), ids)

    def renew_queued_work_claim(self, claim: QueuedWorkClaim, lease_ttl_ms: int) -> QueuedWorkClaim:
        """Extend a live claim; QueuedWorkClaimExpired (and nothing written) if it no longer holds."""
        rules.check_claim(claim)
        v.check_nonneg_int(lease_ttl_ms, "lease_ttl_ms")

        def tx(t: Tx) -> int:
            now = t.now()
            sql.held(t, claim.session_id, claim.claim_id, claim.lease_token, claim.batch_ids, now)
            sql.extend(t, claim.claim_id, claim.lease_token, now + lease_ttl_ms)
            return now + lease_ttl_ms

        expires = self._write(tx, "renew queued-work claim")
        return msgspec.structs.replace(claim, expires_at_epoch_ms=expires)

    def abandon_queued_work_claim(self, claim: QueuedWorkClaim) -> int:
        """Hand the claim's batches back (fencing tokens are kept). Returns how many were released."""
        rules.check_claim(claim)
        return self._write(lambda t: sql.release(t, claim.session_id, claim.claim_id, claim.lease_token),
                           "abandon queued-work claim")

    def cancel_queued_work_batch(self, session_id: str, batch_id: str) -> QueuedWorkBatch | None:
        """Cancel a batch nobody holds; None when it is unknown, finished or live-claimed."""
        v.check_id(session_id, "session_id")
        v.check_id(batch_id, "batch_id")

        def tx(t: Tx) -> QueuedWorkBatch | None:
            if sql.cancel(t, session_id, batch_id, t.now()) == 0:
                return None
            return sql.batches_by_id(t, [batch_id])[0]

        return self._write(tx, "cancel queued work")

    # -- listings ------------------------------------------------------------------------------
    def list_queued_work(self, session_id: str) -> list[QueuedWorkBatch]:
        """Every queued batch of the session, claimed ones included, in enqueue order."""
        v.check_id(session_id, "session_id")
        return self._read(lambda t: sql.queued(t, session_id), "list queued work")

    def list_pending_queued_work(self, session_id: str) -> list[QueuedWorkBatch]:
        """Queued batches nobody holds a live claim on (expired claims count as pending)."""
        v.check_id(session_id, "session_id")
        return self._read(lambda t: sql.queued(t, session_id, pending_at=t.now()), "list pending queued work")

    def list_claimed_queued_work(self, session_id: str) -> list[tuple[QueuedWorkBatch, str, str, int]]:
        """(batch, claim id, owner, expiry) of every live-claimed batch of the session."""
        v.check_id(session_id, "session_id")

        def tx(t: Tx) -> list[tuple[QueuedWorkBatch, str, str, int]]:
            batches = sql.queued(t, session_id, claimed_at=t.now())
            claims = sql.claims_of(t, session_id)
            return [(b, *claims[b.batch_id]) for b in batches]

        return self._read(tx, "list claimed queued work")

    def queue_sessions(self) -> list[str]:
        """Session ids with queued work in this database."""
        return self._read(sql.queue_sessions, "queue sessions")

    # -- inside commit_runtime_state ------------------------------------------------------------
    def _check_completions(self, t: Tx, commit: RuntimeCommit, now: int) -> None:
        for comp in commit.completed_queue_claims:
            rules.check_completion_session(comp, commit.session_id)
            sql.held(t, comp.session_id, comp.claim_id, comp.lease_token, comp.batch_ids, now)

    def _consume_completions(self, t: Tx, commit: RuntimeCommit, now: int) -> None:
        for comp in commit.completed_queue_claims:
            sql.complete(t, comp.batch_ids, comp.claim_id, comp.lease_token, now)
