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
    A pool time-out is never retried: it is classified once (below) and raised.

Connections, and how long a caller can wait
    A pooled connection is waited for at most `acquire_timeout_s` (default 30 s). When none comes,
    one direct connection attempt (at most `connect_timeout_s`, default 5 s, per address tried,
    plus name resolution) tells the two causes apart:

    * the server does not answer (connection refused, unknown host, no answer in time):
      `StoreUnavailable`, one line naming host:port and the reason, never the password;
    * the server answers but every connection of the pool is in use: `StoreBusy` (raise
      `pool_max`, or run fewer operations at once);
    * the server answers again after an outage while the pool is still in its reconnect
      back-off: the direct connection serves the call and the pool is renewed.

    So a server that goes away is reported within `acquire_timeout_s + connect_timeout_s`
    (35 s by default; waiting out a restart shorter than `acquire_timeout_s`), and once it was
    found unreachable every later call asks again directly and fails within `connect_timeout_s`
    (at once when the connection is refused) until it answers. A commit's transient-error
    retries never multiply that bound. Opening a store (the first connection, schema creation)
    connects directly: `StoreUnavailable` within `connect_timeout_s`.

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

import contextlib
import hashlib
import math
import random
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import psycopg
import psycopg.conninfo
import psycopg.errors
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from ...clock import Clock, SystemClock
from ...errors import BackendError, LashStoreError, StoreBusy, StoreClosed, StoreUnavailable, ValidationError
from ...options import StoreOptions
from ...engine.waits import Notifier

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
DEFAULT_CONNECT_TIMEOUT_S = 5
DEFAULT_ACQUIRE_TIMEOUT_S = 30.0


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
        return StoreBusy(f"{where}: no database connection became free in time ({e}); raise pool_max, or retry later")
    if state == "57014":
        return BackendError(f"{where}: the statement ran past statement_timeout ({e})")
    if _connection_lost(e, None):
        return BackendError(f"{where}: the connection to the server was lost ({_one_line(e)})")
    return BackendError(f"{where}: {e}")


def _one_line(e: BaseException | str) -> str:
    """libpq's text on one line (it spreads hints over several, tab-indented)."""
    return " ".join(str(e).split())


def _server_label(params: dict[str, Any]) -> str:
    """host:port of a conninfo, for messages (never the password)."""
    host = str(params.get("host") or params.get("hostaddr") or "")
    port = str(params.get("port") or "5432")
    if not host:
        return f"the default Unix socket .s.PGSQL.{port}"
    if host.startswith("/"):
        return f"{host.rstrip('/')}/.s.PGSQL.{port}"
    hosts, ports = host.split(","), port.split(",")
    if len(ports) < len(hosts):
        ports += [ports[-1]] * (len(hosts) - len(ports))
    return ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in zip(hosts, ports))


_NOT_ACCEPTING = ("starting up", "shutting down", "in recovery mode", "not yet accepting", "not accepting connections")
_TOO_MANY = ("too many clients", "connection slots are reserved", "too many connections")


def _connect_failure(e: BaseException, label: str, timeout_s: int) -> tuple[type[LashStoreError], str]:
    """(error class, one-line message) for a failed connection attempt."""
    text = str(e)
    if "FATAL:" in text:
        # The server answered, and said no.
        msg = _one_line((text.rsplit("FATAL:", 1)[1].strip().splitlines() or [""])[0])
        low = msg.lower()
        if any(k in low for k in _NOT_ACCEPTING):
            return StoreUnavailable, f"the PostgreSQL server at {label} is not accepting connections ({msg}); retry shortly"
        if any(k in low for k in _TOO_MANY):
            return StoreBusy, (
                f"the PostgreSQL server at {label} refuses new connections ({msg}); "
                "lower pool_max, raise the server's max_connections, or retry later"
            )
        return StoreUnavailable, (
            f"the PostgreSQL server at {label} refused the connection ({msg}); "
            "fix the URL (user, password, database) or the server's pg_hba.conf"
        )
    if isinstance(e, psycopg.errors.ConnectionTimeout) or "timeout expired" in text:
        reason = f"no answer within connect_timeout_s={timeout_s} s"
    elif "failed to resolve host" in text or "could not translate host name" in text:
        detail = re.sub(r"\[Errno [^\]]*\]", "", text.rsplit(":", 1)[-1]).strip()
        reason = f"unknown host name: {_one_line(detail)}" if detail else "unknown host name"
    else:
        first = text.strip().splitlines()[0] if text.strip() else type(e).__name__
        reason = first.rsplit(" failed: ", 1)[-1].strip() or first
        reason = _one_line(reason[:1].lower() + reason[1:])
    return StoreUnavailable, f"cannot reach the PostgreSQL server at {label} ({reason}); start it or fix the URL"


class _UnknownOutcome(Exception):
    pass


class PostgresDialect:
    """PostgreSQL's side of `engine.tx.Dialect`."""

    name = "postgres"
    for_update = " FOR UPDATE"
    for_key_share = " FOR KEY SHARE"
    greatest = "greatest"

    @staticmethod
    def claim_candidates(t: Any, session_id: str, limit: int) -> Any:
        from .queue_claim import claim_candidates

        return claim_candidates(t, session_id, limit)

    @staticmethod
    def wait_for_queue_head(t: Any, head: int) -> None:
        from .queue_claim import wait_for_queue_head

        wait_for_queue_head(t, head)

    @staticmethod
    def explicit_ids(t: Any, table: str, column: str, top: int) -> str:
        """An identity column given its values: move its sequence past `top` (setval: at once,
        outside the transaction, forward only) and override the identity."""
        seq_name = t.one("SELECT pg_get_serial_sequence(?, ?)", (table, column))[0]
        last, called = t.one(sql.SQL("SELECT last_value, is_called FROM {}").format(sql.SQL(seq_name)))
        if last < top or (last == top and not called):
            t.execute("SELECT setval(?, ?)", (seq_name, top))
        return " OVERRIDING SYSTEM VALUE"


DIALECT = PostgresDialect()

_converted: dict[str, str] = {}


def _pg(query: Any) -> Any:
    """SQL written once with `?` placeholders, in psycopg's `%s` form (cached)."""
    if type(query) is not str or "?" not in query:
        return query
    out = _converted.get(query)
    if out is None:
        out = _converted[query] = query.replace("%", "%%").replace("?", "%s")
    return out


class Tx:
    """One open transaction: a cursor plus the transaction's clock, locks and notifications.

    Round trips are what a transaction costs, so `BEGIN` travels in one pipeline with the first
    statement, and writes whose results nobody reads (`defer`, `defer_many`) travel with `COMMIT`.
    """

    __slots__ = ("cur", "db", "_clock", "_now", "_topics", "_begin", "_deferred", "unique_errors")
    dialect = DIALECT

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
        query = _pg(query)
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
        query = _pg(query)
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
        self._deferred.append((False, _pg(query), params))

    def defer_many(self, query: Any, params_seq: Sequence[Any]) -> None:
        if params_seq:
            self._deferred.append((True, _pg(query), params_seq))

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
    def now_column(self) -> str:
        """", <now>" to fetch the database clock with a row (empty when the store's clock rules)."""
        return f", {NOW_MS}" if self._clock is None else ""

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


def _conninfo(
    url: str,
    schema: str,
    statement_timeout_ms: int,
    lock_timeout_ms: int,
    application_name: str,
    connect_timeout_s: float | None,
) -> tuple[str, dict[str, Any], int]:
    """(conninfo, its parameters, the effective connect timeout in whole seconds)."""
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
    if connect_timeout_s is None:
        # libpq's own `connect_timeout` in the URL counts, else lashstore's default.
        given = params.get("connect_timeout")
        try:
            connect_timeout_s = float(given) if given not in (None, "") else DEFAULT_CONNECT_TIMEOUT_S
        except ValueError:
            raise ValidationError(f"postgres URL option connect_timeout must be a number, got {given!r}") from None
        if connect_timeout_s <= 0:  # libpq: wait forever; lashstore promises a bound
            connect_timeout_s = DEFAULT_CONNECT_TIMEOUT_S
    # libpq counts whole seconds, at least 2.
    timeout = max(2, math.ceil(connect_timeout_s))
    params["connect_timeout"] = str(timeout)
    return psycopg.conninfo.make_conninfo(**params), params, timeout


def _positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or not math.isfinite(value):
        raise ValidationError(f"postgres option {name} must be a positive number, got {value!r}")


class PostgresDatabase:
    """A deployment on PostgreSQL: one database schema, one connection pool, one LISTEN hub.

    url: a libpq URL or DSN (`postgresql://user@host:5432/db`).
    schema: the schema holding the deployment's tables (created on first connect).
    min_size / max_size: pool bounds (upstream defaults: at most 16 connections).
    acquire_timeout_s: how long a caller waits for a pooled connection (30 s); then `StoreBusy`
        when all of them are in use, `StoreUnavailable` when the server does not answer.
    connect_timeout_s: how long one connection attempt waits for the server (whole seconds, at
        least 2; default libpq's `connect_timeout` from the URL, else 5 s).
    statement_timeout_ms / lock_timeout_ms: set on every connection (30 s / 10 s).

    Store objects (session stores, the factory, the registries) share one database object; it
    is closed by whoever created it (`owned=True` on the stores that opened it from a URL).
    """

    dialect = DIALECT

    @staticmethod
    def clock_for(options: StoreOptions) -> Clock | None:
        """The clock a transaction uses for `options`: None (the database's) unless a test clock is set."""
        return None if uses_database_clock(options) else options.clock

    def __init__(
        self,
        url: str,
        *,
        schema: str = DEFAULT_SCHEMA,
        min_size: int = 1,
        max_size: int = 16,
        acquire_timeout_s: float = DEFAULT_ACQUIRE_TIMEOUT_S,
        connect_timeout_s: float | None = None,
        statement_timeout_ms: int = 30_000,
        lock_timeout_ms: int = 10_000,
        max_idle_s: float = 600.0,
        max_lifetime_s: float = 1800.0,
        application_name: str = "lashstore",
    ) -> None:
        if not isinstance(url, str) or not url:
            raise ValidationError(f"postgres URL must be a non-empty string, got {url!r}")
        if isinstance(min_size, bool) or not isinstance(min_size, int) or min_size < 0:
            raise ValidationError(f"postgres option pool_min must be an integer >= 0, got {min_size!r}")
        if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1:
            raise ValidationError(f"postgres option pool_max must be an integer >= 1, got {max_size!r}")
        _positive("acquire_timeout_s", acquire_timeout_s)
        if connect_timeout_s is not None:
            _positive("connect_timeout_s", connect_timeout_s)
        self.url = url
        self.schema = check_schema_name(schema)
        self.conninfo, params, self.connect_timeout_s = _conninfo(
            url, self.schema, statement_timeout_ms, lock_timeout_ms, application_name, connect_timeout_s
        )
        #: host:port for messages (no password)
        self.server = _server_label(params)
        self.channel = "lashstore_" + hashlib.sha256(self.schema.encode()).hexdigest()[:24]
        self.acquire_timeout_s = float(acquire_timeout_s)
        self.max_size = max(max_size, min_size)
        self._closed = False
        self._lock = threading.Lock()
        self._ensured: set[str] = set()
        # Connections handed out (pooled and direct), and per pool (by id), so a pool time-out
        # can tell "all in use" from "the pool has none".
        self._held = 0
        self._held_by: dict[int, int] = {}
        # The last time the server was seen working (a transaction, a connection attempt).
        self._last_ok = 0.0
        # (error class, message) while the server is found unreachable, and when that was found.
        self._unreachable: tuple[type[LashStoreError], str] | None = None
        self._verdict_at = 0.0
        self._probe_lock = threading.Lock()
        self._pool_kwargs = dict(
            min_size=min_size,
            max_size=self.max_size,
            timeout=self.acquire_timeout_s,
            max_idle=max_idle_s,
            max_lifetime=max_lifetime_s,
        )
        # A clear error now, not a pool time-out later.
        self._probe(None).close()  # type: ignore[union-attr]
        self._pool = self._new_pool()
        self.hub = NotificationHub(self.conninfo, self.channel)

    def _new_pool(self) -> ConnectionPool:
        return ConnectionPool(
            self.conninfo,
            kwargs={"autocommit": True},
            num_workers=2,
            name=f"lashstore-{self.schema}",
            open=True,
            **self._pool_kwargs,
        )

    # -- connections -----------------------------------------------------------------------------
    def _probe(self, where: str | None, *, recheck: bool = False) -> psycopg.Connection | None:
        """A direct connection, or the typed error saying why there is none.

        Attempts are serialized, and callers that queued behind a failed attempt take its
        verdict: a burst of calls against a server that does not answer waits connect_timeout_s
        once, not once each. `recheck`: only while the server is found unreachable (None once
        another caller found it back)."""
        prefix = f"{where}: " if where else ""
        asked = time.monotonic()
        with self._probe_lock:
            verdict = self._unreachable
            if recheck and verdict is None:
                return None
            if verdict is not None and self._verdict_at >= asked:
                raise verdict[0](prefix + verdict[1])
            try:
                conn = psycopg.connect(self.conninfo, autocommit=True)
            except psycopg.Error as e:
                cls, msg = _connect_failure(e, self.server, self.connect_timeout_s)
                if cls is StoreUnavailable:
                    self._unreachable = (cls, msg)
                    self._verdict_at = time.monotonic()
                raise cls(prefix + msg) from None
            self._unreachable = None
            self._last_ok = time.monotonic()
            return conn

    def _acquire(self, where: str) -> tuple[psycopg.Connection, ConnectionPool | None]:
        """(connection, the pool it came from or None for a direct one); see the module doc."""
        self._check_open()
        if self._unreachable is not None:
            # Found unreachable before: ask the server now instead of waiting on the pool.
            pool = self._pool
            conn = self._probe(where, recheck=True)
            if conn is not None:
                if not pool.get_stats().get("pool_available", 0):
                    self._renew_pool(pool)  # it may sit in its reconnect back-off
                    if self._take_slot():
                        return conn, None
                conn.close()
        started = time.monotonic()
        while True:
            pool = self._pool
            try:
                conn = pool.getconn(timeout=max(0.05, started + self.acquire_timeout_s - time.monotonic()))
            except PoolClosed:
                if self._closed:
                    raise StoreClosed(f"postgres database {self.schema} is closed") from None
                if self._pool is not pool:
                    continue  # renewed meanwhile: wait on the new one
                raise
            except PoolTimeout:
                if self._closed:
                    raise StoreClosed(f"postgres database {self.schema} is closed") from None
                return self._after_pool_timeout(pool, started, where), None
            with self._lock:
                self._held += 1
                self._held_by[id(pool)] = self._held_by.get(id(pool), 0) + 1
            return conn, pool

    def _after_pool_timeout(self, pool: ConnectionPool, started: float, where: str) -> psycopg.Connection:
        with self._lock:
            lent = self._held_by.get(id(pool), 0)
        # No connection lent and none idle: the pool holds no live connection at all.
        empty = lent == 0 and not pool.get_stats().get("pool_available", 0)
        if not empty and self._last_ok >= started:
            raise self._exhausted(where, lent)  # the server worked meanwhile: no need to ask it
        conn = self._probe(where)  # raises when the server does not answer
        assert conn is not None
        if empty and self._take_slot():
            # The server answers but the pool has no connection: it could not connect (its
            # reconnect back-off outlasted an outage). Serve this call directly; start afresh.
            self._renew_pool(pool)
            return conn
        conn.close()
        raise self._exhausted(where, lent)

    def _exhausted(self, where: str, lent: int) -> StoreBusy:
        return StoreBusy(
            f"{where}: the connection pool is exhausted: no connection became free within "
            f"acquire_timeout_s={self.acquire_timeout_s:g} s ({lent} in use, pool_max={self.max_size}); "
            "raise pool_max, run fewer operations at once, or retry later"
        )

    def _take_slot(self) -> bool:
        with self._lock:
            if self._held >= self.max_size:
                return False
            self._held += 1
            return True

    def _release(self, conn: psycopg.Connection, pool: ConnectionPool | None) -> None:
        with self._lock:
            self._held -= 1
            if pool is not None:
                n = self._held_by.pop(id(pool), 1) - 1
                if n:
                    self._held_by[id(pool)] = n
        if pool is None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass
        else:
            pool.putconn(conn)

    def _renew_pool(self, stale: ConnectionPool) -> None:
        with self._lock:
            if self._closed or self._pool is not stale:
                return
            self._pool = self._new_pool()
        # Its workers may be inside a connection attempt: do not make the caller wait for them.
        threading.Thread(
            target=stale.close, kwargs={"timeout": self.connect_timeout_s + 1}, name="lashstore-pg-close", daemon=True
        ).start()

    # -- schema ----------------------------------------------------------------------------------
    def ensure(self, component: str) -> None:
        """Create or migrate `component`'s tables (once per database object)."""
        with self._lock:
            if component in self._ensured:
                return
        from .schema import ensure_component

        attempt = 0
        while True:
            attempt += 1
            self._check_open()
            conn = self._probe(f"create the {component} schema")
            assert conn is not None
            try:
                ensure_component(conn, self.schema, component)
                break
            except BackendError as e:
                # A connection lost mid-DDL rolled it back: do it again (the next connection
                # attempt says whether the server is still there).
                if not conn.broken or attempt >= 3:
                    if conn.broken:
                        raise BackendError(
                            f"create the {component} schema: the connection to the server kept breaking "
                            f"({_one_line(e.__cause__ or e)})"
                        ) from e
                    raise
            finally:
                conn.close()
        with self._lock:
            self._ensured.add(component)

    # -- the deployment's tables -----------------------------------------------------------------
    @property
    def location(self) -> str:
        return f"postgresql:{self.schema}"

    _SESSION_TABLES = ("session_head", "graph_nodes", "usage_deltas", "turn_commits", "session_meta",
                       "queued_work_batches", "queued_work_items", "attachment_manifest", "artifact_refs", "blobs")

    def shrink(self, tables: Sequence[str] | None = None) -> tuple[int, int, bool]:
        """`VACUUM` the schema's session tables (the shared blobs included), or `tables` (a
        registry's). Returns (bytes before, bytes after, True): `pg_total_relation_size` of those
        tables.

        Plain VACUUM, not VACUUM FULL (that takes an ACCESS EXCLUSIVE lock): it marks dead rows'
        space reusable without blocking readers or writers; PostgreSQL seldom hands it back to the
        file system. VACUUM cannot run in a transaction: it runs on an autocommit connection."""
        def size(conn: psycopg.Connection) -> int:
            row = conn.execute(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c JOIN pg_namespace n "
                "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = ANY(%s) AND c.relkind = 'r'",
                (self.schema, list(names)),
            ).fetchone()
            return int(row[0]) if row else 0

        names = self._SESSION_TABLES if tables is None else tuple(tables)
        try:
            with self.connection() as conn:
                before = size(conn)
                for table in names:
                    conn.execute(sql.SQL("VACUUM {}").format(sql.Identifier(self.schema, table)))
                return before, size(conn), True
        except psycopg.Error as e:
            raise translate(e, f"vacuum schema {self.schema}") from e

    def integrity_problems(self) -> list[tuple[str, str, str]]:
        """Nothing to add to the per-record checks: PostgreSQL enforces column types itself."""
        return []

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
                return self._attempt(fn, where, clock, begin)
            except _UnknownOutcome as u:
                e = u.__cause__
                if not write:  # a read-only transaction has no outcome to lose
                    connection += 1
                    if connection <= _RETRY_CONNECTION and not self._closed:
                        self._after_connection_loss(connection)
                        continue
                    raise translate(e, where) from e  # type: ignore[arg-type]
                raise BackendError(
                    f"{where}: the connection was lost while committing ({_one_line(e)}); the outcome is "
                    "unknown: read the state back before retrying (a turn stamp makes a commit retry safe)"
                ) from e
            except psycopg.Error as e:
                if isinstance(e, PoolTimeout):  # never retried (and never reaches here: see _acquire)
                    raise translate(e, where) from e
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

    def _after_connection_loss(self, attempt: int) -> None:
        # One dead connection often means more (a server restart, a network cut, an operator
        # terminating backends): have the pool check its idle connections before the retry.
        # The retry then waits on the pool at most acquire_timeout_s, and a server that does not
        # answer by then ends the retries with StoreUnavailable.
        try:
            self._pool.check()
        except Exception:  # noqa: BLE001 - the retry finds out anyway
            pass
        if attempt > 1:
            time.sleep(min(0.01 * (2 ** (attempt - 2)), 0.5))

    def _attempt(self, fn: Callable[[Tx], T], where: str, clock: Clock | None, begin: str) -> T:
        conn, pool = self._acquire(where)
        try:
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
        finally:
            self._release(conn, pool)
        self._last_ok = time.monotonic()
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

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A connection (context manager) for maintenance and tests, acquired like a transaction's."""
        conn, pool = self._acquire("connect")
        try:
            yield conn
        finally:
            self._rollback(conn)
            self._release(conn, pool)

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
            pool = self._pool
        self.hub.close()
        pool.close(timeout=5)

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
URL_PARAMETERS = {
    "schema",
    "pool_min",
    "pool_max",
    "statement_timeout_ms",
    "lock_timeout_ms",
    "acquire_timeout_s",
    "connect_timeout_s",
}


def split_url(url: str) -> tuple[str, dict[str, Any]]:
    """(libpq URL, PostgresDatabase keyword arguments) of a lashstore postgresql:// URL.

    `?schema=name` picks the deployment's schema (default "lashstore"); `pool_min`, `pool_max`,
    `statement_timeout_ms`, `lock_timeout_ms`, `acquire_timeout_s` and `connect_timeout_s` tune
    the pool (see `PostgresDatabase`). Other query parameters (sslmode, ...) are libpq's and
    stay in the URL.
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
            elif key in ("acquire_timeout_s", "connect_timeout_s"):
                kw[key] = float(value)
            else:
                kw[key] = int(value)
        except ValueError:
            raise ValidationError(f"postgres URL option {key} must be a number, got {value!r}") from None
    scheme = "postgresql" if parts.scheme in ("postgres", "postgresql") else parts.scheme
    clean = urllib.parse.urlunsplit((scheme, parts.netloc, parts.path, urllib.parse.urlencode(keep), parts.fragment))
    return clean, kw


def open_database(target: "PostgresDatabase | str", schema: str | None,
                  component: str | None = None) -> tuple[PostgresDatabase, bool]:
    """(database, whether the caller owns it) for a store given a URL or a shared database; with
    `component`, its tables created or migrated (an owned database is closed again on failure)."""
    if component is not None:
        db, owned = open_database(target, schema)
        try:
            db.ensure(component)
        except BaseException:
            if owned:
                db.close()
            raise
        return db, owned
    if isinstance(target, PostgresDatabase):
        if schema is not None and schema != target.schema:
            raise ValidationError(f"schema {schema!r} differs from the shared database's {target.schema!r}")
        return target, False
    url, kw = split_url(target) if "://" in target else (target, {})
    if schema is not None:
        kw["schema"] = schema
    return PostgresDatabase(url, **kw), True
