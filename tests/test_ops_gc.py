"""GC and vacuum across a deployment: what is collected, what is kept (roots and the grace
period), the bytes the files give back, and GC running against a committing OS process."""

from __future__ import annotations

import multiprocessing as mp
import os
import sqlite3
import time
import traceback
from pathlib import Path

import pytest
from _ops_helpers import BACKENDS, Agent, open_dep

import lashstore
from lashstore import (
    ActivePath,
    FullGraph,
    GraphAppend,
    GraphNode,
    HydratedSessionCheckpoint,
    ManualClock,
    RuntimeCommit,
    ValidationError,
    ops,
)

CTX = mp.get_context("spawn")
MINUTE = ops.MINUTE


@pytest.fixture(params=BACKENDS)
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


def _size(path: Path) -> int:
    return sum(os.path.getsize(p) for p in (path, Path(f"{path}-wal")) if os.path.exists(p))


def test_gc_collects_what_nothing_reaches_and_keeps_every_root(kind, tmp_path):
    clock = ManualClock()
    with open_dep(kind, tmp_path, clock) as dep:
        store = dep.sessions.create_store("s")
        a = Agent(store, "s")
        for _ in range(6):
            a.turn()
        art = store.put_artifact("notes", b"named artifacts are roots")
        att = store.put_attachment("s", b"\x89PNG attachment bytes", "image/png")
        loose = store.put_blob(b"nobody refers to me")
        store.close()
        clock.advance(ops.DEFAULT_GC_GRACE_MS + 1)

        dry = ops.gc(dep, dry_run=True)
        assert dry.deleted_blob_count > 0 and dry.bytes_after is None
        report = ops.gc(dep)
        assert report.deleted_blob_count == dry.deleted_blob_count
        assert report.deleted_bytes == dry.deleted_bytes > 0
        store = dep.sessions.open_store("s")
        assert store.get_blob(loose) is None
        assert store.get_blob(art) == b"named artifacts are roots"
        assert store.attachment_store("s").get(att.id).bytes == b"\x89PNG attachment bytes"
        read = store.load_session(ActivePath())
        assert read.checkpoint.tool_state["turn"] == 6 and read.checkpoint.plugin_snapshot is not None
        again = ops.gc(dep)
        assert again.deleted_blob_count == 0
        store.close()
        assert ops.verify(dep).ok


def test_the_grace_period_keeps_young_blobs(kind, tmp_path):
    clock = ManualClock()
    with open_dep(kind, tmp_path, clock) as dep:
        store = dep.sessions.create_store("s")
        ref = store.put_blob(b"put for a commit that has not happened yet")
        store.close()
        assert ops.gc(dep, grace_ms=10 * MINUTE).deleted_blob_count == 0
        clock.advance(11 * MINUTE)
        assert ops.gc(dep, grace_ms=10 * MINUTE).deleted_blob_count == 1
        with dep.sessions.open_store("s") as store:
            assert store.get_blob(ref) is None


def _put_then_commit(store, gc) -> None:
    """A runtime's pattern: put a snapshot, then name its ref in the next commit."""
    ref = store.put_blob(b"execution state written before the commit")
    gc()
    store.commit_runtime_state(RuntimeCommit(
        session_id="s", expected_head_revision=0,
        checkpoint=HydratedSessionCheckpoint(execution_state_ref=ref, turn_state={"t": 1}),
    ))


def test_the_race_put_then_commit_loses_against_gc_without_grace(kind, tmp_path):
    # This is the race of the store's own gc_unreachable (no grace period): the commit is
    # refused, nothing is corrupted. ops.gc closes it with its grace period (next test).
    with open_dep(kind, tmp_path) as dep:
        store = dep.sessions.create_store("s")
        with pytest.raises(ValidationError, match="do not exist"):
            _put_then_commit(store, store.gc_unreachable)
        store.close()


def test_the_grace_period_closes_the_put_then_commit_race(kind, tmp_path):
    with open_dep(kind, tmp_path) as dep:
        store = dep.sessions.create_store("s")
        _put_then_commit(store, lambda: ops.gc(dep, grace_ms=MINUTE))
        assert store.load_session().checkpoint.execution_state == b"execution state written before the commit"
        store.close()


def test_re_putting_old_garbage_refreshes_its_age(kind, tmp_path):
    clock = ManualClock()
    with open_dep(kind, tmp_path, clock) as dep:
        store = dep.sessions.create_store("s")
        store.put_blob(b"same bytes")
        clock.advance(60 * MINUTE)
        _put_then_commit_same(store, lambda: ops.gc(dep, grace_ms=10 * MINUTE))
        store.close()


def _put_then_commit_same(store, gc) -> None:
    ref = store.put_blob(b"same bytes")
    gc()
    store.commit_runtime_state(RuntimeCommit(
        session_id="s", expected_head_revision=0, checkpoint=HydratedSessionCheckpoint(execution_state_ref=ref)))


def test_gc_shrinks_the_files_by_what_it_reports(tmp_path):
    with open_dep("sqlite", tmp_path) as dep:
        store = dep.sessions.create_store("s")
        a = Agent(store, "s")
        for _ in range(60):
            a.turn()
        store.close()
        path = dep.storage.session_path("s")
        before = _size(path)
        report = ops.gc(dep, grace_ms=0)
        assert report.bytes_before == before
        assert report.bytes_after == _size(path) < before
        assert report.reclaimed_bytes == before - _size(path)
        kept = ops.gc(dep, grace_ms=0, shrink=False)
        assert kept.deleted_blob_count == 0 and kept.reclaimed_bytes == 0


def test_a_session_whose_checkpoint_is_damaged_is_left_alone_and_reported(tmp_path):
    with open_dep("sqlite", tmp_path) as dep:
        for sid in ("good", "bad"):
            store = dep.sessions.create_store(sid)
            a = Agent(store, sid)
            a.turn()
            a.turn()
            head = store.load_head()
            store.close()
        conn = sqlite3.connect(dep.storage.session_path("bad"))
        conn.execute("DELETE FROM blobs WHERE hash = ?", (head.checkpoint_ref,))
        conn.commit()
        conn.close()
        report = ops.gc(dep, grace_ms=0)
        by_id = {s.session_id: s for s in report.sessions}
        assert by_id["bad"].error and "missing" in by_id["bad"].error and by_id["bad"].deleted_blob_count == 0
        assert by_id["good"].error is None and by_id["good"].deleted_blob_count > 0
        assert report.errors == 1


def test_vacuum_removes_tombstones_and_shrinks_every_file(kind, tmp_path):
    with open_dep(kind, tmp_path) as dep:
        store = dep.sessions.create_store("s")
        a = Agent(store, "s")
        for _ in range(30):
            a.turn("y" * 2000)
        store.tombstone_nodes([f"u{i}" for i in range(2, 30)] + [f"a{i}" for i in range(2, 30)])
        assert len(store.list_tombstoned_nodes()) == 56
        store.close()
        dep.effects.execute(("turn", "s/1"), "k", {}, lambda: "x" * 5000)
        report = ops.vacuum(dep)
        assert report.removed_node_count == 56 and report.errors == 0
        with dep.sessions.open_store("s") as store:
            assert store.list_tombstoned_nodes() == []
            assert [n.node_id for n in store.load_session(FullGraph()).graph.nodes] == ["u1", "a1", "u30", "a30"]
        if kind == "sqlite":
            names = [f.name for f in report.files]
            assert names == ["s", "effects"] and Path(report.files[1].path).name == "effects.db"
            assert report.reclaimed_bytes > 0
            assert report.bytes_after == sum(_size(Path(f.path)) for f in report.files)
        assert ops.verify(dep).ok


# -- a second OS process commits while GC runs -------------------------------------------------


WRITER_TURNS = 100
GRACE_MS = 500  # longer than any put -> commit gap here; shorter than the run, so GC has work


def _writer(url: str, turns: int, ready: "mp.Event", out: "mp.Queue") -> None:
    try:
        with lashstore.open(url) as dep:
            store = dep.sessions.create_store("race")
            head, leaf, plugin_ref, refused = 0, None, None, 0
            ready.set()
            for i in range(1, turns + 1):
                # Fresh snapshot content every turn; the plugin snapshot is new every 4th turn and
                # passed through by ref in between; execution state is put first, then named.
                exec_ref = store.put_blob(f"exec state {i} ".encode() * 64)
                plugin = {"rev": i, "facts": list(range(i))} if plugin_ref is None or i % 4 == 0 else None
                commit = RuntimeCommit(
                    session_id="race", expected_head_revision=head,
                    graph=GraphAppend([GraphNode(node_id=f"n{i}", parent_node_id=leaf,
                                                 payload={"role": "user", "content": f"turn {i}"})], f"n{i}"),
                    checkpoint=HydratedSessionCheckpoint(
                        turn_state={"turn": i}, tool_state={"turn": i, "pad": "z" * 3000},
                        plugin_snapshot=plugin, plugin_snapshot_ref=None if plugin else plugin_ref,
                        execution_state_ref=exec_ref,
                    ),
                ).with_turn_commit(f"t{i}")
                try:
                    result = store.commit_runtime_state(commit)
                except ValidationError:
                    refused += 1
                    continue
                head, leaf = result.head_revision, f"n{i}"
                plugin_ref = result.manifest.plugin_snapshot_ref
                time.sleep(0.01)  # spread the turns so blobs age past the grace period meanwhile
            store.close()
        out.put(("ok", head, refused))
    except BaseException:
        out.put(("error", traceback.format_exc(), 0))


def test_gc_never_deletes_what_a_concurrent_commit_references(tmp_path):
    url = str(tmp_path / "store")
    with lashstore.open(url) as dep:
        dep.sessions.create_store("other").close()
    ready, out = CTX.Event(), CTX.Queue()
    proc = CTX.Process(target=_writer, args=(url, WRITER_TURNS, ready, out))
    proc.start()
    try:
        assert ready.wait(30), "the writer did not start"
        runs = 0
        collected = 0
        with lashstore.open(url) as dep:
            while proc.is_alive():
                report = ops.gc(dep, grace_ms=GRACE_MS, sessions=["race"])
                collected += report.deleted_blob_count
                ops.vacuum(dep, sessions=["race"])
                runs += 1
                time.sleep(0.02)
            proc.join(60)
            status, head, refused = out.get(timeout=10)
            assert status == "ok", head
            assert refused == 0  # no commit lost a blob to GC
            assert head == WRITER_TURNS and runs > 1
            assert collected > 0  # GC deleted old snapshots while the writer committed
            # Every head's checkpoint hydrates, and everything else checks out.
            store = dep.sessions.open_store("race")
            read = store.load_session(ActivePath())
            assert read.checkpoint.tool_state["turn"] == WRITER_TURNS
            assert read.checkpoint.execution_state == f"exec state {WRITER_TURNS} ".encode() * 64
            assert read.checkpoint.plugin_snapshot["rev"] % 4 == 0
            assert len(read.graph.nodes) == WRITER_TURNS
            store.close()
            assert ops.verify(dep).ok
            # And what GC left is only what the grace period protects or a head reaches.
            final = ops.gc(dep, grace_ms=0, sessions=["race"])
            assert final.errors == 0
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join(5)
