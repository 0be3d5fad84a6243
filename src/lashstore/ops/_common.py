"""What the operations share: walking a deployment's sessions, and reporting progress.

Operations use only public methods: the session stores' (`prune_graph`, `verify`, `shrink`, ...),
the registries' (`prune_occurrences`, `verify`, ...) and the deployment's storage view
(`Deployment.storage`: bytes on disk, migration, the mark of an unfinished copy)."""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Callable, Iterator
from typing import Any

from ..deployment import Deployment
from ..model.session import SessionSummary

__all__ = ["Progress", "session_summaries", "opened", "idle_since_ms", "tick", "REGISTRIES", "registries"]

#: progress(label, done, total): called after each unit of work (a session, a file).
Progress = Callable[[str, int, int], None]

#: The deployment's registries: (component name, Deployment attribute).
REGISTRIES = (("processes", "processes"), ("host_events", "host_events"), ("effects", "effects"))


def session_summaries(dep: Deployment, only: list[str] | None = None) -> list[SessionSummary]:
    rows = dep.sessions.list_sessions()
    if only is not None:
        wanted = set(only)
        rows = [r for r in rows if r.session_id in wanted]
    return sorted(rows, key=lambda r: r.session_id)


@contextlib.contextmanager
def opened(dep: Deployment, session_id: str, *, readonly: bool = False) -> Iterator[Any]:
    """The session's store for one operation (`readonly`: never migrates or changes anything)."""
    store = dep.sessions.open_store(session_id, readonly=readonly)
    try:
        yield store
    finally:
        store.close()


def registries(dep: Deployment) -> Iterator[tuple[str, Any]]:
    """(name, store) of every registry the deployment has (a SQLite file that was never created
    is skipped, so an operation never creates one)."""
    for name, attr in REGISTRIES:
        if dep.storage.has_registry(name):
            yield name, getattr(dep, attr)


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
