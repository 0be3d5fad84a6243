"""Queued-work, attachment-manifest and attachment-store conformance, on every backend."""

from __future__ import annotations

import pytest

from lashstore.testing.harness import memory_harness, sqlite_harness
from lashstore.testing.queue_suite import QUEUE_REOPEN_SCENARIOS, QUEUE_SCENARIOS


@pytest.fixture(params=["memory", "sqlite"])
def harness(request, tmp_path):
    h = memory_harness() if request.param == "memory" else sqlite_harness(tmp_path)
    yield h
    h.close()


@pytest.fixture(params=["sqlite"])
def durable_harness(request, tmp_path):
    h = sqlite_harness(tmp_path)
    yield h
    h.close()


def _on_every_backend(scenario):
    def test(harness):
        scenario(harness)

    test.__name__ = f"test_{scenario.__name__}"
    return test


def _on_durable_backends(scenario):
    def test(durable_harness):
        scenario(durable_harness)

    test.__name__ = f"test_{scenario.__name__}"
    return test


for _s in QUEUE_SCENARIOS:
    globals()[f"test_{_s.__name__}"] = _on_every_backend(_s)
for _s in QUEUE_REOPEN_SCENARIOS:
    globals()[f"test_{_s.__name__}"] = _on_durable_backends(_s)
