"""Schemas move forward by numbered steps; data written under an older version stays readable."""

from __future__ import annotations

import sqlite3

import pytest

import lashstore
from lashstore.backends.sqlite.connection import Database
from lashstore.backends.sqlite.schema import KIND, LATEST, MIGRATIONS


def test_version_1_file_is_migrated_forward_and_keeps_its_data(tmp_path):
    path = tmp_path / "old.db"
    old = Database(path, kind=KIND, migrations=MIGRATIONS[:1])
    assert old.conn.execute("PRAGMA user_version").fetchone()[0] == 1
    old.close()
    # Write through the current code, then pretend the file never saw version 2.
    with lashstore.SqliteSessionStore(path) as s:
        ref = s.put_blob(b"kept across the migration")
        s.commit_runtime_state(lashstore.RuntimeCommit(session_id="s", config={"v": 1}))
    conn = sqlite3.connect(path)
    for table in ("queued_work_items", "queued_work_batches", "attachment_manifest"):
        conn.execute(f"DROP TABLE {table}")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()

    with lashstore.SqliteSessionStore(path) as s:
        assert s.get_blob(ref) == b"kept across the migration"
        assert s.load_session().config == {"v": 1}
        b = s.enqueue_queued_work(lashstore.QueuedWorkBatchDraft(session_id="s", payloads=[{"x": 1}]))
        assert [x.batch_id for x in s.list_queued_work("s")] == [b.batch_id]
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST
    conn.close()


def test_a_file_of_another_kind_is_refused(tmp_path):
    path = tmp_path / "other.db"
    Database(path, kind="process registry", migrations=[(1, ["CREATE TABLE lashstore_meta (key TEXT PRIMARY KEY, value TEXT)"])]).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {LATEST}")
    conn.commit()
    conn.close()
    with pytest.raises(lashstore.UnsupportedSchema) as e:
        lashstore.SqliteSessionStore(path)
    assert "process registry" in str(e.value)


def test_a_newer_schema_is_refused_and_left_untouched(tmp_path):
    path = tmp_path / "new.db"
    lashstore.SqliteSessionStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {LATEST + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(lashstore.UnsupportedSchema) as e:
        lashstore.SqliteSessionStore(path)
    assert e.value.found == LATEST + 1 and e.value.expected == LATEST
    assert "upgrade lashstore" in str(e.value)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST + 1
    conn.close()
