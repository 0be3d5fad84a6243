"""The session factory of a database that holds every session of a deployment (PostgreSQL, and
SQLite in memory for `memory://`), written once. SQLite's default, a file per session, has its
own factory (`backends/sqlite/factory.py`)."""

from __future__ import annotations

import threading
import weakref

from ..backends.common import meta_from_row, new_session_meta
from ..backends.sql.maintenance import SESSION_TABLES
from ..errors import LashStoreError, SessionNotFound
from ..model.session import DurabilityTier, SessionRelation, SessionSummary
from ..options import StoreOptions
from ..rules import validate as v
from .sessions import SessionEngine
from .tx import Db, Tx

__all__ = ["SharedSessionFactory"]


class SharedSessionFactory:
    """Every session of a deployment in one database.

    A store it opens holds one session and expects its meta row; once that row is gone (the
    session was deleted, here or elsewhere) the store refuses with SessionDeleted. The database
    is shared by the stores and closed with the factory when `owns_db`."""

    store_class: type[SessionEngine] = SessionEngine

    def __init__(self, db: Db, options: StoreOptions | None = None, *, tier: DurabilityTier = DurabilityTier.DURABLE,
                 owns_db: bool = True) -> None:
        self.options = options or StoreOptions()
        self._db = db
        self._owns_db = owns_db
        self._tier = tier
        self._open: "weakref.WeakSet[SessionEngine]" = weakref.WeakSet()
        self._lock = threading.Lock()
        self._tx_clock = db.clock_for(self.options)  # type: ignore[attr-defined]

    @property
    def database(self) -> Db:
        return self._db

    def durability_tier(self) -> DurabilityTier:
        return self._tier

    def _open_store(self, session_id: str) -> SessionEngine:
        store = self.store_class(self._db, session_id=session_id, options=self.options, tier=self._tier,
                                 expects_meta=True, owns_db=False)
        with self._lock:
            self._open.add(store)
        return store

    def create_store(self, session_id: str, *, model: str = "", relation: SessionRelation | None = None,
                     cwd: str | None = None, session_name: str | None = None) -> SessionEngine:
        """Open the session, creating its meta first if it has none (atomically: concurrent
        creators never overwrite each other, and a reopen never overwrites what is stored)."""
        v.check_id(session_id, "session_id")
        meta = new_session_meta(session_id, model=model, relation=relation, cwd=cwd, session_name=session_name)
        store = self._open_store(session_id)
        try:
            store._create_meta_once(meta)
        except BaseException:
            store.close()
            raise
        return store

    def has_session(self, session_id: str) -> bool:
        v.check_id(session_id, "session_id")
        return self._db.read(lambda t: t.one(
            "SELECT 1 FROM session_meta WHERE session_id = ? UNION ALL SELECT 1 FROM session_head WHERE session_id = ?",
            (session_id, session_id)) is not None, "has session", clock=self._tx_clock)

    def open_store(self, session_id: str, *, readonly: bool = False) -> SessionEngine:
        """The session's store (`readonly` changes nothing here: reads never write)."""
        if not self.has_session(session_id):
            raise SessionNotFound(session_id)
        return self._open_store(session_id)

    def delete_session(self, session_id: str) -> bool:
        """Delete every row of the session in one transaction (blobs it alone referenced go with
        the next gc_unreachable), after its commits in flight; every handle on it (this
        factory's or another's) raises SessionDeleted at its next operation."""
        v.check_id(session_id, "session_id")

        def tx(t: Tx) -> int:
            t.lock("session", session_id)
            t.execute(f"SELECT 1 FROM session_head WHERE session_id = ?{t.dialect.for_update}", (session_id,))
            t.execute("DELETE FROM queued_work_items WHERE batch_id IN (SELECT batch_id FROM queued_work_batches "
                      "WHERE session_id = ?)", (session_id,))
            return sum(t.rowcount(f"DELETE FROM {table} WHERE session_id = ?", (session_id,)) for table in SESSION_TABLES)

        return self._db.write(tx, "delete session", clock=self._tx_clock) > 0

    def list_sessions(self) -> list[SessionSummary]:
        rows = self._db.read(lambda t: t.all(
            "SELECT s.session_id, m.session_name, m.created_at, m.model, m.cwd, m.relation, h.head_revision, "
            "h.node_count, h.updated_at_ms, m.session_id IS NOT NULL FROM "
            "(SELECT session_id FROM session_meta UNION SELECT session_id FROM session_head) s "
            "LEFT JOIN session_meta m ON m.session_id = s.session_id "
            "LEFT JOIN session_head h ON h.session_id = s.session_id"), "list sessions", clock=self._tx_clock)
        out: list[SessionSummary] = []
        for r in rows:
            try:
                meta = meta_from_row(r[:6]) if r[9] else None
                out.append(SessionSummary(session_id=r[0], meta=meta, head_revision=r[6],
                                          node_count=r[7] if r[7] is not None else 0, updated_at_ms=r[8]))
            except LashStoreError as e:
                out.append(SessionSummary(session_id=r[0], error=str(e)))  # one bad row hides no other
        out.sort(key=lambda s: (s.updated_at_ms is None, -(s.updated_at_ms or 0), s.session_id))
        return out

    def close(self) -> None:
        with self._lock:
            stores = list(self._open)
            self._open.clear()
        for s in stores:
            s.close()
        if self._owns_db:
            self._db.close()

    def __enter__(self) -> "SharedSessionFactory":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
