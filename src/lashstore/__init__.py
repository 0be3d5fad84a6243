"""lashstore: a durable session store for AI-agent runtimes.

    import lashstore
    with lashstore.open("sqlite:///.lashstore") as dep:
        store = dep.sessions.create_store("chat-1", model="gpt-5")
        ...
"""

from __future__ import annotations

from . import model as _model  # first: the codec and the records import each other
from .backends.memory import MemorySessionStore, MemorySessionStoreFactory
from .backends.memory.effects import MemoryEffectStore
from .backends.memory.host_events import MemoryHostEventStore
from .backends.memory.processes import MemoryProcessRegistry
from .backends.sqlite import SqliteSessionStore, SqliteSessionStoreFactory, safe_file_name
from .backends.sqlite.effects import SqliteEffectStore
from .backends.sqlite.host_events import SqliteHostEventStore
from .backends.sqlite.processes import SqliteProcessRegistry
from .clock import Clock, ManualClock, RandomIds, SystemClock
from .codec import canonical_json, stable_hash
from .contracts import EffectStore, HostEventStore, ProcessRegistry, SessionStore, SessionStoreFactory
from .deployment import Deployment, open
from .durable_calls import DurableCall, EffectAttempt, ScopedEffectController, durable, durable_call
from .errors import *  # noqa: F401,F403
from .errors import __all__ as _errors_all
from .model import *  # noqa: F401,F403
from .model import __all__ as _model_all
from . import ops
from .options import StoreOptions
from .rules.commit import turn_commit_hash
from .rules.effects import EffectPolicy
from .rules.host_events import deterministic_delivery_process_id, source_key_for_subscription
from .rules.process import JsonSchemaValidator, PayloadValidator
from .rules.usage import merge_ledger

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "ops",
    "open",
    "Deployment",
    "StoreOptions",
    "SessionStore",
    "SessionStoreFactory",
    "MemorySessionStore",
    "MemorySessionStoreFactory",
    "SqliteSessionStore",
    "SqliteSessionStoreFactory",
    "safe_file_name",
    "ProcessRegistry",
    "MemoryProcessRegistry",
    "SqliteProcessRegistry",
    "PayloadValidator",
    "JsonSchemaValidator",
    "HostEventStore",
    "MemoryHostEventStore",
    "SqliteHostEventStore",
    "source_key_for_subscription",
    "deterministic_delivery_process_id",
    "EffectStore",
    "MemoryEffectStore",
    "SqliteEffectStore",
    "EffectPolicy",
    "EffectAttempt",
    "ScopedEffectController",
    "durable",
    "durable_call",
    "DurableCall",
    "Clock",
    "SystemClock",
    "ManualClock",
    "RandomIds",
    "canonical_json",
    "stable_hash",
    "turn_commit_hash",
    "merge_ledger",
    *_errors_all,
    *_model_all,
]

# The PostgreSQL classes load on first use, so `import lashstore` never needs psycopg.
_POSTGRES = {
    "PostgresDatabase",
    "PostgresSessionStore",
    "PostgresSessionStoreFactory",
    "PostgresProcessRegistry",
    "PostgresHostEventStore",
    "PostgresEffectStore",
}


def __getattr__(name: str):  # noqa: ANN202 - module __getattr__
    if name in _POSTGRES:
        from .backends import postgres

        return getattr(postgres, name)
    raise AttributeError(f"module 'lashstore' has no attribute {name!r}")
