"""Host events on PostgreSQL: the engine over the deployment's schema. Recording an occurrence
takes a transaction advisory lock on its id (the row may not exist yet); reserving deliveries
locks the occurrence row (`FOR UPDATE`); numbers come from `host_event_counters` rows, updated in
the writing transaction (never SEQUENCEs: dense, in commit order; upstream bug 8)."""

from __future__ import annotations

from ...engine.host_events import HostEventEngine
from ...options import StoreOptions
from .connection import PostgresDatabase, open_database

__all__ = ["PostgresHostEventStore", "COMPONENT"]

COMPONENT = "host events"


class PostgresHostEventStore(HostEventEngine):
    """Trigger subscriptions and host-event occurrences in the deployment's schema. Thread-safe.

    database: a `PostgresDatabase` shared with other stores, or a URL (the store then opens and
        owns its own pool; `schema` chooses the schema, default "lashstore")."""

    def __init__(self, database: PostgresDatabase | str, options: StoreOptions | None = None, *,
                 schema: str | None = None) -> None:
        db, owned = open_database(database, schema, COMPONENT)
        super().__init__(db, options=options, owns_db=owned)

    @property
    def database(self) -> PostgresDatabase:
        return self._db  # type: ignore[return-value]

    @property
    def schema(self) -> str:
        return self._db.schema  # type: ignore[attr-defined]
