"""The deployment-wide process registry on SQLite: the engine over one file (kind "process
registry"), or over a private in-memory database.

Every write holds the whole file (`BEGIN IMMEDIATE`). Waiters are woken at once by writes made
through any handle on the same file in this process (one notifier per resolved path, notified
after each commit that asks for it), and poll (5 ms doubling to 40 ms) for other processes.
"""

from __future__ import annotations

import os
from pathlib import Path

from ...engine.processes import ProcessEngine
from ...engine.waits import Notifier, shared_notifier
from ...model.session import DurabilityTier
from ...options import StoreOptions
from ...rules.process import PayloadValidator
from .connection import Database
from .process_schema import KIND, MIGRATIONS

__all__ = ["SqliteProcessRegistry"]


class SqliteProcessRegistry(ProcessEngine):
    """Processes, their events and wakes, handle grants and leases, in one SQLite file
    (`":memory:"`: a private in-memory database, durability tier inline).

    Thread-safe (one connection used under a lock); several handles and OS processes may share
    the file. `validator` checks event payloads against their declared JSON Schema (default:
    `jsonschema`). Lease times come from `options.clock`.
    """

    def __init__(
        self,
        path: str | Path,
        options: StoreOptions | None = None,
        *,
        validator: PayloadValidator | None = None,
    ) -> None:
        opts = options or StoreOptions()
        self.path = str(path)
        memory = self.path == ":memory:"
        db = Database(
            self.path,
            kind=KIND,
            migrations=MIGRATIONS,
            synchronous=opts.synchronous,
            busy_timeout_ms=opts.busy_timeout_ms,
            readonly=opts.readonly and not memory,
        )
        notifier = Notifier() if memory else shared_notifier(os.path.realpath(self.path))
        db.on_commit = lambda topics: notifier.notify()
        super().__init__(db, options=opts, validator=validator, owns_db=True, notifier=notifier,
                         tier=DurabilityTier.INLINE if memory else DurabilityTier.DURABLE)
