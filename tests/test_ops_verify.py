"""verify: damage made on purpose (flipped bytes in a blob, a truncated file, a deleted blob,
rows that do not decode) is found and named, record by record; a sound store checks out."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

import pytest
from _ops_helpers import Agent, open_dep

import lashstore
from lashstore import HydratedSessionCheckpoint, RuntimeCommit, ops

MARKER = b"EXECUTION-STATE-MARKER:" + bytes(range(32, 127))


def _store(tmp_path: Path) -> tuple[str, Path]:
    url = str(tmp_path / "store")
    with lashstore.open(url) as dep:
        store = dep.sessions.create_store("s")
        a = Agent(store, "s")
        a.turn(via_queue=True)
        a.turn()
        store.commit_runtime_state(RuntimeCommit(
            session_id="s", expected_head_revision=a.head,
            checkpoint=HydratedSessionCheckpoint(turn_state={"t": 3}, tool_state={"k": 1}, execution_state=MARKER),
        ))
        store.close()
        Agent(dep.sessions.create_store("other"), "other").turn()
        path = Path(dep.storage.session_path("s"))
    assert not Path(f"{path}-wal").exists()  # checkpointed on close: edits below hit the file itself
    return url, path


def _verify(url: str) -> ops.VerifyReport:
    with lashstore.open(url) as dep:
        return ops.verify(dep)


def _sql(path: Path, sql: str, params: tuple = ()) -> None:
    conn = sqlite3.connect(path)
    conn.execute(sql, params)
    conn.commit()
    conn.close()


def test_a_sound_store_checks_out_and_is_not_touched(tmp_path):
    url, path = _store(tmp_path)
    before = path.read_bytes()
    report = _verify(url)
    assert report.ok and report.problems == []
    assert [c.session_id for c in report.checked] == ["other", "s"] or len(report.checked) == 2
    assert report.records > 20
    assert path.read_bytes() == before


def test_flipped_bytes_in_a_blob_are_named(tmp_path):
    url, path = _store(tmp_path)
    data = bytearray(path.read_bytes())
    at = data.index(MARKER)
    data[at + 5] ^= 0xFF
    path.write_bytes(bytes(data))
    report = _verify(url)
    assert not report.ok
    ref = hashlib.sha256(MARKER).hexdigest()
    blob = [p for p in report.problems if p.what == "blob"]
    assert [(p.key, p.location) for p in blob] == [(ref, str(path))]
    assert "sha256" in blob[0].detail
    # The head's checkpoint names that blob, so the checkpoint is reported too.
    assert any(p.what == "checkpoint" and ref in p.detail for p in report.problems)


def test_a_deleted_referenced_blob_is_named(tmp_path):
    url, path = _store(tmp_path)
    ref = hashlib.sha256(MARKER).hexdigest()
    _sql(path, "DELETE FROM blobs WHERE hash = ?", (ref,))
    report = _verify(url)
    [p] = report.problems
    assert p.what == "checkpoint" and "execution state" in p.detail and ref in p.detail


def test_a_truncated_file_is_reported(tmp_path):
    url, path = _store(tmp_path)
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size // 2)
    report = _verify(url)
    assert not report.ok
    assert {p.location for p in report.problems} == {str(path)}
    assert {c.session_id for c in report.checked if c.problems == 0} == {"other"}


def test_rows_that_do_not_decode_are_each_named(tmp_path):
    url, path = _store(tmp_path)
    _sql(path, "UPDATE graph_nodes SET body = x'c1' WHERE node_id = 'a1'")
    _sql(path, "UPDATE turn_commits SET result = x'c1' WHERE turn_id = 'turn-2'")
    _sql(path, "UPDATE queued_work_items SET payload = x'c1'")
    _sql(path, "UPDATE queued_work_batches SET state = 'exploded'")
    _sql(path, "UPDATE session_meta SET relation = x'c1'")
    report = _verify(url)
    found = {(p.what, p.key) for p in report.problems}
    assert ("graph node", "a1") in found
    assert ("turn commit result", "s/turn-2") in found
    assert any(w == "queued-work item" for w, _ in found)
    assert any(w == "queued-work batch" for w, _ in found)
    assert ("session relation", "s") in found
    assert len(report.problems) == 5


def test_a_head_whose_leaf_or_count_is_wrong_is_named(tmp_path):
    url, path = _store(tmp_path)
    _sql(path, "UPDATE session_head SET node_count = 99, leaf_node_id = 'gone' WHERE session_id = 's'")
    report = _verify(url)
    details = sorted(p.detail for p in report.problems if p.what == "session head")
    assert len(details) == 2 and "leaf 'gone'" in details[1] and "counts 99" in details[0]


def test_registry_rows_are_verified(tmp_path):
    from lashstore import ProcessRegistration

    url = str(tmp_path / "store")
    with lashstore.open(url) as dep:
        dep.processes.register_process(ProcessRegistration(id="p1"))
        dep.effects.execute(("turn", "t"), "k", {}, lambda: {"ok": 1})
        dep.host_events.register_subscription(
            lashstore.TriggerSubscriptionDraft(session_id="s", source_type="hook", source_key="x"))
    assert _verify(url).ok
    _sql(Path(url) / "processes.db", "UPDATE processes SET registration = x'c1'")
    _sql(Path(url) / "effects.db", "UPDATE effect_replay SET outcome = x'c1'")
    _sql(Path(url) / "host_events.db", "UPDATE host_event_subscriptions SET body = x'c1'")
    report = _verify(url)
    assert sorted(Path(p.location).name for p in report.problems) == ["effects.db", "host_events.db", "processes.db"]


def test_memory_stores_are_verified_too(tmp_path):
    with open_dep("memory", tmp_path) as dep:
        store = dep.sessions.create_store("s")
        Agent(store, "s").turn()
        assert ops.verify(dep).ok
        ref = store.database.write(lambda tx: tx.execute(
            "UPDATE blobs SET content = x'00' WHERE rowid = (SELECT min(rowid) FROM blobs) RETURNING hash"
        ).fetchone()[0])
        report = ops.verify(dep)
        assert [(p.what, p.key) for p in report.problems if p.what == "blob"] == [("blob", ref)]
        store.close()


def test_unreadable_file_in_the_directory_is_reported(tmp_path):
    url, path = _store(tmp_path)
    junk = path.with_name("junk-0123456789abcdef.db")
    junk.write_bytes(b"this is not a database" * 100)
    report = _verify(url)
    assert [Path(p.location).name for p in report.problems] == [junk.name]
    assert report.problems[0].what == "file"


@pytest.mark.parametrize("session", ["s", "other"])
def test_verify_one_session(tmp_path, session):
    url, path = _store(tmp_path)
    os.truncate(path, path.stat().st_size // 2)
    with lashstore.open(url) as dep:
        report = ops.verify(dep, sessions=[session])
    assert report.ok == (session == "other")


def test_a_file_at_an_older_schema_is_a_note_not_damage(tmp_path):
    from lashstore.backends.sqlite.connection import Database
    from lashstore.backends.sqlite.schema import KIND, MIGRATIONS

    url, path = _store(tmp_path)
    with lashstore.open(url) as dep:
        old = Path(dep.storage.session_path("old"))
    Database(old, kind=KIND, migrations=MIGRATIONS[:1]).close()
    report = _verify(url)
    assert report.ok and [n.what for n in report.notes] == ["schema"] and "lashstore migrate" in report.notes[0].detail
