"""`lashstore.ops` on postgresql:// deployments: retention, finished-queue pruning, verify (clean
and after damaging a blob row with SQL), gc and vacuum, and export/import to SQLite and back."""

from __future__ import annotations

import io
import uuid

import msgspec
import psycopg
import pytest
from _ops_helpers import Agent
from postgres_support import deployment_url, postgres_url  # noqa: F401 - the fixture
from test_ops_export import build, snapshot

import lashstore
from lashstore import ActivePath, FullGraph, ManualClock, QueuedWorkBatchDraft, StoreOptions, ops
from lashstore.backends.postgres import PostgresSessionStoreFactory


@pytest.fixture
def pg(postgres_url):  # noqa: F811
    """(url, schema) of a fresh schema; dropped afterwards."""
    schema = f"ops_{uuid.uuid4().hex[:12]}"
    yield deployment_url(postgres_url, schema), schema
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _open(url: str, clock: ManualClock) -> lashstore.Deployment:
    dep = lashstore.open(url, options=StoreOptions(clock=clock))
    assert isinstance(dep.sessions, PostgresSessionStoreFactory), type(dep.sessions)  # never a SQLite directory
    return dep


def _export(dep, sid: str) -> bytes:
    buf = io.BytesIO()
    ops.export_session(dep, sid, buf)
    return buf.getvalue()


def _import(dep, data: bytes, **kw) -> ops.TransferSummary:
    return ops.import_session(dep, io.BytesIO(data).readlines(), **kw)


def test_the_store_carries_the_maintenance_methods(pg):
    url, _ = pg
    with _open(url, ManualClock()) as dep:
        store = dep.sessions.create_store("s")
        try:
            for name in ("list_graph_nodes", "list_tombstoned_nodes", "prune_graph", "prune_finished_queue",
                         "prune_turn_stamps", "compact_usage", "collect_garbage", "shrink", "verify",
                         "dump_session", "load_session_dump"):
                assert callable(getattr(store, name)), name
        finally:
            store.close()


def test_retention_keeps_the_last_turns(pg):
    url, _ = pg
    clock = ManualClock()
    with _open(url, clock) as dep:
        store = dep.sessions.create_store("s")
        a = Agent(store, "s")
        for _ in range(6):
            a.turn()
        before = store.load_head()
        other = dep.sessions.create_store("other")
        Agent(other, "other").turn()
        other.close()

        dry = ops.retain(dep, ops.RetentionPolicy(keep_turns=2, sessions=["s"]), dry_run=True)
        assert dry.graph_nodes == 8 and dry.sessions[0].graph.cut_node_id == "u5"
        assert store.load_head() == before  # a dry run changes nothing

        report = ops.retain(dep, ops.RetentionPolicy(keep_turns=2))
        assert report.errors == 0
        assert report.graph_nodes == 8  # u1..a4 of "s"; "other" has one turn, nothing to cut
        by_sid = {s.session_id: s for s in report.sessions}
        assert by_sid["s"].graph.kept_turns == 2 and by_sid["other"].graph.removed_node_count == 0

        full = store.load_session(FullGraph())
        assert [n.node_id for n in full.graph.nodes] == ["u5", "a5", "u6", "a6"]
        assert full.graph.nodes[0].parent_node_id is None
        head = store.load_head()
        assert head.head_revision == before.head_revision + 1
        assert head.graph_node_count == 4 and head.updated_at_ms == before.updated_at_ms
        assert [n.node_id for n in store.load_session(ActivePath()).graph.nodes] == ["u5", "a5", "u6", "a6"]
        # The runtime holding the old head conflicts, reloads, and goes on.
        a.reload()
        a.turn()
        assert [n.node_id for n in store.load_session(ActivePath()).graph.nodes][-2:] == ["u7", "a7"]
        assert ops.verify(dep).ok
        store.close()


def test_finished_queued_work_is_pruned_by_age(pg):
    url, _ = pg
    clock = ManualClock()
    with _open(url, clock) as dep:
        store = dep.sessions.create_store("q")
        a = Agent(store, "q")
        a.turn(via_queue=True)  # completed by the commit
        a.turn(via_queue=True)
        cancelled = store.enqueue_queued_work(QueuedWorkBatchDraft(session_id="q", payloads=[1], source_key="c"))
        store.cancel_queued_work_batch("q", cancelled.batch_id)
        pending = store.enqueue_queued_work(QueuedWorkBatchDraft(session_id="q", payloads=[2], source_key="p"))
        clock.advance(2 * ops.HOUR)
        young = store.enqueue_queued_work(QueuedWorkBatchDraft(session_id="q", payloads=[3], source_key="y"))
        store.cancel_queued_work_batch("q", young.batch_id)

        policy = ops.RetentionPolicy(finished_work_older_than_ms=ops.HOUR, reclaim=False)
        assert ops.retain(dep, policy, dry_run=True).queue_batches == 3
        assert len(store.dump_session().batches) == 5
        report = ops.retain(dep, policy)
        assert report.queue_batches == 3 and report.errors == 0
        left = {b.batch_id for b in store.dump_session().batches}
        assert left == {pending.batch_id, young.batch_id}
        # A pruned batch's source key can be enqueued again (as a new batch).
        again = store.enqueue_queued_work(QueuedWorkBatchDraft(session_id="q", payloads=[1], source_key="c"))
        assert again.batch_id != cancelled.batch_id
        assert store.prune_finished_queue(0, dry_run=True) == 1  # "y"
        store.close()


def test_turn_stamps_and_usage_compaction(pg):
    url, _ = pg
    clock = ManualClock()
    with _open(url, clock) as dep:
        store = dep.sessions.create_store("u")
        a = Agent(store, "u")
        for _ in range(4):
            a.turn()
            clock.advance(1000)  # stamps are ordered by commit time
        usage = store.load_usage()
        report = ops.retain(dep, ops.RetentionPolicy(keep_turn_stamps=1, compact_usage=True))
        assert report.turn_stamps == 3 and report.usage_rows > 0 and report.errors == 0
        assert store.load_usage() == usage
        assert [t.turn_id for t in store.dump_session().turns] == ["turn-4"]
        store.close()


def test_verify_a_clean_store(pg):
    url, _ = pg
    clock = ManualClock()
    with _open(url, clock) as dep:
        build(dep, clock)
        store = dep.sessions.create_store("plain")
        Agent(store, "plain").turn()
        store.close()
        report = ops.verify(dep)
        assert report.ok, report.problems
        sessions = [c for c in report.checked if c.kind == "session"]
        assert {c.session_id for c in sessions} == {"rich", "plain"}
        assert all(c.records > 0 for c in sessions)
        assert all(c.location.startswith("postgresql:") for c in report.checked)


def test_verify_finds_a_damaged_blob_no_session_references_yet(pg):
    """A blob put for a commit still to come is checked too, and named where it is."""
    url, schema = pg
    with _open(url, ManualClock()) as dep:
        store = dep.sessions.create_store("s")
        Agent(store, "s").turn()
        ref = store.put_blob(b"for the next commit " * 100)
        store.close()
        with psycopg.connect(url.split("?")[0], autocommit=True) as conn:
            conn.execute(f'UPDATE "{schema}".blobs SET content = %s WHERE hash = %s', (b"damaged", ref))
        report = ops.verify(dep)
        assert not report.ok
        assert [(p.what, p.key) for p in report.problems] == [("blob", ref)]
        assert all(p.location.startswith("postgresql:") for p in report.problems)


def test_verify_names_a_damaged_blob_row(pg):
    url, schema = pg
    clock = ManualClock()
    with _open(url, clock) as dep:
        store = dep.sessions.create_store("s")
        a = Agent(store, "s")
        a.turn()
        ref = a.turn().checkpoint_ref
        manifest = store.load_session().checkpoint
        assert manifest is not None
        store.close()
        base = url.split("?")[0]
        with psycopg.connect(base, autocommit=True) as conn:
            # Flip the bytes of the head's checkpoint blob (the sha256 no longer matches).
            n = conn.execute(
                f'UPDATE "{schema}".blobs SET content = content || %s WHERE hash = %s', (b"\x00junk", ref)
            ).rowcount
            assert n == 1
        report = ops.verify(dep)
        assert not report.ok
        keys = {(p.what, p.key) for p in report.problems}
        assert ("blob", ref) in keys, report.problems
        assert any(p.what == "checkpoint" and p.key == ref for p in report.problems)
        assert all(p.location == f"postgresql:{schema}" for p in report.problems)


def test_verify_all_blobs_and_a_row_that_does_not_decode(pg):
    url, schema = pg
    clock = ManualClock()
    with _open(url, clock) as dep:
        store = dep.sessions.create_store("s")
        Agent(store, "s").turn()
        garbage = store.put_blob(b"nobody refers to me")
        base = url.split("?")[0]
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'UPDATE "{schema}".blobs SET raw_size = raw_size + 1 WHERE hash = %s', (garbage,))
            conn.execute(f"UPDATE \"{schema}\".graph_nodes SET body = %s WHERE node_id = 'a1'", (b"\xff\xff",))
        # The session's own check names the node; the database's check the blob nobody refers to.
        assert {p.key for p in ops.verify(dep).problems} == {"a1", garbage}
        store.close()


def test_gc_and_vacuum(pg):
    url, _ = pg
    clock = ManualClock()
    with _open(url, clock) as dep:
        store = dep.sessions.create_store("g")
        a = Agent(store, "g")
        for _ in range(4):
            a.turn()
        store.tombstone_nodes(["a2"])
        clock.advance(ops.HOUR)
        dry = ops.gc(dep, dry_run=True)
        assert dry.deleted_blob_count > 0
        report = ops.gc(dep)
        assert report.deleted_blob_count == dry.deleted_blob_count and report.errors == 0
        assert ops.gc(dep).deleted_blob_count == 0
        v = ops.vacuum(dep)
        assert v.errors == 0 and v.removed_node_count == 1
        before, after, done = store.shrink()
        assert before > 0 and after > 0 and done
        assert store.load_session() is not None and ops.verify(dep).ok
        store.close()


def test_export_from_postgres_import_into_sqlite_and_back(pg, tmp_path):
    url, _ = pg
    clock = ManualClock()
    with _open(url, clock) as src, lashstore.open(str(tmp_path / "lite"), options=StoreOptions(clock=clock)) as lite:
        build(src, clock)
        original = snapshot(src)
        data = _export(src, "rich")
        summary = _import(lite, data)
        assert summary.session_id == "rich" and not summary.replaced
        assert snapshot(lite) == original
        assert ops.verify(lite).ok

        # Back into a fresh postgres schema, and over the original with replace=True.
        schema2 = f"ops_{uuid.uuid4().hex[:12]}"
        url2 = f"{url.split('?')[0]}?schema={schema2}"
        try:
            with _open(url2, clock) as dst:
                _import(dst, _export(lite, "rich"))
                assert snapshot(dst) == original
                assert ops.verify(dst).ok
        finally:
            with psycopg.connect(url.split("?")[0], autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema2}" CASCADE')

        with pytest.raises(ops.ImportRefused):
            _import(src, data)
        replaced = _import(src, _export(lite, "rich"), replace=True)
        assert replaced.replaced
        after = snapshot(src)
        assert after["full"].head_revision == original["full"].head_revision + 1
        # Everything but the revision (moved past the replaced head's) is as it was.
        for key in ("usage", "meta", "picker", "nodes", "artifacts", "queued", "manifest", "turns"):
            assert after[key] == original[key], key
        for key in ("full", "active"):
            assert msgspec.structs.replace(after[key], head_revision=0) == msgspec.structs.replace(
                original[key], head_revision=0), key
        s1 = src.sessions.open_store("rich")
        s2 = lite.sessions.open_store("rich")
        try:
            r1, r2 = s1.load_session(), s2.load_session()
            assert r1.graph == r2.graph and r1.checkpoint == r2.checkpoint and r1.token_ledger == r2.token_ledger
        finally:
            s1.close()
            s2.close()


def test_registry_retention_on_postgres(pg):
    """Occurrences (with their deliveries) and finished effects older than the bound go."""
    url, _ = pg
    clock = ManualClock()
    with lashstore.open(url, options=StoreOptions(clock=clock)) as dep:
        he = dep.host_events
        he.register_subscription(lashstore.TriggerSubscriptionDraft(session_id="s", source_type="cron", source_key="k"))
        occ = he.record_occurrence(
            lashstore.HostEventOccurrenceRequest(source_type="cron", source_key="k", payload={}, idempotency_key="old")
        )
        assert len(he.reserve_matching_deliveries(occ.occurrence_id)) == 1
        dep.effects.execute(("turn", "t"), "old-effect", {"q": 1}, lambda: {"ok": True})
        clock.advance(3 * ops.DAY)
        he.record_occurrence(
            lashstore.HostEventOccurrenceRequest(source_type="cron", source_key="k", payload={}, idempotency_key="new")
        )
        report = ops.retain(
            dep, ops.RetentionPolicy(occurrences_older_than_ms=ops.DAY, effects_older_than_ms=ops.DAY)
        )
        assert [o.idempotency_key for o in he.list_occurrences()] == ["new"]
        assert he.list_deliveries() == []
        assert dep.effects.list_effects() == []
        assert report is not None
