"""The deployment-wide process registry on PostgreSQL: the engine over the deployment's schema
(component "process registry").

Row locks and advisory locks serialise what changes one process (see `engine.processes`); lease
times use the database clock unless the options inject a clock (`connection.uses_database_clock`).
A write that can end a wait NOTIFYs the process's topic when it commits, which wakes waiters in
every process through the database's LISTEN hub; waiters poll with backoff meanwhile.
"""

from __future__ import annotations

from ...engine.processes import ProcessEngine, process_topic
from ...engine.waits import Notifier
from ...model.session import DurabilityTier
from ...options import StoreOptions
from ...rules.process import PayloadValidator
from .connection import PostgresDatabase, open_database

__all__ = ["PostgresProcessRegistry", "COMPONENT", "process_topic"]

COMPONENT = "process registry"


class PostgresProcessRegistry(ProcessEngine):
    """Processes, their events and wakes, handle grants and leases, in the deployment's schema.

    database: a `PostgresDatabase` shared with the deployment, or a URL (then owned).
    `validator` checks event payloads against their declared JSON Schema (default `jsonschema`).
    Thread-safe; any number of registry objects and OS processes may share the schema.
    """

    def __init__(
        self,
        database: PostgresDatabase | str,
        options: StoreOptions | None = None,
        *,
        validator: PayloadValidator | None = None,
        schema: str | None = None,
    ) -> None:
        db, owned = open_database(database, schema)
        try:
            db.ensure(COMPONENT)
        except BaseException:
            if owned:
                db.close()
            raise
        super().__init__(db, options=options, validator=validator, owns_db=owned, tier=DurabilityTier.DURABLE)

    @property
    def schema(self) -> str:
        return self._db.schema  # type: ignore[attr-defined]

    def _notifier(self, topic: str) -> Notifier:
        hub = self._db.hub  # type: ignore[attr-defined]
        hub.start()
        return hub.notifier(topic)

    def _wake_all(self) -> None:
        self._db.hub.wake_all()  # type: ignore[attr-defined]
