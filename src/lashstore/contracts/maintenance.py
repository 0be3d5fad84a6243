"""What operations need of a store and of a deployment's storage (`lashstore.ops` uses only these)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from ..model.maintenance import FileMigration, GraphPruneResult, Problem, RegistryDump, SessionDump
from ..model.session import GcReport, GraphNode

__all__ = ["SessionMaintenance", "RegistryMaintenance", "Storage"]


@runtime_checkable
class SessionMaintenance(Protocol):
    """Retention primitives, collection, compaction, verification, dump and load, for the session
    the store holds (or `session_id` of a database that holds several)."""

    def session_ids(self) -> list[str]: ...

    def list_graph_nodes(self, session_id: str | None = None) -> list[tuple[GraphNode, bool]]: ...

    def list_tombstoned_nodes(self, session_id: str | None = None) -> list[GraphNode]: ...

    def prune_graph(self, keep_turns: int, *, dry_run: bool = False, session_id: str | None = None) -> GraphPruneResult: ...

    def prune_finished_queue(self, older_than_ms: int, *, dry_run: bool = False, session_id: str | None = None) -> int: ...

    def prune_turn_stamps(self, *, older_than_ms: int | None = None, keep_last: int | None = None,
                          dry_run: bool = False, session_id: str | None = None) -> int: ...

    def compact_usage(self, *, dry_run: bool = False, session_id: str | None = None) -> int: ...

    def collect_garbage(self, *, grace_ms: int = ..., dry_run: bool = False) -> GcReport: ...

    def shrink(self) -> tuple[int, int, bool]:
        """Give the database's free space back: (bytes before, bytes after, fully checkpointed)."""
        ...

    def verify(self, *, session_id: str | None = None, blob_cache: dict[str, bool] | None = None
               ) -> tuple[int, list[Problem]]: ...

    def verify_database(self, blob_cache: dict[str, bool]) -> tuple[int, list[Problem]]: ...

    def dump_session(self, session_id: str | None = None) -> SessionDump: ...

    def load_session_dump(self, dump: SessionDump) -> int | None: ...


@runtime_checkable
class RegistryMaintenance(Protocol):
    """A registry's own upkeep: where it is, its integrity, its space."""

    @property
    def location(self) -> str: ...

    @property
    def database(self) -> Any:
        """The database object the registry runs on (shared with the deployment's other stores)."""
        ...

    @property
    def options(self) -> Any: ...

    @property
    def closed(self) -> bool: ...

    def verify(self) -> tuple[int, list[Problem]]:
        """(records checked, problems): every row decoded the way the store decodes it."""
        ...

    def shrink(self) -> tuple[int, int, bool]: ...

    def dump_registry(self) -> RegistryDump:
        """Every row and counter of the registry, from one snapshot, in the form every backend
        shares (what `lashstore copy` moves)."""
        ...

    def load_registry(self, dump: RegistryDump) -> None:
        """Write a dump into this registry, which must hold no rows (ValidationError otherwise),
        in one transaction; every row is checked as verify would, and on any failure nothing is
        written. Counters move past every number the rows use."""
        ...


@runtime_checkable
class Storage(Protocol):
    """What the operations see of a deployment's storage (`Deployment.storage`)."""

    #: every session in one database (PostgreSQL, memory), not a file each (SQLite)
    shared: bool

    @property
    def location(self) -> str: ...

    def session_bytes(self, session_id: str) -> int:
        """Bytes on disk of the session's own database (0 where sessions share one)."""
        ...

    def session_path(self, session_id: str) -> str | None:
        """The session's own file (SQLite), None where sessions share a database."""
        ...

    def has_registry(self, name: str) -> bool:
        """Whether the registry ("processes", "host_events", "effects") exists (a SQLite file is
        made on first use)."""
        ...

    def registry_bytes(self) -> int: ...

    def copy_mark(self) -> dict[str, Any] | None:
        """The mark of an unfinished `lashstore copy` into the deployment, or None."""
        ...

    def set_copy_mark(self, mark: dict[str, Any] | None) -> None:
        """Mark the deployment as an unfinished copy (durably, before the copy writes anything),
        or, with None, remove the mark."""
        ...

    def migrate(self, *, dry_run: bool, progress: Callable[[str, int, int], None] | None = None) -> list[FileMigration]: ...
