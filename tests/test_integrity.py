"""The integrity scenarios of lashstore.testing (one rule for ids, text, nesting and token counts;
deletions seen across deployments) on every backend: ids end in [memory], [sqlite], [postgres]."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from lashstore.testing import INTEGRITY_SCENARIOS, SessionHarness, memory_harness, sqlite_harness
from postgres_support import postgres_url  # noqa: F401 - the fixture


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def harness(request: pytest.FixtureRequest, tmp_path):
    if request.param == "memory":
        h = memory_harness()
    elif request.param == "sqlite":
        h = sqlite_harness(tmp_path)
    else:
        from lashstore.testing.postgres import postgres_harness

        h = postgres_harness(request.getfixturevalue("postgres_url"))
    yield h
    h.close()


def _test(scenario: Callable[[SessionHarness], None]):
    def test(harness: SessionHarness) -> None:
        scenario(harness)

    test.__name__ = test.__qualname__ = f"test_{scenario.__name__}"
    test.__doc__ = scenario.__doc__
    return test


for _scenario in INTEGRITY_SCENARIOS:
    globals()[f"test_{_scenario.__name__}"] = _test(_scenario)
del _scenario
