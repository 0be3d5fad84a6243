"""A SQLite deployment: a directory with one file per session and one per registry.

`deployment_parts` gives `lashstore.open` the session factory, the registries' openers (each
opens its file on first use, so inspecting sessions never creates a registry file) and the
storage view the operations use (bytes on disk, schema migration, the mark of a copy)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from ...model.maintenance import FileMigration
from ...options import StoreOptions
from ..common import decode_copy_mark
from .connection import Database, _read_only_dir, file_bytes, os_error
from .factory import SqliteSessionStoreFactory, _fsync_dir

__all__ = ["deployment_parts", "SqliteStorage", "REGISTRY_FILES", "schema_version"]

#: The registries' files, by component name.
REGISTRY_FILES = {"processes": "processes.db", "host_events": "host_events.db", "effects": "effects.db"}

#: A file in the directory while `lashstore copy` into it has not finished.
COPY_MARK = "lashstore-copy-in-progress.json"


def _schemas() -> dict[str, Any]:
    from . import effects_schema, host_events_schema, process_schema, schema

    return {s.KIND: s for s in (schema, process_schema, host_events_schema, effects_schema)}


def schema_version(path: str | Path) -> tuple[int, str | None]:
    """(PRAGMA user_version, lashstore kind) of a file, read without changing anything."""
    import sqlite3

    from .connection import translate

    try:
        conn = sqlite3.connect(Path(path).resolve().as_uri() + "?mode=ro", uri=True)
    except sqlite3.Error as e:
        raise translate(e, f"open {path}", str(path)) from e
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        try:
            row = conn.execute("SELECT value FROM lashstore_meta WHERE key = 'kind'").fetchone()
        except sqlite3.OperationalError:
            row = None
        return version, (row[0] if row else None)
    except sqlite3.Error as e:
        raise translate(e, f"read {path}", str(path)) from e
    finally:
        conn.close()


class SqliteStorage:
    """What the operations see of a SQLite deployment's files."""

    shared = False  # each session has a database (a file) of its own

    def __init__(self, root: Path, factory: SqliteSessionStoreFactory) -> None:
        self.root = root
        self._factory = factory

    @property
    def location(self) -> str:
        return str(self.root)

    def session_bytes(self, session_id: str) -> int:
        return file_bytes(self._factory._path_for_session(session_id))

    def session_path(self, session_id: str) -> str:
        return str(self._factory._path_for_session(session_id))

    def has_registry(self, name: str) -> bool:
        return (self.root / REGISTRY_FILES[name]).exists()

    def registry_bytes(self) -> int:
        return sum(file_bytes(self.root / f) for f in REGISTRY_FILES.values())

    def copy_mark(self) -> dict[str, Any] | None:
        try:
            return decode_copy_mark((self.root / COPY_MARK).read_bytes())
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as e:
            raise os_error(e, f"read the copy mark in {self.root}") from e

    def set_copy_mark(self, mark: dict[str, Any] | None) -> None:
        path = self.root / COPY_MARK
        try:
            if mark is None:
                path.unlink(missing_ok=True)
            else:
                self.root.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(path.name + ".tmp")
                with open(tmp, "wb") as f:
                    f.write(msgspec.json.encode(mark))
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            _fsync_dir(self.root)
        except OSError as e:
            raise os_error(e, f"{'unmark' if mark is None else 'mark'} {self.root} as a copy") from e

    def migrate(self, *, dry_run: bool, progress: Callable[[str, int, int], None] | None = None) -> list[FileMigration]:
        """Bring every file (sessions and registries) to this release's schema; a file of a newer
        version, or not a lashstore file, is reported and left alone."""
        from ...errors import LashStoreError

        schemas = _schemas()
        files = self._factory._session_files() + [self.root / f for f in REGISTRY_FILES.values()
                                                 if (self.root / f).exists()]
        out = []
        for i, path in enumerate(files, 1):
            entry = FileMigration(path=str(path), kind=None, before=None, after=None, latest=None)
            out.append(entry)
            try:
                entry.before, entry.kind = schema_version(path)
                if entry.kind not in schemas:
                    raise LashStoreError(f"not a lashstore file (kind {entry.kind!r}, version {entry.before})")
                s = schemas[entry.kind]
                entry.latest = s.LATEST
                if dry_run or entry.before == s.LATEST:
                    entry.after = s.LATEST if dry_run and entry.before < s.LATEST else entry.before
                else:
                    Database(path, kind=entry.kind, migrations=s.MIGRATIONS).close()
                    entry.after, _ = schema_version(path)
            except LashStoreError as e:
                entry.error = str(e)
            if progress is not None:
                progress("migrating", i, len(files))
        return out


def _ro(options: StoreOptions, readonly: bool) -> StoreOptions:
    return options.replace(readonly=True) if readonly and not options.readonly else options


def deployment_parts(location: str, options: StoreOptions) -> tuple[Any, dict[str, Callable[[], Any]], SqliteStorage, StoreOptions]:
    root = Path(location)
    if not options.readonly and root.is_dir() and _read_only_dir(str(root)):
        options = options.replace(readonly=True)

    def registry_file(name: str) -> Path:
        if not options.readonly:
            try:
                root.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise os_error(e, f"create the store directory {root}") from None
        return root / REGISTRY_FILES[name]

    def processes(readonly: bool = False) -> Any:
        from .processes import SqliteProcessRegistry

        return SqliteProcessRegistry(registry_file("processes"), _ro(options, readonly))

    def host_events(readonly: bool = False) -> Any:
        from .host_events import SqliteHostEventStore

        return SqliteHostEventStore(registry_file("host_events"), _ro(options, readonly))

    def effects(readonly: bool = False) -> Any:
        from .effects import SqliteEffectStore

        return SqliteEffectStore(registry_file("effects"), _ro(options, readonly), heartbeat=not readonly)

    factory = SqliteSessionStoreFactory(root, options)
    return factory, {"processes": processes, "host_events": host_events, "effects": effects}, \
        SqliteStorage(root, factory), options
