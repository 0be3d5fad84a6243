"""Retention: graph history beyond the last K turns, finished queued work, turn stamps, usage
rows, idle sessions and registry records; dry runs change nothing; bytes come back."""

from __future__ import annotations

import os

import pytest
from _ops_helpers import BACKENDS, Agent, open_dep

from lashstore import (
    ActivePath,
    EffectError,
    FullGraph,
    HeadRevisionConflict,
    HostEventOccurrenceRequest,
    ManualClock,
    QueuedWorkBatchDraft,
    TriggerSubscriptionDraft,
    ValidationError,
    ops,
)

HOUR = ops.HOUR


@pytest.fixture(params=BACKENDS)
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


def _branchy(store) -> Agent:
    """u1..u8 on the active path; a branch forking at a2 (before any cut), one at a6 (inside the
    last three turns), and a tombstoned node in the kept part."""
    a = Agent(store, "s")
    for _ in range(3):
        a.turn()
    a.turn("edited old message", parent="a1")  # u4: a sibling of u2, off the path once u5.. follow a3
    a.reload()
    a.leaf = "a3"
    a.head = store.load_head().head_revision
    for _ in range(2):
        a.turn()  # u5, u6
    a.turn("retry", parent="a6")  # u7 under a6
    a.turn("second retry", parent="a6")  # u8 under a6: the active path
    store.tombstone_nodes(["a7"])
    a.reload()
    return a


def test_keep_turns_keeps_the_last_turns_and_the_branches_inside_them(kind, tmp_path):
    with open_dep(kind, tmp_path) as dep:
        store = dep.sessions.create_store("s")
        a = _branchy(store)
        before = store.load_head()
        path = [n.node_id for n in store.load_session(ActivePath()).graph.nodes]
        assert path == ["u1", "a1", "u2", "a2", "u3", "a3", "u5", "a5", "u6", "a6", "u8", "a8"]

        r = store.prune_graph(3)
        assert (r.turns_on_active_path, r.kept_turns, r.cut_node_id) == (6, 3, "u5")
        assert r.removed_node_count == 8  # u1 a1 u2 a2 u3 a3, and the old branch u4 a4
        assert r.head_revision == before.head_revision + 1

        full = store.load_session(FullGraph())
        assert [n.node_id for n in full.graph.nodes] == ["u5", "a5", "u6", "a6", "u7", "u8", "a8"]
        assert full.graph.nodes[0].parent_node_id is None  # the kept turn is the new root
        tomb = [n.node_id for n in store.list_tombstoned_nodes()]
        assert tomb == ["a7"]  # a tombstone inside the kept turns stays until vacuum
        path = [n.node_id for n in store.load_session(ActivePath()).graph.nodes]
        assert path == ["u5", "a5", "u6", "a6", "u8", "a8"]
        head = store.load_head()
        assert head.graph_node_count == 7 and head.leaf_node_id == "a8"
        assert head.updated_at_ms == before.updated_at_ms  # maintenance is not activity
        assert store.load_picker_info().user_message_count == 4

        # A runtime holding the old head must reload (as after a tombstone), then goes on.
        with pytest.raises(HeadRevisionConflict):
            a.turn()
        a.n -= 1
        a.reload()
        a.turn()
        assert store.load_session(ActivePath()).graph.nodes[-1].node_id == f"a{a.n}"
        # The usage ledger is history the session keeps: pruning the graph never touches it.
        assert sum(e.usage.input_tokens for e in store.load_usage()) > 0
        store.close()


def test_both_backends_prune_the_same_nodes(tmp_path):
    results = []
    for kind in BACKENDS:
        with open_dep(kind, tmp_path / kind) as dep:
            store = dep.sessions.create_store("s")
            _branchy(store)
            r = store.prune_graph(2)
            results.append((r, [n.node_id for n in store.load_session(FullGraph()).graph.nodes]))
            store.close()
    assert results[0] == results[1]


def test_keep_turns_dry_run_changes_nothing_and_says_the_same(kind, tmp_path):
    with open_dep(kind, tmp_path) as dep:
        store = dep.sessions.create_store("s")
        _branchy(store)
        m = store
        before = m.dump_session()
        dry = m.prune_graph(3, dry_run=True)
        assert m.dump_session() == before
        real = m.prune_graph(3)
        assert dry.removed_node_count == real.removed_node_count and dry.cut_node_id == real.cut_node_id
        assert dry.removed_bytes == real.removed_bytes > 0
        store.close()


def test_keep_turns_with_no_more_turns_than_kept_removes_nothing(kind, tmp_path):
    with open_dep(kind, tmp_path) as dep:
        store = dep.sessions.create_store("s")
        a = Agent(store, "s")
        for _ in range(3):
            a.turn()
        m = store
        for keep in (3, 10):
            r = m.prune_graph(keep)
            assert r.removed_node_count == 0 and r.cut_node_id is None
        assert store.load_head().head_revision == a.head
        with pytest.raises(ValidationError):
            m.prune_graph(0)
        store.close()


def test_finished_queued_work_is_pruned_by_age_and_its_source_key_frees(kind, tmp_path):
    clock = ManualClock()
    with open_dep(kind, tmp_path, clock) as dep:
        store = dep.sessions.create_store("s")
        a = Agent(store, "s")
        a.turn(via_queue=True)  # completed batch, source key msg-1
        cancelled = store.enqueue_queued_work(QueuedWorkBatchDraft(session_id="s", payloads=[1], source_key="c"))
        store.cancel_queued_work_batch("s", cancelled.batch_id)
        pending = store.enqueue_queued_work(QueuedWorkBatchDraft(session_id="s", payloads=[2], source_key="p"))
        m = store
        assert m.prune_finished_queue(HOUR) == 0  # finished just now
        clock.advance(2 * HOUR)
        assert m.prune_finished_queue(HOUR, dry_run=True) == 2
        assert m.prune_finished_queue(HOUR) == 2
        assert [b.batch_id for b in store.list_queued_work("s")] == [pending.batch_id]
        again = store.enqueue_queued_work(QueuedWorkBatchDraft(session_id="s", payloads=[3], source_key="c"))
        assert again.batch_id != cancelled.batch_id and again.state.value == "queued"
        store.close()


def test_turn_stamps_by_count_and_age(kind, tmp_path):
    clock = ManualClock()
    with open_dep(kind, tmp_path, clock) as dep:
        store = dep.sessions.create_store("s")
        a = Agent(store, "s")
        for _ in range(3):
            a.turn()
            clock.advance(HOUR)
        m = store
        assert m.prune_turn_stamps(keep_last=2, dry_run=True) == 1
        assert m.prune_turn_stamps(keep_last=2) == 1
        ids = [t.turn_id for t in m.dump_session().turns]
        assert sorted(ids) == ["turn-2", "turn-3"]
        if kind == "sqlite":  # the memory store records no commit time for a stamp (see the report)
            assert m.prune_turn_stamps(older_than_ms=90 * 60 * 1000) == 1
            assert [t.turn_id for t in m.dump_session().turns] == ["turn-3"]
        store.close()


def test_compacting_usage_keeps_the_merged_ledger(kind, tmp_path):
    with open_dep(kind, tmp_path) as dep:
        store = dep.sessions.create_store("s")
        a = Agent(store, "s")
        for _ in range(5):
            a.turn()
        before = store.load_usage()
        m = store
        assert len(m.dump_session().usage) == 10
        removed = m.compact_usage()
        assert removed == 8  # 2 empty summariser rows and 6 folded rows
        assert store.load_usage() == before
        assert len(m.dump_session().usage) == 2
        assert m.compact_usage() == 0
        store.close()


def test_idle_sessions_are_deleted_everywhere_and_a_dry_run_only_names_them(kind, tmp_path):
    clock = ManualClock()
    with open_dep(kind, tmp_path, clock) as dep:
        for sid in ("old", "new"):
            Agent(dep.sessions.create_store(sid), sid).turn()
            if sid == "old":
                clock.advance(40 * ops.DAY)
        sub = dep.host_events.register_subscription(
            TriggerSubscriptionDraft(session_id="old", source_type="timer", source_key="hourly"))
        policy = ops.RetentionPolicy(session_idle_ms=30 * ops.DAY)
        dry = ops.retain(dep, policy, dry_run=True)
        assert dry.sessions_deleted == ["old"] and dep.sessions.has_session("old")
        report = ops.retain(dep, policy)
        assert report.sessions_deleted == ["old"]
        assert not dep.sessions.has_session("old") and dep.sessions.has_session("new")
        assert dep.host_events.get_subscription("old", sub.handle).enabled is False
        if kind == "sqlite":
            assert report.reclaimed_bytes is not None and report.reclaimed_bytes > 0


def test_registry_records_are_pruned_by_age(kind, tmp_path):
    from lashstore import AwaitSuccess, ProcessRegistration

    clock = ManualClock()
    with open_dep(kind, tmp_path, clock) as dep:
        dep.sessions.create_store("s").close()
        reg = dep.processes
        for pid in ("p-done", "p-running"):
            reg.register_process(ProcessRegistration(id=pid))
        reg.complete_process("p-done", AwaitSuccess(value={"ok": True}))
        he = dep.host_events
        he.register_subscription(TriggerSubscriptionDraft(session_id="s", source_type="hook", source_key="x"))
        occ = he.record_occurrence(HostEventOccurrenceRequest(source_type="hook", source_key="x",
                                                               idempotency_key="e1", payload={"n": 1}))
        assert len(he.reserve_matching_deliveries(occ.occurrence_id)) == 1
        eff = dep.effects
        eff.execute(("turn", "s/t1"), "ok", {}, lambda: 1)
        with pytest.raises(EffectError):
            eff.execute(("turn", "s/t1"), "bad", {}, _fail)
        attempt = eff.begin(("turn", "s/t1"), "running", {})
        clock.advance(2 * HOUR)
        policy = ops.RetentionPolicy(processes_older_than_ms=HOUR, occurrences_older_than_ms=HOUR,
                                     effects_older_than_ms=HOUR)
        dry = ops.retain(dep, policy, dry_run=True)
        assert (dry.processes, dry.occurrences, dry.deliveries, dry.effects) == (1, 1, 1, 2)
        assert reg.get_process("p-done") is not None
        real = ops.retain(dep, policy)
        assert (real.processes, real.occurrences, real.deliveries, real.effects) == (1, 1, 1, 2)
        assert reg.get_process("p-done") is None and reg.get_process("p-running") is not None
        assert he.get_occurrence(occ.occurrence_id) is None and he.list_deliveries() == []
        assert [e.replay_key for e in eff.list_effects()] == ["running"]  # in progress: never pruned
        attempt.release()


def _fail() -> None:
    raise EffectError("boom", "failed on purpose")


def test_retain_keep_turns_reclaims_the_bytes_it_reports(tmp_path):
    clock = ManualClock()
    with open_dep("sqlite", tmp_path, clock) as dep:
        store = dep.sessions.create_store("big")
        a = Agent(store, "big")
        for _ in range(120):
            a.turn("x" * 400, via_queue=True, extra_nodes=3)
        store.close()
        path = dep.storage.session_path("big")
        size = os.path.getsize(path) + (os.path.getsize(f"{path}-wal") if os.path.exists(f"{path}-wal") else 0)
        clock.advance(ops.DAY)
        policy = ops.RetentionPolicy(keep_turns=10, finished_work_older_than_ms=HOUR, turn_stamps_older_than_ms=HOUR,
                                     compact_usage=True)
        dry = ops.retain(dep, policy, dry_run=True)
        assert dry.bytes_after is None and dry.graph_nodes == 440 and dry.queue_batches == 120
        report = ops.retain(dep, policy)
        assert report.bytes_before == size
        assert (report.graph_nodes, report.queue_batches, report.turn_stamps) == (440, 120, 120)
        assert report.blobs > 0
        after = os.path.getsize(path) + (os.path.getsize(f"{path}-wal") if os.path.exists(f"{path}-wal") else 0)
        assert report.bytes_after == after
        assert report.reclaimed_bytes == size - after and after < size / 3
        assert ops.verify(dep).ok
        store = dep.sessions.open_store("big")
        assert len(store.load_session(ActivePath()).graph.nodes) == 40
        store.close()


def test_a_policy_is_checked_before_anything_runs(tmp_path):
    with open_dep("memory", tmp_path) as dep:
        with pytest.raises(ValidationError):
            ops.retain(dep, ops.RetentionPolicy(keep_turns=0))
        with pytest.raises(ValidationError):
            ops.retain(dep, ops.RetentionPolicy(session_idle_ms=-1))
        assert ops.RetentionPolicy().is_empty()


def test_keep_turns_leaves_langgraph_threads_alone(tmp_path):
    """A LangGraph thread's graph is its checkpoint history; retention by turns must not cut it."""
    import lashstore
    from lashstore import GraphAppend, GraphNode, RuntimeCommit

    with lashstore.open(str(tmp_path)) as dep:
        store = dep.sessions.create_store("langgraph:t1")
        parent = None
        for i in range(5):
            n = GraphNode(node_id=f"u{i}", parent_node_id=parent, payload={"role": "user", "content": f"m{i}"})
            store.commit_runtime_state(RuntimeCommit(session_id="langgraph:t1", graph=GraphAppend([n], n.node_id)))
            parent = n.node_id
        store.close()
        lashstore.ops.retain(dep, lashstore.ops.RetentionPolicy(keep_turns=1))
        store = dep.sessions.open_store("langgraph:t1")
        assert len(store.load_session().graph.nodes) == 5
        store.close()
