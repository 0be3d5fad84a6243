"""A store written by the previous release (lashstore 0.1.0, tests/fixtures/release_0_1_0, made by
its make.py with that release's code) opens with this one, which migrates it where the schema
moved, and reads back exactly what 0.1.0 read: every session's export, reads, queue, manifest,
artifacts, and every process, event, lease, grant, trigger and effect record."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg.conninfo

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "release_0_1_0"
sys.path.insert(0, str(FIXTURE))

from make import SCHEMA, reads  # noqa: E402
from postgres_support import deployment_url, postgres_url  # noqa: E402,F401 - the fixture


def _expected(name: str = "expected.json") -> dict:
    return json.loads((FIXTURE / name).read_text())


def _same(got: dict, want: dict) -> None:
    got = json.loads(json.dumps(got, sort_keys=True))
    for section in want:
        assert got[section] == want[section], section


def test_a_previous_release_sqlite_store_reads_back_the_same(tmp_path):
    store = tmp_path / "store"
    shutil.copytree(FIXTURE / "sqlite", store)
    _same(reads(str(store)), _expected())
    # And again, after this release has opened (and migrated) it once.
    _same(reads(str(store)), _expected())


def test_a_previous_release_postgres_schema_reads_back_the_same(postgres_url):  # noqa: F811
    params = psycopg.conninfo.conninfo_to_dict(postgres_url)
    subprocess.run(
        ["psql", "-q", "-v", "ON_ERROR_STOP=1", "-h", params.get("host", "127.0.0.1"), "-p", str(params.get("port", 5432)),
         "-U", params.get("user", "postgres"), "-d", params["dbname"], "-f", str(FIXTURE / "postgres.sql")],
        check=True, capture_output=True,
    )
    url = deployment_url(postgres_url, SCHEMA)
    _same(reads(url), _expected("expected_postgres.json"))
    _same(reads(url), _expected("expected_postgres.json"))
