"""The attachment write-ahead manifest and the attachment bytes, written once.

Keyed by (session_id, attachment_id): each session keeps its own reference to shared,
content-addressed bytes, and a session reads only what its manifest holds (a hash guessed from
another session is NotFound)."""

from __future__ import annotations

from typing import Any

from ..backends.common import prepare_blob
from ..backends.sql import attachments as sql
from ..errors import CorruptRecord, NotFound, ValidationError
from ..model.attachments import AttachmentIntent, AttachmentManifestEntry, AttachmentMeta, StoredAttachment
from ..model.blobs import BlobDescriptor, BlobHint, BlobKind
from ..model.session import RuntimeCommit
from ..rules import attachments as rules
from ..rules import validate as v
from .tx import Tx

__all__ = ["AttachmentMethods"]

_ATTACHMENT = BlobDescriptor(BlobKind.ATTACHMENT, frozenset({BlobHint.LARGE_PAYLOAD}))


class AttachmentMethods:
    _profile: Any
    _level: Any

    def _write(self, fn: Any, where: str) -> Any: ...  # the session engine's

    def _read(self, fn: Any, where: str) -> Any: ...

    # -- manifest ------------------------------------------------------------------------------
    def record_intent(self, intent: AttachmentIntent) -> None:
        """Record that bytes are about to be written. Recording again refreshes the intent time
        (a fresh put of old content must not look old to GC) and keeps any commit stamp."""
        rules.check_intent(intent)
        self._write(lambda t: sql.record_intent(t, intent.session_id, intent.attachment_id, intent.canonical_uri,
                                                intent.intent_at_epoch_ms), "record attachment intent")

    def commit_refs(self, session_id: str, attachment_ids: list[str]) -> list[str]:
        """Stamp intents committed (the first stamp is kept). Returns the ids that had no intent
        for this session; they are reported, not created."""
        v.check_id(session_id, "session_id")
        ids = rules.check_ids(attachment_ids)
        if not ids:
            return []
        return self._write(lambda t: sql.stamp(t, session_id, ids, t.now()), "commit attachment refs")

    def list_uncommitted(self, older_than_epoch_ms: int) -> list[AttachmentManifestEntry]:
        """Uncommitted intents recorded at or before the cutoff, oldest first, in every session."""
        v.check_nonneg_int(older_than_epoch_ms, "older_than_epoch_ms")
        return self._read(lambda t: sql.uncommitted(t, older_than_epoch_ms), "list uncommitted attachments")

    def list_attachment_manifest(self, session_id: str) -> list[AttachmentManifestEntry]:
        v.check_id(session_id, "session_id")
        return self._read(lambda t: sql.manifest(t, session_id), "list attachment manifest")

    def forget(self, session_id: str, attachment_id: str) -> bool:
        """Drop this session's manifest row for the attachment (other sessions keep theirs)."""
        v.check_id(session_id, "session_id")
        v.check_id(attachment_id, "attachment_id")
        return self._write(lambda t: sql.forget(t, session_id, attachment_id), "forget attachment")

    def _stamp_attachments(self, t: Tx, commit: RuntimeCommit, now: int) -> None:
        if commit.committed_attachment_ids:
            unmatched = sql.stamp(t, commit.session_id, commit.committed_attachment_ids, now)
            if unmatched:
                raise ValidationError(
                    f"committed_attachment_ids: no intent recorded for {', '.join(unmatched)} in session "
                    f"{commit.session_id!r}; record_intent before committing"
                )

    # -- the attachment store ------------------------------------------------------------------
    def attachment_store(self, session_id: str | None = None) -> Any:
        """This session's attachment store (the store's own session when not given)."""
        from ..attachment_store import AttachmentStore

        return AttachmentStore(self, session_id)

    def put_attachment(self, session_id: str, data: bytes, media_type: str, *, width: int | None = None,
                       height: int | None = None, label: str | None = None) -> AttachmentMeta:
        """Store bytes (content-addressed) with their media metadata and record this session's
        intent, in one transaction. The id is the sha256 of the bytes."""
        v.check_id(session_id, "session_id")
        content = rules.check_put(data, media_type, width, height, label)
        b = prepare_blob(content, _ATTACHMENT, self._profile, self._level)
        self._write(lambda t: sql.put(t, session_id, b, media_type, len(content), width, height, label, t.now()),
                    "put attachment")
        return AttachmentMeta(id=b.ref, media_type=media_type, byte_len=len(content), width=width, height=height,
                              label=label)

    def get_attachment(self, session_id: str, attachment_id: str) -> StoredAttachment:
        """The bytes and metadata, if this session references the attachment; NotFound otherwise
        (a session cannot read another's attachment by guessing its hash)."""
        v.check_id(session_id, "session_id")
        v.check_id(attachment_id, "attachment_id")
        row, data = self._read(lambda t: sql.get(t, session_id, attachment_id), "get attachment")
        if row is None:
            raise NotFound(f"attachment {attachment_id!r} is not held by session {session_id!r}")
        if data is None:
            raise CorruptRecord("attachment", attachment_id, "its manifest row exists but its bytes are missing")
        return StoredAttachment(AttachmentMeta(id=attachment_id, media_type=row[0], byte_len=row[1], width=row[2],
                                               height=row[3], label=row[4]), data)
