"""Export and import: one portable, versioned JSON Lines file per session that round-trips exactly
between backends (memory <-> SQLite), and refusals that write nothing."""

from __future__ import annotations

import io
import json

import msgspec
import pytest
from _ops_helpers import ALL_BACKENDS, BACKENDS, Agent, open_dep
from postgres_support import postgres_url  # noqa: F401 - the fixture

from lashstore import (
    ActivePath,
    AttachmentIntent,
    ChildRelation,
    ClaimBoundary,
    FullGraph,
    GraphAppend,
    GraphNode,
    HydratedSessionCheckpoint,
    ManualClock,
    QueuedWorkBatchDraft,
    RuntimeCommit,
    SessionNotFound,
    TokenLedgerEntry,
    TokenUsage,
    ops,
)
from lashstore.codec import MAX_DEPTH
from lashstore.ops.export import _dec, _enc
from lashstore.testing.integrity_suite import nested

TRICKY = {
    "text": "héllo ✓ \u0000 \"quoted\"",
    "bytes": b"\x00\x01\xff raw",
    "$bytes": "a user key that looks like the tag",
    "$$double": ["$", {"$bytes": b"nested real bytes"}],
    "float": 0.1,
    "big": 2**63,
    "neg": -(2**63),
    "empty": {},
    "none": None,
    "flags": [True, False],
}


def test_caller_values_round_trip_through_json():
    assert _dec(json.loads(json.dumps(_enc(TRICKY)))) == TRICKY
    assert _enc(b"x") == {"$bytes": "eA=="}
    assert _enc({"$bytes": "s"}) == {"$$bytes": "s"}


def build(dep, clock: ManualClock) -> dict:
    """A session holding every kind of record."""
    store = dep.sessions.create_store(
        "rich", model="m1", cwd="/work", session_name="Rich session",
        relation=ChildRelation(parent_session_id="parent", caused_by={"node_id": "n1", "blob": b"\x01"}),
    )
    a = Agent(store, "rich")
    a.turn(via_queue=True, payload_extra=TRICKY)
    a.turn("second", via_queue=True)
    a.turn("a branch", parent="a1")  # u3 under a1: a sibling of u2
    a.turn("main line again", parent="a2")
    store.tombstone_nodes(["a3"])
    a.reload()
    att = store.put_attachment("rich", b"\x89PNG" + bytes(range(256)) * 40, "image/png", width=4, height=2,
                               label="plot")
    store.record_intent(AttachmentIntent(attachment_id="ext-1", session_id="rich",
                                         canonical_uri="s3://bucket/ext-1", intent_at_epoch_ms=clock.now_ms()))
    stamped = RuntimeCommit(
        session_id="rich", expected_head_revision=a.head, config={"model": "m1", "bytes": b"cfg"},
        agent_frames=[{"frame_id": "main"}], current_agent_frame_id="main",
        graph=GraphAppend([GraphNode(node_id="final", parent_node_id=a.leaf, payload={"role": "user", "content": TRICKY},
                                     caused_by={"k": b"v"}, agent_frame_id="main", timestamp="2026-01-01T00:00:00Z")],
                          "final"),
        checkpoint=HydratedSessionCheckpoint(
            turn_state={"phase": "done", "raw": b"\x02"}, tool_state={"big": ["w" * 100] * 200},
            plugin_snapshot={"p": 1}, plugin_snapshot_revision=7, execution_state=b"\x00exec" * 10,
        ),
        usage_deltas=[TokenLedgerEntry("turn", "m1", TokenUsage(input_tokens=7, reasoning_tokens=3, cached_input_tokens=2))],
        committed_attachment_ids=[att.id],
    ).with_turn_commit("final-turn")
    result = store.commit_runtime_state(stamped)
    store.put_artifact("notes", b"artifact bytes", namespace="docs")
    store.enqueue_queued_work(QueuedWorkBatchDraft(session_id="rich", payloads=[{"b": b"\x03"}, 2], source_key="later"))
    cancelled = store.enqueue_queued_work(QueuedWorkBatchDraft(session_id="rich", payloads=[3], source_key="nope"))
    store.cancel_queued_work_batch("rich", cancelled.batch_id)
    store.enqueue_queued_work(QueuedWorkBatchDraft(session_id="rich", payloads=[4], merge_key="m"))
    claim = store.claim_ready_queued_work("rich", "worker", ClaimBoundary.IDLE, 60_000, 1)
    assert claim is not None
    store.close()
    return {"commit": stamped, "result": result, "attachment": att.id, "claim": claim}


def snapshot(dep, sid: str = "rich") -> dict:
    store = dep.sessions.open_store(sid)
    try:
        m = store
        return {
            "full": store.load_session(FullGraph()),
            "active": store.load_session(ActivePath()),
            "head": store.load_head(),
            "usage": store.load_usage(),
            "meta": store.load_session_meta(),
            "picker": store.load_picker_info(),
            "nodes": m.list_graph_nodes(),
            "artifacts": [(ns, n, ref, store.get_artifact(n, namespace=ns)) for ns, n, ref in store.list_artifacts()],
            "queued": store.list_queued_work(sid),
            "pending": store.list_pending_queued_work(sid),
            "claimed": store.list_claimed_queued_work(sid),
            "manifest": store.list_attachment_manifest(sid),
            "attachments": [store.get_attachment(sid, e.attachment_id) for e in store.list_attachment_manifest(sid)
                            if len(e.attachment_id) == 64],
            "turns": sorted((t.turn_id, t.turn_commit_hash, t.result) for t in m.dump_session().turns),
        }
    finally:
        store.close()


def _export(dep, sid: str = "rich") -> bytes:
    buf = io.BytesIO()
    ops.export_session(dep, sid, buf)
    return buf.getvalue()


def _import(dep, data: bytes, **kw) -> ops.TransferSummary:
    return ops.import_session(dep, io.BytesIO(data).readlines(), **kw)


@pytest.fixture
def pg(request):
    """The postgres_url fixture, requested only by the tests that open a postgres deployment."""
    return request.getfixturevalue("postgres_url")


def _pg_if(kinds, request):
    return request.getfixturevalue("postgres_url") if "postgres" in kinds else None


@pytest.mark.parametrize("src", ALL_BACKENDS)
@pytest.mark.parametrize("dst", ALL_BACKENDS)
def test_a_session_round_trips_exactly_between_backends(src, dst, tmp_path, request):
    clock = ManualClock()
    pg = _pg_if((src, dst), request)
    with open_dep(src, tmp_path / "a", clock, pg=pg) as a, open_dep(dst, tmp_path / "b", clock, pg=pg) as b:
        made = build(a, clock)
        data = _export(a)
        summary = _import(b, data)
        assert summary.session_id == "rich" and not summary.replaced
        assert snapshot(b) == snapshot(a)
        # And back: the second file says byte for byte what the first said, whatever the two
        # backends (the header's time and source aside).
        again = _export(b)
        assert data.splitlines()[1:] == again.splitlines()[1:]
        # The imported session behaves like the original: a retried turn replays its result,
        # the live claim still holds, a source key stays idempotent, new work queues after.
        store = b.sessions.open_store("rich")
        assert store.commit_runtime_state(made["commit"]) == made["result"]
        assert store.claim_ready_queued_work("rich", "other", ClaimBoundary.IDLE, 60_000, 5) is not None
        again_batch = store.enqueue_queued_work(QueuedWorkBatchDraft(session_id="rich", payloads=[9], source_key="later"))
        assert again_batch.items[0].payload == {"b": b"\x03"}  # the imported batch, not a new one
        store.close()
        assert ops.verify(b).ok


def test_the_file_is_json_lines_with_a_header_and_an_end(tmp_path):
    clock = ManualClock()
    with open_dep("sqlite", tmp_path, clock) as dep:
        build(dep, clock)
        lines = [json.loads(x) for x in _export(dep).splitlines()]
    header, end = lines[0], lines[-1]
    assert header["format"] == "lashstore-session" and header["version"] == 1 and header["session_id"] == "rich"
    assert header["source"] == "sqlite" and header["counts"]["node"] == 9
    assert end == {"type": "end", "records": len(lines) - 2}
    kinds = [x["type"] for x in lines[1:-1]]
    assert kinds[:2] == ["meta", "head"] and kinds == sorted(kinds, key=["meta", "head", "node", "blob", "usage",
                                                                         "turn", "batch", "attachment",
                                                                         "artifact"].index)
    blob = next(x for x in lines[1:] if x["type"] == "blob")
    assert set(blob) == {"type", "ref", "kind", "compression", "raw_size", "data", "created_at_ms"}
    node = next(x for x in lines[1:] if x["type"] == "node" and x["node"]["node_id"] == "u1")
    assert node["node"]["payload"]["extra"]["bytes"] == {"$bytes": "AAH/IHJhdw=="}
    assert node["node"]["payload"]["extra"]["$$bytes"] == "a user key that looks like the tag"


def test_garbage_blobs_stay_behind(tmp_path):
    with open_dep("sqlite", tmp_path) as dep:
        store = dep.sessions.create_store("s")
        a = Agent(store, "s")
        for _ in range(5):
            a.turn()
        store.put_blob(b"garbage")
        total = store.blob_stats()["count"]
        store.close()
        data = _export(dep, "s")
    header = json.loads(data.splitlines()[0])
    assert header["counts"]["blob"] == 4 < total  # manifest, tool state, plugin snapshot, execution state


def _refused(dep, data: bytes, reason: str, **kw) -> ops.ImportRefused:
    with pytest.raises(ops.ImportRefused) as e:
        _import(dep, data, **kw)
    assert e.value.reason == reason, e.value
    return e.value


def test_an_unknown_version_or_format_is_refused_before_anything_is_written(tmp_path):
    clock = ManualClock()
    with open_dep("sqlite", tmp_path / "a", clock) as a, open_dep("sqlite", tmp_path / "b", clock) as b:
        build(a, clock)
        lines = _export(a).splitlines(keepends=True)
        header = json.loads(lines[0])
        newer = json.dumps({**header, "version": 2}).encode() + b"\n"
        e = _refused(b, b"".join([newer, *lines[1:]]), "version")
        assert "version 2" in str(e)
        _refused(b, b"".join([json.dumps({**header, "format": "other"}).encode() + b"\n", *lines[1:]]), "format")
        _refused(b, b"", "format")
        _refused(b, b"not json\n", "format")
        assert not b.sessions.has_session("rich")


def test_a_damaged_or_cut_off_file_is_refused_and_leaves_nothing(tmp_path):
    clock = ManualClock()
    with open_dep("sqlite", tmp_path / "a", clock) as a, open_dep("sqlite", tmp_path / "b", clock) as b:
        build(a, clock)
        lines = _export(a).splitlines(keepends=True)
        _refused(b, b"".join(lines[:-1]), "damaged")  # no end line
        _refused(b, b"".join(lines[:5] + lines[6:]), "damaged")  # a record missing
        i = next(i for i, x in enumerate(lines) if b'"type":"blob"' in x)
        rec = json.loads(lines[i])
        rec["data"] = "AAAA"
        _refused(b, b"".join(lines[:i] + [json.dumps(rec).encode() + b"\n"] + lines[i + 1:]), "damaged")
        j = next(i for i, x in enumerate(lines) if b'"type":"head"' in x)
        rec = json.loads(lines[j])
        rec["leaf_node_id"] = "no-such-node"
        _refused(b, b"".join(lines[:j] + [json.dumps(rec).encode() + b"\n"] + lines[j + 1:]), "damaged")
        assert not b.sessions.has_session("rich")


def test_an_existing_session_is_refused_unless_replaced(tmp_path):
    clock = ManualClock()
    with open_dep("sqlite", tmp_path / "a", clock) as a, open_dep("sqlite", tmp_path / "b", clock) as b:
        build(a, clock)
        data = _export(a)
        store = b.sessions.create_store("rich")
        Agent(store, "rich").turn("something else entirely")
        store.close()
        before = snapshot(b)
        _refused(b, data, "exists")
        assert snapshot(b) == before
        summary = _import(b, data, replace=True)
        assert summary.replaced
        assert snapshot(b) == snapshot(a)


def test_export_of_an_unknown_session_raises(tmp_path):
    with open_dep("memory", tmp_path) as dep, pytest.raises(SessionNotFound):
        _export(dep, "nope")


def test_a_pruned_session_round_trips(tmp_path):
    clock = ManualClock()
    with open_dep("sqlite", tmp_path / "a", clock) as a, open_dep("memory", tmp_path / "b", clock) as b:
        store = a.sessions.create_store("s")
        ag = Agent(store, "s")
        for _ in range(6):
            ag.turn()
        store.tombstone_nodes(["a6"])
        store.vacuum()  # a vacuumed tombstone leaves nothing dangling here (a6 was the leaf)
        store.prune_graph(2)
        store.close()
        _import(b, _export(a, "s"))
        assert snapshot(b, "s")["full"] == snapshot(a, "s")["full"]
        st = msgspec.to_builtins(snapshot(b, "s")["active"].graph.nodes[0])
        assert st["parent_node_id"] is None


@pytest.mark.parametrize("kind", BACKENDS)
def test_replacing_a_live_session_moves_its_revision_so_a_stale_writer_conflicts(kind, tmp_path):
    from lashstore import HeadRevisionConflict

    with open_dep(kind, tmp_path / "a") as a, open_dep(kind, tmp_path / "b") as b:
        for dep, text in ((a, "one history"), (b, "another history")):
            store = dep.sessions.create_store("s")
            ag = Agent(store, "s")
            for _ in range(3):
                ag.turn(text)
            if dep is a:
                stale, stale_agent = store, ag  # a runtime that keeps its store open
            else:
                store.close()
        summary = _import(a, _export(b, "s"), replace=True)
        assert summary.replaced and summary.head_revision == 4  # both were at revision 3
        # The stale runtime's next commit (it still believes the head is its revision 3, with its
        # own snapshots) is refused instead of landing on top of a head it never saw.
        with pytest.raises(HeadRevisionConflict):
            stale_agent.turn()
        stale.close()
        assert ops.verify(a).ok
        assert snapshot(a, "s")["full"].graph.nodes == snapshot(b, "s")["full"].graph.nodes


def _mutated(lines: list[bytes], kind: str, change) -> tuple[bytes, int]:
    """The file with the first `kind` record changed by `change(record)`; and its line number."""
    i = next(i for i, x in enumerate(lines) if json.loads(x).get("type") == kind)
    rec = json.loads(lines[i])
    change(rec)
    return b"".join(lines[:i] + [json.dumps(rec).encode() + b"\n"] + lines[i + 1:]), i + 1


def _set(path: str, value):
    def change(rec):
        *parents, last = path.split(".")
        target = rec
        for p in parents:
            target = target[p]
        target[last] = value
    return change


HOSTILE = [
    ("usage", "usage.input_tokens", -5),
    ("usage", "usage.input_tokens", 2**63),
    ("usage", "usage.output_tokens", 2**53),
    ("usage", "source", "bad\u0000source"),
    ("usage", "revision", -1),
    ("node", "node.node_id", "a\u0000b"),
    ("node", "node.node_id", "x" * 600),
    ("node", "node.payload", {"deep": nested(MAX_DEPTH + 1)}),
    ("head", "head_revision", -1),
    ("head", "updated_at_ms", 2**64),
    ("blob", "raw_size", 2**40),
    ("blob", "kind", "no-such-kind"),
    ("turn", "turn_id", "\u0000"),
    ("batch", "claim_fencing_token", -3),
    ("batch", "state", "limbo"),
    ("artifact", "name", ""),
    ("meta", "model", "m\u0000"),
]


@pytest.mark.parametrize("kind", ALL_BACKENDS)
def test_import_checks_every_record_as_a_commit_would(kind, tmp_path, request):
    """A hostile record is refused naming its line, and nothing of the import is written, on
    every backend (they never disagree, drop the row or raise a driver's error)."""
    clock = ManualClock()
    pg = _pg_if((kind,), request)
    with open_dep("sqlite", tmp_path / "a", clock) as a, open_dep(kind, tmp_path / "b", clock, pg=pg) as b:
        build(a, clock)
        lines = _export(a).splitlines(keepends=True)
        for rec_kind, path, value in HOSTILE:
            data, line = _mutated(lines, rec_kind, _set(path, value))
            e = _refused(b, data, "damaged")
            assert e.line == line and f"line {line}" in str(e), (rec_kind, path, e)
            assert not b.sessions.has_session("rich"), (rec_kind, path)
        # Blob data that does not inflate to what its ref names.
        data, line = _mutated(lines, "blob", lambda rec: rec.update(data="AAAA", raw_size=3))
        assert _refused(b, data, "damaged").line == line
        assert b.sessions.list_sessions() == []
        # The file itself imports, and exports back the same.
        _import(b, b"".join(lines))
        assert _export(b).splitlines()[1:] == [x.rstrip(b"\n") for x in lines[1:]]
