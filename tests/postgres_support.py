"""Fixtures for the PostgreSQL tests (imported by each test_postgres_* module; not a conftest).

LASHSTORE_TEST_POSTGRES_URL names the server (default postgresql://postgres@127.0.0.1:5432/test).
Each test module gets a throw-away database `lashstore_test_<random>`, created here and dropped
(with FORCE) at the end of the run. When no server answers the tests are skipped with the reason;
with LASHSTORE_REQUIRE_POSTGRES=1 (CI) they fail instead.
"""

from __future__ import annotations

import os
import urllib.parse

import pytest

from lashstore.testing.postgres import DEFAULT_TEST_URL, create_test_database, drop_test_database, server_problem

__all__ = ["POSTGRES_URL", "REQUIRE_POSTGRES", "postgres_url", "require_server", "deployment_url"]

POSTGRES_URL = os.environ.get("LASHSTORE_TEST_POSTGRES_URL") or DEFAULT_TEST_URL
REQUIRE_POSTGRES = os.environ.get("LASHSTORE_REQUIRE_POSTGRES") == "1"


def require_server() -> None:
    """Skip (or, with LASHSTORE_REQUIRE_POSTGRES=1, fail) when no server answers."""
    problem = server_problem(POSTGRES_URL)
    if problem is None:
        return
    if REQUIRE_POSTGRES:
        pytest.fail(f"LASHSTORE_REQUIRE_POSTGRES=1 but {problem}", pytrace=False)
    pytest.skip(f"{problem} (set LASHSTORE_TEST_POSTGRES_URL to run the PostgreSQL tests)")


@pytest.fixture(scope="session")
def postgres_url():
    """The URL of a fresh database for this test run."""
    require_server()
    url = create_test_database(POSTGRES_URL)
    try:
        yield url
    finally:
        drop_test_database(POSTGRES_URL, url)


def deployment_url(dsn: str, schema: str) -> str:
    """A `postgresql://...?schema=` URL for `lashstore.open`, from the fixture's connection string
    (which may be in conninfo form, `user=... dbname=...`; `lashstore.open` would take that for a
    SQLite directory path)."""
    if "://" not in dsn:
        import psycopg.conninfo

        d = psycopg.conninfo.conninfo_to_dict(dsn)
        user = urllib.parse.quote(d.get("user", "postgres"))
        password = f":{urllib.parse.quote(d['password'])}" if d.get("password") else ""
        host = d.get("host", "127.0.0.1")
        port = f":{d['port']}" if d.get("port") else ""
        dsn = f"postgresql://{user}{password}@{host}{port}/{d['dbname']}"
    sep = "&" if "?" in dsn else "?"
    return f"{dsn}{sep}schema={schema}"
