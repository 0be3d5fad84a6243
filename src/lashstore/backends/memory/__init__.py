"""`memory://`: SQLite in memory, running the same code as every other backend.

A memory deployment keeps every session in one private in-memory database (one connection,
shared by its stores), and each registry in one of its own. Nothing survives the process
(durability tier inline)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ...engine.factory import SharedSessionFactory
from ...errors import ValidationError
from ...model.session import DurabilityTier
from ...options import StoreOptions
from ...rules.picker import Summariser, summarise
from ..sqlite.connection import Database
from ..sqlite.schema import KIND, MIGRATIONS
from ..sqlite.store import SqliteSessionStore

__all__ = ["MemorySessionStore", "MemorySessionStoreFactory", "memory_database", "deployment_parts", "MemoryStorage"]


def memory_database(options: StoreOptions | None = None) -> Database:
    """A private in-memory session database."""
    opts = options or StoreOptions()
    return Database(":memory:", kind=KIND, migrations=MIGRATIONS, busy_timeout_ms=opts.busy_timeout_ms)


class MemorySessionStore(SqliteSessionStore):
    """A session store in a private in-memory database (durability tier inline)."""

    def __init__(self, *, session_id: str | None = None, options: StoreOptions | None = None,
                 summariser: Summariser = summarise) -> None:
        super().__init__(":memory:", session_id=session_id, options=options, summariser=summariser)


class MemorySessionStoreFactory(SharedSessionFactory):
    """Every session of a memory deployment in one in-memory database."""

    def __init__(self, options: StoreOptions | None = None) -> None:
        super().__init__(memory_database(options), options, tier=DurabilityTier.INLINE, owns_db=True)
        #: the deployment's registries (each a memory database of its own), closed with it
        self.registries: dict[str, Any] = {}

    def close(self) -> None:
        for registry in self.registries.values():
            registry.close()
        super().close()


class MemoryStorage:
    """A memory deployment has no files: nothing to measure, migrate or mark."""

    shared = True
    location = "memory:"

    def session_bytes(self, session_id: str) -> int:
        return 0

    def session_path(self, session_id: str) -> None:
        return None

    def has_registry(self, name: str) -> bool:
        return True

    def registry_bytes(self) -> int:
        return 0

    def copy_mark(self) -> None:
        return None

    def set_copy_mark(self, mark: dict[str, Any] | None) -> None:
        raise ValidationError("a memory deployment is never a copy's destination: it ends with the process")

    def migrate(self, *, dry_run: bool, progress: Callable[[str, int, int], None] | None = None) -> list[Any]:
        return []


class _Borrowed:
    """A handle on a memory registry whose `close` leaves it open (it closes with the
    deployment)."""

    def __init__(self, target: Any) -> None:
        self._target = target

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)

    def close(self) -> None:
        pass

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def deployment_parts(location: str, options: StoreOptions) -> tuple[Any, dict[str, Callable[[], Any]], MemoryStorage, StoreOptions]:
    """Everything of a memory deployment in this process. A registry exists once: every opener
    call (the deployment's own, `Deployment.open_registry`) hands out a handle on it, and it
    closes with the session factory, which the deployment closes last."""
    factory = MemorySessionStoreFactory(options)

    def once(name: str, make: Callable[[], Any]) -> Callable[..., Any]:
        def opener(readonly: bool = False) -> Any:
            if name not in factory.registries:
                factory.registries[name] = make()
            return _Borrowed(factory.registries[name])

        return opener

    def processes() -> Any:
        from .processes import MemoryProcessRegistry

        return MemoryProcessRegistry(options)

    def host_events() -> Any:
        from .host_events import MemoryHostEventStore

        return MemoryHostEventStore(options)

    def effects() -> Any:
        from .effects import MemoryEffectStore

        return MemoryEffectStore(options)

    openers = {"processes": once("processes", processes), "host_events": once("host_events", host_events),
               "effects": once("effects", effects)}
    return factory, openers, MemoryStorage(), options
