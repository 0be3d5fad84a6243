"""One PostgreSQL deployment: a psycopg 3 pool, transactions, typed errors, the clock, wake-ups.

Transactions
    Connections run in autocommit mode and every unit of work is one explicit transaction:
    writes `BEGIN` (READ COMMITTED, made safe by row locks, `SKIP LOCKED` claims and transaction
    advisory locks where a row may not exist yet); reads of several statements
    `BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY`, so no commit can tear them. A unit of work
    is a function of a `Tx`, so it can run again: it must not touch the caller's objects until it
    has returned.

Errors and retries
    * serialization failure and deadlock (40001, 40P01): the transaction rolled back; it runs
      again (bounded, with jitter), then `StoreBusy`;
    * lock timeout (55P03): `StoreBusy` (callers with a better answer, the head CAS, map it to
      `HeadRevisionConflict`);
    * a lost connection (the server terminated the backend, a restart, a network cut): the pool
      drops the connection; when it broke before `COMMIT` was sent the transaction never happened
      and runs again on a fresh connection. When it broke *during* `COMMIT` the outcome is
      unknown: that is a `BackendError` saying so, never a silent retry (a retry could apply a
      non-idempotent write twice; a turn stamp makes a commit retry safe);
    * anything else from the driver: `BackendError` carrying the server's text.

Time
    "now" for lease, claim and expiry decisions comes from the database clock
    (`clock_timestamp()`, read inside the transaction after its locks are taken), so workers with
    skewed clocks agree. Tests inject a clock: the rule is `uses_database_clock(options)`: the
    default `SystemClock` means the database clock; any other clock object in
    `StoreOptions(clock=...)` (a `ManualClock`, a custom one) is used as given, for every stamp.

Wake-ups
    Waiters (`await_process`, `wait_event_after`, effect waits) poll with backoff; a NOTIFY sent
    inside the writing transaction (delivered at its commit) wakes them at once, across
    connections and processes. A notification is only a hint to look again, never the truth.
"""

from __future__ import annotations

import hashlib
import random
import re
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import psycopg
import psycopg.conninfo
import psycopg.errors
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolTimeout

from ...clock import Clock, SystemClock
from ...errors import BackendError, LashStoreError, StoreBusy, StoreClosed, ValidationError
from ...options import StoreOptions
from ...rules.process import Notifier

__all__ = [
    "PostgresDatabase",
    "Tx",
    "DEFAULT_SCHEMA",
    "NOW_MS",
    "uses_database_clock",
    "check_schema_name",
    "translate",
    "split_url",
    "open_database",
]

T = TypeVar("T")

DEFAULT_SCHEMA = "lashstore"

#: Epoch milliseconds of the database clock at the moment the expression is evaluated.
NOW_MS = "(floor(extract(epoch FROM clock_timestamp()) * 1000))::bigint"

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

_RETRY_CONTENTION = 12  # serialization failures / deadlocks
_RETRY_CONNECTION = 10  # lost connections before COMMIT
_CONNECTION_STATES = ("57P01", "57P02", "57P03")  # admin shutdown, crash shutdown, cannot connect now


def uses_database_clock(options: StoreOptions) -> bool:
    """True when "now" comes from the database: the options carry the default system clock."""
    return type(options.clock) is SystemClock


def check_schema_name(schema: Any) -> str:
    if not isinstance(schema, str) or not _SCHEMA_NAME.match(schema):
        raise ValidationError(
            f"postgres schema name must match [a-z_][a-z0-9_]* (at most 63 characters), got {schema!r}"
        )
    return schema


def _sqlstate(e: BaseException) -> str | None:
    return getattr(e, "sqlstate", None)


def _connection_lost(e: BaseException, conn: psycopg.Connection | None) -> bool:
    if conn is not None and conn.broken:
        return True
    state = _sqlstate(e)
    if state is not None:
        return state.startswith("08") or state in _CONNECTION_STATES
    return isinstance(e, psycopg.OperationalError)


def translate(e: BaseException, where: str) -> LashStoreError:
    """The lashstore error for a driver error that is not retried any more."""
    state = _sqlstate(e)
    if state == "55P03":
        return StoreBusy(f"{where}: a row stayed locked by another transaction past lock_timeout ({e}); retry later")
    if state in ("40001", "40P01"):
        return StoreBusy(f"{where}: the transaction kept conflicting with concurrent ones ({e}); retry later")
    if isinstance(e, PoolTimeout):
        return StoreBusy(f"{where}: no database connection became free in time ({e}); retry later or raise max_size")
    if state == "57014":
        return BackendError(f"{where}: the statement ran past statement_timeout ({e})")
    return BackendError(f"{where}: {e}")


class _UnknownOutcome(Exception):
    pass


class Tx:
    """One open transaction: a cursor plus the transaction's clock, locks and notifications.

    Round trips are what a transaction costs, so `BEGIN` travels in one pipeline with the first
    statement, and writes whose results nobody reads (`defer`, `defer_many`) travel with `COMMIT`.
    """

    __slots__ = ("cur", "db", "_clock", "_now", "_topics", "_begin", "_deferred", "unique_errors")

    def __init__(self, cur: psycopg.Cursor, db: "PostgresDatabase", clock: Clock | None, begin: str) -> None:
        self.cur = cur
        self.db = db
        self._clock = clock
        self._now: int | None = None
        self._topics: list[str] = []
        self._begin: str | None = begin
        self._deferred: list[tuple[bool, Any, Any]] = []
        #: table name -> exception raised instead of a unique violation on that table
        self.unique_errors: dict[str, type[Exception]] = {}

    # -- statements ----------------------------------------------------------------------------
    def execute(self, query: Any, params: Any = None) -> psycopg.Cursor:
        if self._begin is None and not self._deferred:
            return self.cur.execute(query, params)
        with self.cur.connection.pipeline():
            self._send_pending()
            self.cur.execute(query, params)
        return self.cur

    def _send_pending(self) -> None:
        if self._begin is not None:
            self.cur.execute(self._begin)
            self._begin = None
        deferred, self._deferred = self._deferred, []
        for many, query, params in deferred:
            if many:
                self.cur.executemany(query, params)
            else:
                self.cur.execute(query, params)

    def one(self, query: Any, params: Any = None) -> tuple | None:
        return self.execute(query, params).fetchone()

    def all(self, query: Any, params: Any = None) -> list[tuple]:
        return self.execute(query, params).fetchall()

    def many(self, query: Any, params_seq: Sequence[Any]) -> None:
        if not params_seq:
            return
        if self._begin is None and not self._deferred:
            self.cur.executemany(query, params_seq)
            return
        with self.cur.connection.pipeline():
            self._send_pending()
            self.cur.executemany(query, params_seq)

    def rowcount(self, query: Any, params: Any = None) -> int:
        return self.execute(query, params).rowcount

    def defer(self, query: Any, params: Any = None) -> None:
        """A write whose result is not needed: sent with the next statement or with COMMIT."""
        self._deferred.append((False, query, params))

    def defer_many(self, query: Any, params_seq: Sequence[Any]) -> None:
        if params_seq:
            self._deferred.append((True, query, params_seq))

    def _commit(self) -> None:
        if self._begin is not None and not self._deferred:
            return  # nothing was ever sent: no transaction to end
        with self.cur.connection.pipeline():
            self._send_pending()
            self.cur.execute("COMMIT")

    def _map_unique(self, e: BaseException) -> BaseException:
        if isinstance(e, psycopg.errors.UniqueViolation):
            exc = self.unique_errors.get(getattr(e.diag, "table_name", None) or "")
            if exc is not None:
                return exc()
        return e

    # -- time ----------------------------------------------------------------------------------
    @property
    def uses_database_clock(self) -> bool:
        return self._clock is None

    def now(self) -> int:
        """The transaction's "now" in epoch ms (read once; `refresh_now` after waiting on a lock)."""
        if self._now is None:
            self._now = self._read_now()
        return self._now

    def refresh_now(self) -> int:
        self._now = self._read_now()
        return self._now

    def set_now(self, value: int) -> None:
        """Adopt a database-clock reading fetched along with another statement."""
        if self._clock is None:
            self._now = int(value)

    def _read_now(self) -> int:
        if self._clock is not None:
            return self._clock.now_ms()
        return self.execute(f"SELECT {NOW_MS}").fetchone()[0]  # type: ignore[index]

    @property
    def now_sql(self) -> str:
        """A SQL expression for "now", for statements that compute it themselves."""
        return NOW_MS if self._clock is None else "%(now)s"

    # -- locks and notifications -------------------------------------------------------------
    def lock(self, *key: str) -> None:
        """A transaction advisory lock on `key` (within this deployment's schema)."""
        self.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (self.db.lock_key(*key),))

    def notify(self, topic: str) -> None:
        """Wake waiters on `topic` once this transaction commits (here and in other processes)."""
        self.defer("SELECT pg_notify(%s, %s)", (self.db.channel, topic))
        self._topics.append(topic)


class NotificationHub:
    """One LISTEN connection per database object, dispatching NOTIFY payloads to notifiers.

    Started by the first waiter. When the connection breaks every notifier is woken (a
    notification may have been missed) and the hub reconnects with backoff; waiters keep
    polling meanwhile, so a hub outage costs latency, never correctness.
    """

    def __init__(self, conninfo: str, channel: str) -> None:
        self._conninfo = conninfo
        self._channel = channel
        self._lock = threading.Lock()
        self._notifiers: "weakref.WeakValueDictionary[str, Notifier]" = weakref.WeakValueDictionary()
        self._thread: threading.Thread | None = None
        self._listening = threading.Event()
        self._closed = False
        self._conn: psycopg.Connection | None = None
        self.received = 0
        self.reconnects = 0

    def notifier(self, topic: str) -> Notifier:
        with self._lock:
            n = self._notifiers.get(topic)
            if n is None:
                n = Notifier()
                self._notifiers[topic] = n
            return n

    def start(self, wait_s: float = 0.0) -> None:
        """Start listening (once). Waiters need not wait for it: they poll meanwhile, and the hub
        wakes everyone as soon as LISTEN is in place. `wait_s` blocks until then (for tests)."""
        with self._lock:
            if self._closed:
                return
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="lashstore-pg-listen", daemon=True)
                self._thread.start()
        if wait_s > 0:
            self._listening.wait(wait_s)

    @property
    def listening(self) -> bool:
        return self._listening.is_set()

    def wake(self, topic: str) -> None:
        with self._lock:
            n = self._notifiers.get(topic)
        if n is not None:
            n.notify()

    def wake_all(self) -> None:
        with self._lock:
            ns = list(self._notifiers.values())
        for n in ns:
            n.notify()

    def _run(self) -> None:
        delay = 0.05
        while not self._closed:
            try:
                conn = psycopg.connect(self._conninfo, autocommit=True)
            except psycopg.Error:
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            with self._lock:
                if self._closed:
                    conn.close()
                    return
                self._conn = conn
            try:
                conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
                self._listening.set()
                delay = 0.05
                # Anything committed before LISTEN took effect was not seen: look again.
                self.wake_all()
                while not self._closed:
                    for n in conn.notifies(timeout=0.5):
                        self.received += 1
                        self.wake(n.payload)
            except Exception:  # noqa: BLE001 - reconnect below; waiters poll meanwhile
                pass
            finally:
                self._listening.clear()
                with self._lock:
                    self._conn = None
                try:
                    conn.close()
                except Exception:  # noqa: BLE001
                    pass
            if not self._closed:
                self.reconnects += 1
                self.wake_all()
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def backend_pid(self) -> int | None:
        """The server process of the LISTEN connection (for tests that kill it)."""
        with self._lock:
            c = self._conn
        try:
            return None if c is None else c.info.backend_pid
        except Exception:  # noqa: BLE001
            return None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout=5)
        self.wake_all()


def _conninfo(url: str, schema: str, statement_timeout_ms: int, lock_timeout_ms: int, application_name: str) -> str:
    try:
        params = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError as e:
        raise ValidationError(f"not a PostgreSQL connection URL: {e}") from None
    # Settings travel in the startup packet: no extra round trip per new connection.
    extra = (
        f"-c search_path={schema} -c statement_timeout={int(statement_timeout_ms)} "
        f"-c lock_timeout={int(lock_timeout_ms)} -c idle_in_transaction_session_timeout=60000"
    )
    opts = params.get("options")
    params["options"] = f"{opts} {extra}" if opts else extra
    params.setdefault("application_name", application_name)
    params.setdefault("connect_timeout", 10)
    return psycopg.conninfo.make_conninfo(**params)


class PostgresDatabase:
    """A deployment on PostgreSQL: one database schema, one connection pool, one LISTEN hub.

    url: a libpq URL or DSN (`postgresql://user@host:5432/db`).
    schema: the schema holding the deployment's tables (created on first connect).
    min_size / max_size: pool bounds (upstream defaults: at most 16 connections).
    acquire_timeout_s: how long a caller waits for a free connection before `StoreBusy`.
    statement_timeout_ms / lock_timeout_ms: set on every connection (30 s / 10 s).

    Store objects (session stores, the factory, the registries) share one database object; it
    is closed by whoever created it (`owned=True` on the stores that opened it from a URL).
    """

    def __init__(
        self,
        url: str,
        *,
        schema: str = DEFAULT_SCHEMA,
        min_size: int = 1,
        max_size: int = 16,
        acquire_timeout_s: float = 30.0,
        statement_timeout_ms: int = 30_000,
        lock_timeout_ms: int = 10_000,
        max_idle_s: float = 600.0,
        max_lifetime_s: float = 1800.0,
        application_name: str = "lashstore",
    ) -> None:
        if not isinstance(url, str) or not url:
            raise ValidationError(f"postgres URL must be a non-empty string, got {url!r}")
        self.url = url
        self.schema = check_schema_name(schema)
        self.conninfo = _conninfo(url, self.schema, statement_timeout_ms, lock_timeout_ms, application_name)
        self.channel = "lashstore_" + hashlib.sha256(self.schema.encode()).hexdigest()[:24]
        self.acquire_timeout_s = acquire_timeout_s
        self._closed = False
        self._lock = threading.Lock()
        self._ensured: set[str] = set()
        # Check the server answers (a clear error now, not a pool time-out later).
        try:
            psycopg.connect(self.conninfo).close()
        except psycopg.Error as e:
            raise BackendError(f"cannot connect to PostgreSQL at {_redact(url)}: {e}".rstrip()) from None
        self._pool = ConnectionPool(
            self.conninfo,
            kwargs={"autocommit": True},
            min_size=min_size,
            max_size=max(max_size, min_size),
            timeout=acquire_timeout_s,
            max_idle=max_idle_s,
            max_lifetime=max_lifetime_s,
            num_workers=2,
            name=f"lashstore-{self.schema}",
            open=True,
        )
        self.hub = NotificationHub(self.conninfo, self.channel)

    # -- schema ----------------------------------------------------------------------------------
    def ensure(self, component: str) -> None:
        """Create or migrate `component`'s tables (once per database object)."""
        with self._lock:
            if component in self._ensured:
                return
        from .schema import ensure_component

        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            ensure_component(conn, self.schema, component)
        with self._lock:
            self._ensured.add(component)

    def lock_key(self, *parts: str) -> str:
        return "lashstore\x1f" + self.schema + "\x1f" + "\x1f".join(parts)

    # -- transactions ----------------------------------------------------------------------------
    def write(self, fn: Callable[[Tx], T], where: str, *, clock: Clock | None = None) -> T:
        """Run `fn` in a READ COMMITTED transaction and commit; retried as the module says."""
        return self._run(fn, where, clock, "BEGIN", write=True)

    def read(self, fn: Callable[[Tx], T], where: str, *, clock: Clock | None = None) -> T:
        """Run `fn` in one REPEATABLE READ, READ ONLY transaction (one snapshot)."""
        return self._run(fn, where, clock, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", write=False)

    def _run(self, fn: Callable[[Tx], T], where: str, clock: Clock | None, begin: str, *, write: bool) -> T:
        contention = connection = 0
        while True:
            self._check_open()
            try:
                return self._attempt(fn, clock, begin)
            except _UnknownOutcome as u:
                e = u.__cause__
                if not write:  # a read-only transaction has no outcome to lose
                    connection += 1
                    if connection <= _RETRY_CONNECTION and not self._closed:
                        self._after_connection_loss(connection)
                        continue
                    raise translate(e, where) from e  # type: ignore[arg-type]
                raise BackendError(
                    f"{where}: the connection was lost while committing ({e}); the outcome is unknown: "
                    "read the state back before retrying (a turn stamp makes a commit retry safe)"
                ) from e
            except psycopg.Error as e:
                if isinstance(e, psycopg.OperationalError) and _connection_lost(e, None) or _sqlstate(e) in _CONNECTION_STATES:
                    connection += 1
                    if connection <= _RETRY_CONNECTION and not self._closed:
                        self._after_connection_loss(connection)
                        continue
                elif _sqlstate(e) in ("40001", "40P01"):
                    contention += 1
                    if contention <= _RETRY_CONTENTION:
                        time.sleep(random.uniform(0, 0.002 * (2 ** min(contention, 7))))
                        continue
                raise translate(e, where) from e
            except PoolTimeout as e:
                if self._closed:
                    raise StoreClosed(f"postgres database {self.schema} is closed") from None
                raise translate(e, where) from e

    def _after_connection_loss(self, attempt: int) -> None:
        # One dead connection often means more (a server restart, a network cut, an operator
        # terminating backends): have the pool check its idle connections before the retry.
        try:
            self._pool.check()
        except Exception:  # noqa: BLE001 - the retry finds out anyway
            pass
        if attempt > 1:
            time.sleep(min(0.01 * (2 ** (attempt - 2)), 0.5))

    def _attempt(self, fn: Callable[[Tx], T], clock: Clock | None, begin: str) -> T:
        with self._pool.connection(timeout=self.acquire_timeout_s) as conn:
            cur = conn.cursor()
            tx = Tx(cur, self, clock, begin)
            try:
                try:
                    result = fn(tx)
                except BaseException as e:
                    self._rollback(conn)
                    mapped = tx._map_unique(e)
                    if mapped is not e:
                        raise mapped from e
                    raise
                try:
                    tx._commit()
                except psycopg.Error as e:
                    if _connection_lost(e, conn):
                        raise _UnknownOutcome() from e
                    self._rollback(conn)
                    mapped = tx._map_unique(e)
                    if mapped is not e:
                        raise mapped from e
                    raise
            finally:
                cur.close()
        for topic in tx._topics:
            self.hub.wake(topic)
        return result

    @staticmethod
    def _rollback(conn: psycopg.Connection) -> None:
        if conn.broken or conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            return
        try:
            conn.execute("ROLLBACK")
        except psycopg.Error:
            pass

    def connection(self) -> Any:
        """A pooled connection (context manager) for maintenance and tests."""
        self._check_open()
        return self._pool.connection(timeout=self.acquire_timeout_s)

    def pool_stats(self) -> dict[str, int]:
        return dict(self._pool.get_stats())

    # -- lifecycle -------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed(f"postgres database {self.schema} is closed")

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.hub.close()
        self._pool.close(timeout=5)

    def __enter__(self) -> "PostgresDatabase":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<PostgresDatabase {_redact(self.url)} schema={self.schema}>"


def _redact(url: str) -> str:
    url = re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)
    return re.sub(r"(password\s*=\s*)\S+", r"\1***", url)


#: lashstore's own query parameters of a postgresql:// URL (everything else goes to libpq).
URL_PARAMETERS = {"schema", "pool_min", "pool_max", "statement_timeout_ms", "lock_timeout_ms", "acquire_timeout_s"}


def split_url(url: str) -> tuple[str, dict[str, Any]]:
    """(libpq URL, PostgresDatabase keyword arguments) of a lashstore postgresql:// URL.

    `?schema=name` picks the deployment's schema (default "lashstore"); `pool_min`, `pool_max`,
    `statement_timeout_ms`, `lock_timeout_ms` and `acquire_timeout_s` tune the pool. Other
    query parameters (sslmode, ...) are libpq's and stay in the URL.
    """
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    keep: list[tuple[str, str]] = []
    kw: dict[str, Any] = {}
    for key, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
        if key not in URL_PARAMETERS:
            keep.append((key, value))
            continue
        try:
            if key == "schema":
                kw["schema"] = check_schema_name(value)
            elif key == "pool_min":
                kw["min_size"] = int(value)
            elif key == "pool_max":
                kw["max_size"] = int(value)
            elif key == "acquire_timeout_s":
                kw["acquire_timeout_s"] = float(value)
            else:
                kw[key] = int(value)
        except ValueError:
            raise ValidationError(f"postgres URL option {key} must be a number, got {value!r}") from None
    scheme = "postgresql" if parts.scheme in ("postgres", "postgresql") else parts.scheme
    clean = urllib.parse.urlunsplit((scheme, parts.netloc, parts.path, urllib.parse.urlencode(keep), parts.fragment))
    return clean, kw


def open_database(target: "PostgresDatabase | str", schema: str | None) -> tuple[PostgresDatabase, bool]:
    """(database, whether the caller owns it) for a store given a URL or a shared database."""
    if isinstance(target, PostgresDatabase):
        if schema is not None and schema != target.schema:
            raise ValidationError(f"schema {schema!r} differs from the shared database's {target.schema!r}")
        return target, False
    url, kw = split_url(target) if "://" in target else (target, {})
    if schema is not None:
        kw["schema"] = schema
    return PostgresDatabase(url, **kw), True
