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

import msgspec

from ...options import StoreOptions
from ..common import decode_copy_mark
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


#: A one-row table in the schema while `lashstore copy` into it has not finished.
COPY_MARK_TABLE = "lashstore_copy_in_progress"


class PostgresStorage:
    """What the operations see of a PostgreSQL deployment: one schema for everything."""

    shared = True  # every session of the deployment in one database

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    @property
    def location(self) -> str:
        return self._db.location

    def session_bytes(self, session_id: str) -> int:
        return 0  # sessions share the schema's tables

    def session_path(self, session_id: str) -> None:
        return None

    def has_registry(self, name: str) -> bool:
        return True

    def registry_bytes(self) -> int:
        return 0

    def copy_mark(self) -> dict[str, Any] | None:
        def tx(t: Any) -> Any:
            if t.one("SELECT to_regclass(?)", (f"{self._db.schema}.{COPY_MARK_TABLE}",))[0] is None:
                return None
            row = t.one(f"SELECT mark FROM {COPY_MARK_TABLE} LIMIT 1")
            return None if row is None else row[0]

        return decode_copy_mark(self._db.read(tx, "read the copy mark"))

    def set_copy_mark(self, mark: dict[str, Any] | None) -> None:
        def tx(t: Any) -> None:
            if mark is None:
                t.execute(f"DROP TABLE IF EXISTS {COPY_MARK_TABLE}")
                return
            t.execute(f"CREATE TABLE IF NOT EXISTS {COPY_MARK_TABLE} (mark TEXT NOT NULL)")
            t.execute(f"DELETE FROM {COPY_MARK_TABLE}")
            t.execute(f"INSERT INTO {COPY_MARK_TABLE} (mark) VALUES (?)", (msgspec.json.encode(mark).decode(),))

        self._db.write(tx, "unmark the copy" if mark is None else "mark the destination as a copy")

    def migrate(self, *, dry_run: bool, progress: Callable[[str, int, int], None] | None = None) -> list[Any]:
        """Every component's schema version, brought to this release's (on connect, as always)."""
        from ...model.maintenance import FileMigration
        from .schema import COMPONENTS, component_version, latest

        out = []
        for i, component in enumerate(COMPONENTS, 1):
            before = component_version(self._db, component)
            after = before
            if not dry_run:
                self._db.ensure(component)
                after = component_version(self._db, component)
            elif before is not None and before < latest(component):
                after = latest(component)
            out.append(FileMigration(path=f"{self._db.location}/{component}", kind=component, before=before,
                                     after=after, latest=latest(component)))
            if progress is not None:
                progress("migrating", i, len(COMPONENTS))
        return out


def deployment_parts(url: str, options: StoreOptions) -> tuple[Any, dict[str, Callable[[], Any]], PostgresStorage, StoreOptions]:
    """(session factory, openers of the other components, storage, options) of a postgresql://
    deployment URL.

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

    def processes(readonly: bool = False) -> Any:
        from .processes import PostgresProcessRegistry

        return PostgresProcessRegistry(db, options)

    def host_events(readonly: bool = False) -> Any:
        from .host_events import PostgresHostEventStore

        return PostgresHostEventStore(db, options)

    def effects(readonly: bool = False) -> Any:
        from .effects import PostgresEffectStore

        return PostgresEffectStore(db, options)

    return factory, {"processes": processes, "host_events": host_events, "effects": effects}, \
        PostgresStorage(db), options
