"""`memory://` host events: the SQLite store on a private in-memory database (durability tier
inline), running the same code as every other backend."""

from __future__ import annotations

from ...options import StoreOptions
from ..sqlite.host_events import SqliteHostEventStore

__all__ = ["MemoryHostEventStore"]


class MemoryHostEventStore(SqliteHostEventStore):
    def __init__(self, options: StoreOptions | None = None) -> None:
        super().__init__(":memory:", options)
