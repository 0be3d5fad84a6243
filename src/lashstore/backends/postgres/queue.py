"""Queued work on PostgreSQL: enqueue, claim, renew, abandon, cancel, list; completion in the commit.

Claims take candidate rows with `FOR UPDATE SKIP LOCKED`, with claimability (state, availability,
no live claim) in the WHERE clause before the LIMIT (upstream bug 6). Only the head of a
session's queue may start a claim (`rules.queue.select_claim`); when the head is locked by a
concurrent transaction (another claim in flight, a cancel) the claim rolls back, waits for that
transaction with a momentary share lock on the head, and claims again, so concurrent claimers take
batches in queue order, never skip earlier work, and never wait while holding rows (no deadlock).
Claims of one session also queue up on a transaction advisory lock first: the head decision is
inherently one at a time, and a line is cheaper than a herd retrying for the same row.
Enqueues of one session serialise on a transaction advisory lock: the source-key check cannot
race, and enqueue_seq order is commit order within the session.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ...codec import pack
from ...errors import CorruptRecord, QueuedWorkClaimExpired, StoreBusy, ValidationError
from ...model.queue import (
    BatchState,
    ClaimBoundary,
    DeliveryPolicy,
    QueuedWorkBatch,
    QueuedWorkBatchDraft,
    QueuedWorkClaim,
    QueuedWorkItem,
    SlotPolicy,
)
from ...model.session import RuntimeCommit
from ...rules import queue as rules
from ...rules import validate as v
from ..common import decode_payload
from .connection import NOW_MS, Tx

__all__ = ["PostgresQueueMixin"]

_BATCH_COLS = (
    "b.batch_id, b.session_id, b.enqueue_seq, b.source_key, b.delivery_policy, b.slot_policy, "
    "b.merge_key, b.available_at_ms, b.enqueued_at_ms, b.state"
)


_MAX_HEAD_WAITS = 1000


class _HeadBusy(Exception):
    """Internal: the queue's head is locked by another transaction; wait for it and retry."""

    def __init__(self, head: int) -> None:
        self.head = head


def _load_batches(t: Tx, where: str, params: Any) -> list[QueuedWorkBatch]:
    rows = t.all(
        f"SELECT {_BATCH_COLS}, i.item_id, i.payload FROM queued_work_batches b "
        f"JOIN queued_work_items i ON i.batch_id = b.batch_id WHERE {where} "
        "ORDER BY b.enqueue_seq, i.item_index",
        params,
    )
    out: list[QueuedWorkBatch] = []
    cur: QueuedWorkBatch | None = None
    for r in rows:
        if cur is None or cur.batch_id != r[0]:
            try:
                cur = QueuedWorkBatch(
                    batch_id=r[0],
                    session_id=r[1],
                    enqueue_seq=r[2],
                    source_key=r[3],
                    delivery_policy=DeliveryPolicy(r[4]),
                    slot_policy=SlotPolicy(r[5]),
                    merge_key=r[6],
                    available_at_ms=r[7],
                    enqueued_at_ms=r[8],
                    items=[],
                    state=BatchState(r[9]),
                )
            except ValueError as e:
                raise CorruptRecord("queued-work batch", r[0], str(e)) from None
            out.append(cur)
        cur.items.append(QueuedWorkItem(r[10], decode_payload(r[10], bytes(r[11]))))
    return out


def _held(t: Tx, session_id: str, claim_id: str, token: str, batch_ids: list[str], now: int) -> None:
    """rules.check_held over the named rows and the claim's rows, locked in queue order."""
    rows = t.all(
        "SELECT batch_id, session_id, state, claim_id, claim_token, claim_expires_at_ms FROM queued_work_batches "
        "WHERE batch_id = ANY(%s) OR claim_id = %s ORDER BY enqueue_seq FOR UPDATE",
        (list(batch_ids), claim_id),
    )
    named = set(batch_ids)
    found = {r[0]: rules.HeldRow(*r[1:]) for r in rows if r[0] in named}
    held = sum(1 for r in rows if r[3] == claim_id and r[2] == "queued")
    rules.check_held(session_id, claim_id, token, batch_ids, found, held, now)


class PostgresQueueMixin:
    _db: Any
    _clock: Any
    _opts: Any

    # -- enqueue -------------------------------------------------------------------------------
    def enqueue_queued_work(self, draft: QueuedWorkBatchDraft) -> QueuedWorkBatch:
        """Append a batch; with a source key, an earlier batch with that key is returned instead
        (also after it was completed or cancelled: check its `state`)."""
        rules.check_draft(draft)
        payloads = [pack(p) for p in draft.payloads]
        batch_id = self._opts.ids.new_id("qwb_")
        sid = draft.session_id

        def tx(t: Tx) -> QueuedWorkBatch:
            t.lock("queue", sid)
            if draft.source_key is not None:
                found = _load_batches(t, "b.session_id = %s AND b.source_key = %s", (sid, draft.source_key))
                if found:
                    return found[0]
            t.execute(
                "INSERT INTO queued_work_batches (batch_id, session_id, source_key, delivery_policy, slot_policy, "
                "merge_key, available_at_ms, enqueued_at_ms) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    batch_id,
                    sid,
                    draft.source_key,
                    DeliveryPolicy(draft.delivery_policy).value,
                    SlotPolicy(draft.slot_policy).value,
                    draft.merge_key,
                    draft.available_at_ms,
                    t.now(),
                ),
            )
            t.many(
                "INSERT INTO queued_work_items (batch_id, item_index, item_id, payload) VALUES (%s, %s, %s, %s)",
                [(batch_id, i, f"{batch_id}:item:{i}", p) for i, p in enumerate(payloads)],
            )
            return _load_batches(t, "b.batch_id = %s", (batch_id,))[0]

        return self._write(tx, "enqueue queued work")

    # -- claims --------------------------------------------------------------------------------
    @staticmethod
    def _candidates(t: Tx, session_id: str, limit: int) -> list[rules.Candidate]:
        """Claimable batches from the head of the queue, locked; _HeadBusy when the head is
        locked by a transaction in flight. One statement: both halves see one snapshot, and
        "now" (the database clock, read after the claim lock) comes with them."""
        now_expr = NOW_MS if t.uses_database_clock else "%(now)s::bigint"
        claimable = (
            "b.session_id = %(sid)s AND b.state = 'queued' AND b.available_at_ms <= n.now "
            "AND (b.claim_token IS NULL OR b.claim_expires_at_ms <= n.now)"
        )
        rows = t.all(
            f"WITH n AS MATERIALIZED (SELECT {now_expr} AS now), c AS MATERIALIZED ("
            "SELECT b.batch_id, b.enqueue_seq, b.delivery_policy, b.slot_policy, b.merge_key, b.claim_fencing_token "
            f"FROM queued_work_batches b, n WHERE {claimable} ORDER BY b.enqueue_seq LIMIT %(limit)s "
            "FOR UPDATE OF b SKIP LOCKED), "
            f"h AS (SELECT min(b.enqueue_seq) AS head FROM queued_work_batches b, n WHERE {claimable}) "
            "SELECT n.now, h.head, c.batch_id, c.enqueue_seq, c.delivery_policy, c.slot_policy, c.merge_key, "
            "c.claim_fencing_token FROM n CROSS JOIN h LEFT JOIN c ON true ORDER BY c.enqueue_seq",
            {"sid": session_id, "limit": limit, "now": None if t.uses_database_clock else t.now()},
        )
        t.set_now(rows[0][0])
        head = rows[0][1]
        found = [rules.Candidate(*r[2:]) for r in rows if r[2] is not None]
        if head is None or (found and found[0].enqueue_seq <= head):
            return found
        raise _HeadBusy(head)

    def _claim(
        self,
        session_id: str,
        owner_id: str,
        boundary: Any,
        ttl_ms: int,
        max_batches: int,
        exact: list[str] | None,
    ) -> QueuedWorkClaim | None:
        boundary = rules.check_claim_args(session_id, owner_id, boundary, ttl_ms, max_batches)
        limit = min(max_batches, rules.MAX_CLAIM_BATCHES)
        if limit == 0:
            return None
        claim_id = self._opts.ids.new_id("qwc_")
        token = self._opts.ids.token()

        def tx(t: Tx) -> QueuedWorkClaim | None:
            # Only the head of a queue can be claimed, so claims of one session are a line: they
            # wait their turn here (FIFO in the lock manager) instead of racing for the head.
            # Other sessions' claims, enqueues and cancels do not take this lock.
            t.lock("claim", session_id)
            chosen = rules.select_claim(self._candidates(t, session_id, limit), boundary, limit)
            if not chosen or (exact is not None and [b.batch_id for b in chosen] != exact):
                return None
            now = t.now()
            fencing = chosen[0].fencing_token + 1
            expires = now + ttl_ms
            ids = [b.batch_id for b in chosen]
            n = t.rowcount(
                "UPDATE queued_work_batches SET claim_id = %s, claim_owner_id = %s, claim_token = %s, "
                "claim_claimed_at_ms = %s, claim_expires_at_ms = %s, claim_fencing_token = claim_fencing_token + 1 "
                "WHERE batch_id = ANY(%s) AND state = 'queued' AND (claim_token IS NULL OR claim_expires_at_ms <= %s)",
                (claim_id, owner_id, token, now, expires, ids, now),
            )
            if n != len(ids):  # the rows are locked by this transaction: cannot happen
                raise QueuedWorkClaimExpired(session_id, claim_id, "lost a race for a batch")
            batches = _load_batches(t, "b.batch_id = ANY(%s)", (ids,))
            return QueuedWorkClaim(
                session_id=session_id,
                claim_id=claim_id,
                owner_id=owner_id,
                lease_token=token,
                fencing_token=fencing,
                claimed_at_epoch_ms=now,
                expires_at_epoch_ms=expires,
                batches=batches,
            )

        for _ in range(_MAX_HEAD_WAITS):
            try:
                return self._write(tx, "claim queued work")
            except _HeadBusy as busy:
                head = busy.head
            # The claim rolled back (holding nothing); wait for the transaction that holds the head
            # with a momentary share lock, then claim again. Nobody waits while holding rows, so
            # concurrent claimers cannot deadlock.
            self._write(
                lambda t: t.execute("SELECT 1 FROM queued_work_batches WHERE enqueue_seq = %s FOR SHARE", (head,)),
                "claim queued work: wait for the head of the queue",
            )
        raise StoreBusy(f"claim queued work: the head of session {session_id!r}'s queue stayed contended; retry")

    def claim_ready_queued_work(
        self,
        session_id: str,
        owner_id: str,
        boundary: ClaimBoundary,
        lease_ttl_ms: int,
        max_batches: int,
    ) -> QueuedWorkClaim | None:
        """Claim the head of the session's queue (and its join group) as a lease, or None."""
        return self._claim(session_id, owner_id, boundary, lease_ttl_ms, max_batches, None)

    def claim_ready_queued_work_by_batch_ids(
        self,
        session_id: str,
        owner_id: str,
        boundary: ClaimBoundary,
        lease_ttl_ms: int,
        batch_ids: list[str],
    ) -> QueuedWorkClaim | None:
        """Claim exactly these batches, in this order, if they are what a claim would take now.

        Never skips earlier work; when the ids do not match, nothing is written."""
        if not isinstance(batch_ids, list):
            raise ValidationError("batch_ids must be a list")
        for i, b in enumerate(batch_ids):
            v.check_id(b, f"batch_ids[{i}]")
        if not batch_ids:
            return None
        return self._claim(session_id, owner_id, boundary, lease_ttl_ms, len(batch_ids), list(batch_ids))

    def renew_queued_work_claim(self, claim: QueuedWorkClaim, lease_ttl_ms: int) -> QueuedWorkClaim:
        """Extend a live claim; QueuedWorkClaimExpired (and nothing written) if it no longer holds."""
        v.check_nonneg_int(lease_ttl_ms, "lease_ttl_ms")

        def tx(t: Tx) -> int:
            _held(t, claim.session_id, claim.claim_id, claim.lease_token, claim.batch_ids, t.now())
            expires = t.now() + lease_ttl_ms
            t.execute(
                "UPDATE queued_work_batches SET claim_expires_at_ms = %s WHERE claim_id = %s AND claim_token = %s",
                (expires, claim.claim_id, claim.lease_token),
            )
            return expires

        expires = self._write(tx, "renew queued-work claim")
        return msgspec.structs.replace(claim, expires_at_epoch_ms=expires)

    def abandon_queued_work_claim(self, claim: QueuedWorkClaim) -> int:
        """Hand the claim's batches back (fencing tokens are kept). Returns how many were released."""

        def tx(t: Tx) -> int:
            return t.rowcount(
                "UPDATE queued_work_batches SET claim_id = NULL, claim_owner_id = NULL, claim_token = NULL, "
                "claim_claimed_at_ms = 0, claim_expires_at_ms = 0 "
                "WHERE session_id = %s AND claim_id = %s AND claim_token = %s AND state = 'queued'",
                (claim.session_id, claim.claim_id, claim.lease_token),
            )

        return self._write(tx, "abandon queued-work claim")

    def cancel_queued_work_batch(self, session_id: str, batch_id: str) -> QueuedWorkBatch | None:
        """Cancel a batch nobody holds; None when it is unknown, finished or live-claimed."""
        v.check_id(session_id, "session_id")
        v.check_id(batch_id, "batch_id")

        def tx(t: Tx) -> QueuedWorkBatch | None:
            now = t.now()
            n = t.rowcount(
                "UPDATE queued_work_batches SET state = 'cancelled', finished_at_ms = %s, claim_id = NULL, "
                "claim_owner_id = NULL, claim_token = NULL, claim_claimed_at_ms = 0, claim_expires_at_ms = 0 "
                "WHERE session_id = %s AND batch_id = %s AND state = 'queued' "
                "AND (claim_token IS NULL OR claim_expires_at_ms <= %s)",
                (now, session_id, batch_id, now),
            )
            if n == 0:
                return None
            return _load_batches(t, "b.batch_id = %s", (batch_id,))[0]

        return self._write(tx, "cancel queued work")

    def list_queued_work(self, session_id: str) -> list[QueuedWorkBatch]:
        """Every queued batch of the session, claimed ones included, in enqueue order."""
        v.check_id(session_id, "session_id")
        return self._read(
            lambda t: _load_batches(t, "b.session_id = %s AND b.state = 'queued'", (session_id,)),
            "list queued work",
        )

    def list_pending_queued_work(self, session_id: str) -> list[QueuedWorkBatch]:
        """Queued batches nobody holds a live claim on (expired claims count as pending)."""
        v.check_id(session_id, "session_id")

        def tx(t: Tx) -> list[QueuedWorkBatch]:
            now = t.now()
            return _load_batches(
                t,
                "b.session_id = %s AND b.state = 'queued' AND (b.claim_token IS NULL OR b.claim_expires_at_ms <= %s)",
                (session_id, now),
            )

        return self._read(tx, "list pending queued work")

    def list_claimed_queued_work(self, session_id: str) -> list[tuple[QueuedWorkBatch, str, str, int]]:
        """(batch, claim id, owner, expiry) of every live-claimed batch of the session."""
        v.check_id(session_id, "session_id")

        def tx(t: Tx) -> list[tuple[QueuedWorkBatch, str, str, int]]:
            now = t.now()
            batches = _load_batches(
                t,
                "b.session_id = %s AND b.state = 'queued' AND b.claim_token IS NOT NULL AND b.claim_expires_at_ms > %s",
                (session_id, now),
            )
            claims = {
                r[0]: (r[1], r[2], r[3])
                for r in t.all(
                    "SELECT batch_id, claim_id, claim_owner_id, claim_expires_at_ms FROM queued_work_batches "
                    "WHERE session_id = %s AND state = 'queued' AND claim_token IS NOT NULL",
                    (session_id,),
                )
            }
            return [(b, *claims[b.batch_id]) for b in batches]

        return self._read(tx, "list claimed queued work")

    def queue_sessions(self) -> list[str]:
        """Session ids with queued work in this deployment."""
        return self._read(
            lambda t: [
                r[0]
                for r in t.all(
                    "SELECT DISTINCT session_id FROM queued_work_batches WHERE state = 'queued' ORDER BY session_id"
                )
            ],
            "queue sessions",
        )

    # -- inside commit_runtime_state ------------------------------------------------------------
    def _check_completions(self, t: Tx, commit: RuntimeCommit, now: int) -> None:
        for comp in commit.completed_queue_claims:
            rules.check_completion_session(comp, commit.session_id)
            _held(t, comp.session_id, comp.claim_id, comp.lease_token, comp.batch_ids, now)

    def _consume_completions(self, t: Tx, commit: RuntimeCommit, now: int) -> None:
        for comp in commit.completed_queue_claims:
            t.defer(
                "UPDATE queued_work_batches SET state = 'completed', finished_at_ms = %s "
                "WHERE batch_id = ANY(%s) AND claim_id = %s AND claim_token = %s",
                (now, list(comp.batch_ids), comp.claim_id, comp.lease_token),
            )
