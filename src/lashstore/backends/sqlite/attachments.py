"""The attachment write-ahead manifest and the attachment bytes, on SQLite.

The manifest is keyed by (session_id, attachment_id): two sessions holding the same bytes each
keep their own reference (upstream once keyed it by content alone, so the second session's
reference was silently dropped and GC could delete bytes it still used).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from ...errors import NotFound, ValidationError
from ...model.attachments import AttachmentIntent, AttachmentManifestEntry, AttachmentMeta, StoredAttachment
from ...model.blobs import BlobDescriptor, BlobHint, BlobKind
from ...model.session import RuntimeCommit
from ...rules import attachments as rules
from ...rules import validate as v
from ..common import prepare_blob

__all__ = ["SqliteAttachmentMixin"]

_ATTACHMENT = BlobDescriptor(BlobKind.ATTACHMENT, frozenset({BlobHint.LARGE_PAYLOAD}))


class SqliteAttachmentMixin:
    _db: Any
    _clock: Any
    _profile: Any
    _level: Any

    # -- manifest ------------------------------------------------------------------------------
    def record_intent(self, intent: AttachmentIntent) -> None:
        """Record that bytes are about to be written. Recording again refreshes the intent time
        (a fresh put of old content must not look old to GC) and keeps any commit stamp."""
        rules.check_intent(intent)
        with self._db.write("record attachment intent") as c:
            c.execute(
                "INSERT INTO attachment_manifest (session_id, attachment_id, canonical_uri, intent_at_ms) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (session_id, attachment_id) DO UPDATE SET "
                "canonical_uri = excluded.canonical_uri, intent_at_ms = excluded.intent_at_ms",
                (intent.session_id, intent.attachment_id, intent.canonical_uri, intent.intent_at_epoch_ms),
            )

    def commit_refs(self, session_id: str, attachment_ids: list[str]) -> list[str]:
        """Stamp intents committed (the first stamp is kept). Returns the ids that had no intent
        for this session; they are reported, not created."""
        v.check_id(session_id, "session_id")
        rules.check_ids(attachment_ids)
        if not attachment_ids:
            return []
        with self._db.write("commit attachment refs") as c:
            return self._stamp(c, session_id, attachment_ids, self._clock.now_ms())

    @staticmethod
    def _stamp(c: sqlite3.Connection, session_id: str, ids: list[str], now: int) -> list[str]:
        unmatched = []
        for aid in ids:
            n = c.execute(
                "UPDATE attachment_manifest SET committed_at_ms = coalesce(committed_at_ms, ?) "
                "WHERE session_id = ? AND attachment_id = ?",
                (now, session_id, aid),
            ).rowcount
            if n == 0:
                unmatched.append(aid)
        return unmatched

    def list_uncommitted(self, older_than_epoch_ms: int) -> list[AttachmentManifestEntry]:
        """Uncommitted intents recorded at or before the cutoff, oldest first, in every session."""
        v.check_nonneg_int(older_than_epoch_ms, "older_than_epoch_ms")
        with self._db.read("list uncommitted attachments") as c:
            rows = c.execute(
                "SELECT attachment_id, session_id, canonical_uri, intent_at_ms FROM attachment_manifest "
                "WHERE committed_at_ms IS NULL AND intent_at_ms <= ? ORDER BY intent_at_ms, session_id, attachment_id",
                (older_than_epoch_ms,),
            ).fetchall()
        return [
            AttachmentManifestEntry(attachment_id=a, session_id=s, canonical_uri=u, intent_at_epoch_ms=t)
            for a, s, u, t in rows
        ]

    def list_attachment_manifest(self, session_id: str) -> list[AttachmentManifestEntry]:
        v.check_id(session_id, "session_id")
        with self._db.read("list attachment manifest") as c:
            rows = c.execute(
                "SELECT attachment_id, session_id, canonical_uri, intent_at_ms, committed_at_ms "
                "FROM attachment_manifest WHERE session_id = ? ORDER BY intent_at_ms, attachment_id",
                (session_id,),
            ).fetchall()
        return [
            AttachmentManifestEntry(
                attachment_id=a, session_id=s, canonical_uri=u, intent_at_epoch_ms=t, committed_at_epoch_ms=ct
            )
            for a, s, u, t, ct in rows
        ]

    def forget(self, session_id: str, attachment_id: str) -> bool:
        """Drop this session's manifest row for the attachment (other sessions keep theirs)."""
        v.check_id(session_id, "session_id")
        v.check_id(attachment_id, "attachment_id")
        with self._db.write("forget attachment") as c:
            return c.execute(
                "DELETE FROM attachment_manifest WHERE session_id = ? AND attachment_id = ?",
                (session_id, attachment_id),
            ).rowcount > 0

    def _stamp_attachments(self, c: sqlite3.Connection, commit: RuntimeCommit, now: int) -> None:
        if commit.committed_attachment_ids:
            unmatched = self._stamp(c, commit.session_id, commit.committed_attachment_ids, now)
            if unmatched:
                raise ValidationError(
                    f"committed_attachment_ids: no intent recorded for {', '.join(unmatched)} in session "
                    f"{commit.session_id!r}; record_intent before committing"
                )

    # -- the attachment store ------------------------------------------------------------------
    def attachment_store(self, session_id: str | None = None) -> "AttachmentStore":
        """This session's attachment store (the store's own session when not given)."""
        from ...attachment_store import AttachmentStore

        return AttachmentStore(self, session_id)

    def put_attachment(
        self,
        session_id: str,
        data: bytes,
        media_type: str,
        *,
        width: int | None = None,
        height: int | None = None,
        label: str | None = None,
    ) -> AttachmentMeta:
        """Store bytes (content-addressed) with their media metadata and record this session's
        intent, in one transaction. The id is the sha256 of the bytes."""
        v.check_id(session_id, "session_id")
        content = rules.check_put(data, media_type, width, height, label)
        b = prepare_blob(content, _ATTACHMENT, self._profile, self._level)
        with self._db.write("put attachment") as c:
            now = self._clock.now_ms()
            from .store import _insert_blobs

            _insert_blobs(c, [b], now)
            c.execute(
                "INSERT INTO attachment_manifest (session_id, attachment_id, canonical_uri, intent_at_ms, "
                "media_type, byte_len, width, height, label) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (session_id, attachment_id) DO UPDATE SET intent_at_ms = excluded.intent_at_ms, "
                "media_type = excluded.media_type, byte_len = excluded.byte_len, width = excluded.width, "
                "height = excluded.height, label = excluded.label",
                (session_id, b.ref, f"sha256:{b.ref}", now, media_type, len(content), width, height, label),
            )
        return AttachmentMeta(id=b.ref, media_type=media_type, byte_len=len(content), width=width, height=height, label=label)

    def get_attachment(self, session_id: str, attachment_id: str) -> StoredAttachment:
        """The bytes and metadata, if this session references the attachment; NotFound otherwise
        (a session cannot read another's attachment by guessing its hash)."""
        v.check_id(session_id, "session_id")
        v.check_id(attachment_id, "attachment_id")
        from .store import _load_blob

        with self._db.read("get attachment") as c:
            row = c.execute(
                "SELECT media_type, byte_len, width, height, label FROM attachment_manifest "
                "WHERE session_id = ? AND attachment_id = ? AND media_type IS NOT NULL",
                (session_id, attachment_id),
            ).fetchone()
            if row is None:
                raise NotFound(f"attachment {attachment_id!r} is not held by session {session_id!r}")
            data = _load_blob(c, attachment_id) if len(attachment_id) == 64 else None
        if data is None:
            from ...errors import CorruptRecord

            raise CorruptRecord("attachment", attachment_id, "its manifest row exists but its bytes are missing")
        meta = AttachmentMeta(
            id=attachment_id, media_type=row[0], byte_len=row[1], width=row[2], height=row[3], label=row[4]
        )
        return StoredAttachment(meta, data)
