"""One SQLite connection: WAL, busy timeout, explicit transactions, typed errors.

Every read-then-write runs under `BEGIN IMMEDIATE`, so the write lock is taken before the first
read and check-then-act sequences (head CAS, claims, idempotency lookups) serialise across
connections and processes. Reads of several statements run in one deferred transaction so they
see a single WAL snapshot.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from ...errors import BackendError, StoreBusy, StoreClosed, UnsupportedSchema

__all__ = ["Database", "Migration", "translate"]

#: (version it produces, statements)
Migration = tuple[int, Sequence[str]]

_WAL_BUDGET_S = 15.0


def _is_busy(e: BaseException) -> bool:
    if isinstance(e, sqlite3.OperationalError):
        code = getattr(e, "sqlite_errorcode", None)
        if code is not None:
            return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
        msg = str(e)
        return "locked" in msg or "busy" in msg
    return False


def translate(e: sqlite3.Error, where: str) -> BackendError:
    if _is_busy(e):
        return StoreBusy(f"{where}: the database stayed locked by another writer ({e}); retry later")
    return BackendError(f"{where}: {e}")


class Database:
    """A connection plus the lock that serialises its use across threads."""

    def __init__(
        self,
        path: str | Path,
        *,
        kind: str,
        migrations: Sequence[Migration],
        synchronous: str = "normal",
        busy_timeout_ms: int = 15_000,
        readonly: bool = False,
    ) -> None:
        self.path = str(path)
        self.kind = kind
        self.latest = migrations[-1][0] if migrations else 0
        self._lock = threading.RLock()
        self._closed = False
        memory = self.path == ":memory:"
        self.readonly = readonly
        target = self.path
        if readonly:
            # Inspection must not create, convert or migrate anything.
            target = Path(self.path).resolve().as_uri() + "?mode=ro"
        try:
            conn = sqlite3.connect(
                target,
                uri=readonly,
                timeout=busy_timeout_ms / 1000,
                isolation_level=None,
                check_same_thread=False,
                cached_statements=256,
            )
        except sqlite3.Error as e:
            raise translate(e, f"open {self.path}") from e
        self.conn = conn
        try:
            conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            # Refuse a foreign or newer file before changing anything in it (the WAL switch
            # rewrites the header).
            self._precheck()
            if readonly:
                self._check_readable()
            else:
                if not memory:
                    self._switch_to_wal()
                conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
                conn.execute("PRAGMA foreign_keys=ON")
                self._ensure_schema(migrations)
            conn.execute("PRAGMA cache_size=-8000")
        except BaseException:
            conn.close()
            raise

    # -- open ----------------------------------------------------------------------------------
    def _switch_to_wal(self) -> None:
        # SQLite does not call the busy handler for a journal-mode change, so retry by hand.
        deadline = time.monotonic() + _WAL_BUDGET_S
        delay = 0.001
        while True:
            try:
                mode = self.conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise BackendError(f"open {self.path}: cannot switch to WAL (journal_mode is {mode})")
                return
            except sqlite3.OperationalError as e:
                if not _is_busy(e) or time.monotonic() >= deadline:
                    raise translate(e, f"open {self.path}: switch to WAL") from e
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
            except sqlite3.DatabaseError as e:
                raise translate(e, f"open {self.path}") from e

    def _precheck(self) -> None:
        try:
            # One read transaction: another process may be creating the schema right now, and the
            # version and the table list must come from the same snapshot.
            self.conn.execute("BEGIN")
            try:
                version = self.conn.execute("PRAGMA user_version").fetchone()[0]
                names = {
                    r[0]
                    for r in self.conn.execute(
                        "SELECT name FROM sqlite_master WHERE type IN ('table','index','trigger','view') "
                        "AND name NOT LIKE 'sqlite_%'"
                    )
                }
            finally:
                self.conn.execute("COMMIT")
        except sqlite3.DatabaseError as e:
            raise translate(e, f"open {self.path}") from e
        if version == 0:
            if names:
                raise UnsupportedSchema(self.kind, self.latest, 0, "the file holds tables that lashstore did not create")
            return
        if "lashstore_meta" not in names:
            raise UnsupportedSchema(
                self.kind, self.latest, version, "it is not a lashstore database (it has no lashstore_meta table)"
            )
        self._check_kind(version)
        if version > self.latest:
            raise UnsupportedSchema(self.kind, self.latest, version)

    def _check_readable(self) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            raise UnsupportedSchema(self.kind, self.latest, 0, "the file is empty or not a lashstore database")
        if version != self.latest:
            raise UnsupportedSchema(
                self.kind,
                self.latest,
                version,
                "it needs a migration; open it for writing once (or run `lashstore migrate`) first",
            )

    def _ensure_schema(self, migrations: Sequence[Migration]) -> None:
        try:
            version = self.conn.execute("PRAGMA user_version").fetchone()[0]
            if version == self.latest and self.latest:
                self._check_kind(version)
                return
            # Create or migrate under the write lock: concurrent first opens wait here, then
            # see the finished schema; none ever sees a half-made one.
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                version = self.conn.execute("PRAGMA user_version").fetchone()[0]
                if version == 0:
                    has_objects = self.conn.execute(
                        "SELECT count(*) FROM sqlite_master WHERE type IN ('table','index','trigger','view') "
                        "AND name NOT LIKE 'sqlite_%'"
                    ).fetchone()[0]
                    if has_objects:
                        raise UnsupportedSchema(
                            self.kind, self.latest, 0, "the file holds tables that lashstore did not create"
                        )
                elif version > self.latest:
                    raise UnsupportedSchema(self.kind, self.latest, version)
                else:
                    self._check_kind(version)
                for target, statements in migrations:
                    if target <= version:
                        continue
                    for sql in statements:
                        self.conn.execute(sql)
                    if target == 1:
                        self.conn.execute(
                            "INSERT INTO lashstore_meta(key, value) VALUES ('kind', ?)", (self.kind,)
                        )
                self.conn.execute(f"PRAGMA user_version={self.latest}")
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as e:
            raise translate(e, f"open {self.path}: schema") from e

    def _check_kind(self, version: int) -> None:
        try:
            row = self.conn.execute("SELECT value FROM lashstore_meta WHERE key='kind'").fetchone()
        except sqlite3.OperationalError:
            row = None
        if row is None or row[0] != self.kind:
            found = row[0] if row else "unknown"
            raise UnsupportedSchema(
                self.kind, self.latest, version, f"the file is a lashstore {found} database, not a {self.kind} one"
            )

    # -- transactions --------------------------------------------------------------------------
    @contextlib.contextmanager
    def write(self, where: str = "write") -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT; any exception rolls everything back and propagates."""
        with self._lock:
            self._check_open()
            conn = self.conn
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as e:
                raise translate(e, where) from e
            try:
                yield conn
            except BaseException as e:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                if isinstance(e, sqlite3.Error):
                    raise translate(e, where) from e
                raise
            else:
                try:
                    conn.execute("COMMIT")
                except sqlite3.Error as e:
                    try:
                        conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                    raise translate(e, where) from e

    @contextlib.contextmanager
    def read(self, where: str = "read") -> Iterator[sqlite3.Connection]:
        """One deferred transaction, so several statements read one snapshot."""
        with self._lock:
            self._check_open()
            conn = self.conn
            try:
                conn.execute("BEGIN")
            except sqlite3.Error as e:
                raise translate(e, where) from e
            try:
                yield conn
            except BaseException as e:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                if isinstance(e, sqlite3.Error):
                    raise translate(e, where) from e
                raise
            else:
                try:
                    conn.execute("COMMIT")
                except sqlite3.Error as e:
                    raise translate(e, where) from e

    def run(self, fn: Callable[[sqlite3.Connection], object], where: str) -> object:
        with self.write(where) as c:
            return fn(c)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed(f"{self.kind} store {self.path} is closed")

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self.conn.close()
