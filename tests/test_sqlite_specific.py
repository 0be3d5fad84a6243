"""SQLite-only behaviour: concurrency across connections, schema versions, file names,
corruption detection (raw rows edited with sqlite3), pragmas.

Reference tests: storage_fixes.rs S-1, S-5, S-6; store_gc.rs G-3, G-6; spec W-34.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from pathlib import Path

import msgspec
import pytest

import lashstore
from lashstore import (
    ActivePath,
    BlobDescriptor,
    CorruptRecord,
    DurabilityTier,
    FullGraph,
    HeadRevisionConflict,
    RuntimeCommitResult,
    SessionMeta,
    SqliteSessionStore,
    SqliteSessionStoreFactory,
    StoreOptions,
    UnsupportedSchema,
    ValidationError,
)
from lashstore.backends.sqlite.schema import LATEST
from lashstore.testing.session_suite import node, runtime_commit, tool_state


def raw(path: Path, *statements: tuple) -> None:
    """Run statements on the file through a plain sqlite3 connection, outside lashstore."""
    conn = sqlite3.connect(path)
    try:
        for sql, *params in statements:
            conn.execute(sql, *params)
        conn.commit()
    finally:
        conn.close()


def query(path: Path, sql: str, params: tuple = ()) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def blob_hashes(path: Path) -> set[str]:
    return {h for (h,) in query(path, "SELECT hash FROM blobs")}


# -- S-1: head-revision CAS across two connections ----------------------------------------------


def test_s1_head_revision_cas_holds_across_two_connections(tmp_path: Path) -> None:
    for round_ in range(5):
        path = tmp_path / f"cas-{round_}.db"
        stores = [SqliteSessionStore(path), SqliteSessionStore(path)]
        barrier = threading.Barrier(2)
        outcomes: list[object] = [None, None]

        def commit(i: int) -> None:
            barrier.wait()
            try:
                outcomes[i] = stores[i].commit_runtime_state(
                    runtime_commit("root", turn_index=i, expected_head_revision=0)
                )
            except BaseException as e:  # noqa: BLE001 - inspected below
                outcomes[i] = e

        threads = [threading.Thread(target=commit, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not any(t.is_alive() for t in threads)
        wins = [o for o in outcomes if isinstance(o, RuntimeCommitResult)]
        losses = [o for o in outcomes if not isinstance(o, RuntimeCommitResult)]
        assert len(wins) == 1, outcomes
        assert wins[0].head_revision == 1
        assert len(losses) == 1
        assert type(losses[0]) is HeadRevisionConflict, f"loser got {losses[0]!r}, not HeadRevisionConflict"
        assert (losses[0].expected, losses[0].actual) == (0, 1)
        for s in stores:
            s.close()
        with SqliteSessionStore(path) as reopened:
            read = reopened.load_session()
            assert read is not None and read.head_revision == 1


# -- S-5: schema versions -------------------------------------------------------------------------


def test_s5_unsupported_schema_reports_real_versions(tmp_path: Path) -> None:
    path = tmp_path / "legacy.db"
    raw(path, ("CREATE TABLE legacy (x)",), ("PRAGMA user_version = 99",))
    with pytest.raises(UnsupportedSchema) as info:
        SqliteSessionStore(path)
    e = info.value
    assert e.found == 99
    assert e.expected == LATEST
    assert "99" in str(e)
    assert f"version {LATEST}" in str(e)


def test_s5_user_tables_at_version_zero_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    raw(path, ("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)",), ("INSERT INTO users VALUES (1, 'ann')",))
    with pytest.raises(UnsupportedSchema) as info:
        SqliteSessionStore(path)
    assert info.value.found == 0
    # The caller's data is untouched and no lashstore table was added.
    assert query(path, "SELECT id, name FROM users") == [(1, "ann")]
    names = {n for (n,) in query(path, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert names == {"users"}
    assert query(path, "PRAGMA user_version") == [(0,)]


def test_s5_newer_schema_is_refused_and_says_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "newer.db"
    SqliteSessionStore(path).close()
    raw(path, (f"PRAGMA user_version = {LATEST + 1}",))
    with pytest.raises(UnsupportedSchema) as info:
        SqliteSessionStore(path)
    assert info.value.found == LATEST + 1
    assert info.value.expected == LATEST
    assert "upgrade" in str(info.value).lower()


def test_s5_lashstore_file_of_another_kind_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "kind.db"
    SqliteSessionStore(path).close()
    raw(path, ("UPDATE lashstore_meta SET value = 'process' WHERE key = 'kind'",))
    with pytest.raises(UnsupportedSchema) as info:
        SqliteSessionStore(path)
    assert "process" in str(info.value)


@pytest.mark.parametrize("user_version", [99, 0], ids=["version-99", "version-0"])
def test_s5_refused_foreign_file_is_left_unmodified(tmp_path: Path, user_version: int) -> None:
    """A file lashstore refuses to open must not be changed by the attempt (not even to WAL)."""
    path = tmp_path / "foreign.db"
    raw(
        path,
        ("CREATE TABLE legacy (x)",),
        ("INSERT INTO legacy VALUES (1)",),
        (f"PRAGMA user_version = {user_version}",),
    )
    before = path.read_bytes()
    assert query(path, "PRAGMA journal_mode") == [("delete",)]
    with pytest.raises(UnsupportedSchema):
        SqliteSessionStore(path)
    assert query(path, "PRAGMA journal_mode") == [("delete",)], "opening a refused file switched it to WAL"
    assert path.read_bytes() == before


# -- S-6: concurrent first open ------------------------------------------------------------------


def test_s6_concurrent_first_open_never_observes_version_zero_schema(tmp_path: Path) -> None:
    path = tmp_path / "first-open.db"
    n = 16
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []
    lock = threading.Lock()

    def open_and_read() -> None:
        barrier.wait()
        try:
            with SqliteSessionStore(path) as s:
                assert s.load_session() is None
                assert s.load_session_meta() is None
        except BaseException as e:  # noqa: BLE001 - collected for the assertion
            with lock:
                errors.append(e)

    threads = [threading.Thread(target=open_and_read) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert query(path, "PRAGMA user_version") == [(LATEST,)]
    assert query(path, "SELECT value FROM lashstore_meta WHERE key = 'kind'") == [("session",)]


# -- G-3 and G-6: factory file names and deletion ------------------------------------------------


def test_g3_sqlite_factory_uses_deterministic_safe_session_paths(tmp_path: Path) -> None:
    name = lashstore.safe_file_name("../weird/session")
    assert name == lashstore.safe_file_name("../weird/session")
    assert name.startswith("weird_session-")
    assert re.fullmatch(r"weird_session-[0-9a-f]{16}\.db", name), name
    assert "/" not in name and "\\" not in name
    # Ids that sanitise alike still get distinct files.
    assert lashstore.safe_file_name("a/b") != lashstore.safe_file_name("a_b")
    factory = SqliteSessionStoreFactory(tmp_path / "root")
    path = factory._path_for_session("../weird/session")
    assert path.parent == tmp_path / "root"
    assert path.name == name


def test_g6_sqlite_factory_delete_session_removes_database_and_sidecars_idempotently(tmp_path: Path) -> None:
    factory = SqliteSessionStoreFactory(tmp_path)
    path = factory._path_for_session("fake")
    files = [path, Path(f"{path}-wal"), Path(f"{path}-shm")]
    for p in files:
        p.write_bytes(b"not really a database")
    assert factory.delete_session("fake") is True
    assert factory.delete_session("fake") is False
    assert not any(p.exists() for p in files)


def test_g6_delete_session_removes_real_files_and_open_handles_refuse(tmp_path: Path) -> None:
    from lashstore import SessionDeleted

    factory = SqliteSessionStoreFactory(tmp_path)
    store = factory.create_store("live")
    store.commit_runtime_state(runtime_commit("live"))
    path = factory._path_for_session("live")
    assert path.exists()
    assert factory.delete_session("live") is True
    assert not any(p.exists() for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")))
    with pytest.raises(SessionDeleted):
        store.load_head()
    store.close()
    assert not any(p.exists() for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")))
    factory.close()


# -- W-34: GC on corrupt records deletes nothing --------------------------------------------------


def _store_with_checkpoint_and_orphan(path: Path) -> tuple[SqliteSessionStore, RuntimeCommitResult, str]:
    store = SqliteSessionStore(path)
    result = store.commit_runtime_state(
        runtime_commit("root", tool_state=tool_state(4), execution_state=b"vm", nodes=[node("r")], leaf="r")
    )
    orphan = store.put_blob(b"orphan blob")
    return store, result, orphan


def test_w34_gc_on_a_corrupt_manifest_raises_and_deletes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store, result, orphan = _store_with_checkpoint_and_orphan(path)
    before = blob_hashes(path)
    assert orphan in before
    # The manifest's stored bytes no longer match its hash.
    raw(path, ("UPDATE blobs SET content = ? WHERE hash = ?", (b"garbage!", result.checkpoint_ref)))
    with pytest.raises(CorruptRecord):
        store.gc_unreachable()
    assert blob_hashes(path) == before
    with pytest.raises(CorruptRecord):
        store.load_session()


def test_w34_gc_on_an_undecodable_manifest_raises_and_deletes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store, result, orphan = _store_with_checkpoint_and_orphan(path)
    # A blob whose hash is right but which is not a manifest, made the head's checkpoint.
    bogus = msgspec.msgpack.encode([1, 2, 3])
    ref = store.put_blob(bogus)
    raw(path, ("UPDATE session_head SET checkpoint_ref = ?", (ref,)))
    before = blob_hashes(path)
    with pytest.raises(CorruptRecord) as info:
        store.gc_unreachable()
    assert info.value.key == ref
    assert blob_hashes(path) == before
    assert orphan in before and result.checkpoint_ref in before


@pytest.mark.parametrize(
    "statement",
    [
        ("UPDATE session_head SET body = ?", (b"\xc1not msgpack",)),
        ("UPDATE session_head SET checkpoint_ref = ?", ("not-a-blob-ref",)),
    ],
    ids=["undecodable-body", "malformed-checkpoint-ref"],
)
def test_w34_gc_on_a_corrupt_head_raises_and_deletes_nothing(tmp_path: Path, statement: tuple) -> None:
    path = tmp_path / "s.db"
    store, _result, orphan = _store_with_checkpoint_and_orphan(path)
    raw(path, statement)
    before = blob_hashes(path)
    with pytest.raises(CorruptRecord):
        store.gc_unreachable()
    assert blob_hashes(path) == before
    assert orphan in before
    with pytest.raises(CorruptRecord):
        store.load_session()
    with pytest.raises(CorruptRecord):
        store.load_head()


# -- corrupt rows are reported, never dropped ------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [b"\xc1", msgspec.msgpack.encode([1, 2]), msgspec.msgpack.encode({"parent_node_id": "r"})],
    ids=["not-msgpack", "wrong-shape", "no-node-id"],
)
def test_undecodable_graph_node_raises_corrupt_record(tmp_path: Path, body: bytes) -> None:
    path = tmp_path / "s.db"
    store = SqliteSessionStore(path)
    store.save_session_meta(SessionMeta(session_id="root", session_name="n", created_at="2026-06-02T00:00:00Z"))
    store.commit_runtime_state(runtime_commit("root", nodes=[node("r"), node("a", "r"), node("b", "a")], leaf="b"))
    raw(path, ("UPDATE graph_nodes SET body = ? WHERE node_id = 'a'", (body,)))
    with pytest.raises(CorruptRecord) as info:
        store.load_session(FullGraph())
    assert info.value.key == "a"
    with pytest.raises(CorruptRecord):
        store.load_session(ActivePath())
    with pytest.raises(CorruptRecord):
        store.load_node("a")
    with pytest.raises(CorruptRecord):
        store.load_picker_info()
    # Nodes that are intact still read.
    assert store.load_node("r") is not None


@pytest.mark.parametrize(
    "edit",
    ["content", "compressed-content", "raw_size", "compression", "kind"],
)
def test_altered_blob_raises_corrupt_record_on_get_blob(tmp_path: Path, edit: str) -> None:
    path = tmp_path / "s.db"
    store = SqliteSessionStore(path)
    small = store.put_blob(b"hello world")
    big_content = b"compressible tool state " * 400
    big = store.put_blob(big_content, BlobDescriptor.tool_state_snapshot())
    assert store.blob_info(big).compression.value == "zstd"  # type: ignore[union-attr]
    ref = small
    if edit == "content":
        stmt = ("UPDATE blobs SET content = ? WHERE hash = ?", (b"hellO world", small))
    elif edit == "compressed-content":
        (stored,) = query(path, "SELECT content FROM blobs WHERE hash = ?", (big,))[0]
        damaged = bytearray(stored)
        damaged[len(damaged) // 2] ^= 0xFF
        stmt = ("UPDATE blobs SET content = ? WHERE hash = ?", (bytes(damaged), big))
        ref = big
    elif edit == "raw_size":
        stmt = ("UPDATE blobs SET raw_size = raw_size + 1 WHERE hash = ?", (small,))
    elif edit == "compression":
        stmt = ("UPDATE blobs SET compression = 'lz4' WHERE hash = ?", (small,))
    else:
        stmt = ("UPDATE blobs SET kind = 'mystery' WHERE hash = ?", (small,))
    raw(path, stmt)
    with pytest.raises(CorruptRecord) as info:
        store.get_blob(ref)
    assert info.value.key == ref
    # The other blob is unaffected.
    other = big if ref == small else small
    assert store.get_blob(other) == (big_content if other == big else b"hello world")


def test_altered_snapshot_blob_makes_load_session_raise(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = SqliteSessionStore(path)
    result = store.commit_runtime_state(runtime_commit("root", tool_state=tool_state(1)))
    ref = result.manifest.tool_state_ref
    raw(path, ("UPDATE blobs SET content = ? WHERE hash = ?", (msgspec.msgpack.encode({"generation": 2}), ref)))
    with pytest.raises(CorruptRecord):
        store.load_session()
    raw(path, ("DELETE FROM blobs WHERE hash = ?", (ref,)))
    with pytest.raises(CorruptRecord):
        store.load_session()


def test_altered_artifact_blob_raises_corrupt_record(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = SqliteSessionStore(path)
    ref = store.put_artifact("module", b"process echo")
    raw(path, ("UPDATE blobs SET content = ? WHERE hash = ?", (b"process ECHO", ref)))
    with pytest.raises(CorruptRecord):
        store.get_artifact("module")
    raw(path, ("DELETE FROM blobs WHERE hash = ?", (ref,)))
    with pytest.raises(CorruptRecord):
        store.get_artifact("module")


# -- schema and pragmas ---------------------------------------------------------------------------


def test_schema_has_turn_commits_and_no_reference_only_tables(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    SqliteSessionStore(path).close()
    tables = {n for (n,) in query(path, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "turn_commits" in tables
    assert "runtime_turn_checkpoints" not in tables
    assert "runtime_effect_journal" not in tables
    assert {"blobs", "session_head", "graph_nodes", "usage_deltas", "session_meta", "artifact_refs"} <= tables
    assert query(path, "PRAGMA user_version") == [(LATEST,)]
    assert query(path, "SELECT value FROM lashstore_meta WHERE key = 'kind'") == [("session",)]


def _pragma(store: SqliteSessionStore, name: str) -> object:
    # synchronous and foreign_keys are per connection: ask the store's own connection.
    return store._db.conn.execute(f"PRAGMA {name}").fetchone()[0]


def test_synchronous_full_option_is_applied(tmp_path: Path) -> None:
    with SqliteSessionStore(tmp_path / "full.db", options=StoreOptions(synchronous="full")) as full:
        assert _pragma(full, "synchronous") == 2
    with SqliteSessionStore(tmp_path / "normal.db") as normal:
        assert _pragma(normal, "synchronous") == 1
    with lashstore.open(f"sqlite:///{tmp_path / 'dep'}?synchronous=full") as dep:
        store = dep.sessions.create_store("s")
        assert _pragma(store, "synchronous") == 2  # type: ignore[arg-type]


def test_wal_and_foreign_keys_are_on(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with SqliteSessionStore(path) as store:
        assert str(_pragma(store, "journal_mode")).lower() == "wal"
        assert _pragma(store, "foreign_keys") == 1
        assert _pragma(store, "busy_timeout") == 15_000
    assert query(path, "PRAGMA journal_mode") == [("wal",)]  # persistent in the file


def test_sqlite_tiers_and_fixed_session_validation(tmp_path: Path) -> None:
    with SqliteSessionStore(tmp_path / "s.db") as s:
        assert s.durability_tier() == DurabilityTier.DURABLE
    with SqliteSessionStore(":memory:") as m:
        assert m.durability_tier() == DurabilityTier.INLINE
    with pytest.raises(ValidationError):
        SqliteSessionStore(tmp_path / "bad.db", session_id="")
    assert not (tmp_path / "bad.db").exists()


def test_listing_sessions_never_modifies_a_file(tmp_path):
    """A listing opens files read-only: an empty or foreign file is reported, not initialised."""
    factory = lashstore.SqliteSessionStoreFactory(tmp_path)
    factory.create_store("good").close()
    empty = tmp_path / "empty-0123456789abcdef.db"
    empty.write_bytes(b"")
    garbage = tmp_path / "bad-fedcba9876543210.db"
    garbage.write_bytes(b"not a database at all" * 50)
    before = {p.name: p.read_bytes() for p in (empty, garbage)}
    listed = {s.session_id: s for s in factory.list_sessions()}
    assert listed["good"].error is None
    assert listed["empty-0123456789abcdef"].error and listed["bad-fedcba9876543210"].error
    assert {p.name: p.read_bytes() for p in (empty, garbage)} == before
    assert not (tmp_path / "empty-0123456789abcdef.db-wal").exists()


def test_append_reusing_a_later_node_id_leaves_nothing_behind(tmp_path):
    """Regression: the nodes inserted before the reused id were committed with the refusal."""
    with SqliteSessionStore(tmp_path / "s.db") as s:
        first = lashstore.RuntimeCommit(
            session_id="s", graph=lashstore.GraphAppend([lashstore.GraphNode(node_id="a")], "a")
        )
        s.commit_runtime_state(first)
        bad = lashstore.RuntimeCommit(
            session_id="s",
            graph=lashstore.GraphAppend(
                [lashstore.GraphNode(node_id="fresh", parent_node_id="a"), lashstore.GraphNode(node_id="a", parent_node_id="fresh")],
                "a",
            ),
        )
        with pytest.raises(lashstore.ValidationError, match="'a' is an existing node"):
            s.commit_runtime_state(bad)
        assert s.load_node("fresh") is None
        assert s.load_head().head_revision == 1
        assert [n.node_id for n in s.load_session().graph.nodes] == ["a"]
