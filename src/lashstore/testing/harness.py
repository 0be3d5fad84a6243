"""What a conformance scenario needs from a backend: fresh stores, a reopen, a factory.

A backend author wires a `SessionHarness` with three callables and runs every function of
`lashstore.testing.SESSION_SCENARIOS` on it (and `REOPEN_SCENARIOS` when the backend is durable):

    harness = SessionHarness(
        name="mybackend",
        expected_tier=DurabilityTier.DURABLE,
        open_store=lambda options: MyStore(url, options=options),
        open_factory=lambda: MyFactory(url),
        reopen_store=lambda store: MyStore(url, options=store.options),
    )
    for scenario in SESSION_SCENARIOS + REOPEN_SCENARIOS:
        scenario(harness)
    harness.close()
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..contracts import SessionStore, SessionStoreFactory
from ..model.session import DurabilityTier
from ..options import StoreOptions

__all__ = ["SessionHarness", "memory_harness", "sqlite_harness"]


@dataclasses.dataclass
class SessionHarness:
    """Opens what a scenario asks for, and closes all of it at the end.

    open_store(options): a fresh, empty, unbound store (no session id fixed), with `options`
        (None for the backend's defaults). Every call must give independent storage.
    open_factory(): a fresh factory over empty storage.
    reopen_store(store): a second, independent handle on the storage `store` uses, or None
        for a backend that is not durable (then the reopen scenarios do not apply).
    """

    name: str
    expected_tier: DurabilityTier
    open_store: Callable[[StoreOptions | None], SessionStore]
    open_factory: Callable[[], SessionStoreFactory]
    reopen_store: Callable[[SessionStore], SessionStore] | None = None
    #: reopen_factory(factory): a second, independent factory on the same storage (a second
    #: `lashstore.open` of the same URL); for an in-process backend, the factory itself.
    reopen_factory: Callable[[SessionStoreFactory], SessionStoreFactory] | None = None
    _opened: list[Any] = dataclasses.field(default_factory=list, repr=False)

    @property
    def durable(self) -> bool:
        return self.reopen_store is not None

    def make(self, options: StoreOptions | None = None) -> SessionStore:
        store = self.open_store(options)
        self._opened.append(store)
        return store

    def reopen(self, store: SessionStore) -> SessionStore | None:
        if self.reopen_store is None:
            return None
        other = self.reopen_store(store)
        self._opened.append(other)
        return other

    def make_factory(self) -> SessionStoreFactory:
        factory = self.open_factory()
        self._opened.append(factory)
        return factory

    def again(self, factory: SessionStoreFactory) -> SessionStoreFactory:
        """A second factory on `factory`'s storage (see `reopen_factory`)."""
        if self.reopen_factory is None:
            return factory
        other = self.reopen_factory(factory)
        if other is not factory:
            self._opened.append(other)
        return other

    def close(self) -> None:
        """Close every store and factory handed out, newest first."""
        opened, self._opened = self._opened, []
        for obj in reversed(opened):
            obj.close()


def memory_harness() -> SessionHarness:
    """The in-memory reference backend (tier inline, no reopen)."""
    from ..backends.memory import MemorySessionStore, MemorySessionStoreFactory

    return SessionHarness(
        name="memory",
        expected_tier=DurabilityTier.INLINE,
        open_store=lambda options: MemorySessionStore(options=options),
        open_factory=lambda: MemorySessionStoreFactory(),
        reopen_store=None,
        reopen_factory=lambda factory: factory,
    )


def sqlite_harness(directory: str | Path) -> SessionHarness:
    """SQLite files in `directory` (tier durable); reopen opens the same file a second time."""
    from ..backends.sqlite import SqliteSessionStore, SqliteSessionStoreFactory

    root = Path(directory)
    counter = itertools.count(1)

    def open_store(options: StoreOptions | None) -> SessionStore:
        return SqliteSessionStore(root / f"store-{next(counter)}.db", options=options)

    def open_factory() -> SessionStoreFactory:
        return SqliteSessionStoreFactory(root / f"factory-{next(counter)}")

    def reopen_store(store: SessionStore) -> SessionStore:
        return SqliteSessionStore(store.path, options=store.options)  # type: ignore[attr-defined]

    def reopen_factory(factory: SessionStoreFactory) -> SessionStoreFactory:
        return SqliteSessionStoreFactory(factory.root, factory.options)  # type: ignore[attr-defined]

    return SessionHarness(
        name="sqlite",
        expected_tier=DurabilityTier.DURABLE,
        open_store=open_store,
        open_factory=open_factory,
        reopen_store=reopen_store,
        reopen_factory=reopen_factory,
    )
