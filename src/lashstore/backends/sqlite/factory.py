"""One SQLite file per session, in one directory."""

from __future__ import annotations

import datetime
import hashlib
import os
import threading
import weakref
from pathlib import Path

from ...errors import LashStoreError, SessionNotFound
from ...model.session import DurabilityTier, RootRelation, SessionMeta, SessionRelation, SessionSummary
from ...options import StoreOptions
from ...rules import validate as v
from .store import SqliteSessionStore

__all__ = ["SqliteSessionStoreFactory", "safe_file_name"]

_SUFFIX_LEN = 16


def safe_file_name(session_id: str) -> str:
    """`{sanitised id, at most 80 chars}-{first 16 hex of sha256(id)}.db` (the reference's rule).

    ASCII letters, digits, '-' and '_' are kept, every other character becomes '_', leading and
    trailing '_' are trimmed, and an empty result becomes 'session'. The hash keeps distinct ids
    apart after sanitising; the name never contains a path separator.
    """
    kept = "".join(ch if (ch.isascii() and (ch.isalnum() or ch in "-_")) else "_" for ch in session_id)
    kept = kept.strip("_") or "session"
    digest = hashlib.sha256(session_id.encode("utf-8")).hexdigest()[:_SUFFIX_LEN]
    return f"{kept[:80]}-{digest}.db"


def _is_session_file(name: str) -> bool:
    if not name.endswith(".db") or len(name) < _SUFFIX_LEN + 5:
        return False
    stem = name[:-3]
    digest = stem[-_SUFFIX_LEN:]
    return stem[-_SUFFIX_LEN - 1] == "-" and all(ch in "0123456789abcdef" for ch in digest)


def _now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


class SqliteSessionStoreFactory:
    """Sessions as files `root/<safe name>.db`, each with its own write lock."""

    def __init__(self, root: str | Path, options: StoreOptions | None = None) -> None:
        self.root = Path(root)
        self.options = options or StoreOptions()
        self._open: "weakref.WeakSet[SqliteSessionStore]" = weakref.WeakSet()
        self._lock = threading.Lock()

    def durability_tier(self) -> DurabilityTier:
        return DurabilityTier.DURABLE

    def path_for_session(self, session_id: str) -> Path:
        v.check_id(session_id, "session_id")
        return self.root / safe_file_name(session_id)

    def _open_store(self, session_id: str) -> SqliteSessionStore:
        store = SqliteSessionStore(self.path_for_session(session_id), session_id=session_id, options=self.options)
        with self._lock:
            self._open.add(store)
        return store

    def create_store(
        self,
        session_id: str,
        *,
        model: str = "",
        relation: SessionRelation | None = None,
        cwd: str | None = None,
        session_name: str | None = None,
    ) -> SqliteSessionStore:
        v.check_id(session_id, "session_id")
        self.root.mkdir(parents=True, exist_ok=True)
        store = self._open_store(session_id)
        try:
            if store.load_session_meta() is None:
                # Created once; a reopen never overwrites what is stored.
                store.save_session_meta(
                    SessionMeta(
                        session_id=session_id,
                        session_name=session_name if session_name is not None else session_id,
                        created_at=_now_iso(),
                        model=model,
                        cwd=cwd,
                        relation=relation if relation is not None else RootRelation(),
                    )
                )
        except BaseException:
            store.close()
            raise
        return store

    def has_session(self, session_id: str) -> bool:
        return self.path_for_session(session_id).exists()

    def open_store(self, session_id: str) -> SqliteSessionStore:
        if not self.has_session(session_id):
            raise SessionNotFound(session_id)
        return self._open_store(session_id)

    def delete_session(self, session_id: str) -> bool:
        """Close this factory's open handles on the session, then remove the file and its sidecars."""
        path = self.path_for_session(session_id)
        with self._lock:
            for store in list(self._open):
                if store.path == str(path):
                    store.close()
        removed = False
        for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            try:
                os.remove(p)
                removed = True
            except FileNotFoundError:
                pass
            except OSError as e:
                raise LashStoreError(f"cannot remove session file {p}: {e}") from e
        return removed

    def session_files(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir() if p.is_file() and _is_session_file(p.name))

    def list_sessions(self) -> list[SessionSummary]:
        out: list[SessionSummary] = []
        for path in self.session_files():
            out.append(self._summary(path))
        out.sort(key=lambda s: (s.updated_at_ms is None, -(s.updated_at_ms or 0), s.session_id))
        return out

    def _summary(self, path: Path) -> SessionSummary:
        try:
            with SqliteSessionStore(path, options=self.options, readonly=True) as store:
                meta = store.load_session_meta()
                head = store.load_head()
                sid = (meta.session_id if meta else None) or (head.session_id if head else None)
                if sid is None:
                    return SessionSummary(session_id=path.stem, path=str(path), error="no session meta or head")
                return SessionSummary(
                    session_id=sid,
                    meta=meta,
                    head_revision=head.head_revision if head else None,
                    node_count=head.graph_node_count if head else 0,
                    updated_at_ms=head.updated_at_ms if head else None,
                    path=str(path),
                )
        except LashStoreError as e:
            # One unreadable file must not hide the others.
            return SessionSummary(session_id=path.stem, path=str(path), error=str(e))

    def close(self) -> None:
        with self._lock:
            stores = list(self._open)
            self._open.clear()
        for s in stores:
            s.close()

    def __enter__(self) -> "SqliteSessionStoreFactory":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
