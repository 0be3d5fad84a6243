"""Attachments: a write-ahead manifest per session, and content-addressed bytes."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from ..model.attachments import AttachmentIntent, AttachmentManifestEntry, AttachmentMeta, StoredAttachment

__all__ = ["Attachments"]


@runtime_checkable
class Attachments(Protocol):
    def record_intent(self, intent: AttachmentIntent) -> None:
        """Record that bytes are about to be written (refreshing an earlier intent's time)."""
        ...

    def commit_refs(self, session_id: str, attachment_ids: list[str]) -> list[str]:
        """Stamp intents committed; returns the ids that had no intent (reported, not created)."""
        ...

    def list_uncommitted(self, older_than_epoch_ms: int) -> list[AttachmentManifestEntry]: ...

    def list_attachment_manifest(self, session_id: str) -> list[AttachmentManifestEntry]: ...

    def forget(self, session_id: str, attachment_id: str) -> bool: ...

    def attachment_store(self, session_id: str | None = None) -> Any:
        """This session's attachment store (`put`, `get`)."""
        ...

    def put_attachment(self, session_id: str, data: bytes, media_type: str, *, width: int | None = None,
                       height: int | None = None, label: str | None = None) -> AttachmentMeta:
        """Store bytes with their media metadata and record this session's intent, at once."""
        ...

    def get_attachment(self, session_id: str, attachment_id: str) -> StoredAttachment:
        """The bytes and metadata if this session references them; NotFound otherwise."""
        ...
