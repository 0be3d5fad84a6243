"""Queued work in memory, deciding exactly as SQLite does (through `rules.queue`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from lashstore.codec import pack
from lashstore.errors import ValidationError
from lashstore.model.queue import (
    BatchState,
    ClaimBoundary,
    DeliveryPolicy,
    QueuedWorkBatch,
    QueuedWorkBatchDraft,
    QueuedWorkClaim,
    QueuedWorkItem,
    SlotPolicy,
)
from lashstore.model.session import RuntimeCommit
from lashstore.rules import queue as rules
from lashstore.rules import validate as v
from lashstore.backends.common import decode_payload

__all__ = ["MemoryQueueMixin", "BatchRow"]


@dataclass
class BatchRow:
    seq: int
    batch_id: str
    session_id: str
    source_key: str | None
    state: str
    delivery_policy: str
    slot_policy: str
    merge_key: str | None
    available_at_ms: int
    enqueued_at_ms: int
    items: list[tuple[str, bytes]]
    claim_id: str | None = None
    claim_owner_id: str | None = None
    claim_token: str | None = None
    claim_fencing_token: int = 0
    claim_claimed_at_ms: int = 0
    claim_expires_at_ms: int = 0
    finished_at_ms: int | None = None

    def to_batch(self) -> QueuedWorkBatch:
        return QueuedWorkBatch(
            batch_id=self.batch_id,
            session_id=self.session_id,
            enqueue_seq=self.seq,
            source_key=self.source_key,
            delivery_policy=DeliveryPolicy(self.delivery_policy),
            slot_policy=SlotPolicy(self.slot_policy),
            merge_key=self.merge_key,
            available_at_ms=self.available_at_ms,
            enqueued_at_ms=self.enqueued_at_ms,
            items=[QueuedWorkItem(i, decode_payload(i, p)) for i, p in self.items],
            state=BatchState(self.state),
        )

    def live(self, now: int) -> bool:
        return rules.is_live(self.claim_token, self.claim_expires_at_ms, now)

    def release(self) -> None:
        self.claim_id = self.claim_owner_id = self.claim_token = None
        self.claim_claimed_at_ms = self.claim_expires_at_ms = 0


class MemoryQueueMixin:
    _f: Any
    _clock: Any
    _opts: Any

    def _lock(self) -> Any: ...

    def _rows(self, session_id: str) -> list[BatchRow]:
        return [b for b in self._f.batches.values() if b.session_id == session_id]

    def enqueue_queued_work(self, draft: QueuedWorkBatchDraft) -> QueuedWorkBatch:
        rules.check_draft(draft)
        payloads = [pack(p) for p in draft.payloads]
        batch_id = self._opts.ids.new_id("qwb_")
        with self._lock():
            f = self._f
            if draft.source_key is not None:
                existing = f.source_keys.get((draft.session_id, draft.source_key))
                if existing is not None:
                    return f.batches[existing].to_batch()
            row = BatchRow(
                seq=next(f.queue_seq),
                batch_id=batch_id,
                session_id=draft.session_id,
                source_key=draft.source_key,
                state="queued",
                delivery_policy=DeliveryPolicy(draft.delivery_policy).value,
                slot_policy=SlotPolicy(draft.slot_policy).value,
                merge_key=draft.merge_key,
                available_at_ms=draft.available_at_ms,
                enqueued_at_ms=self._clock.now_ms(),
                items=[(f"{batch_id}:item:{i}", p) for i, p in enumerate(payloads)],
            )
            f.batches[batch_id] = row
            if draft.source_key is not None:
                f.source_keys[(draft.session_id, draft.source_key)] = batch_id
            return row.to_batch()

    def _claim(self, session_id, owner_id, boundary, ttl_ms, max_batches, exact) -> QueuedWorkClaim | None:
        boundary = rules.check_claim_args(session_id, owner_id, boundary, ttl_ms, max_batches)
        limit = min(max_batches, rules.MAX_CLAIM_BATCHES)
        if limit == 0:
            return None
        claim_id = self._opts.ids.new_id("qwc_")
        token = self._opts.ids.token()
        with self._lock():
            now = self._clock.now_ms()
            ready = [
                b
                for b in self._rows(session_id)
                if b.state == "queued" and b.available_at_ms <= now and not b.live(now)
            ][:limit]
            cands = [
                rules.Candidate(b.batch_id, b.seq, b.delivery_policy, b.slot_policy, b.merge_key, b.claim_fencing_token)
                for b in ready
            ]
            chosen = rules.select_claim(cands, boundary, limit)
            if not chosen or (exact is not None and [b.batch_id for b in chosen] != exact):
                return None
            fencing = chosen[0].fencing_token + 1
            expires = now + ttl_ms
            batches = []
            for cand in chosen:
                b = self._f.batches[cand.batch_id]
                b.claim_id, b.claim_owner_id, b.claim_token = claim_id, owner_id, token
                b.claim_claimed_at_ms, b.claim_expires_at_ms = now, expires
                b.claim_fencing_token += 1
                batches.append(b.to_batch())
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

    def claim_ready_queued_work(self, session_id: str, owner_id: str, boundary: ClaimBoundary, lease_ttl_ms: int, max_batches: int):
        return self._claim(session_id, owner_id, boundary, lease_ttl_ms, max_batches, None)

    def claim_ready_queued_work_by_batch_ids(self, session_id: str, owner_id: str, boundary: ClaimBoundary, lease_ttl_ms: int, batch_ids: list[str]):
        if not isinstance(batch_ids, list):
            raise ValidationError("batch_ids must be a list")
        for i, b in enumerate(batch_ids):
            v.check_id(b, f"batch_ids[{i}]")
        if not batch_ids:
            return None
        return self._claim(session_id, owner_id, boundary, lease_ttl_ms, len(batch_ids), list(batch_ids))

    def _held(self, session_id: str, claim_id: str, token: str, batch_ids: list[str], now: int) -> None:
        f = self._f
        rows = {
            bid: rules.HeldRow(b.session_id, b.state, b.claim_id, b.claim_token, b.claim_expires_at_ms)
            for bid in batch_ids
            if (b := f.batches.get(bid)) is not None
        }
        held = sum(1 for b in f.batches.values() if b.claim_id == claim_id and b.state == "queued")
        rules.check_held(session_id, claim_id, token, batch_ids, rows, held, now)

    def renew_queued_work_claim(self, claim: QueuedWorkClaim, lease_ttl_ms: int) -> QueuedWorkClaim:
        v.check_nonneg_int(lease_ttl_ms, "lease_ttl_ms")
        with self._lock():
            now = self._clock.now_ms()
            self._held(claim.session_id, claim.claim_id, claim.lease_token, claim.batch_ids, now)
            expires = now + lease_ttl_ms
            for bid in claim.batch_ids:
                self._f.batches[bid].claim_expires_at_ms = expires
        return msgspec.structs.replace(claim, expires_at_epoch_ms=expires)

    def abandon_queued_work_claim(self, claim: QueuedWorkClaim) -> int:
        n = 0
        with self._lock():
            for b in self._f.batches.values():
                if (
                    b.session_id == claim.session_id
                    and b.claim_id == claim.claim_id
                    and b.claim_token == claim.lease_token
                    and b.state == "queued"
                ):
                    b.release()
                    n += 1
        return n

    def cancel_queued_work_batch(self, session_id: str, batch_id: str) -> QueuedWorkBatch | None:
        v.check_id(session_id, "session_id")
        v.check_id(batch_id, "batch_id")
        with self._lock():
            now = self._clock.now_ms()
            b = self._f.batches.get(batch_id)
            if b is None or b.session_id != session_id or b.state != "queued" or b.live(now):
                return None
            b.state = "cancelled"
            b.finished_at_ms = now
            b.release()
            return b.to_batch()

    def list_queued_work(self, session_id: str) -> list[QueuedWorkBatch]:
        v.check_id(session_id, "session_id")
        with self._lock():
            return [b.to_batch() for b in self._rows(session_id) if b.state == "queued"]

    def list_pending_queued_work(self, session_id: str) -> list[QueuedWorkBatch]:
        v.check_id(session_id, "session_id")
        with self._lock():
            now = self._clock.now_ms()
            return [b.to_batch() for b in self._rows(session_id) if b.state == "queued" and not b.live(now)]

    def list_claimed_queued_work(self, session_id: str) -> list[tuple[QueuedWorkBatch, str, str, int]]:
        v.check_id(session_id, "session_id")
        with self._lock():
            now = self._clock.now_ms()
            return [
                (b.to_batch(), b.claim_id, b.claim_owner_id, b.claim_expires_at_ms)  # type: ignore[misc]
                for b in self._rows(session_id)
                if b.state == "queued" and b.live(now)
            ]

    def queue_sessions(self) -> list[str]:
        with self._lock():
            return sorted({b.session_id for b in self._f.batches.values() if b.state == "queued"})

    def _check_completions(self, commit: RuntimeCommit, now: int) -> None:
        for comp in commit.completed_queue_claims:
            rules.check_completion_session(comp, commit.session_id)
            self._held(comp.session_id, comp.claim_id, comp.lease_token, comp.batch_ids, now)

    def _consume_completions(self, commit: RuntimeCommit, now: int) -> None:
        for comp in commit.completed_queue_claims:
            for bid in comp.batch_ids:
                b = self._f.batches[bid]
                b.state = "completed"
                b.finished_at_ms = now
