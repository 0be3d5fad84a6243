"""The statements of the attachment manifest, written once for SQLite and PostgreSQL."""

from __future__ import annotations

from ...engine.tx import Tx, any_of
from ...model.attachments import AttachmentManifestEntry
from ..common import PreparedBlob, check_columns, check_stored_blob
from .sessions import INSERT_BLOB

_ENTRY_SPEC = (("attachment_id", "s"), ("session_id", "s"), ("canonical_uri", "s"), ("intent_at_ms", "I"),
               ("committed_at_ms", "I?"))
_META_SPEC = (("media_type", "s"), ("byte_len", "i?"), ("width", "i?"), ("height", "i?"), ("label", "s?"))


def record_intent(t: Tx, session_id: str, attachment_id: str, uri: str, at_ms: int) -> None:
    """Recording again refreshes the intent time (a fresh put of old content must not look old to
    GC) and keeps any commit stamp."""
    t.execute(
        "INSERT INTO attachment_manifest (session_id, attachment_id, canonical_uri, intent_at_ms) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (session_id, attachment_id) DO UPDATE SET canonical_uri = excluded.canonical_uri, "
        "intent_at_ms = excluded.intent_at_ms",
        (session_id, attachment_id, uri, at_ms),
    )


def stamp(t: Tx, session_id: str, ids: list[str], now: int) -> list[str]:
    """Stamp intents committed (the first stamp is kept); returns the ids that have no intent."""
    cond, params = any_of(t, "attachment_id", ids)
    have = {r[0] for r in t.all(f"SELECT attachment_id FROM attachment_manifest WHERE session_id = ? AND {cond}",
                                (session_id, *params))}
    if have:
        t.defer(f"UPDATE attachment_manifest SET committed_at_ms = coalesce(committed_at_ms, ?) WHERE session_id = ? "
                f"AND {cond}", (now, session_id, *params))
    return [a for a in ids if a not in have]


def _entries(rows: list[tuple]) -> list[AttachmentManifestEntry]:
    out = []
    for r in rows:
        check_columns(r, _ENTRY_SPEC, "attachment manifest", f"{r[1]}/{r[0]}")
        out.append(AttachmentManifestEntry(attachment_id=r[0], session_id=r[1], canonical_uri=r[2],
                                           intent_at_epoch_ms=r[3], committed_at_epoch_ms=r[4]))
    return out


def uncommitted(t: Tx, older_than_ms: int) -> list[AttachmentManifestEntry]:
    return _entries(t.all(
        "SELECT attachment_id, session_id, canonical_uri, intent_at_ms, committed_at_ms FROM attachment_manifest "
        "WHERE committed_at_ms IS NULL AND intent_at_ms <= ? ORDER BY intent_at_ms, session_id, attachment_id",
        (older_than_ms,)))


def manifest(t: Tx, session_id: str) -> list[AttachmentManifestEntry]:
    return _entries(t.all(
        "SELECT attachment_id, session_id, canonical_uri, intent_at_ms, committed_at_ms FROM attachment_manifest "
        "WHERE session_id = ? ORDER BY intent_at_ms, attachment_id", (session_id,)))


def forget(t: Tx, session_id: str, attachment_id: str) -> bool:
    return t.rowcount("DELETE FROM attachment_manifest WHERE session_id = ? AND attachment_id = ?",
                      (session_id, attachment_id)) > 0


def put(t: Tx, session_id: str, b: PreparedBlob, media_type: str, byte_len: int, width: int | None,
        height: int | None, label: str | None, now: int) -> None:
    t.execute(INSERT_BLOB, (b.ref, b.kind, b.compression, b.raw_size, now, b.stored))
    t.execute(
        "INSERT INTO attachment_manifest (session_id, attachment_id, canonical_uri, intent_at_ms, media_type, "
        "byte_len, width, height, label) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (session_id, attachment_id) "
        "DO UPDATE SET intent_at_ms = excluded.intent_at_ms, media_type = excluded.media_type, "
        "byte_len = excluded.byte_len, width = excluded.width, height = excluded.height, label = excluded.label",
        (session_id, b.ref, f"sha256:{b.ref}", now, media_type, byte_len, width, height, label),
    )


def get(t: Tx, session_id: str, attachment_id: str) -> tuple[tuple | None, bytes | None]:
    """(media row, verified bytes) of an attachment this session holds; (None, None) when it
    holds none, (row, None) when its bytes are missing."""
    row = t.one("SELECT media_type, byte_len, width, height, label FROM attachment_manifest "
                "WHERE session_id = ? AND attachment_id = ? AND media_type IS NOT NULL", (session_id, attachment_id))
    if row is None:
        return None, None
    check_columns(row, _META_SPEC, "attachment manifest", f"{session_id}/{attachment_id}")
    blob = t.one("SELECT kind, compression, raw_size, content FROM blobs WHERE hash = ?", (attachment_id,))
    if blob is None:
        return row, None
    return row, check_stored_blob(attachment_id, blob[0], blob[1], blob[2], bytes(blob[3]))
