"""Queued-work decisions: which batches a claim takes, and whether a claim still holds them.

Backends load candidate rows (this session's queued batches that are available and not live-
claimed, in enqueue order, filtered *before* any LIMIT) and ask here. The same functions run for
memory, SQLite and Postgres.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from ..codec import check_json
from ..errors import QueuedWorkClaimExpired, ValidationError
from ..model.queue import (
    ClaimBoundary,
    DeliveryPolicy,
    QueuedWorkBatchDraft,
    QueuedWorkClaim,
    QueuedWorkCompletion,
    SlotPolicy,
)
from .validate import check_id, check_nonneg_int, check_optional_id

__all__ = [
    "Candidate",
    "HeldRow",
    "is_live",
    "select_claim",
    "check_held",
    "check_draft",
    "check_claim",
    "check_claim_args",
    "MAX_CLAIM_BATCHES",
]

#: A claim takes at most this many batches, whatever the caller asks (bounds the scan).
MAX_CLAIM_BATCHES = 10_000


class Candidate(NamedTuple):
    batch_id: str
    enqueue_seq: int
    delivery_policy: str
    slot_policy: str
    merge_key: str | None
    fencing_token: int


class HeldRow(NamedTuple):
    """A batch row as a completion or renewal sees it."""

    session_id: str
    state: str
    claim_id: str | None
    claim_token: str | None
    claim_expires_at_ms: int


def is_live(claim_token: str | None, expires_at_ms: int, now_ms: int) -> bool:
    """A claim (or lease) is live while it has a token and has not reached its expiry."""
    return claim_token is not None and expires_at_ms > now_ms


def select_claim(candidates: Sequence[Candidate], boundary: ClaimBoundary, max_batches: int) -> list[Candidate]:
    """The batches one claim takes: the head, plus matching join neighbours.

    * Only the head candidate may start a claim; nothing is skipped to find a better one.
    * At an active-turn checkpoint, the head must be deliverable at the earliest safe boundary.
    * An exclusive head is claimed alone. A join head takes the following candidates while each
      is `join`, has the same delivery policy and the same non-None merge key, up to `max_batches`.
    """
    if max_batches <= 0 or not candidates:
        return []
    head = candidates[0]
    if boundary == ClaimBoundary.ACTIVE_TURN_CHECKPOINT and head.delivery_policy != DeliveryPolicy.EARLIEST_SAFE_BOUNDARY.value:
        return []
    chosen = [head]
    if head.slot_policy == SlotPolicy.EXCLUSIVE.value or head.merge_key is None:
        return chosen
    for c in candidates[1:]:
        if len(chosen) >= max_batches:
            break
        if (
            c.slot_policy != SlotPolicy.JOIN.value
            or c.delivery_policy != head.delivery_policy
            or c.merge_key != head.merge_key
        ):
            break
        chosen.append(c)
    return chosen


def check_held(
    session_id: str,
    claim_id: str,
    lease_token: str,
    batch_ids: Sequence[str],
    rows: Mapping[str, HeldRow],
    held_by_claim: int,
    now_ms: int,
) -> None:
    """Raise QueuedWorkClaimExpired unless the claim holds exactly `batch_ids`, live, right now.

    `rows` maps each of `batch_ids` found in the store to its row; `held_by_claim` is how many
    queued rows carry `claim_id` (so a completion naming a subset of its claim is refused too).
    """
    if len(set(batch_ids)) != len(batch_ids):
        raise QueuedWorkClaimExpired(session_id, claim_id, "a batch id is listed twice")
    for bid in batch_ids:
        r = rows.get(bid)
        if r is None:
            raise QueuedWorkClaimExpired(session_id, claim_id, f"batch {bid} does not exist")
        if r.session_id != session_id:
            raise QueuedWorkClaimExpired(session_id, claim_id, f"batch {bid} belongs to another session")
        if r.state != "queued":
            raise QueuedWorkClaimExpired(session_id, claim_id, f"batch {bid} is already {r.state}")
        if r.claim_id != claim_id or r.claim_token != lease_token:
            raise QueuedWorkClaimExpired(session_id, claim_id, f"batch {bid} is held by another claim")
        if r.claim_expires_at_ms <= now_ms:
            raise QueuedWorkClaimExpired(session_id, claim_id, "the claim's lease has expired")
    if held_by_claim != len(batch_ids):
        raise QueuedWorkClaimExpired(
            session_id, claim_id, f"the claim holds {held_by_claim} batches but {len(batch_ids)} were named"
        )


def check_completion_session(completion: QueuedWorkCompletion, commit_session_id: str) -> None:
    if completion.session_id != commit_session_id:
        raise QueuedWorkClaimExpired(
            completion.session_id, completion.claim_id, f"it belongs to another session than {commit_session_id!r}"
        )


def check_draft(draft: Any) -> QueuedWorkBatchDraft:
    if not isinstance(draft, QueuedWorkBatchDraft):
        raise ValidationError(f"expected a QueuedWorkBatchDraft, got {type(draft).__name__}")
    check_id(draft.session_id, "draft.session_id")
    if not isinstance(draft.payloads, list) or not draft.payloads:
        raise ValidationError("draft.payloads must be a non-empty list")
    check_json(draft.payloads, "draft.payloads")
    try:
        DeliveryPolicy(draft.delivery_policy)
        SlotPolicy(draft.slot_policy)
    except ValueError as e:
        raise ValidationError(f"draft: {e}") from None
    check_optional_id(draft.merge_key, "draft.merge_key")
    check_optional_id(draft.source_key, "draft.source_key")
    check_nonneg_int(draft.available_at_ms, "draft.available_at_ms")
    return draft


def check_claim(claim: Any) -> QueuedWorkClaim:
    """A claim handed back to renew or abandon is one `claim_ready_queued_work` returned."""
    if not isinstance(claim, QueuedWorkClaim):
        raise ValidationError(f"expected a QueuedWorkClaim, got {type(claim).__name__}")
    check_id(claim.session_id, "claim.session_id")
    check_id(claim.claim_id, "claim.claim_id")
    check_id(claim.lease_token, "claim.lease_token")
    return claim


def check_claim_args(session_id: Any, owner_id: Any, boundary: Any, ttl_ms: Any, max_batches: Any) -> ClaimBoundary:
    check_id(session_id, "session_id")
    check_id(owner_id, "owner_id")
    check_nonneg_int(ttl_ms, "lease_ttl_ms")
    check_nonneg_int(max_batches, "max_batches")
    try:
        return ClaimBoundary(boundary)
    except ValueError:
        raise ValidationError(f"boundary must be a ClaimBoundary, got {boundary!r}") from None
