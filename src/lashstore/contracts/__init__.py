"""What every backend implements: one Protocol per capability, composed.

    SessionStore = SessionBasics + QueuedWork + Attachments + SessionMaintenance

plus `SessionStoreFactory`, `ProcessRegistry`, `HostEventStore`, `EffectStore` (each with
`RegistryMaintenance`) and the deployment's `Storage`. Everything public is in one of them, and
`lashstore.aio` is generated from them. Sync classes are the core.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from .attachments import Attachments
from .effects import EffectStore, ScopeLike
from .host_events import HostEventStore
from .maintenance import RegistryMaintenance, SessionMaintenance, Storage
from .processes import ProcessRegistry
from .queue import QueuedWork
from .sessions import SessionBasics, SessionStoreFactory

__all__ = [
    "SessionStore",
    "SessionBasics",
    "QueuedWork",
    "Attachments",
    "SessionMaintenance",
    "SessionStoreFactory",
    "ProcessRegistry",
    "HostEventStore",
    "EffectStore",
    "RegistryMaintenance",
    "Storage",
    "ScopeLike",
    "CAPABILITIES",
]


@runtime_checkable
class SessionStore(SessionBasics, QueuedWork, Attachments, SessionMaintenance, Protocol):
    """One session's store: everything a runtime and an operator do with it."""


#: Every protocol of the contract, composed ones last.
CAPABILITIES = (SessionBasics, QueuedWork, Attachments, SessionMaintenance, SessionStoreFactory, ProcessRegistry,
                HostEventStore, EffectStore, RegistryMaintenance, Storage, SessionStore)
