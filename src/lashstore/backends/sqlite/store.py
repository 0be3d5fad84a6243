"""The session store on SQLite: the engine over one SQLite file (one session per file by default)."""

from __future__ import annotations

from pathlib import Path
from ...engine.sessions import SessionEngine
from ...errors import SessionDeleted
from ...model.session import DurabilityTier
from ...options import StoreOptions
from ...rules import validate as v
from ...rules.picker import Summariser, summarise
from .connection import Database
from .schema import KIND, MIGRATIONS

__all__ = ["SqliteSessionStore"]


class SqliteSessionStore(SessionEngine):
    """A session store in one SQLite file.

    `session_id` fixes the session at open (the factory does this); without it the first commit
    binds the store, as in the reference. `readonly` opens the file for reading only (writes raise
    StoreReadOnly). Thread-safe: one connection, used under a lock.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        session_id: str | None = None,
        options: StoreOptions | None = None,
        summariser: Summariser = summarise,
        readonly: bool = False,
        database: Database | None = None,
    ) -> None:
        if session_id is not None:
            v.check_id(session_id, "session_id")
        opts = options or StoreOptions()
        self.path = str(path)
        memory = self.path == ":memory:"
        db = database or Database(
            self.path,
            kind=KIND,
            migrations=MIGRATIONS,
            synchronous=opts.synchronous,
            busy_timeout_ms=opts.busy_timeout_ms,
            readonly=(readonly or opts.readonly) and not memory,
            on_deleted=None if memory else (lambda: SessionDeleted(session_id or self.path)),
        )
        super().__init__(
            db,
            session_id=session_id,
            options=opts,
            summariser=summariser,
            tier=DurabilityTier.INLINE if memory else DurabilityTier.DURABLE,
            owns_db=database is None,
        )
