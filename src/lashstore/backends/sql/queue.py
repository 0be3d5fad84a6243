"""The statements of queued work, written once for SQLite and PostgreSQL.

Claim candidates are the one query that differs: on SQLite the write transaction holds the whole
database, so a plain SELECT of the claimable head of the queue is exact; PostgreSQL locks rows
with `FOR UPDATE SKIP LOCKED` (`backends/postgres/queue_claim.py`, through `tx.dialect`).
"""

from __future__ import annotations

from typing import Any

from ...errors import CorruptRecord
from ...model.queue import BatchState, DeliveryPolicy, QueuedWorkBatch, QueuedWorkBatchDraft, QueuedWorkItem, SlotPolicy
from ...rules import queue as rules
from ...engine.tx import Tx, any_of
from ..common import check_columns, decode_payload

_BATCH_COLS = (
    "b.batch_id, b.session_id, b.enqueue_seq, b.source_key, b.delivery_policy, b.slot_policy, "
    "b.merge_key, b.available_at_ms, b.enqueued_at_ms, b.state"
)
_BATCH_SPEC = (("batch_id", "s"), ("session_id", "s"), ("enqueue_seq", "i"), ("source_key", "s?"),
               ("delivery_policy", "s"), ("slot_policy", "s"), ("merge_key", "s?"), ("available_at_ms", "I"),
               ("enqueued_at_ms", "I"), ("state", "s"), ("item_id", "s"), ("payload", "b"))
_LIVE = "(claim_token IS NULL OR claim_expires_at_ms <= ?)"


def load_batches(t: Tx, where: str, params: Any) -> list[QueuedWorkBatch]:
    """Batches (with their items) matching `where` over `b`, in queue order."""
    rows = t.all(
        f"SELECT {_BATCH_COLS}, i.item_id, i.payload FROM queued_work_batches b "
        f"JOIN queued_work_items i ON i.batch_id = b.batch_id WHERE {where} ORDER BY b.enqueue_seq, i.item_index",
        params,
    )
    out: list[QueuedWorkBatch] = []
    cur: QueuedWorkBatch | None = None
    for r in rows:
        if cur is None or cur.batch_id != r[0]:
            check_columns(r, _BATCH_SPEC, "queued-work batch", r[0])
            try:
                cur = QueuedWorkBatch(
                    batch_id=r[0], session_id=r[1], enqueue_seq=r[2], source_key=r[3],
                    delivery_policy=DeliveryPolicy(r[4]), slot_policy=SlotPolicy(r[5]), merge_key=r[6],
                    available_at_ms=r[7], enqueued_at_ms=r[8], items=[], state=BatchState(r[9]),
                )
            except ValueError as e:
                raise CorruptRecord("queued-work batch", r[0], str(e)) from None
            out.append(cur)
        cur.items.append(QueuedWorkItem(r[10], decode_payload(r[10], bytes(r[11]))))
    return out


def batches_by_id(t: Tx, ids: list[str]) -> list[QueuedWorkBatch]:
    cond, params = any_of(t, "b.batch_id", ids)
    return load_batches(t, cond, params)


def by_source_key(t: Tx, sid: str, source_key: str) -> QueuedWorkBatch | None:
    found = load_batches(t, "b.session_id = ? AND b.source_key = ?", (sid, source_key))
    return found[0] if found else None


def insert_batch(t: Tx, batch_id: str, draft: QueuedWorkBatchDraft, payloads: list[bytes], now: int) -> None:
    t.execute(
        "INSERT INTO queued_work_batches (batch_id, session_id, source_key, delivery_policy, slot_policy, merge_key, "
        "available_at_ms, enqueued_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (batch_id, draft.session_id, draft.source_key, DeliveryPolicy(draft.delivery_policy).value,
         SlotPolicy(draft.slot_policy).value, draft.merge_key, draft.available_at_ms, now),
    )
    t.many("INSERT INTO queued_work_items (batch_id, item_index, item_id, payload) VALUES (?, ?, ?, ?)",
           [(batch_id, i, f"{batch_id}:item:{i}", p) for i, p in enumerate(payloads)])


def candidates(t: Tx, session_id: str, limit: int) -> list[rules.Candidate]:
    """Claimable batches from the head of the session's queue. Claimability is decided in the
    WHERE clause, before LIMIT (upstream bug: a LIMIT applied before filtering held rows never
    reached claimable rows further back)."""
    now = t.now()
    rows = t.all(
        "SELECT batch_id, enqueue_seq, delivery_policy, slot_policy, merge_key, claim_fencing_token "
        f"FROM queued_work_batches WHERE session_id = ? AND state = 'queued' AND available_at_ms <= ? AND {_LIVE} "
        "ORDER BY enqueue_seq LIMIT ?",
        (session_id, now, now, limit),
    )
    return [rules.Candidate(*r) for r in rows]


def take(t: Tx, ids: list[str], claim_id: str, owner_id: str, token: str, now: int, expires: int) -> int:
    cond, params = any_of(t, "batch_id", ids)
    return t.rowcount(
        "UPDATE queued_work_batches SET claim_id = ?, claim_owner_id = ?, claim_token = ?, claim_claimed_at_ms = ?, "
        f"claim_expires_at_ms = ?, claim_fencing_token = claim_fencing_token + 1 WHERE {cond} AND state = 'queued' "
        f"AND {_LIVE}",
        (claim_id, owner_id, token, now, expires, *params, now),
    )


def held(t: Tx, session_id: str, claim_id: str, token: str, batch_ids: list[str], now: int) -> None:
    """`rules.check_held` over the named rows and the claim's rows (locked where rows lock)."""
    cond, params = any_of(t, "batch_id", batch_ids)
    rows = t.all(
        "SELECT batch_id, session_id, state, claim_id, claim_token, claim_expires_at_ms FROM queued_work_batches "
        f"WHERE {cond} OR claim_id = ? ORDER BY enqueue_seq{t.dialect.for_update}",
        (*params, claim_id),
    )
    named = set(batch_ids)
    found = {r[0]: rules.HeldRow(*r[1:]) for r in rows if r[0] in named}
    count = sum(1 for r in rows if r[3] == claim_id and r[2] == "queued")
    rules.check_held(session_id, claim_id, token, batch_ids, found, count, now)


def extend(t: Tx, claim_id: str, token: str, expires: int) -> None:
    t.execute("UPDATE queued_work_batches SET claim_expires_at_ms = ? WHERE claim_id = ? AND claim_token = ?",
              (expires, claim_id, token))


_RELEASE = "claim_id = NULL, claim_owner_id = NULL, claim_token = NULL, claim_claimed_at_ms = 0, claim_expires_at_ms = 0"


def release(t: Tx, session_id: str, claim_id: str, token: str) -> int:
    return t.rowcount(f"UPDATE queued_work_batches SET {_RELEASE} WHERE session_id = ? AND claim_id = ? "
                      "AND claim_token = ? AND state = 'queued'", (session_id, claim_id, token))


def cancel(t: Tx, session_id: str, batch_id: str, now: int) -> int:
    return t.rowcount(
        f"UPDATE queued_work_batches SET state = 'cancelled', finished_at_ms = ?, {_RELEASE} "
        f"WHERE session_id = ? AND batch_id = ? AND state = 'queued' AND {_LIVE}",
        (now, session_id, batch_id, now),
    )


def complete(t: Tx, batch_ids: list[str], claim_id: str, token: str, now: int) -> None:
    t.defer_many("UPDATE queued_work_batches SET state = 'completed', finished_at_ms = ? WHERE batch_id = ? "
                 "AND claim_id = ? AND claim_token = ?", [(now, b, claim_id, token) for b in batch_ids])


def queued(t: Tx, session_id: str, *, pending_at: int | None = None, claimed_at: int | None = None) -> list[QueuedWorkBatch]:
    where, params = "b.session_id = ? AND b.state = 'queued'", [session_id]
    if pending_at is not None:
        where += " AND (b.claim_token IS NULL OR b.claim_expires_at_ms <= ?)"
        params.append(pending_at)
    if claimed_at is not None:
        where += " AND b.claim_token IS NOT NULL AND b.claim_expires_at_ms > ?"
        params.append(claimed_at)
    return load_batches(t, where, params)


def claims_of(t: Tx, session_id: str) -> dict[str, tuple[str, str, int]]:
    """batch id -> (claim id, owner, expiry) of the session's claimed queued batches."""
    return {r[0]: (r[1], r[2], r[3]) for r in t.all(
        "SELECT batch_id, claim_id, claim_owner_id, claim_expires_at_ms FROM queued_work_batches "
        "WHERE session_id = ? AND state = 'queued' AND claim_token IS NOT NULL", (session_id,))}


def queue_sessions(t: Tx) -> list[str]:
    return [r[0] for r in t.all("SELECT DISTINCT session_id FROM queued_work_batches WHERE state = 'queued' "
                                "ORDER BY session_id")]
