"""Host events on SQLite: the engine over one file (`host_events.db`), or a private in-memory
database. Every mutation is one BEGIN IMMEDIATE transaction, so the engine's check-then-act
sequences serialise across connections and processes."""

from __future__ import annotations

from pathlib import Path

from ...engine.host_events import HostEventEngine
from ...model.session import DurabilityTier
from ...options import StoreOptions
from .connection import Database
from .host_events_schema import KIND, MIGRATIONS

__all__ = ["SqliteHostEventStore"]


class SqliteHostEventStore(HostEventEngine):
    """Trigger subscriptions and host-event occurrences in one SQLite file (":memory:": a private
    in-memory database, durability tier inline). Thread-safe."""

    def __init__(self, path: str | Path, options: StoreOptions | None = None) -> None:
        opts = options or StoreOptions()
        self.path = str(path)
        memory = self.path == ":memory:"
        db = Database(self.path, kind=KIND, migrations=MIGRATIONS, synchronous=opts.synchronous,
                      busy_timeout_ms=opts.busy_timeout_ms, readonly=opts.readonly and not memory)
        super().__init__(db, options=opts, tier=DurabilityTier.INLINE if memory else DurabilityTier.DURABLE)

