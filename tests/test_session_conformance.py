"""Runs the session-store conformance suite (lashstore.testing) against every backend.

One test per scenario: `test_<scenario>[memory]` and `test_<scenario>[sqlite]`; the reopen
scenarios need a durable backend and run as `[sqlite]` only.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from lashstore.testing import REOPEN_SCENARIOS, SESSION_SCENARIOS, SessionHarness, memory_harness, sqlite_harness


@pytest.fixture(params=["memory", "sqlite"])
def harness(request: pytest.FixtureRequest, tmp_path):
    h = memory_harness() if request.param == "memory" else sqlite_harness(tmp_path)
    yield h
    h.close()


@pytest.fixture(params=["sqlite"])
def durable_harness(request: pytest.FixtureRequest, tmp_path):
    h = sqlite_harness(tmp_path)
    assert h.durable
    yield h
    h.close()


def _session_test(scenario: Callable[[SessionHarness], None]):
    def test(harness: SessionHarness) -> None:
        scenario(harness)

    return _named(test, scenario)


def _reopen_test(scenario: Callable[[SessionHarness], None]):
    def test(durable_harness: SessionHarness) -> None:
        scenario(durable_harness)

    return _named(test, scenario)


def _named(test, scenario):
    test.__name__ = test.__qualname__ = f"test_{scenario.__name__}"
    test.__doc__ = scenario.__doc__
    test.__module__ = __name__
    return test


for _scenario in SESSION_SCENARIOS:
    globals()[f"test_{_scenario.__name__}"] = _session_test(_scenario)
for _scenario in REOPEN_SCENARIOS:
    globals()[f"test_{_scenario.__name__}"] = _reopen_test(_scenario)
del _scenario
