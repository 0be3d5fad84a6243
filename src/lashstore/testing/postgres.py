"""Conformance harnesses on PostgreSQL, plus the helpers tests and benchmarks share.

Every store a harness opens gets a schema of its own in the given database, so no two scenarios
(and no two stores of one scenario) ever see each other; `reopen` opens a second store object,
with its own connection pool, on the same schema. Schemas are left behind: run the suites in a
throw-away database (`create_test_database` / `drop_test_database`).

    url = create_test_database("postgresql://postgres@127.0.0.1:5432/test")
    harness = postgres_harness(url)
    for scenario in SESSION_SCENARIOS + REOPEN_SCENARIOS:
        scenario(harness)
    harness.close()
    drop_test_database("postgresql://postgres@127.0.0.1:5432/test", url)
"""

from __future__ import annotations

import itertools
import secrets
from typing import Any

from ..model.session import DurabilityTier
from ..options import StoreOptions
from .effect_suite import EffectHarness
from .harness import SessionHarness
from .host_event_suite import HostEventHarness
from .process_suite import ProcessHarness

__all__ = [
    "DEFAULT_TEST_URL",
    "server_problem",
    "create_test_database",
    "drop_test_database",
    "fresh_schema",
    "postgres_harness",
    "postgres_process_harness",
    "postgres_host_event_harness",
    "postgres_effect_harness",
]

DEFAULT_TEST_URL = "postgresql://postgres@127.0.0.1:5432/test"

_counter = itertools.count(1)


def fresh_schema(prefix: str = "t") -> str:
    """A schema name no other harness uses."""
    return f"{prefix}_{next(_counter)}_{secrets.token_hex(4)}"


def server_problem(url: str, timeout_s: int = 3) -> str | None:
    """None when a PostgreSQL server answers at `url`, else why not."""
    try:
        import psycopg
    except ImportError as e:  # pragma: no cover - depends on the environment
        return f"psycopg is not installed ({e}); pip install 'lashstore[postgres]'"
    try:
        psycopg.connect(url, connect_timeout=timeout_s).close()
    except psycopg.Error as e:
        return f"no PostgreSQL server answers at {url}: {str(e).strip()}"
    return None


def _with_dbname(url: str, dbname: str) -> str:
    import psycopg.conninfo

    params = psycopg.conninfo.conninfo_to_dict(url)
    params["dbname"] = dbname
    return psycopg.conninfo.make_conninfo(**params)


def create_test_database(base_url: str, prefix: str = "lashstore_test") -> str:
    """Create a fresh database next to `base_url`'s and return its URL (conninfo form)."""
    import psycopg
    from psycopg import sql

    name = f"{prefix}_{secrets.token_hex(6)}"
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return _with_dbname(base_url, name)


def drop_test_database(base_url: str, url: str) -> None:
    """Drop the database `url` names (terminating whatever is still connected to it)."""
    import psycopg
    import psycopg.conninfo
    from psycopg import sql

    name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _db(url: str, schema: str, **kw: Any) -> Any:
    from ..backends.postgres.connection import PostgresDatabase

    return PostgresDatabase(url, schema=schema, min_size=1, max_size=kw.pop("max_size", 8), **kw)


def postgres_harness(url: str) -> SessionHarness:
    """Session (and queue, attachment) scenarios on PostgreSQL: a schema per store."""
    from ..backends.postgres import PostgresSessionStore, PostgresSessionStoreFactory

    def open_store(options: StoreOptions | None) -> Any:
        return PostgresSessionStore(url, options=options, schema=fresh_schema("s"))

    def open_factory() -> Any:
        return PostgresSessionStoreFactory(url, schema=fresh_schema("f"))

    def reopen_store(store: Any) -> Any:
        return PostgresSessionStore(url, options=store.options, schema=store.schema)

    def reopen_factory(factory: Any) -> Any:
        return PostgresSessionStoreFactory(url, options=factory.options, schema=factory._db.schema)

    return SessionHarness(
        name="postgres",
        expected_tier=DurabilityTier.DURABLE,
        open_store=open_store,
        open_factory=open_factory,
        reopen_store=reopen_store,
        reopen_factory=reopen_factory,
    )


def postgres_process_harness(url: str) -> ProcessHarness:
    from ..backends.postgres.processes import PostgresProcessRegistry

    def open_registry(options: StoreOptions | None, validator: Any) -> Any:
        return PostgresProcessRegistry(url, options, validator=validator, schema=fresh_schema("p"))

    def reopen_registry(reg: Any) -> Any:
        return PostgresProcessRegistry(url, reg.options, schema=reg.schema)

    return ProcessHarness(
        name="postgres",
        expected_tier=DurabilityTier.DURABLE,
        open_registry=open_registry,
        reopen_registry=reopen_registry,
    )


def postgres_host_event_harness(url: str) -> HostEventHarness:
    from ..backends.postgres.host_events import PostgresHostEventStore

    return HostEventHarness(
        name="postgres",
        expected_tier=DurabilityTier.DURABLE,
        open_store=lambda options: PostgresHostEventStore(url, options, schema=fresh_schema("h")),
        reopen_store=lambda store: PostgresHostEventStore(url, store.options, schema=store.schema),
    )


def postgres_effect_harness(url: str) -> EffectHarness:
    from ..backends.postgres.effects import PostgresEffectStore

    return EffectHarness(
        name="postgres",
        expected_tier=DurabilityTier.DURABLE,
        open_store=lambda options, **kw: PostgresEffectStore(url, options, schema=fresh_schema("e"), **kw),
        reopen_store=lambda store: PostgresEffectStore(
            url, store.options, store.lease_ttl_ms, heartbeat=store.heartbeat_enabled, schema=store.schema
        ),
    )
