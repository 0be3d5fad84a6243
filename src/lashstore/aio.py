"""asyncio facade: the same names as the sync classes, awaited.

Each whole store operation runs in one hop on the store's own worker thread (a hop costs about
a hundred microseconds, a SQLite read a few; hopping per statement would multiply the cost).
One thread per store also keeps that store's operations in submission order.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import os
from typing import Any

from .contracts import EffectStore, HostEventStore, ProcessRegistry, SessionStore, SessionStoreFactory
from .deployment import Deployment
from .deployment import open as _open_sync

__all__ = [
    "AsyncSessionStore",
    "AsyncSessionStoreFactory",
    "AsyncProcessRegistry",
    "AsyncHostEventStore",
    "AsyncDeployment",
    "open",
    "wrap_store",
]

_STORE_METHODS = (
    "durability_tier",
    "put_blob",
    "put_artifact_blob",
    "get_blob",
    "blob_info",
    "blob_stats",
    "put_typed_blob",
    "get_typed_blob",
    "put_checkpoint",
    "get_checkpoint",
    "put_artifact",
    "get_artifact",
    "delete_artifact",
    "list_artifacts",
    "save_session_meta",
    "load_session_meta",
    "load_picker_info",
    "load_head",
    "load_session",
    "load_node",
    "load_usage",
    "commit_runtime_state",
    "tombstone_nodes",
    "vacuum",
    "gc_unreachable",
)

_FACTORY_METHODS = ("create_store", "open_store", "has_session", "delete_session", "list_sessions")


class _Hop:
    def __init__(self, target: Any, name: str) -> None:
        self._target = target
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"lashstore-{name}")

    async def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    def _shutdown(self) -> None:
        self._pool.shutdown(wait=True)


def _method(name: str) -> Any:
    async def call(self: _Hop, *args: Any, **kwargs: Any) -> Any:
        return await self._call(getattr(self._target, name), *args, **kwargs)

    call.__name__ = name
    return call


class AsyncSessionStore(_Hop):
    """Async twin of a `SessionStore`; `await store.commit_runtime_state(commit)`."""

    def __init__(self, store: SessionStore) -> None:
        super().__init__(store, "store")

    @property
    def sync(self) -> SessionStore:
        """The wrapped synchronous store."""
        return self._target

    @property
    def session_id(self) -> str | None:
        return self._target.session_id

    async def close(self) -> None:
        await self._call(self._target.close)
        self._shutdown()

    async def __aenter__(self) -> "AsyncSessionStore":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


for _n in _STORE_METHODS:
    setattr(AsyncSessionStore, _n, _method(_n))


class AsyncSessionStoreFactory(_Hop):
    def __init__(self, factory: SessionStoreFactory) -> None:
        super().__init__(factory, "factory")

    @property
    def sync(self) -> SessionStoreFactory:
        return self._target

    def durability_tier(self) -> Any:
        return self._target.durability_tier()

    async def create_store(self, session_id: str, **kw: Any) -> AsyncSessionStore:
        return AsyncSessionStore(await self._call(self._target.create_store, session_id, **kw))

    async def open_store(self, session_id: str) -> AsyncSessionStore:
        return AsyncSessionStore(await self._call(self._target.open_store, session_id))

    async def close(self) -> None:
        await self._call(self._target.close)
        self._shutdown()


for _n in ("has_session", "delete_session", "list_sessions"):
    setattr(AsyncSessionStoreFactory, _n, _method(_n))


_REGISTRY_METHODS = (
    "register_process",
    "get_process",
    "set_external_ref",
    "list_non_terminal",
    "list_processes",
    "prune_terminal_processes",
    "grant_handle",
    "revoke_handle",
    "transfer_handle_grants",
    "list_handle_grants",
    "list_live_handle_grants",
    "has_handle_grant",
    "handle_grants_for_process",
    "delete_session_process_state",
    "append_event",
    "cancel_requested",
    "complete_process",
    "events_after",
    "wake_events_after",
    "ack_wake",
    "claim_process_lease",
    "renew_process_lease",
    "complete_process_lease",
    "release_process_lease",
    "get_process_lease",
)
_WAITS = ("wait_event_after", "await_process")


class AsyncProcessRegistry(_Hop):
    """Async twin of a `ProcessRegistry`. Waits run on the loop's default executor, so a long
    `await_process` never holds up the registry's other operations."""

    def __init__(self, registry: ProcessRegistry) -> None:
        super().__init__(registry, "processes")

    @property
    def sync(self) -> ProcessRegistry:
        return self._target

    def durability_tier(self) -> Any:
        return self._target.durability_tier()

    async def close(self) -> None:
        await self._call(self._target.close)
        self._shutdown()


def _wait(name: str) -> Any:
    async def call(self: _Hop, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, functools.partial(getattr(self._target, name), *args, **kwargs))

    call.__name__ = name
    return call


for _n in _REGISTRY_METHODS:
    setattr(AsyncProcessRegistry, _n, _method(_n))
for _n in _WAITS:
    setattr(AsyncProcessRegistry, _n, _wait(_n))


_HOST_EVENT_METHODS = (
    "register_subscription",
    "list_subscriptions",
    "get_subscription",
    "cancel_subscription",
    "cancel_session_subscriptions",
    "record_occurrence",
    "get_occurrence",
    "list_occurrences",
    "reserve_matching_deliveries",
    "list_deliveries",
)


class AsyncHostEventStore(_Hop):
    """Async twin of a `HostEventStore`."""

    def __init__(self, store: HostEventStore) -> None:
        super().__init__(store, "host-events")

    @property
    def sync(self) -> HostEventStore:
        return self._target

    def durability_tier(self) -> Any:
        return self._target.durability_tier()

    def source_key_for_subscription(self, source_type: str, source: Any) -> str:
        return self._target.source_key_for_subscription(source_type, source)

    async def close(self) -> None:
        await self._call(self._target.close)
        self._shutdown()


for _n in _HOST_EVENT_METHODS:
    setattr(AsyncHostEventStore, _n, _method(_n))


def wrap_store(store: SessionStore) -> AsyncSessionStore:
    return AsyncSessionStore(store)


class AsyncDeployment:
    def __init__(self, deployment: Deployment) -> None:
        self.sync = deployment
        self.url = deployment.url
        self.sessions = AsyncSessionStoreFactory(deployment.sessions)
        self._processes: AsyncProcessRegistry | None = None
        self._host_events: AsyncHostEventStore | None = None

    @property
    def processes(self) -> AsyncProcessRegistry:
        if self._processes is None:
            self._processes = AsyncProcessRegistry(self.sync.processes)
        return self._processes

    @property
    def host_events(self) -> AsyncHostEventStore:
        if self._host_events is None:
            self._host_events = AsyncHostEventStore(self.sync.host_events)
        return self._host_events

    @property
    def effects(self) -> EffectStore:
        """The effect store itself: it is async-native (`aexecute`, `asleep`, `abegin`, and the
        `@lashstore.durable` decorator on coroutine functions)."""
        return self.sync.effects

    async def close(self) -> None:
        for hop in (self._processes, self._host_events):
            if hop is not None:
                hop._shutdown()
        await self.sessions.close()
        await asyncio.get_running_loop().run_in_executor(None, self.sync.close)

    async def __aenter__(self) -> "AsyncDeployment":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def open(url: str | os.PathLike[str] | None = None, **kw: Any) -> AsyncDeployment:
    """`lashstore.open`, with async factories and stores. Opening does no I/O worth a hop."""
    return AsyncDeployment(_open_sync(url, **kw))
