"""Every conformance suite of lashstore.testing on PostgreSQL: ids end in [postgres].

Session, queue and attachment scenarios (plus their reopen variants), the process registry, host
events and effects: each scenario runs against stores that get a schema of their own in a
throw-away database (see tests/postgres_support.py), so scenarios never see each other.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from lashstore.testing import (
    EFFECT_REOPEN_SCENARIOS,
    EFFECT_SCENARIOS,
    HOST_EVENT_REOPEN_SCENARIOS,
    HOST_EVENT_SCENARIOS,
    PROCESS_REOPEN_SCENARIOS,
    PROCESS_SCENARIOS,
    QUEUE_REOPEN_SCENARIOS,
    QUEUE_SCENARIOS,
    REOPEN_SCENARIOS,
    SESSION_SCENARIOS,
)
from lashstore.testing.postgres import (
    postgres_effect_harness,
    postgres_harness,
    postgres_host_event_harness,
    postgres_process_harness,
)
from postgres_support import postgres_url  # noqa: F401 - the fixture

#: Scenarios that cannot apply to PostgreSQL, with the reason (none today).
NOT_ON_POSTGRES: dict[str, str] = {}


@pytest.fixture(params=["postgres"])
def session_harness(request, postgres_url):  # noqa: F811
    h = postgres_harness(postgres_url)
    yield h
    h.close()


@pytest.fixture(params=["postgres"])
def process_harness(request, postgres_url):  # noqa: F811
    h = postgres_process_harness(postgres_url)
    yield h
    h.close()


@pytest.fixture(params=["postgres"])
def host_event_harness(request, postgres_url):  # noqa: F811
    h = postgres_host_event_harness(postgres_url)
    yield h
    h.close()


@pytest.fixture(params=["postgres"])
def effect_harness(request, postgres_url):  # noqa: F811
    h = postgres_effect_harness(postgres_url)
    yield h
    h.close()


def _make(scenario: Callable, fixture: str, prefix: str):
    reason = NOT_ON_POSTGRES.get(scenario.__name__)

    if fixture == "session_harness":
        def test(session_harness):
            if reason:
                pytest.skip(reason)
            scenario(session_harness)
    elif fixture == "process_harness":
        def test(process_harness):
            if reason:
                pytest.skip(reason)
            scenario(process_harness)
    elif fixture == "host_event_harness":
        def test(host_event_harness):
            if reason:
                pytest.skip(reason)
            scenario(host_event_harness)
    else:
        def test(effect_harness):
            if reason:
                pytest.skip(reason)
            scenario(effect_harness)

    test.__name__ = test.__qualname__ = f"test_{prefix}_{scenario.__name__}"
    test.__doc__ = scenario.__doc__
    test.__module__ = __name__
    return test


_SUITES = [
    ("session", "session_harness", SESSION_SCENARIOS + REOPEN_SCENARIOS),
    ("queue", "session_harness", QUEUE_SCENARIOS + QUEUE_REOPEN_SCENARIOS),
    ("process", "process_harness", PROCESS_SCENARIOS + PROCESS_REOPEN_SCENARIOS),
    ("host_event", "host_event_harness", HOST_EVENT_SCENARIOS + HOST_EVENT_REOPEN_SCENARIOS),
    ("effect", "effect_harness", EFFECT_SCENARIOS + EFFECT_REOPEN_SCENARIOS),
]

for _prefix, _fixture, _scenarios in _SUITES:
    for _scenario in _scenarios:
        globals()[f"test_{_prefix}_{_scenario.__name__}"] = _make(_scenario, _fixture, _prefix)
del _prefix, _fixture, _scenarios, _scenario
