"""One SQLite connection: WAL, busy timeout, explicit transactions, typed errors.

Every read-then-write runs under `BEGIN IMMEDIATE`, so the write lock is taken before the first
read and check-then-act sequences (head CAS, claims, idempotency lookups) serialise across
connections and processes. Reads of several statements run in one deferred transaction so they
see a single WAL snapshot.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from pathlib import Path

from ...clock import SystemClock
from ...errors import (
    BackendError,
    StoreBusy,
    StoreClosed,
    StoreFull,
    StoreReadOnly,
    StoreUnavailable,
    UnsupportedSchema,
)

__all__ = ["Database", "Migration", "translate", "os_error", "file_bytes"]

#: (version it produces, statements)
Migration = tuple[int, Sequence[str]]

_WAL_BUDGET_S = 15.0

#: lashstore_meta key written (then the files unlinked) when a session file is deleted: every
#: connection still open on the unlinked file sees it at its next transaction and refuses.
DELETED_KEY = "deleted"
_IS_DELETED = f"SELECT 1 FROM lashstore_meta WHERE key = '{DELETED_KEY}'"

_SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE = 1006
_SYSTEM_CLOCK = SystemClock()


def _ctypes_db_config() -> Callable[[sqlite3.Connection, bool], bool] | None:
    """sqlite3_db_config(NO_CKPT_ON_CLOSE) for Pythons without Connection.setconfig (3.11).

    The `sqlite3 *` is the first field after the object header of the connection object (true of
    every CPython that lacks setconfig); it is checked against the file name before use."""
    try:
        import _sqlite3

        lib = ctypes.CDLL(_sqlite3.__file__)
        db_config = lib.sqlite3_db_config
        filename = lib.sqlite3_db_filename
    except (OSError, AttributeError, ImportError):  # pragma: no cover - depends on the build
        return None
    db_config.restype = ctypes.c_int
    filename.restype = ctypes.c_char_p
    filename.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    offset = object.__basicsize__

    def set_no_ckpt(conn: sqlite3.Connection, on: bool) -> bool:
        handle = ctypes.c_void_p.from_address(id(conn) + offset).value
        if not handle:
            return False
        name = filename(handle, b"main")
        if name is None or not name:
            return False
        out = ctypes.c_int(-1)
        rc = db_config(ctypes.c_void_p(handle), ctypes.c_int(_SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE),
                       ctypes.c_int(1 if on else 0), ctypes.byref(out))
        return rc == 0 and out.value == (1 if on else 0)

    return set_no_ckpt


def _setconfig_db_config(conn: sqlite3.Connection, on: bool) -> bool:
    conn.setconfig(_SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, on)  # type: ignore[attr-defined]
    return True


_no_ckpt_on_close = (
    _setconfig_db_config if hasattr(sqlite3.Connection, "setconfig") else _ctypes_db_config()
)


def _is_busy(e: BaseException) -> bool:
    if isinstance(e, sqlite3.OperationalError):
        code = getattr(e, "sqlite_errorcode", None)
        if code is not None:
            return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
        msg = str(e)
        return "locked" in msg or "busy" in msg
    return False


def translate(e: sqlite3.Error, where: str, path: str | None = None) -> BackendError:
    """The typed error for a driver error, saying what to do."""
    if _is_busy(e):
        return StoreBusy(f"{where}: the database stayed locked by another writer ({e}); retry later")
    code = (getattr(e, "sqlite_errorcode", None) or 0) & 0xFF
    if code == sqlite3.SQLITE_FULL:
        return StoreFull(f"{where}: the disk is full ({e}); nothing was written. Free space and retry")
    if code == sqlite3.SQLITE_READONLY:
        return StoreReadOnly(
            f"{where}: the store is read-only ({e}); reading works, writing needs write access to the files "
            "and their directory"
        )
    if code == sqlite3.SQLITE_CANTOPEN:
        return _cannot_open(e, where, path)
    if code == sqlite3.SQLITE_IOERR and "disk I/O" in str(e) and _no_space(path):
        return StoreFull(f"{where}: the disk is full ({e}); nothing was written. Free space and retry")
    return BackendError(f"{where}: {e}")


def _no_space(path: str | None) -> bool:
    if not path or path == ":memory:":
        return False
    try:
        st = os.statvfs(os.path.dirname(os.path.abspath(path)) or ".")
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 1 << 20


def _cannot_open(e: BaseException, where: str, path: str | None) -> BackendError:
    """SQLite says only "unable to open database file": find out why."""
    try:
        os.close(os.open(os.devnull, os.O_RDONLY))
    except OSError as probe:
        if probe.errno in (errno.EMFILE, errno.ENFILE):
            return StoreUnavailable(
                f"{where}: out of file descriptors (each open session store holds up to 3); close the stores "
                "you no longer use, or raise the limit (ulimit -n)"
            )
    folder = os.path.dirname(os.path.abspath(path)) if path and path != ":memory:" else None
    if folder is not None:
        if not os.path.isdir(folder):
            return StoreUnavailable(f"{where}: the directory {folder} does not exist (or is not a directory)")
        if _read_only_dir(folder):
            return StoreReadOnly(
                f"{where}: cannot create files in {folder} (read-only or no permission); open the store from a "
                "writable location, or only read it"
            )
        if not os.access(folder, os.R_OK | os.X_OK):
            return StoreUnavailable(f"{where}: no permission to read the directory {folder}")
    return StoreUnavailable(f"{where}: cannot open the database file ({e})")


def _read_only_dir(folder: str) -> bool:
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return True
    except OSError:
        pass
    return not os.access(folder, os.W_OK)


def os_error(e: OSError, where: str) -> BackendError:
    """The typed error for a failed file operation (creating a directory or a file, removing one)."""
    if e.errno == errno.ENOSPC or e.errno == errno.EDQUOT:
        return StoreFull(f"{where}: the disk is full ({e.strerror}); nothing was written. Free space and retry")
    if e.errno in (errno.EROFS,) or (e.errno in (errno.EACCES, errno.EPERM) and e.filename is not None):
        return StoreReadOnly(f"{where}: {e.strerror}; the location is read-only or not writable by this user")
    if e.errno in (errno.EMFILE, errno.ENFILE):
        return StoreUnavailable(
            f"{where}: out of file descriptors (each open session store holds up to 3); close the stores you no "
            "longer use, or raise the limit (ulimit -n)"
        )
    if e.errno in (errno.ENOTDIR, errno.EEXIST):
        return StoreUnavailable(f"{where}: {e.strerror}: a file is in the way of the store directory ({e.filename})")
    return StoreUnavailable(f"{where}: {e.strerror or e}")


def _connect(target: str, uri: bool, busy_timeout_ms: int) -> sqlite3.Connection:
    return sqlite3.connect(
        target,
        uri=uri,
        timeout=busy_timeout_ms / 1000,
        isolation_level=None,
        check_same_thread=False,
        cached_statements=256,
    )


def file_bytes(path: str | os.PathLike[str]) -> int:
    """The database file plus its WAL, as the file system counts them."""
    total = 0
    for p in (Path(path), Path(f"{os.fspath(path)}-wal")):
        try:
            total += p.stat().st_size
        except (FileNotFoundError, NotADirectoryError):
            pass
    return total


_TYPEOF = {"INTEGER": ("integer",), "TEXT": ("text",), "BLOB": ("blob",), "REAL": ("real", "integer")}


def _declared_type_problems(c: sqlite3.Connection, table: str) -> list[tuple[str, str, str]]:
    out = []
    cols = c.execute(f'PRAGMA table_info("{table}")').fetchall()
    key_cols = [r[1] for r in sorted(cols, key=lambda r: r[5]) if r[5]] or [cols[0][1]]
    keys = ", ".join(f'"{k}"' for k in key_cols)
    for _, name, decl, notnull, _, _ in cols:
        allowed = _TYPEOF.get((decl or "").upper())
        if allowed is None:
            continue
        kinds = ", ".join(f"'{k}'" for k in allowed + (() if notnull else ("null",)))
        for row in c.execute(f'SELECT {keys}, "{name}", typeof("{name}") FROM "{table}" '
                             f'WHERE typeof("{name}") NOT IN ({kinds}) LIMIT 100'):
            key = "/".join(str(k) for k in row[:-2])
            out.append((table, key, f"column {name} holds {row[-2]!r} ({row[-1]}), its declared type is {decl}"))
    return out


class SqliteDialect:
    """SQLite's side of `engine.tx.Dialect`: the write transaction holds the whole database."""

    name = "sqlite"
    for_update = ""
    for_key_share = ""
    greatest = "max"

    @staticmethod
    def explicit_ids(t: Any, table: str, column: str, top: int) -> str:
        """What an INSERT giving `column` its values needs (SQLite: nothing)."""
        return ""


DIALECT = SqliteDialect()


class SqliteTx:
    """`engine.tx.Tx` over an open SQLite transaction."""

    __slots__ = ("conn", "db", "dialect", "unique_errors", "_clock", "_now", "topics")

    def __init__(self, conn: sqlite3.Connection, db: "Database", clock: Any) -> None:
        self.conn = conn
        self.db = db
        self.dialect = DIALECT
        self.unique_errors: dict[str, type[Exception]] = {}
        self._clock = clock
        self._now: int | None = None
        self.topics: list[str] = []

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        try:
            return self.conn.execute(sql, params)
        except sqlite3.IntegrityError as e:
            raise self._mapped(e) from e

    def _mapped(self, e: sqlite3.IntegrityError) -> BaseException:
        msg = str(e)
        if self.unique_errors and msg.startswith("UNIQUE constraint failed: "):
            table = msg.split(": ", 1)[1].split(".", 1)[0]
            exc = self.unique_errors.get(table)
            if exc is not None:
                return exc()
        return e

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple | None:
        return self.execute(sql, params).fetchone()

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        return self.execute(sql, params).fetchall()

    def many(self, sql: str, params_seq: Sequence[Sequence[Any]]) -> None:
        try:
            self.conn.executemany(sql, params_seq)
        except sqlite3.IntegrityError as e:
            raise self._mapped(e) from e

    def rowcount(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self.execute(sql, params).rowcount

    defer = execute
    defer_many = many

    def now(self) -> int:
        if self._now is None:
            self._now = (self._clock or _SYSTEM_CLOCK).now_ms()
        return self._now

    def set_now(self, value: int) -> None:
        pass  # the store's clock, never the database's

    uses_database_clock = False
    now_column = ""

    def lock(self, *key: str) -> None:
        pass  # BEGIN IMMEDIATE holds the whole database

    def notify(self, topic: str) -> None:
        self.topics.append(topic)


class Database:
    """A connection plus the lock that serialises its use across threads."""

    dialect = DIALECT
    #: called with the notified topics after a write transaction commits (in-process waiters)
    on_commit: Callable[[list[str]], None] | None = None

    @staticmethod
    def clock_for(options: Any) -> Any:
        return options.clock

    def __init__(
        self,
        path: str | Path,
        *,
        kind: str,
        migrations: Sequence[Migration],
        synchronous: str = "normal",
        busy_timeout_ms: int = 15_000,
        readonly: bool = False,
        on_deleted: Callable[[], BaseException] | None = None,
    ) -> None:
        self.path = str(path)
        # A deletable file (a session's) is checked for the deletion mark by every transaction;
        # `on_deleted()` is the error raised then.
        self._on_deleted = on_deleted
        self._guarded = False
        self.kind = kind
        self.latest = migrations[-1][0] if migrations else 0
        self._lock = threading.RLock()
        self._closed = False
        memory = self.path == ":memory:"
        self.readonly = readonly
        self.immutable = False
        try:
            if readonly:
                conn = self._connect_readonly(busy_timeout_ms)
            else:
                conn = _connect(self.path, False, busy_timeout_ms)
        except sqlite3.Error as e:
            raise translate(e, f"open {self.path}", self.path) from e
        self.conn = conn
        try:
            if on_deleted is not None and not memory and _no_ckpt_on_close is not None:
                # SQLite's last connection to close a WAL database deletes `<file>-wal` and
                # `<file>-shm` by name. Once another process has deleted this session and made a
                # new one under the same name, those names are the new session's: so this
                # connection never cleans up on close, unless close() finds its file undeleted.
                self._guarded = _no_ckpt_on_close(conn, True)
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
    def _connect_readonly(self, busy_timeout_ms: int) -> sqlite3.Connection:
        """A read-only connection: it never creates, converts or migrates anything.

        A WAL database needs its `-shm` file to be read; where it does not exist and cannot be
        made (a read-only directory or mount, a full disk), the file is opened `immutable` instead,
        which is exact when no `-wal` file holds commits (the store was closed cleanly, so no
        writer has it open)."""
        path = Path(self.path)
        if not path.is_file():
            raise StoreUnavailable(f"open {self.path}: no such database file")
        uri = path.resolve().as_uri()
        conn = _connect(f"{uri}?mode=ro", True, busy_timeout_ms)
        try:
            conn.execute("PRAGMA user_version").fetchone()  # the real open: WAL index, -shm
            return conn
        except sqlite3.OperationalError as e:
            conn.close()
            code = (getattr(e, "sqlite_errorcode", None) or 0) & 0xFF
            if code not in (sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL):
                raise
            # The -shm cannot be made (a read-only location, a full disk).
            wal = Path(f"{self.path}-wal")
            if wal.exists() and wal.stat().st_size > 0:
                raise StoreReadOnly(
                    f"open {self.path}: the store was not closed cleanly (its {wal.name} holds commits) and "
                    f"its {path.name}-shm file cannot be made here ({e}); reading it needs write access to "
                    "its directory, or a copy of the store on writable storage"
                ) from None
        self.immutable = True
        return _connect(f"{uri}?mode=ro&immutable=1", True, busy_timeout_ms)

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
                    raise translate(e, f"open {self.path}: switch to WAL", self.path) from e
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
            except sqlite3.DatabaseError as e:
                raise translate(e, f"open {self.path}", self.path) from e

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
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")
        except sqlite3.DatabaseError as e:
            raise translate(e, f"open {self.path}", self.path) from e
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
            raise translate(e, f"open {self.path}: schema", self.path) from e

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
    def writing(self, where: str = "write") -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT; any exception rolls everything back and propagates."""
        with self._lock:
            self._check_open()
            if self.readonly:
                raise StoreReadOnly(f"{where}: {self.path} is open read-only; nothing was written")
            conn = self.conn
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as e:
                raise translate(e, where, self.path) from e
            try:
                if self._on_deleted is not None and conn.execute(_IS_DELETED).fetchone() is not None:
                    raise self._on_deleted()
                yield conn
            except BaseException as e:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                if isinstance(e, sqlite3.Error):
                    raise translate(e, where, self.path) from e
                raise
            else:
                try:
                    conn.execute("COMMIT")
                except sqlite3.Error as e:
                    try:
                        conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                    raise translate(e, where, self.path) from e

    @contextlib.contextmanager
    def reading(self, where: str = "read") -> Iterator[sqlite3.Connection]:
        """One deferred transaction, so several statements read one snapshot."""
        with self._lock:
            self._check_open()
            conn = self.conn
            try:
                conn.execute("BEGIN")
            except sqlite3.Error as e:
                raise translate(e, where, self.path) from e
            try:
                if self._on_deleted is not None and conn.execute(_IS_DELETED).fetchone() is not None:
                    raise self._on_deleted()
                yield conn
            except BaseException as e:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                if isinstance(e, sqlite3.Error):
                    raise translate(e, where, self.path) from e
                raise
            else:
                try:
                    conn.execute("COMMIT")
                except sqlite3.Error as e:
                    raise translate(e, where, self.path) from e

    def write(self, fn: Any, where: str = "write", *, clock: Any = None) -> Any:
        """`fn(tx)` in one BEGIN IMMEDIATE transaction (the engine's interface, engine.tx.Db)."""
        if not callable(fn):  # the older form: `with db.write("where") as conn:`
            return self.writing(fn)
        with self.writing(where) as c:
            tx = SqliteTx(c, self, clock)
            result = fn(tx)
        if tx.topics and self.on_commit is not None:
            self.on_commit(tx.topics)
        return result

    def read(self, fn: Any, where: str = "read", *, clock: Any = None) -> Any:
        """`fn(tx)` in one read transaction (one snapshot)."""
        if not callable(fn):
            return self.reading(fn)
        with self.reading(where) as c:
            return fn(SqliteTx(c, self, clock))

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed(f"{self.kind} store {self.path} is closed")

    @property
    def closed(self) -> bool:
        return self._closed

    # -- the file ----------------------------------------------------------------------------------
    @property
    def location(self) -> str:
        """Where the database is, for reports (its file)."""
        return self.path

    def shrink(self, tables: Sequence[str] | None = None) -> tuple[int, int, bool]:
        """Give the file's free pages back to the file system: checkpoint the WAL, `VACUUM`, and
        checkpoint again with TRUNCATE. Returns (bytes before, bytes after, fully checkpointed).
        (`tables` is for PostgreSQL's interface: VACUUM rewrites the whole file.)

        VACUUM rather than incremental auto-vacuum: it also defragments, needs no schema change,
        and with one file per session each rewrite is small. It takes the write lock (writers wait
        for it, readers do not); a reader holding an old snapshot can keep the WAL from
        truncating, which the third value reports."""
        if self.path == ":memory:" or self.readonly:
            return file_bytes(self.path), file_bytes(self.path), True
        with self._lock:
            self._check_open()
            before = file_bytes(self.path)
            try:
                self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                self.conn.execute("VACUUM")
                busy = self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            except sqlite3.Error as e:
                raise translate(e, f"vacuum {self.path}", self.path) from e
            return before, file_bytes(self.path), busy == 0

    def integrity_problems(self) -> list[tuple[str, str, str]]:
        """(what, key, detail) of every finding of `PRAGMA integrity_check`, and of every value
        whose type is not its column's declared one (SQLite keeps whatever it is given, so a tool
        writing into the file can leave text where an integer belongs)."""
        out: list[tuple[str, str, str]] = []
        with self._lock:
            self._check_open()
            c = self.conn
            try:
                out += [("integrity", "page", str(m)) for (m,) in c.execute("PRAGMA integrity_check") if m != "ok"]
                tables = [r[0] for r in c.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
                    "AND name <> 'lashstore_meta'")]
                for table in tables:
                    out += _declared_type_problems(c, table)
            except sqlite3.Error as e:
                out.append(("integrity", "file", f"cannot check the file: {e}"))
        return out

    def mark_deleted(self, now_ms: int) -> None:
        """Write the deletion mark (the caller unlinks the files next). Waits for the write lock,
        so a transaction in flight finishes first and every later one sees the mark."""
        with self._lock:
            self._check_open()
            try:
                self.conn.execute("BEGIN IMMEDIATE")
                try:
                    self.conn.execute(
                        "INSERT OR REPLACE INTO lashstore_meta (key, value) VALUES (?, ?)", (DELETED_KEY, str(now_ms))
                    )
                    self.conn.execute("COMMIT")
                except BaseException:
                    self.conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as e:
                raise translate(e, f"delete {self.path}") from e

    def is_deleted(self) -> bool:
        with self._lock:
            self._check_open()
            try:
                return self.conn.execute(_IS_DELETED).fetchone() is not None
            except sqlite3.Error as e:
                raise translate(e, f"read {self.path}") from e

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                if self._guarded:
                    try:
                        deleted = self.conn.execute(_IS_DELETED).fetchone() is not None
                    except sqlite3.Error:
                        deleted = True  # unsure: leave the files alone
                    if not deleted:
                        # Still the file at this name: let SQLite checkpoint and tidy up as usual.
                        _no_ckpt_on_close(self.conn, False)  # type: ignore[misc]
                self.conn.close()
