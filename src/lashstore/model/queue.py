"""Queued-work records (the parts the turn commit needs; the queue itself follows)."""

from __future__ import annotations

import msgspec

__all__ = ["QueuedWorkCompletion"]


class QueuedWorkCompletion(msgspec.Struct):
    """Proof that a claim's batches were handled; consumed inside `commit_runtime_state`."""

    session_id: str
    claim_id: str
    lease_token: str
    batch_ids: list[str] = msgspec.field(default_factory=list)
