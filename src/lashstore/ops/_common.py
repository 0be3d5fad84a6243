"""What the operations share: finding a store's maintenance functions, walking a deployment's
sessions and files, and reporting progress."""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..deployment import Deployment
from ..errors import LashStoreError
from ..model.session import SessionSummary

__all__ = ["Progress", "maintenance", "registry_maintenance", "store_root", "session_summaries", "session_path",
           "summary_path", "file_size", "registry_files", "opened", "idle_since_ms", "tick"]

#: progress(label, done, total): called after each unit of work (a session, a file).
Progress = Callable[[str, int, int], None]

REGISTRY_FILES = ("processes.db", "host_events.db", "effects.db")


class _ViaMethods:
    """A store that carries the maintenance methods itself (e.g. another backend's mixin)."""

    _NAMES = {"verify_session_store": "verify"}

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = self._NAMES.get(name, name)

        def call(store: Any, *args: Any, **kw: Any) -> Any:
            fn = getattr(store, method, None)
            if fn is None:
                raise LashStoreError(f"{type(store).__name__} does not support {method} (no maintenance for this backend)")
            return fn(*args, **kw)

        return call


def maintenance(store: Any) -> Any:
    """The maintenance functions (`backends/*/maintenance.py`) for a session store."""
    from ..backends.memory.store import MemorySessionStore
    from ..backends.sqlite.store import SqliteSessionStore

    if isinstance(store, SqliteSessionStore):
        from ..backends.sqlite import maintenance as m

        return m
    if isinstance(store, MemorySessionStore):
        from ..backends.memory import maintenance as m

        return m
    return _ViaMethods()


def registry_maintenance(store: Any) -> Any:
    """The maintenance functions for a host-event or effect store."""
    from ..backends.memory.effects import MemoryEffectStore
    from ..backends.memory.host_events import MemoryHostEventStore
    from ..backends.sqlite.effects import SqliteEffectStore
    from ..backends.sqlite.host_events import SqliteHostEventStore

    if isinstance(store, (SqliteHostEventStore, SqliteEffectStore)):
        from ..backends.sqlite import maintenance as m

        return m
    if isinstance(store, (MemoryHostEventStore, MemoryEffectStore)):
        from ..backends.memory import maintenance as m

        return m
    if type(store).__module__.startswith("lashstore.backends.postgres."):  # psycopg is imported only then
        from ..backends.postgres import maintenance as m

        return m
    return _ViaMethods()


def store_root(dep: Deployment) -> Path | None:
    root = getattr(dep.sessions, "root", None)
    return None if root is None else Path(root)


def session_summaries(dep: Deployment, only: list[str] | None = None) -> list[SessionSummary]:
    rows = dep.sessions.list_sessions()
    if only is not None:
        wanted = set(only)
        rows = [r for r in rows if r.session_id in wanted]
    return sorted(rows, key=lambda r: r.session_id)


def session_path(dep: Deployment, session_id: str) -> Path | None:
    path_for = getattr(dep.sessions, "path_for_session", None)
    return None if path_for is None else Path(path_for(session_id))


def summary_path(dep: Deployment, summary: SessionSummary) -> Path | None:
    """The file of a listed session (also of one that could not be read)."""
    return Path(summary.path) if summary.path else session_path(dep, summary.session_id)


def file_size(path: Path | None) -> int:
    if path is None:
        return 0
    from ..backends.sqlite.maintenance import file_bytes

    return file_bytes(path)


def registry_files(dep: Deployment) -> list[Path]:
    root = store_root(dep)
    if root is None:
        return []
    return [root / name for name in REGISTRY_FILES if (root / name).exists()]


@contextlib.contextmanager
def opened(dep: Deployment, session_id: str) -> Iterator[Any]:
    store = dep.sessions.open_store(session_id)
    try:
        yield store
    finally:
        store.close()


def idle_since_ms(summary: SessionSummary) -> int | None:
    """When the session last changed: its head's update, else its creation; None if unknown."""
    if summary.updated_at_ms is not None:
        return summary.updated_at_ms
    meta = summary.meta
    if meta is None or not meta.created_at:
        return None
    try:
        dt = datetime.datetime.fromisoformat(meta.created_at.replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=datetime.timezone.utc)
    return int(dt.timestamp() * 1000)


def tick(progress: Progress | None, label: str, done: int, total: int) -> None:
    if progress is not None:
        progress(label, done, total)
