"""`memory://` effect replay: the SQLite effect store in a private in-memory database, running
the same code (durability tier inline: recorded outcomes live as long as the store object)."""

from __future__ import annotations

from ...options import StoreOptions
from ...rules.effects import EffectPolicy
from ..sqlite.effects import SqliteEffectStore

__all__ = ["MemoryEffectStore"]


class MemoryEffectStore(SqliteEffectStore):
    def __init__(self, options: StoreOptions | None = None, lease_ttl_ms: int = 30_000, *, heartbeat: bool = True,
                 strict: bool = False, policy: EffectPolicy | None = None) -> None:
        super().__init__(":memory:", options, lease_ttl_ms, heartbeat=heartbeat, strict=strict, policy=policy)
