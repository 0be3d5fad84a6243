"""The attachment write-ahead manifest and the attachment store."""

from __future__ import annotations

import msgspec

__all__ = ["AttachmentIntent", "AttachmentManifestEntry", "AttachmentMeta", "AttachmentRef", "StoredAttachment"]


class AttachmentIntent(msgspec.Struct, kw_only=True):
    """Recorded before attachment bytes are written anywhere."""

    attachment_id: str
    session_id: str
    canonical_uri: str
    intent_at_epoch_ms: int


class AttachmentManifestEntry(msgspec.Struct, kw_only=True):
    attachment_id: str
    session_id: str
    canonical_uri: str
    intent_at_epoch_ms: int
    committed_at_epoch_ms: int | None = None


class AttachmentMeta(msgspec.Struct, kw_only=True):
    """An attachment's id is the sha256 of its bytes; `byte_len` is measured, never trusted."""

    id: str
    media_type: str
    byte_len: int
    width: int | None = None
    height: int | None = None
    label: str | None = None


AttachmentRef = AttachmentMeta


class StoredAttachment(msgspec.Struct):
    meta: AttachmentMeta
    bytes: bytes
