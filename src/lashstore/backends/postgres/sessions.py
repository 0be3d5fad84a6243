"""The session store and its factory on PostgreSQL: the engine over one schema holding every
session of a deployment.

A store holds one session (fixed at open by the factory; a store opened without a session id
binds itself to the one session its schema holds or to its first commit). The turn commit locks
the session's head row (`FOR UPDATE`), or, for a session's first commit, takes a transaction
advisory lock on the session id (a row that does not exist yet cannot be locked); a stale
revision is a `HeadRevisionConflict`, never a raw serialization error.
"""

from __future__ import annotations

from ...engine.factory import SharedSessionFactory
from ...engine.sessions import SessionEngine
from ...model.session import DurabilityTier
from ...options import StoreOptions
from ...rules.picker import Summariser, summarise
from .connection import PostgresDatabase, open_database

__all__ = ["PostgresSessionStore", "PostgresSessionStoreFactory", "COMPONENT"]

COMPONENT = "session"


class PostgresSessionStore(SessionEngine):
    """A session store on PostgreSQL.

    database: a `PostgresDatabase` shared with other stores, or a URL (the store then opens and
        owns its own pool; `schema` chooses the schema, default "lashstore").
    session_id: the session this store holds; without it the first commit binds the store.
    """

    def __init__(self, database: PostgresDatabase | str, *, session_id: str | None = None,
                 options: StoreOptions | None = None, summariser: Summariser = summarise, schema: str | None = None,
                 tier: DurabilityTier = DurabilityTier.DURABLE, expects_meta: bool = False,
                 owns_db: bool | None = None) -> None:
        db, owned = open_database(database, schema)
        try:
            db.ensure(COMPONENT)
        except BaseException:
            if owned:
                db.close()
            raise
        super().__init__(db, session_id=session_id, options=options, summariser=summariser, tier=tier,
                         expects_meta=expects_meta, owns_db=owned if owns_db is None else owns_db)

    @property
    def schema(self) -> str:
        return self._db.schema  # type: ignore[attr-defined]


class PostgresSessionStoreFactory(SharedSessionFactory):
    """Every session of a deployment in one PostgreSQL schema.

    database: a `PostgresDatabase` (shared with the deployment's other stores) or a URL.
    own_database: close a given `PostgresDatabase` with the factory (what `lashstore.open` does:
        the deployment closes its other components first, then the factory).
    """

    store_class = PostgresSessionStore

    def __init__(self, database: PostgresDatabase | str, options: StoreOptions | None = None, *,
                 schema: str | None = None, own_database: bool = False) -> None:
        db, owned = open_database(database, schema)
        try:
            db.ensure(COMPONENT)
        except BaseException:
            if owned:
                db.close()
            raise
        super().__init__(db, options, tier=DurabilityTier.DURABLE, owns_db=owned or own_database)

    @property
    def schema(self) -> str:
        return self._db.schema  # type: ignore[attr-defined]
