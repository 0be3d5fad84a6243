"""The process registry of `memory://`: SQLite in memory, running the same code as the others."""

from __future__ import annotations

from ...options import StoreOptions
from ...rules.process import PayloadValidator
from ..sqlite.processes import SqliteProcessRegistry

__all__ = ["MemoryProcessRegistry"]


class MemoryProcessRegistry(SqliteProcessRegistry):
    """A registry in a private in-memory database; nothing survives the process (tier inline)."""

    def __init__(self, options: StoreOptions | None = None, *, validator: PayloadValidator | None = None) -> None:
        super().__init__(":memory:", options, validator=validator)
