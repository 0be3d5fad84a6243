"""The Hypothesis state machines of test_state_machine.py and test_queue_state_machine.py, with the
PostgreSQL store in the place of the SQLite one (the memory store stays the oracle).

Each example gets a schema of its own in the run's throw-away database; "reopen" opens a second
store object (its own pool) on the same schema. Fewer examples than the SQLite runs: every
example creates a schema.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis.stateful import rule

import hypothesis.strategies as st
from lashstore.backends.postgres import PostgresSessionStore
from lashstore.testing.postgres import fresh_schema
from postgres_support import postgres_url  # noqa: F401 - the fixture

_URL: dict[str, str] = {}


@pytest.fixture(autouse=True)
def _postgres_for_machines(postgres_url):  # noqa: F811
    _URL["url"] = postgres_url
    yield


def _open(schema: str, options: Any, session_id: str | None) -> PostgresSessionStore:
    return PostgresSessionStore(_URL["url"], session_id=session_id, options=options, schema=schema)


# -- the session store machine ----------------------------------------------------------------

from test_state_machine import SID, SessionStoreMachine  # noqa: E402


class PostgresSessionStoreMachine(SessionStoreMachine):
    def __init__(self) -> None:
        super().__init__()
        # The SQLite stores the parent opened; PostgreSQL takes their place (two store objects,
        # two pools, on one schema).
        self.sql.close()
        self.sql2.close()
        self.schema = fresh_schema("sm")
        self.sql = _open(self.schema, self.opts, SID)
        self.sql2 = _open(self.schema, self.opts, SID)

    @rule(bind=st.booleans())
    def reopen_sqlite(self, bind: bool) -> None:
        """A new store object (and pool) must see exactly what the old one wrote.

        Always opened for the session: on PostgreSQL a store opened without a session id keeps
        its named artifacts at deployment level (owner ""), not in the one session of a file, so
        the SQLite machine's unbound reopen does not carry over (the binding itself is covered by
        the conformance scenarios)."""
        self.sql.close()
        self.sql = _open(self.schema, self.opts, SID)


PostgresSessionStoreMachine.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestPostgresSessionStoreMachine = PostgresSessionStoreMachine.TestCase


# -- the queue machine --------------------------------------------------------------------------

from test_queue_state_machine import QueueMachine  # noqa: E402


class PostgresQueueMachine(QueueMachine):
    def __init__(self) -> None:
        super().__init__()
        self.sql.close()
        self.schema = fresh_schema("qsm")
        self.sql = _open(self.schema, self.opts, None)

    @rule()
    def reopen(self) -> None:
        self.sql.close()
        self.sql = _open(self.schema, self.opts, None)
        event("reopened")

    def _stored_rows(self) -> tuple[dict[str, tuple], dict[str, tuple]]:
        rows = self.sql.database.read(
            lambda t: t.all(
                "SELECT batch_id, state, claim_fencing_token, claim_id, claim_expires_at_ms FROM queued_work_batches"
            ),
            "test: batch rows",
        )
        sql_rows = {
            self.sql2mem[r[0]]: (r[1], r[2], self.sql2mem.get(r[3], r[3]) if r[3] else None, r[4]) for r in rows
        }
        with self.mem._lock():
            mem_rows = {
                b.batch_id: (b.state, b.claim_fencing_token, b.claim_id, b.claim_expires_at_ms)
                for b in self.mem._f.batches.values()
            }
        return sql_rows, mem_rows


PostgresQueueMachine.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestPostgresQueueMachine = PostgresQueueMachine.TestCase
