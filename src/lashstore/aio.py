"""asyncio facade, generated from the contracts: every protocol method has an awaitable twin with
the same name and signature.

Each whole store operation runs in one hop on the store's own worker thread (a hop costs about a
hundred microseconds, a SQLite read a few; hopping per statement would multiply the cost). One
thread per store also keeps that store's operations in submission order. Waits (`await_process`,
`wait_event_after`) run on the loop's default executor instead, so a long wait never holds up the
store's other operations; methods that are coroutines already (the effect store's `aexecute`,
`asleep`, `abegin`) run on the caller's loop, as their executors must.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
import os
from collections.abc import Callable
from typing import Any

from .contracts import (
    Attachments,
    EffectStore,
    HostEventStore,
    ProcessRegistry,
    QueuedWork,
    RegistryMaintenance,
    SessionBasics,
    SessionMaintenance,
    SessionStore,
    SessionStoreFactory,
)
from .deployment import Deployment
from .deployment import open as _open_sync

__all__ = [
    "AsyncSessionStore",
    "AsyncSessionStoreFactory",
    "AsyncProcessRegistry",
    "AsyncHostEventStore",
    "AsyncEffectStore",
    "AsyncDeployment",
    "open",
    "wrap_store",
    "TWINS",
]


class _Hop:
    """A synchronous object behind one worker thread."""

    def __init__(self, target: Any) -> None:
        self._target = target
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"lashstore-{type(target).__name__}"
        )

    @property
    def sync(self) -> Any:
        """The wrapped synchronous object."""
        return self._target

    async def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    async def _wait(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, functools.partial(fn, *args, **kwargs))

    def _shutdown(self) -> None:
        self._pool.shutdown(wait=True)

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()  # type: ignore[attr-defined]


def _twin(proto: type, name: str, member: Any, *, waits: frozenset[str], wrap: Callable[[Any], Any] | None) -> Any:
    if isinstance(member, property):
        return property(lambda self: getattr(self._target, name), doc=member.__doc__)
    if inspect.iscoroutinefunction(member):
        async def native(self: _Hop, *args: Any, **kwargs: Any) -> Any:
            return await getattr(self._target, name)(*args, **kwargs)

        fn = native
    elif name == "close":
        async def close(self: _Hop) -> None:
            await self._call(self._target.close)
            self._shutdown()

        fn = close
    else:
        async def call(self: _Hop, *args: Any, **kwargs: Any) -> Any:
            hop = self._wait if name in waits else self._call
            result = await hop(getattr(self._target, name), *args, **kwargs)
            return result if wrap is None else wrap(result)

        fn = call
    fn.__name__ = name
    fn.__qualname__ = f"Async{proto.__name__}.{name}"
    fn.__doc__ = member.__doc__
    fn.__signature__ = inspect.signature(member)  # type: ignore[attr-defined]
    return fn


def _members(proto: type) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for base in reversed(proto.__mro__):
        if base is object or not getattr(base, "_is_protocol", False):
            continue
        out.update({n: m for n, m in vars(base).items() if not n.startswith("_") and (callable(m) or isinstance(m, property))})
    return out


def _generate(name: str, proto: type, doc: str, *, waits: frozenset[str] = frozenset(),
              wrap: dict[str, Callable[[Any], Any]] | None = None) -> type:
    body: dict[str, Any] = {"__doc__": doc, "__module__": __name__}
    for member_name, member in _members(proto).items():
        body[member_name] = _twin(proto, member_name, member, waits=waits, wrap=(wrap or {}).get(member_name))
    return type(name, (_Hop,), body)


AsyncSessionStore = _generate(
    "AsyncSessionStore", SessionStore,
    "Async twin of a `SessionStore`: `await store.commit_runtime_state(commit)`.",
)
AsyncSessionStoreFactory = _generate(
    "AsyncSessionStoreFactory", SessionStoreFactory,
    "Async twin of a `SessionStoreFactory`; the stores it returns are `AsyncSessionStore`s.",
    wrap={"create_store": AsyncSessionStore, "open_store": AsyncSessionStore},
)
AsyncProcessRegistry = _generate(
    "AsyncProcessRegistry", ProcessRegistry,
    "Async twin of a `ProcessRegistry`; its waits run beside its other operations.",
    waits=frozenset({"wait_event_after", "await_process"}),
)
AsyncHostEventStore = _generate("AsyncHostEventStore", HostEventStore, "Async twin of a `HostEventStore`.")
AsyncEffectStore = _generate(
    "AsyncEffectStore", EffectStore,
    "Async twin of an `EffectStore` (its `a...` methods are coroutines already, run on the caller's loop).",
)

#: protocol -> its generated twin (the capabilities a composed protocol includes are in its twin)
TWINS: dict[type, type] = {
    SessionStore: AsyncSessionStore,
    SessionBasics: AsyncSessionStore,
    QueuedWork: AsyncSessionStore,
    Attachments: AsyncSessionStore,
    SessionMaintenance: AsyncSessionStore,
    SessionStoreFactory: AsyncSessionStoreFactory,
    ProcessRegistry: AsyncProcessRegistry,
    HostEventStore: AsyncHostEventStore,
    EffectStore: AsyncEffectStore,
    RegistryMaintenance: AsyncProcessRegistry,
}


def wrap_store(store: SessionStore) -> Any:
    return AsyncSessionStore(store)


class AsyncDeployment:
    """`lashstore.open` with async twins of its factory and registries."""

    def __init__(self, deployment: Deployment) -> None:
        self.sync = deployment
        self.url = deployment.url
        self.storage = deployment.storage
        self.sessions = AsyncSessionStoreFactory(deployment.sessions)
        self._registries: dict[str, Any] = {}

    def _registry(self, name: str, twin: type) -> Any:
        if name not in self._registries:
            self._registries[name] = twin(getattr(self.sync, name))
        return self._registries[name]

    @property
    def processes(self) -> Any:
        return self._registry("processes", AsyncProcessRegistry)

    @property
    def host_events(self) -> Any:
        return self._registry("host_events", AsyncHostEventStore)

    @property
    def effects(self) -> Any:
        return self._registry("effects", AsyncEffectStore)

    async def delete_session(self, session_id: str) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, self.sync.delete_session, session_id)

    async def close(self) -> None:
        for hop in self._registries.values():
            hop._shutdown()
        self.sessions._shutdown()
        await asyncio.get_running_loop().run_in_executor(None, self.sync.close)

    async def __aenter__(self) -> "AsyncDeployment":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def open(url: str | os.PathLike[str] | None = None, **kw: Any) -> AsyncDeployment:
    """`lashstore.open`, with async factories and stores. Opening does no I/O worth a hop."""
    return AsyncDeployment(_open_sync(url, **kw))
