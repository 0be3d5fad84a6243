"""Effect replay on SQLite: the effect engine over one SQLite file (`effects.db` of a deployment).

A claim is one BEGIN IMMEDIATE transaction, so two processes asking for the same key serialise
and exactly one claims. Everything else is `lashstore.engine.effects`.
"""

from __future__ import annotations

from pathlib import Path

from ...engine.effects import EffectEngine
from ...model.session import DurabilityTier
from ...options import StoreOptions
from ...rules.effects import EffectPolicy
from .connection import Database
from .effects_schema import KIND, MIGRATIONS

__all__ = ["SqliteEffectStore"]


class SqliteEffectStore(EffectEngine):
    """Recorded effect outcomes in one SQLite file (":memory:": a private in-memory database,
    durability tier inline). Thread-safe; share one per process. See `EffectEngine` for the
    arguments."""

    def __init__(self, path: str | Path, options: StoreOptions | None = None, lease_ttl_ms: int = 30_000, *,
                 heartbeat: bool = True, strict: bool = False, policy: EffectPolicy | None = None) -> None:
        self.path = str(path)
        memory = self.path == ":memory:"

        def open_db(opts: StoreOptions) -> tuple[Database, bool]:
            return Database(self.path, kind=KIND, migrations=MIGRATIONS, synchronous=opts.synchronous,
                            busy_timeout_ms=opts.busy_timeout_ms, readonly=opts.readonly and not memory), True

        super().__init__(open_db, options, lease_ttl_ms, heartbeat=heartbeat, strict=strict, policy=policy,
                         tier=DurabilityTier.INLINE if memory else DurabilityTier.DURABLE)

