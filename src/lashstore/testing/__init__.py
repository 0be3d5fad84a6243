"""Conformance suites any backend can import and run.

    from lashstore.testing import SESSION_SCENARIOS, REOPEN_SCENARIOS, SessionHarness

Each scenario is a plain function taking a `SessionHarness`; generate one test per scenario
(see lashstore's own tests/test_session_conformance.py) or call `run_session_suite(harness)`.
"""

from .harness import SessionHarness, memory_harness, sqlite_harness
from .effect_suite import (
    EFFECT_REOPEN_SCENARIOS,
    EFFECT_SCENARIOS,
    EffectHarness,
    memory_effect_harness,
    sqlite_effect_harness,
)
from .host_event_suite import (
    HOST_EVENT_REOPEN_SCENARIOS,
    HOST_EVENT_SCENARIOS,
    HostEventHarness,
    memory_host_event_harness,
    sqlite_host_event_harness,
)
from .process_suite import (
    PROCESS_REOPEN_SCENARIOS,
    PROCESS_SCENARIOS,
    ProcessHarness,
    memory_process_harness,
    sqlite_process_harness,
)
from .integrity_suite import INTEGRITY_SCENARIOS
from .queue_suite import QUEUE_REOPEN_SCENARIOS, QUEUE_SCENARIOS
from .session_suite import ALL_SCENARIOS, REOPEN_SCENARIOS, SESSION_SCENARIOS, run_session_suite

__all__ = [
    "SessionHarness",
    "memory_harness",
    "sqlite_harness",
    "SESSION_SCENARIOS",
    "REOPEN_SCENARIOS",
    "ALL_SCENARIOS",
    "run_session_suite",
    "INTEGRITY_SCENARIOS",
    "QUEUE_SCENARIOS",
    "QUEUE_REOPEN_SCENARIOS",
    "ProcessHarness",
    "memory_process_harness",
    "sqlite_process_harness",
    "PROCESS_SCENARIOS",
    "PROCESS_REOPEN_SCENARIOS",
    "EffectHarness",
    "memory_effect_harness",
    "sqlite_effect_harness",
    "EFFECT_SCENARIOS",
    "EFFECT_REOPEN_SCENARIOS",
    "HostEventHarness",
    "memory_host_event_harness",
    "sqlite_host_event_harness",
    "HOST_EVENT_SCENARIOS",
    "HOST_EVENT_REOPEN_SCENARIOS",
]
