"""Effect replay on PostgreSQL: the effect engine over the deployment's schema.

A claim takes a transaction advisory lock on the effect's key (its row may not exist yet), then
the row `FOR UPDATE`. Lease times come from the database clock unless the options inject one. A
caller waiting on another owner's lease is woken by the NOTIFY its finish or release sends, with
the engine's backoff as the fallback. Everything else is `lashstore.engine.effects`.
"""

from __future__ import annotations

from ...engine.effects import EffectEngine, effect_topic
from ...options import StoreOptions
from ...rules.effects import EffectPolicy
from .connection import PostgresDatabase, open_database

__all__ = ["PostgresEffectStore", "COMPONENT", "effect_topic"]

COMPONENT = "effects"


class PostgresEffectStore(EffectEngine):
    """Recorded effect outcomes in the deployment's schema. Thread-safe; share one per process.

    database: a `PostgresDatabase` shared with the deployment, or a URL (then owned; `schema`
        chooses the schema). See `EffectEngine` for the other arguments.
    """

    def __init__(self, database: PostgresDatabase | str, options: StoreOptions | None = None,
                 lease_ttl_ms: int = 30_000, *, heartbeat: bool = True, strict: bool = False,
                 policy: EffectPolicy | None = None, schema: str | None = None) -> None:
        super().__init__(lambda opts: open_database(database, schema, COMPONENT), options, lease_ttl_ms,
                         heartbeat=heartbeat, strict=strict, policy=policy)

    @property
    def schema(self) -> str:
        return self._db.schema  # type: ignore[attr-defined]
