"""The attachment write-ahead manifest and the attachment bytes, on PostgreSQL.

Keyed by (session_id, attachment_id) as on SQLite: each session keeps its own reference to
shared, content-addressed bytes, and a session reads only what its manifest holds (a hash guessed
from another session is NotFound).
"""

from __future__ import annotations

from typing import Any

from ...errors import CorruptRecord, NotFound, ValidationError
from ...model.attachments import AttachmentIntent, AttachmentManifestEntry, AttachmentMeta, StoredAttachment
from ...model.blobs import BlobDescriptor, BlobHint, BlobKind
from ...model.session import RuntimeCommit
from ...rules import attachments as rules
from ...rules import validate as v
from ..common import check_stored_blob, prepare_blob
from .connection import Tx

__all__ = ["PostgresAttachmentMixin"]

_ATTACHMENT = BlobDescriptor(BlobKind.ATTACHMENT, frozenset({BlobHint.LARGE_PAYLOAD}))


def _stamp(t: Tx, session_id: str, ids: list[str], now: int) -> list[str]:
    """Stamp committed (first stamp kept); returns the ids with no intent, in the given order."""
    matched = {
        r[0]
        for r in t.all(
            "UPDATE attachment_manifest SET committed_at_ms = coalesce(committed_at_ms, %s) "
            "WHERE session_id = %s AND attachment_id = ANY(%s) RETURNING attachment_id",
            (now, session_id, list(ids)),
        )
    }
    return [a for a in ids if a not in matched]


class PostgresAttachmentMixin:
    _db: Any
    _clock: Any
    _profile: Any
    _level: Any

    # -- manifest ------------------------------------------------------------------------------
    def record_intent(self, intent: AttachmentIntent) -> None:
        """Record that bytes are about to be written. Recording again refreshes the intent time
        (a fresh put of old content must not look old to GC) and keeps any commit stamp."""
        rules.check_intent(intent)
        self._write(
            lambda t: t.execute(
                "INSERT INTO attachment_manifest (session_id, attachment_id, canonical_uri, intent_at_ms) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (session_id, attachment_id) DO UPDATE SET "
                "canonical_uri = excluded.canonical_uri, intent_at_ms = excluded.intent_at_ms",
                (intent.session_id, intent.attachment_id, intent.canonical_uri, intent.intent_at_epoch_ms),
            ),
            "record attachment intent",
        )

    def commit_refs(self, session_id: str, attachment_ids: list[str]) -> list[str]:
        """Stamp intents committed (the first stamp is kept). Returns the ids that had no intent
        for this session; they are reported, not created."""
        v.check_id(session_id, "session_id")
        rules.check_ids(attachment_ids)
        if not attachment_ids:
            return []
        return self._write(
            lambda t: _stamp(t, session_id, attachment_ids, t.now()), "commit attachment refs"
        )

    def list_uncommitted(self, older_than_epoch_ms: int) -> list[AttachmentManifestEntry]:
        """Uncommitted intents recorded at or before the cutoff, oldest first, in every session."""
        v.check_nonneg_int(older_than_epoch_ms, "older_than_epoch_ms")
        rows = self._read(
            lambda t: t.all(
                "SELECT attachment_id, session_id, canonical_uri, intent_at_ms FROM attachment_manifest "
                "WHERE committed_at_ms IS NULL AND intent_at_ms <= %s "
                "ORDER BY intent_at_ms, session_id, attachment_id",
                (older_than_epoch_ms,),
            ),
            "list uncommitted attachments",
        )
        return [
            AttachmentManifestEntry(attachment_id=a, session_id=s, canonical_uri=u, intent_at_epoch_ms=t)
            for a, s, u, t in rows
        ]

    def list_attachment_manifest(self, session_id: str) -> list[AttachmentManifestEntry]:
        v.check_id(session_id, "session_id")
        rows = self._read(
            lambda t: t.all(
                "SELECT attachment_id, session_id, canonical_uri, intent_at_ms, committed_at_ms "
                "FROM attachment_manifest WHERE session_id = %s ORDER BY intent_at_ms, attachment_id",
                (session_id,),
            ),
            "list attachment manifest",
        )
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
        return self._write(
            lambda t: t.rowcount(
                "DELETE FROM attachment_manifest WHERE session_id = %s AND attachment_id = %s",
                (session_id, attachment_id),
            )
            > 0,
            "forget attachment",
        )

    def _stamp_attachments(self, t: Tx, commit: RuntimeCommit, now: int) -> None:
        if commit.committed_attachment_ids:
            unmatched = _stamp(t, commit.session_id, commit.committed_attachment_ids, now)
            if unmatched:
                raise ValidationError(
                    f"committed_attachment_ids: no intent recorded for {', '.join(unmatched)} in session "
                    f"{commit.session_id!r}; record_intent before committing"
                )

    # -- the attachment store ------------------------------------------------------------------
    def attachment_store(self, session_id: str | None = None) -> "Any":
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

        def tx(t: Tx) -> None:
            now = t.now()
            from .sessions import _INSERT_BLOB

            t.execute(_INSERT_BLOB, (b.ref, b.kind, b.compression, b.raw_size, now, b.stored))
            t.execute(
                "INSERT INTO attachment_manifest (session_id, attachment_id, canonical_uri, intent_at_ms, "
                "media_type, byte_len, width, height, label) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (session_id, attachment_id) DO UPDATE SET intent_at_ms = excluded.intent_at_ms, "
                "media_type = excluded.media_type, byte_len = excluded.byte_len, width = excluded.width, "
                "height = excluded.height, label = excluded.label",
                (session_id, b.ref, f"sha256:{b.ref}", now, media_type, len(content), width, height, label),
            )

        self._write(tx, "put attachment")
        return AttachmentMeta(id=b.ref, media_type=media_type, byte_len=len(content), width=width, height=height, label=label)

    def get_attachment(self, session_id: str, attachment_id: str) -> StoredAttachment:
        """The bytes and metadata, if this session references the attachment; NotFound otherwise
        (a session cannot read another's attachment by guessing its hash)."""
        v.check_id(session_id, "session_id")
        v.check_id(attachment_id, "attachment_id")

        def tx(t: Tx) -> tuple[tuple | None, bytes | None]:
            row = t.one(
                "SELECT media_type, byte_len, width, height, label FROM attachment_manifest "
                "WHERE session_id = %s AND attachment_id = %s AND media_type IS NOT NULL",
                (session_id, attachment_id),
            )
            if row is None:
                return None, None
            blob = t.one(
                "SELECT kind, compression, raw_size, content FROM blobs WHERE hash = %s", (attachment_id,)
            )
            if blob is None:
                return row, None
            return row, check_stored_blob(attachment_id, blob[0], blob[1], blob[2], bytes(blob[3]))

        row, data = self._read(tx, "get attachment")
        if row is None:
            raise NotFound(f"attachment {attachment_id!r} is not held by session {session_id!r}")
        if data is None:
            raise CorruptRecord("attachment", attachment_id, "its manifest row exists but its bytes are missing")
        meta = AttachmentMeta(
            id=attachment_id, media_type=row[0], byte_len=row[1], width=row[2], height=row[3], label=row[4]
        )
        return StoredAttachment(meta, data)
