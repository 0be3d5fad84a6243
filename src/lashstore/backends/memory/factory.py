"""Sessions held in memory, one `MemoryFile` each."""

from __future__ import annotations

import threading

from ...errors import SessionNotFound
from ...model.session import DurabilityTier, SessionRelation, SessionSummary
from ...options import StoreOptions
from ...rules import validate as v
from ..common import new_session_meta
from .store import MemoryFile, MemorySessionStore

__all__ = ["MemorySessionStoreFactory"]


class MemorySessionStoreFactory:
    def __init__(self, options: StoreOptions | None = None) -> None:
        self.options = options or StoreOptions()
        self._files: dict[str, MemoryFile] = {}
        self._lock = threading.Lock()

    def durability_tier(self) -> DurabilityTier:
        return DurabilityTier.INLINE

    def create_store(
        self,
        session_id: str,
        *,
        model: str = "",
        relation: SessionRelation | None = None,
        cwd: str | None = None,
        session_name: str | None = None,
    ) -> MemorySessionStore:
        v.check_id(session_id, "session_id")
        meta = new_session_meta(session_id, model=model, relation=relation, cwd=cwd, session_name=session_name)
        with self._lock:
            f = self._files.setdefault(session_id, MemoryFile())
        store = MemorySessionStore(session_id=session_id, options=self.options, file=f)
        if store.load_session_meta() is None:
            store.save_session_meta(meta)
        return store

    def has_session(self, session_id: str) -> bool:
        v.check_id(session_id, "session_id")
        with self._lock:
            return session_id in self._files

    def open_store(self, session_id: str) -> MemorySessionStore:
        v.check_id(session_id, "session_id")
        with self._lock:
            f = self._files.get(session_id)
        if f is None:
            raise SessionNotFound(session_id)
        return MemorySessionStore(session_id=session_id, options=self.options, file=f)

    def delete_session(self, session_id: str) -> bool:
        v.check_id(session_id, "session_id")
        with self._lock:
            f = self._files.pop(session_id, None)
        if f is None:
            return False
        with f.lock:  # after every operation in flight; each later one refuses
            f.deleted = True
        return True

    def list_sessions(self) -> list[SessionSummary]:
        with self._lock:
            items = list(self._files.items())
        out = []
        for sid, f in items:
            store = MemorySessionStore(session_id=sid, options=self.options, file=f)
            meta = store.load_session_meta()
            head = store.load_head()
            out.append(
                SessionSummary(
                    session_id=sid,
                    meta=meta,
                    head_revision=head.head_revision if head else None,
                    node_count=head.graph_node_count if head else 0,
                    updated_at_ms=head.updated_at_ms if head else None,
                )
            )
        out.sort(key=lambda s: (s.updated_at_ms is None, -(s.updated_at_ms or 0), s.session_id))
        return out

    def close(self) -> None:
        pass

    def __enter__(self) -> "MemorySessionStoreFactory":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
