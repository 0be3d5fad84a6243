"""The queued-work claim on PostgreSQL: candidate rows locked with `FOR UPDATE SKIP LOCKED`.

Claimability (state, availability, no live claim) is decided in the WHERE clause before the
LIMIT (upstream bug 6). Only the head of a session's queue may start a claim
(`rules.queue.select_claim`); when the head is locked by a transaction in flight (another claim,
a cancel) the claim raises `HeadBusy`: the engine rolls back, waits for that transaction with a
momentary share lock on the head (`wait_for_queue_head`), and claims again, so claimers take
batches in queue order, never skip earlier work, and never wait while holding rows.
"""

from __future__ import annotations

from typing import Any

from ...engine.queue import HeadBusy
from ...rules import queue as rules
from .connection import NOW_MS

__all__ = ["claim_candidates", "wait_for_queue_head"]


def claim_candidates(t: Any, session_id: str, limit: int) -> list[rules.Candidate]:
    """Claimable batches from the head of the queue, locked. One statement: both halves see one
    snapshot, and "now" (the database clock, read after the claim lock) comes with them."""
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
    raise HeadBusy(head)


def wait_for_queue_head(t: Any, head: int) -> None:
    t.execute("SELECT 1 FROM queued_work_batches WHERE enqueue_seq = ? FOR SHARE", (head,))
