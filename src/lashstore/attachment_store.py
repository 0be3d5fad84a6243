"""`AttachmentStore`: one session's view of attachment bytes held in its session store."""

from __future__ import annotations

from typing import Any

from .errors import ValidationError
from .model.attachments import AttachmentMeta, StoredAttachment
from .model.session import DurabilityTier

__all__ = ["AttachmentStore"]


class AttachmentStore:
    """Content-addressed attachment bytes with media metadata, scoped to one session.

    `put` records the session's manifest row and the bytes in one transaction; `get` answers only
    for attachments this session references (`NotFound` otherwise).
    """

    def __init__(self, store: Any, session_id: str | None = None) -> None:
        sid = session_id if session_id is not None else store.session_id
        if sid is None:
            raise ValidationError("this store is not bound to a session yet; pass session_id=...")
        self._store = store
        self.session_id = sid

    def persistence(self) -> DurabilityTier:
        return self._store.durability_tier()

    def put(
        self,
        data: bytes,
        media_type: str,
        *,
        width: int | None = None,
        height: int | None = None,
        label: str | None = None,
    ) -> AttachmentMeta:
        return self._store.put_attachment(self.session_id, data, media_type, width=width, height=height, label=label)

    def get(self, attachment_id: str) -> StoredAttachment:
        return self._store.get_attachment(self.session_id, attachment_id)
