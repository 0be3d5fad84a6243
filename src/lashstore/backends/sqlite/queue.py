"""Queued work on SQLite: enqueue, claim, renew, abandon, cancel, list; completion in the commit."""

from __future__ import annotations

import sqlite3
from typing import Any

from ...codec import pack
from ...errors import QueuedWorkClaimExpired, ValidationError
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

__all__ = ["SqliteQueueMixin"]

_BATCH_COLS = (
    "b.batch_id, b.session_id, b.enqueue_seq, b.source_key, b.delivery_policy, b.slot_policy, "
    "b.merge_key, b.available_at_ms, b.enqueued_at_ms, b.state"
)


def _load_batches(c: sqlite3.Connection, where: str, params: tuple) -> list[QueuedWorkBatch]:
    rows = c.execute(
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
                from ...errors import CorruptRecord

                raise CorruptRecord("queued-work batch", r[0], str(e)) from None
            out.append(cur)
        cur.items.append(QueuedWorkItem(r[10], decode_payload(r[10], r[11])))
    return out


class SqliteQueueMixin:
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
        with self._db.write("enqueue queued work") as c:
            if draft.source_key is not None:
                found = _load_batches(c, "b.session_id = ? AND b.source_key = ?", (draft.session_id, draft.source_key))
                if found:
                    return found[0]
            now = self._clock.now_ms()
            c.execute(
                "INSERT INTO queued_work_batches (batch_id, session_id, source_key, delivery_policy, slot_policy, "
                "merge_key, available_at_ms, enqueued_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    batch_id,
                    draft.session_id,
                    draft.source_key,
                    DeliveryPolicy(draft.delivery_policy).value,
                    SlotPolicy(draft.slot_policy).value,
                    draft.merge_key,
                    draft.available_at_ms,
                    now,
                ),
            )
            c.executemany(
                "INSERT INTO queued_work_items (batch_id, item_index, item_id, payload) VALUES (?, ?, ?, ?)",
                [(batch_id, i, f"{batch_id}:item:{i}", p) for i, p in enumerate(payloads)],
            )
            return _load_batches(c, "b.batch_id = ?", (batch_id,))[0]

    # -- claims --------------------------------------------------------------------------------
    @staticmethod
    def _candidates(c: sqlite3.Connection, session_id: str, now: int, limit: int) -> list[rules.Candidate]:
        # Claimability is decided in the WHERE clause, before LIMIT (upstream bug: a LIMIT applied
        # before filtering held rows never reached claimable rows further back).
        rows = c.execute(
            "SELECT batch_id, enqueue_seq, delivery_policy, slot_policy, merge_key, claim_fencing_token "
            "FROM queued_work_batches WHERE session_id = ? AND state = 'queued' AND available_at_ms <= ? "
            "AND (claim_token IS NULL OR claim_expires_at_ms <= ?) ORDER BY enqueue_seq LIMIT ?",
            (session_id, now, now, limit),
        )
        return [rules.Candidate(*r) for r in rows]

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
        with self._db.write("claim queued work") as c:
            now = self._clock.now_ms()
            chosen = rules.select_claim(self._candidates(c, session_id, now, limit), boundary, limit)
            if not chosen or (exact is not None and [b.batch_id for b in chosen] != exact):
                return None
            fencing = chosen[0].fencing_token + 1
            expires = now + ttl_ms
            for b in chosen:
                n = c.execute(
                    "UPDATE queued_work_batches SET claim_id = ?, claim_owner_id = ?, claim_token = ?, "
                    "claim_claimed_at_ms = ?, claim_expires_at_ms = ?, claim_fencing_token = claim_fencing_token + 1 "
                    "WHERE batch_id = ? AND state = 'queued' AND (claim_token IS NULL OR claim_expires_at_ms <= ?)",
                    (claim_id, owner_id, token, now, expires, b.batch_id, now),
                ).rowcount
                if n != 1:  # cannot happen under BEGIN IMMEDIATE; never report rows we do not own
                    raise QueuedWorkClaimExpired(session_id, claim_id, "lost a race for a batch")
            ids = [b.batch_id for b in chosen]
            marks = ",".join("?" * len(ids))
            batches = _load_batches(c, f"b.batch_id IN ({marks})", tuple(ids))
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

    @staticmethod
    def _held(c: sqlite3.Connection, session_id: str, claim_id: str, token: str, batch_ids: list[str], now: int) -> None:
        marks = ",".join("?" * len(batch_ids))
        rows = {
            r[0]: rules.HeldRow(*r[1:])
            for r in c.execute(
                "SELECT batch_id, session_id, state, claim_id, claim_token, claim_expires_at_ms "
                f"FROM queued_work_batches WHERE batch_id IN ({marks})",
                batch_ids,
            )
        }
        held = c.execute(
            "SELECT count(*) FROM queued_work_batches WHERE claim_id = ? AND state = 'queued'", (claim_id,)
        ).fetchone()[0]
        rules.check_held(session_id, claim_id, token, batch_ids, rows, held, now)

    def renew_queued_work_claim(self, claim: QueuedWorkClaim, lease_ttl_ms: int) -> QueuedWorkClaim:
        """Extend a live claim; QueuedWorkClaimExpired (and nothing written) if it no longer holds."""
        v.check_nonneg_int(lease_ttl_ms, "lease_ttl_ms")
        with self._db.write("renew queued-work claim") as c:
            now = self._clock.now_ms()
            self._held(c, claim.session_id, claim.claim_id, claim.lease_token, claim.batch_ids, now)
            expires = now + lease_ttl_ms
            c.execute(
                "UPDATE queued_work_batches SET claim_expires_at_ms = ? WHERE claim_id = ? AND claim_token = ?",
                (expires, claim.claim_id, claim.lease_token),
            )
        import msgspec

        return msgspec.structs.replace(claim, expires_at_epoch_ms=expires)

    def abandon_queued_work_claim(self, claim: QueuedWorkClaim) -> int:
        """Hand the claim's batches back (fencing tokens are kept). Returns how many were released."""
        with self._db.write("abandon queued-work claim") as c:
            return c.execute(
                "UPDATE queued_work_batches SET claim_id = NULL, claim_owner_id = NULL, claim_token = NULL, "
                "claim_claimed_at_ms = 0, claim_expires_at_ms = 0 "
                "WHERE session_id = ? AND claim_id = ? AND claim_token = ? AND state = 'queued'",
                (claim.session_id, claim.claim_id, claim.lease_token),
            ).rowcount

    def cancel_queued_work_batch(self, session_id: str, batch_id: str) -> QueuedWorkBatch | None:
        """Cancel a batch nobody holds; None when it is unknown, finished or live-claimed."""
        v.check_id(session_id, "session_id")
        v.check_id(batch_id, "batch_id")
        with self._db.write("cancel queued work") as c:
            now = self._clock.now_ms()
            n = c.execute(
                "UPDATE queued_work_batches SET state = 'cancelled', finished_at_ms = ?, claim_id = NULL, "
                "claim_owner_id = NULL, claim_token = NULL, claim_claimed_at_ms = 0, claim_expires_at_ms = 0 "
                "WHERE session_id = ? AND batch_id = ? AND state = 'queued' "
                "AND (claim_token IS NULL OR claim_expires_at_ms <= ?)",
                (now, session_id, batch_id, now),
            ).rowcount
            if n == 0:
                return None
            return _load_batches(c, "b.batch_id = ?", (batch_id,))[0]

    def list_queued_work(self, session_id: str) -> list[QueuedWorkBatch]:
        """Every queued batch of the session, claimed ones included, in enqueue order."""
        v.check_id(session_id, "session_id")
        with self._db.read("list queued work") as c:
            return _load_batches(c, "b.session_id = ? AND b.state = 'queued'", (session_id,))

    def list_pending_queued_work(self, session_id: str) -> list[QueuedWorkBatch]:
        """Queued batches nobody holds a live claim on (expired claims count as pending)."""
        v.check_id(session_id, "session_id")
        with self._db.read("list pending queued work") as c:
            now = self._clock.now_ms()
            return _load_batches(
                c,
                "b.session_id = ? AND b.state = 'queued' AND (b.claim_token IS NULL OR b.claim_expires_at_ms <= ?)",
                (session_id, now),
            )

    def list_claimed_queued_work(self, session_id: str) -> list[tuple[QueuedWorkBatch, str, str, int]]:
        """(batch, claim id, owner, expiry) of every live-claimed batch of the session."""
        v.check_id(session_id, "session_id")
        with self._db.read("list claimed queued work") as c:
            now = self._clock.now_ms()
            batches = _load_batches(
                c,
                "b.session_id = ? AND b.state = 'queued' AND b.claim_token IS NOT NULL AND b.claim_expires_at_ms > ?",
                (session_id, now),
            )
            claims = {
                r[0]: (r[1], r[2], r[3])
                for r in c.execute(
                    "SELECT batch_id, claim_id, claim_owner_id, claim_expires_at_ms FROM queued_work_batches "
                    "WHERE session_id = ? AND state = 'queued' AND claim_token IS NOT NULL",
                    (session_id,),
                )
            }
        return [(b, *claims[b.batch_id]) for b in batches]

    def queue_sessions(self) -> list[str]:
        """Session ids with queued work in this file."""
        with self._db.read("queue sessions") as c:
            return [r[0] for r in c.execute(
                "SELECT DISTINCT session_id FROM queued_work_batches WHERE state = 'queued' ORDER BY session_id"
            )]

    # -- inside commit_runtime_state ------------------------------------------------------------
    def _check_completions(self, c: sqlite3.Connection, commit: RuntimeCommit, now: int) -> None:
        for comp in commit.completed_queue_claims:
            rules.check_completion_session(comp, commit.session_id)
            self._held(c, comp.session_id, comp.claim_id, comp.lease_token, comp.batch_ids, now)

    def _consume_completions(self, c: sqlite3.Connection, commit: RuntimeCommit, now: int) -> None:
        for comp in commit.completed_queue_claims:
            c.executemany(
                "UPDATE queued_work_batches SET state = 'completed', finished_at_ms = ? "
                "WHERE batch_id = ? AND claim_id = ? AND claim_token = ?",
                [(now, bid, comp.claim_id, comp.lease_token) for bid in comp.batch_ids],
            )
