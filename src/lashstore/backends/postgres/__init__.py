"""PostgreSQL backend: a whole deployment in one database schema (psycopg 3 + psycopg_pool).

    import lashstore
    with lashstore.open("postgresql://user@host:5432/db?schema=lashstore") as dep:
        store = dep.sessions.create_store("chat-1")

Requires the `postgres` extra: pip install 'lashstore[postgres]'.

URL options (everything else in the query goes to libpq: sslmode, application_name, ...):

* `schema`: the deployment's schema (default "lashstore"), created on first connect;
* `pool_min`, `pool_max`: pool bounds (default 1 and 16 connections);
* `acquire_timeout_s`: how long an operation waits for a pooled connection (default 30 s); then
  `StoreBusy` when all `pool_max` connections are in use, `StoreUnavailable` when the server
  does not answer;
* `connect_timeout_s`: how long one connection attempt waits for the server (default 5 s, or
  libpq's `connect_timeout` when the URL gives that; whole seconds, at least 2);
* `statement_timeout_ms`, `lock_timeout_ms`: set on every connection (default 30 s and 10 s).

A server that does not answer raises `StoreUnavailable` (one line: host:port and the reason) when
opening within `connect_timeout_s`; when it goes away later, within `acquire_timeout_s +
connect_timeout_s` (35 s by default), then within `connect_timeout_s` (at once when the
connection is refused) while it stays away. Name resolution comes on top of `connect_timeout_s`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ...options import StoreOptions
from .connection import DEFAULT_SCHEMA, PostgresDatabase, split_url, uses_database_clock
from .sessions import PostgresSessionStore, PostgresSessionStoreFactory

__all__ = [
    "DEFAULT_SCHEMA",
    "PostgresDatabase",
    "PostgresSessionStore",
    "PostgresSessionStoreFactory",
    "PostgresProcessRegistry",
    "PostgresHostEventStore",
    "PostgresEffectStore",
    "deployment_parts",
    "split_url",
    "uses_database_clock",
]


def __getattr__(name: str) -> Any:
    # The registries import on first use, like the SQLite ones in lashstore.open.
    if name == "PostgresProcessRegistry":
        from .processes import PostgresProcessRegistry

        return PostgresProcessRegistry
    if name == "PostgresHostEventStore":
        from .host_events import PostgresHostEventStore

        return PostgresHostEventStore
    if name == "PostgresEffectStore":
        from .effects import PostgresEffectStore

        return PostgresEffectStore
    raise AttributeError(name)


def deployment_parts(url: str, options: StoreOptions) -> tuple[PostgresSessionStoreFactory, dict[str, Callable[[], Any]]]:
    """(session factory, openers of the other components) of a postgresql:// deployment URL.

    Every component shares one `PostgresDatabase` (one pool, one LISTEN connection); the factory
    owns it and closes it last.
    """
    db_url, kw = split_url(url)
    db = PostgresDatabase(db_url, **kw)
    try:
        factory = PostgresSessionStoreFactory(db, options, own_database=True)
    except BaseException:
        db.close()
        raise

    def processes() -> Any:
        from .processes import PostgresProcessRegistry

        return PostgresProcessRegistry(db, options)

    def host_events() -> Any:
        from .host_events import PostgresHostEventStore

        return PostgresHostEventStore(db, options)

    def effects() -> Any:
        from .effects import PostgresEffectStore

        return PostgresEffectStore(db, options)

    return factory, {"processes": processes, "host_events": host_events, "effects": effects}
