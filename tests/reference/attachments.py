"""The attachment manifest and attachment bytes in memory (same decisions as SQLite)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lashstore.errors import CorruptRecord, NotFound, ValidationError
from lashstore.model.attachments import AttachmentIntent, AttachmentManifestEntry, AttachmentMeta, StoredAttachment
from lashstore.model.blobs import BlobDescriptor, BlobHint, BlobKind
from lashstore.model.session import RuntimeCommit
from lashstore.rules import attachments as rules
from lashstore.rules import validate as v
from lashstore.backends.common import prepare_blob

__all__ = ["MemoryAttachmentMixin", "ManifestRow"]

_ATTACHMENT = BlobDescriptor(BlobKind.ATTACHMENT, frozenset({BlobHint.LARGE_PAYLOAD}))


@dataclass
class ManifestRow:
    canonical_uri: str
    intent_at_ms: int
    committed_at_ms: int | None = None
    meta: AttachmentMeta | None = None


class MemoryAttachmentMixin:
    _f: Any
    _clock: Any
    _profile: Any
    _level: Any

    def _lock(self) -> Any: ...

    def _load_blob(self, ref: str) -> bytes | None: ...

    def _insert_blobs(self, blobs: Any, now: int) -> None: ...

    def record_intent(self, intent: AttachmentIntent) -> None:
        rules.check_intent(intent)
        with self._lock():
            key = (intent.session_id, intent.attachment_id)
            row = self._f.manifest.get(key)
            if row is None:
                self._f.manifest[key] = ManifestRow(intent.canonical_uri, intent.intent_at_epoch_ms)
            else:
                row.canonical_uri = intent.canonical_uri
                row.intent_at_ms = intent.intent_at_epoch_ms

    def _stamp(self, session_id: str, ids: list[str], now: int) -> list[str]:
        unmatched = []
        for aid in ids:
            row = self._f.manifest.get((session_id, aid))
            if row is None:
                unmatched.append(aid)
            elif row.committed_at_ms is None:
                row.committed_at_ms = now
        return unmatched

    def commit_refs(self, session_id: str, attachment_ids: list[str]) -> list[str]:
        v.check_id(session_id, "session_id")
        rules.check_ids(attachment_ids)
        if not attachment_ids:
            return []
        with self._lock():
            return self._stamp(session_id, attachment_ids, self._clock.now_ms())

    def list_uncommitted(self, older_than_epoch_ms: int) -> list[AttachmentManifestEntry]:
        v.check_nonneg_int(older_than_epoch_ms, "older_than_epoch_ms")
        with self._lock():
            rows = [
                (r.intent_at_ms, s, a, r.canonical_uri)
                for (s, a), r in self._f.manifest.items()
                if r.committed_at_ms is None and r.intent_at_ms <= older_than_epoch_ms
            ]
        rows.sort()
        return [
            AttachmentManifestEntry(attachment_id=a, session_id=s, canonical_uri=u, intent_at_epoch_ms=t)
            for t, s, a, u in rows
        ]

    def list_attachment_manifest(self, session_id: str) -> list[AttachmentManifestEntry]:
        v.check_id(session_id, "session_id")
        with self._lock():
            rows = sorted(
                (r.intent_at_ms, a, r.canonical_uri, r.committed_at_ms)
                for (s, a), r in self._f.manifest.items()
                if s == session_id
            )
        return [
            AttachmentManifestEntry(
                attachment_id=a, session_id=session_id, canonical_uri=u, intent_at_epoch_ms=t, committed_at_epoch_ms=c
            )
            for t, a, u, c in rows
        ]

    def forget(self, session_id: str, attachment_id: str) -> bool:
        v.check_id(session_id, "session_id")
        v.check_id(attachment_id, "attachment_id")
        with self._lock():
            return self._f.manifest.pop((session_id, attachment_id), None) is not None

    def _check_attachments(self, commit: RuntimeCommit) -> None:
        missing = [a for a in commit.committed_attachment_ids if (commit.session_id, a) not in self._f.manifest]
        if missing:
            raise ValidationError(
                f"committed_attachment_ids: no intent recorded for {', '.join(missing)} in session "
                f"{commit.session_id!r}; record_intent before committing"
            )

    def _stamp_attachments(self, commit: RuntimeCommit, now: int) -> None:
        self._stamp(commit.session_id, commit.committed_attachment_ids, now)

    def attachment_store(self, session_id: str | None = None):
        from lashstore.attachment_store import AttachmentStore

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
        v.check_id(session_id, "session_id")
        content = rules.check_put(data, media_type, width, height, label)
        b = prepare_blob(content, _ATTACHMENT, self._profile, self._level)
        meta = AttachmentMeta(id=b.ref, media_type=media_type, byte_len=len(content), width=width, height=height, label=label)
        with self._lock():
            now = self._clock.now_ms()
            self._insert_blobs([b], now)
            row = self._f.manifest.get((session_id, b.ref))
            if row is None:
                self._f.manifest[(session_id, b.ref)] = ManifestRow(f"sha256:{b.ref}", now, None, meta)
            else:
                row.intent_at_ms = now
                row.meta = meta
        return meta

    def get_attachment(self, session_id: str, attachment_id: str) -> StoredAttachment:
        v.check_id(session_id, "session_id")
        v.check_id(attachment_id, "attachment_id")
        with self._lock():
            row = self._f.manifest.get((session_id, attachment_id))
            if row is None or row.meta is None:
                raise NotFound(f"attachment {attachment_id!r} is not held by session {session_id!r}")
            data = self._load_blob(attachment_id) if len(attachment_id) == 64 else None
            meta = row.meta
        if data is None:
            raise CorruptRecord("attachment", attachment_id, "its manifest row exists but its bytes are missing")
        return StoredAttachment(meta, data)
