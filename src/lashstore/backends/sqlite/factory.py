"""One SQLite file per session, in one directory."""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
import threading
import weakref
from collections.abc import Callable
from pathlib import Path

from ...errors import BackendError, LashStoreError, SessionDeleted, SessionNotFound, StoreBusy, StoreReadOnly, StoreUnavailable, UnsupportedSchema
from ...model.session import DurabilityTier, SessionMeta, SessionRelation, SessionSummary
from ...options import StoreOptions
from ...rules import validate as v
from ..common import new_session_meta
from .connection import Database, os_error
from .schema import KIND, MIGRATIONS
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


def remove_session_file(path: Path, options: StoreOptions) -> bool:
    """Mark a session file deleted (see Database.mark_deleted), then unlink it and its sidecars.
    A file that cannot be opened as a session file is removed as it is."""
    db = None
    try:
        db = Database(path, kind=KIND, migrations=MIGRATIONS, busy_timeout_ms=options.busy_timeout_ms,
                      on_deleted=lambda: SessionDeleted(str(path)))
        db.mark_deleted(options.clock.now_ms())
    except (BackendError, UnsupportedSchema):
        # Damaged or foreign: nothing can hold a working handle on it, so removing it is enough.
        # A store that cannot be written (read-only) raises on the unlink below.
        pass
    try:
        removed = False
        for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            try:
                os.remove(p)
                removed = True
            except FileNotFoundError:
                pass
            except OSError as e:
                raise StoreReadOnly(f"cannot remove session file {p}: {e}") if e.errno in (
                    errno.EROFS, errno.EACCES, errno.EPERM) else BackendError(f"cannot remove session file {p}: {e}") from e
        return removed
    finally:
        if db is not None:
            db.close()


def _stored_session_id(path: Path) -> str | None:
    """The session id a damaged or unreadable file holds, read without decoding anything."""
    import sqlite3

    try:
        conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
    except sqlite3.Error:
        return None
    try:
        for table in ("session_meta", "session_head"):
            row = conn.execute(f"SELECT session_id FROM {table} LIMIT 1").fetchone()
            if row is not None and type(row[0]) is str:
                return row[0]
    except sqlite3.Error:
        pass
    finally:
        conn.close()
    return None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SqliteSessionStoreFactory:
    """Sessions as files `root/<safe name>.db`, each with its own write lock."""

    def __init__(self, root: str | Path, options: StoreOptions | None = None) -> None:
        self.root = Path(root)
        self.options = options or StoreOptions()
        self._open: "weakref.WeakSet[SqliteSessionStore]" = weakref.WeakSet()
        self._lock = threading.Lock()

    def durability_tier(self) -> DurabilityTier:
        return DurabilityTier.DURABLE

    def _path_for_session(self, session_id: str) -> Path:
        v.check_id(session_id, "session_id")
        return self.root / safe_file_name(session_id)

    def _open_store(self, session_id: str, readonly: bool = False) -> SqliteSessionStore:
        store = SqliteSessionStore(self._path_for_session(session_id), session_id=session_id, options=self.options,
                                   readonly=readonly)
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
        """Open the session, creating it first if it does not exist.

        A new session file is made whole under a temporary name (schema and meta) and then linked
        into place, so a crash, a full disk or a concurrent creator never leaves a half-made
        session behind; a reopen never overwrites what is stored."""
        v.check_id(session_id, "session_id")
        meta = new_session_meta(session_id, model=model, relation=relation, cwd=cwd, session_name=session_name)
        path = self._path_for_session(session_id)
        if self.options.readonly:
            if path.exists():
                return self.open_store(session_id)
            raise StoreReadOnly(f"cannot create session {session_id!r}: the store at {self.root} is read-only")
        for _ in range(8):
            if not path.exists():
                self._make_root()
                self._create_file(path, meta)
            try:
                store = self._open_store(session_id)
            except SessionDeleted:
                remove_session_file(path, self.options)  # a deletion cut short: finish it
                continue
            try:
                store._create_meta_once(meta)  # a file made by an older lashstore may lack it
            except BaseException:
                store.close()
                raise
            return store
        raise StoreBusy(f"session {session_id!r} was deleted again each time it was created; retry later")

    def _make_root(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise os_error(e, f"create the store directory {self.root}") from None

    def _create_file(self, path: Path, meta: SessionMeta) -> None:
        self._build_session_file(path, meta.session_id, lambda store: store._create_meta_once(meta))

    def _build_session_file(self, path: Path, session_id: str, fill: Callable[[SqliteSessionStore], None]) -> bool:
        """Make a session file whole under a temporary name (`fill(store)` writes into it), then
        link it into place at `path`. False (and nothing changed) when `path` exists by then."""
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            with SqliteSessionStore(tmp, session_id=session_id, options=self.options) as store:
                fill(store)
            try:
                os.link(tmp, path)  # never replaces: a concurrent creator's file wins
            except FileExistsError:
                return False
            except OSError as e:
                if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                    raise
                # No hard links on this file system: rename, unless somebody got there first.
                if path.exists():
                    return False
                os.replace(tmp, path)
            if self.options.synchronous == "full":
                _fsync_dir(path.parent)
            return True
        except OSError as e:
            raise os_error(e, f"create session file {path}") from None
        finally:
            for p in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm"), Path(f"{tmp}-journal")):
                try:
                    os.remove(p)
                except OSError:
                    pass

    def has_session(self, session_id: str) -> bool:
        return self._path_for_session(session_id).exists()

    def open_store(self, session_id: str, *, readonly: bool = False) -> SqliteSessionStore:
        """The session's store; `readonly` opens its file for reading only (never migrated)."""
        if not self.has_session(session_id):
            raise SessionNotFound(session_id)
        try:
            return self._open_store(session_id, readonly)
        except SessionDeleted:
            remove_session_file(self._path_for_session(session_id), self.options)
            raise SessionNotFound(session_id) from None

    def delete_session(self, session_id: str) -> bool:
        """Delete the session: mark its file deleted, then remove it and its sidecars.

        Every handle on the session (this factory's, another's, another process's) sees the mark at
        its next operation and raises SessionDeleted; none can write into the removed file."""
        path = self._path_for_session(session_id)
        if not path.exists():
            return False
        if self.options.readonly:
            raise StoreReadOnly(f"cannot delete session {session_id!r}: the store at {self.root} is read-only")
        return remove_session_file(path, self.options)

    def _session_files(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir() if p.is_file() and _is_session_file(p.name))

    def list_sessions(self) -> list[SessionSummary]:
        out: list[SessionSummary] = []
        for path in self._session_files():
            summary = self._summary(path)
            if summary is not None:
                out.append(summary)
        out.sort(key=lambda s: (s.updated_at_ms is None, -(s.updated_at_ms or 0), s.session_id))
        return out

    def _summary(self, path: Path) -> SessionSummary | None:
        """The listing row of a session file; None for one deleted since (or whose deletion was
        cut short: its mark is there, its removal not yet). Listing never changes a file: one of
        an older schema is listed with the error that says to migrate it."""
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
        except SessionDeleted:
            return None
        except StoreUnavailable:
            if not path.exists():
                return None  # deleted between the listing and the open
            raise
        except LashStoreError as e:
            # One unreadable file must not hide the others; named by its session where it can be.
            older = e.found if isinstance(e, UnsupportedSchema) and 0 < e.found < e.expected else None
            return SessionSummary(session_id=_stored_session_id(path) or path.stem, path=str(path), error=str(e),
                                  older_schema=older)

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
