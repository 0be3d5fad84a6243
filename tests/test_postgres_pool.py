"""PostgreSQL connections and the pool: bounded, typed failures.

* A server that does not answer (closed port, unknown host, a socket that never speaks) gives
  `StoreUnavailable` within connect_timeout_s, on one line naming host:port, never the password;
  also through the CLI.
* A server that goes away after opening (a TCP relay we cut) gives `StoreUnavailable` within
  acquire_timeout_s + connect_timeout_s, for reads and commits alike, then at once while it stays
  away; schema creation too. When it comes back the store carries on, nothing acknowledged lost.
* An exhausted pool (pool_max=1, the connection held by another thread) gives `StoreBusy` after
  about acquire_timeout_s, never retried into minutes.
* Every pooled connection killed by the server (`pg_terminate_backend`) is still retried as
  before: the next calls succeed and no acknowledged commit is lost.

Time bounds are asserted generously (a loaded 2-core machine must not flake them).
"""

from __future__ import annotations

import io
import socket
import sys
import threading
import time
import urllib.parse
from contextlib import redirect_stderr, redirect_stdout

import pytest

psycopg = pytest.importorskip("psycopg")

import lashstore  # noqa: E402
from lashstore.backends.postgres import PostgresDatabase, PostgresSessionStore, split_url  # noqa: E402
from lashstore.errors import StoreBusy, StoreUnavailable, ValidationError  # noqa: E402
from lashstore.model.session import (  # noqa: E402
    GraphReplaceFull,
    HydratedSessionCheckpoint,
    RuntimeCommit,
    TokenLedgerEntry,
    TokenUsage,
    TurnCommitStamp,
)
from lashstore.rules.commit import turn_commit_hash  # noqa: E402
from lashstore.testing.postgres import fresh_schema  # noqa: E402
from lashstore.testing.session_suite import node  # noqa: E402
from postgres_support import postgres_url  # noqa: E402,F401 - the fixture

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX sockets")

SLACK_S = 3.0  # scheduling noise allowed on top of every bound


def _free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _one_line(message: str) -> None:
    assert "\n" not in message and "\t" not in message, repr(message)


def _commit(session_id: str, i: int) -> RuntimeCommit:
    c = RuntimeCommit(
        session_id=session_id,
        config={"provider_id": "mock", "model": {"id": "m"}},
        graph=GraphReplaceFull([node(f"n{i}")], f"n{i}"),
        checkpoint=HydratedSessionCheckpoint(turn_state={"turn_index": i}, tool_state={"i": i}),
        usage_deltas=[TokenLedgerEntry("turn", "m", TokenUsage(input_tokens=1))],
    )
    # Stamped, so a retry after an unknown outcome replays instead of doubling.
    return c.with_turn_commit(TurnCommitStamp(session_id, f"turn-{i}", turn_commit_hash(c)))


class _Relay:
    """A TCP relay to the test server that can be cut (listener closed, every relayed connection
    shut) and restored on the same port: a server going away and coming back, without touching
    the real server other tests share."""

    def __init__(self, upstream: dict) -> None:
        host = upstream.get("host") or "127.0.0.1"
        port = int(upstream.get("port") or 5432)
        self._unix = f"{host.rstrip('/')}/.s.PGSQL.{port}" if host.startswith("/") else None
        self._target = (host, port)
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self._up = threading.Event()
        self.port = 0
        self.start()

    def _connect_upstream(self) -> socket.socket:
        if self._unix:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(self._unix)
            return s
        return socket.create_connection(self._target, timeout=5)

    def start(self) -> None:
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", self.port))
        ls.listen(64)
        ls.settimeout(0.05)
        self.port = ls.getsockname()[1]
        self._listener = ls
        self._up.set()
        threading.Thread(target=self._accept, args=(ls,), daemon=True).start()

    def _accept(self, ls: socket.socket) -> None:
        while self._up.is_set():
            try:
                client, _ = ls.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                server = self._connect_upstream()
            except OSError:
                client.close()
                continue
            client.settimeout(None)
            server.settimeout(None)
            with self._lock:
                self._sockets += [client, server]
            threading.Thread(target=self._pipe, args=(client, server), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client), daemon=True).start()
        ls.close()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        """The server goes away: new connections refused, open ones closed."""
        self._up.clear()
        ls, self._listener = self._listener, None
        if ls is not None:
            ls.close()
        with self._lock:
            socks, self._sockets = self._sockets, []
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        time.sleep(0.2)  # the accept thread notices and lets the port go

    def url(self, upstream: dict, **query: object) -> str:
        user = urllib.parse.quote(upstream.get("user") or "postgres")
        password = f":{urllib.parse.quote(upstream['password'])}" if upstream.get("password") else ""
        return f"postgresql://{user}{password}@127.0.0.1:{self.port}/{upstream['dbname']}?" + urllib.parse.urlencode(
            query
        )


def _params(dsn: str) -> dict:
    return psycopg.conninfo.conninfo_to_dict(dsn)


# -- URL options ----------------------------------------------------------------------------------


def test_url_pool_options_are_parsed_and_checked():
    url, kw = split_url(
        "postgresql://u@h:5433/db?schema=s1&pool_min=0&pool_max=3&acquire_timeout_s=1.5"
        "&connect_timeout_s=4&statement_timeout_ms=100&lock_timeout_ms=50&sslmode=disable"
    )
    assert url == "postgresql://u@h:5433/db?sslmode=disable"
    assert kw == {
        "schema": "s1",
        "min_size": 0,
        "max_size": 3,
        "acquire_timeout_s": 1.5,
        "connect_timeout_s": 4.0,
        "statement_timeout_ms": 100,
        "lock_timeout_ms": 50,
    }
    with pytest.raises(ValidationError, match="connect_timeout_s"):
        split_url("postgresql://u@h/db?connect_timeout_s=soon")
    for bad in ("pool_max=0", "acquire_timeout_s=0", "acquire_timeout_s=-1", "connect_timeout_s=0", "pool_min=-1"):
        _, kw = split_url(f"postgresql://u@h:{_free_port()}/db?{bad}")
        with pytest.raises(ValidationError):
            PostgresDatabase(f"postgresql://u@127.0.0.1:{_free_port()}/db", **kw)


# -- a server that does not answer ----------------------------------------------------------------


def test_closed_port_is_store_unavailable_at_once_on_one_line():
    port = _free_port()
    t0 = time.monotonic()
    with pytest.raises(StoreUnavailable) as info:
        lashstore.open(f"postgresql://postgres:hunter2@127.0.0.1:{port}/test?schema=s")
    elapsed = time.monotonic() - t0
    message = str(info.value)
    _one_line(message)
    assert f"127.0.0.1:{port}" in message and "connection refused" in message, message
    assert "start it or fix the URL" in message, message
    assert "hunter2" not in message
    assert elapsed < 5 + SLACK_S, elapsed  # refused: no timeout involved


def test_unknown_host_is_store_unavailable():
    host = "no-such-host.invalid"
    try:
        socket.getaddrinfo(host, 5432)
    except OSError:
        pass
    else:  # pragma: no cover - a resolver that answers for .invalid
        pytest.skip(f"the resolver answers for {host}")
    with pytest.raises(StoreUnavailable) as info:
        PostgresDatabase(f"postgresql://postgres@{host}:5432/test")
    _one_line(str(info.value))
    assert f"{host}:5432" in str(info.value) and "unknown host name" in str(info.value)


def test_silent_server_is_store_unavailable_within_connect_timeout():
    # Accepts TCP (the kernel's backlog does) but never says a word.
    silent = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    port = silent.getsockname()[1]
    try:
        t0 = time.monotonic()
        with pytest.raises(StoreUnavailable) as info:
            lashstore.open(f"postgresql://postgres@127.0.0.1:{port}/test?connect_timeout_s=2")
        elapsed = time.monotonic() - t0
    finally:
        silent.close()
    _one_line(str(info.value))
    assert "no answer within connect_timeout_s=2 s" in str(info.value), str(info.value)
    assert 1.5 <= elapsed < 2 + SLACK_S, elapsed


def test_cli_says_connection_refused_on_one_line():
    from lashstore.cli import main

    port = _free_port()
    err, out = io.StringIO(), io.StringIO()
    with redirect_stderr(err), redirect_stdout(out):
        code = main(["sessions", "--store", f"postgresql://postgres:hunter2@127.0.0.1:{port}/test"])
    text = err.getvalue().strip()
    assert code != 0
    assert text.count("\n") == 0, text
    assert "connection refused" in text and f"127.0.0.1:{port}" in text and "hunter2" not in text, text


# -- a server that goes away and comes back -------------------------------------------------------


def test_server_going_away_is_store_unavailable_within_the_bound(postgres_url):  # noqa: F811
    upstream = _params(postgres_url)
    relay = _Relay(upstream)
    acquire_s, connect_s = 2.0, 2
    bound = acquire_s + connect_s + SLACK_S
    url = relay.url(
        upstream, schema=fresh_schema("away"), pool_max=4, acquire_timeout_s=acquire_s, connect_timeout_s=connect_s
    )
    dep = lashstore.open(url)
    try:
        store = dep.sessions.create_store("s")
        for i in (1, 2, 3):
            assert store.commit_runtime_state(_commit("s", i)).head_revision == i

        relay.cut()
        # A read: the first call after the server went away.
        t0 = time.monotonic()
        with pytest.raises(StoreUnavailable) as info:
            store.load_head()
        first = time.monotonic() - t0
        message = str(info.value)
        _one_line(message)
        assert f"127.0.0.1:{relay.port}" in message and "connection refused" in message, message
        assert first < bound, first

        # Found unreachable: later calls, a commit included, ask the server directly and fail at
        # once (connection refused), without waiting on the pool.
        for call in (lambda: store.commit_runtime_state(_commit("s", 4)), store.load_head, store.load_session):
            t0 = time.monotonic()
            with pytest.raises(StoreUnavailable):
                call()
            assert time.monotonic() - t0 < connect_s + SLACK_S

        # Another session's first open (schema known, the store row written) fails the same way.
        t0 = time.monotonic()
        with pytest.raises(StoreUnavailable):
            dep.sessions.create_store("t")
        assert time.monotonic() - t0 < bound

        relay.start()  # the server is back, same address
        assert store.load_head().head_revision == 3
        assert store.commit_runtime_state(_commit("s", 4)).head_revision == 4
        for i in range(5, 15):  # the renewed pool carries on
            assert store.commit_runtime_state(_commit("s", i)).head_revision == i
        read = store.load_session()
        assert read.head_revision == 14 and read.checkpoint.tool_state == {"i": 14}
        assert store.load_usage()[0].usage.input_tokens == 14
    finally:
        relay.cut()
        dep.close()


def test_commit_while_the_server_is_away_is_bounded_once(postgres_url):  # noqa: F811
    # The first call after the outage is a commit: it must not wait twice (retry on top of retry).
    upstream = _params(postgres_url)
    relay = _Relay(upstream)
    acquire_s, connect_s = 2.0, 2
    url = relay.url(
        upstream, schema=fresh_schema("away"), pool_max=2, acquire_timeout_s=acquire_s, connect_timeout_s=connect_s
    )
    dep = lashstore.open(url)
    try:
        store = dep.sessions.create_store("s")
        assert store.commit_runtime_state(_commit("s", 1)).head_revision == 1
        relay.cut()
        t0 = time.monotonic()
        with pytest.raises(StoreUnavailable) as info:
            store.commit_runtime_state(_commit("s", 2))
        assert time.monotonic() - t0 < acquire_s + connect_s + SLACK_S
        _one_line(str(info.value))
        relay.start()
        # Nothing of the refused commit was written; it goes through now (stamped: idempotent).
        assert store.load_head().head_revision == 1
        assert store.commit_runtime_state(_commit("s", 2)).head_revision == 2
    finally:
        relay.cut()
        dep.close()


def test_schema_creation_when_the_server_went_away(postgres_url):  # noqa: F811
    upstream = _params(postgres_url)
    relay = _Relay(upstream)
    url = relay.url(upstream, connect_timeout_s=2)
    db_url, kw = split_url(url)
    db = PostgresDatabase(db_url, schema=fresh_schema("first"), **kw)  # the server answered the open
    try:
        relay.cut()
        t0 = time.monotonic()
        with pytest.raises(StoreUnavailable) as info:
            db.ensure("session")
        assert time.monotonic() - t0 < 2 + SLACK_S
        _one_line(str(info.value))
        assert "create the session schema" in str(info.value)
        relay.start()
        db.ensure("session")  # and works once the server is back
    finally:
        relay.cut()
        db.close()


# -- an exhausted pool ----------------------------------------------------------------------------


def test_exhausted_pool_is_store_busy_after_acquire_timeout(postgres_url):  # noqa: F811
    upstream = _params(postgres_url)
    user = urllib.parse.quote(upstream.get("user") or "postgres")
    password = f":{urllib.parse.quote(upstream['password'])}" if upstream.get("password") else ""
    host = upstream.get("host") or "127.0.0.1"
    netloc = f"{user}{password}@{host if not host.startswith('/') else ''}:{upstream.get('port') or 5432}"
    query = f"schema={fresh_schema('busy')}&pool_max=1&acquire_timeout_s=1"
    if host.startswith("/"):
        query += f"&host={urllib.parse.quote(host)}"
    dep = lashstore.open(f"postgresql://{netloc}/{upstream['dbname']}?{query}")
    holding = threading.Event()
    release = threading.Event()
    try:
        store = dep.sessions.create_store("s")
        assert store.commit_runtime_state(_commit("s", 1)).head_revision == 1
        db = dep.sessions.database

        def hold(tx):
            tx.one("SELECT 1")
            holding.set()
            release.wait(30)

        holder = threading.Thread(target=lambda: db.write(hold, "hold the only connection"), daemon=True)
        holder.start()
        assert holding.wait(10)

        for call in (store.load_head, lambda: store.commit_runtime_state(_commit("s", 2))):
            t0 = time.monotonic()
            with pytest.raises(StoreBusy) as info:
                call()
            elapsed = time.monotonic() - t0
            assert not isinstance(info.value, StoreUnavailable)
            message = str(info.value)
            _one_line(message)
            assert "exhausted" in message and "pool_max" in message, message
            assert 0.9 <= elapsed < 1 + SLACK_S, elapsed

        release.set()
        holder.join(10)
        assert store.load_head().head_revision == 1
        assert store.commit_runtime_state(_commit("s", 2)).head_revision == 2
    finally:
        release.set()
        dep.close()


# -- connections killed by a live server ----------------------------------------------------------


def test_every_pooled_connection_killed_is_retried(postgres_url):  # noqa: F811
    upstream = _params(postgres_url)
    app = f"lashstore_kill_{fresh_schema('k')}"
    store = PostgresSessionStore(
        f"{postgres_url} application_name={app}", session_id="s", schema=fresh_schema("kill")
    )
    db = store.database
    try:
        acknowledged = 0
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            for round_ in range(5):
                # Several connections busy at once, so the pool holds more than one.
                threads = [threading.Thread(target=store.load_session) for _ in range(4)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(30)
                killed = admin.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = %s AND application_name = %s",
                    (upstream["dbname"], app),
                ).fetchone()[0]
                assert killed > 0
                for _ in range(3):
                    acknowledged += 1
                    assert store.commit_runtime_state(_commit("s", acknowledged)).head_revision == acknowledged
                    assert store.load_head().head_revision == acknowledged
        assert db.pool_stats()["pool_max"] == 16
        read = store.load_session()
        assert read.head_revision == acknowledged and read.checkpoint.tool_state == {"i": acknowledged}
    finally:
        store.close()
