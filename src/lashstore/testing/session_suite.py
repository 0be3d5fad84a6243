"""Conformance scenarios of the session store, one plain function per scenario.

Every scenario takes a `SessionHarness`, opens what it needs through it, and raises
AssertionError (or the unexpected library error) when the backend does not conform. Names
follow the reference checklist (`c02_...` is its test C2, `f01_...` is F1, `s02_`/`g01_` are the
reference's storage_fixes / store_gc tests); the unnumbered ones cover what the reference
promised but never asserted (checklist section 6) and the port's own guarantees.

`SESSION_SCENARIOS` run on every backend; `REOPEN_SCENARIOS` only where `harness.durable`.

The queued-work and attachment half of C19 is `queue_suite.c19b_queue_and_manifest_survive_reopen`.
"""

from __future__ import annotations

import enum
import hashlib
import math
import threading
from collections.abc import Callable
from typing import Any

import msgspec

from ..contracts import SessionStore, SessionStoreFactory
from ..errors import (
    HeadRevisionConflict,
    SessionBindingMismatch,
    SessionNotFound,
    TurnCommitConflict,
    ValidationError,
)
from ..model.blobs import BlobDescriptor, BlobKind, Compression
from ..model.session import (
    ActivePath,
    ChildRelation,
    FullGraph,
    GcReport,
    GraphAppend,
    GraphNode,
    GraphReplaceFull,
    GraphUnchanged,
    HydratedSessionCheckpoint,
    RootRelation,
    RuntimeCommit,
    SessionMeta,
    TokenLedgerEntry,
    TokenUsage,
    TurnCommitStamp,
)
from ..clock import ManualClock
from ..options import StoreOptions
from .harness import SessionHarness

__all__ = [
    "SESSION_SCENARIOS",
    "REOPEN_SCENARIOS",
    "ALL_SCENARIOS",
    "run_session_suite",
    "node",
    "runtime_commit",
    "observe",
]

Scenario = Callable[[SessionHarness], None]

EPOCH = "1970-01-01T00:00:00Z"
CREATED = "2026-06-02T00:00:00Z"


# -- builders ------------------------------------------------------------------------------------
# The runtime's own types are opaque to the store; these are JSON-shaped stand-ins with the
# fields of the reference (checklist section 1.2).


def node(node_id: str, parent: str | None = None, payload: Any = None) -> GraphNode:
    """The checklist's `node(id, parent)`: a protocol event naming its own id."""
    if payload is None:
        payload = {
            "kind": "event",
            "event": {"protocol": {"plugin_id": "conformance", "payload": {"node": node_id}}},
        }
    return GraphNode(
        node_id=node_id,
        parent_node_id=parent,
        caused_by=None,
        agent_frame_id=None,
        timestamp=EPOCH,
        payload=payload,
    )


def agent_frame(
    frame_id: str,
    session_id: str,
    *,
    previous: str | None = None,
    status: str = "active",
    reason: str = "initial",
    execution_state_snapshot: bytes | None = None,
) -> dict[str, Any]:
    return {
        "frame_id": frame_id,
        "session_id": session_id,
        "previous_frame_id": previous,
        "status": status,
        "reason": reason,
        "caused_by": None,
        "created_at": CREATED,
        "assignment": {
            "policy": {"provider_id": "mock", "model": {"id": "gpt-5.4-mini"}},
            "plugin_options": {},
            "plugin_source": None,
            "tool_access": {"mode": "all"},
        },
        "protocol_turn_options": {"payload": {}},
        "execution_state_ref": None,
        "execution_state_snapshot": execution_state_snapshot,
    }


def turn_state(turn_index: int = 0) -> dict[str, Any]:
    return {
        "turn_index": turn_index,
        "token_usage": {"input_tokens": 0, "output_tokens": 0, "cached_input_tokens": 0, "reasoning_tokens": 0},
        "last_prompt_usage": None,
        "protocol_turn_options": {"payload": {}},
    }


def runtime_commit(
    session_id: str = "root",
    *,
    nodes: list[GraphNode] | None = None,
    leaf: str | None = None,
    graph: Any = None,
    turn_index: int = 0,
    tool_state: Any = None,
    plugin_snapshot: Any = None,
    plugin_snapshot_revision: int | None = None,
    execution_state: bytes | None = None,
    agent_frames: list[Any] | None = None,
    current_agent_frame_id: str | None = None,
    usage: list[TokenLedgerEntry] | None = None,
    expected_head_revision: int | None = None,
    model_id: str = "gpt-5.4-mini",
    config: Any = None,
) -> RuntimeCommit:
    """The reference's `RuntimeCommit.persisted_state(S(session_id, ...), usage)`.

    Without `graph`, the graph is `ReplaceFull(nodes, leaf)` (what a state with no head revision
    commits).
    """
    frame_id = f"{session_id}:frame:initial"
    return RuntimeCommit(
        session_id=session_id,
        expected_head_revision=expected_head_revision,
        config=config
        if config is not None
        else {"provider_id": "mock", "model": {"id": model_id, "variant": None, "limits": {"context_window_tokens": 200000}}},
        agent_frames=agent_frames if agent_frames is not None else [agent_frame(frame_id, session_id)],
        current_agent_frame_id=current_agent_frame_id if current_agent_frame_id is not None else frame_id,
        graph=graph if graph is not None else GraphReplaceFull(list(nodes or []), leaf),
        checkpoint=HydratedSessionCheckpoint(
            turn_state=turn_state(turn_index),
            tool_state=tool_state,
            plugin_snapshot=plugin_snapshot,
            plugin_snapshot_revision=plugin_snapshot_revision,
            execution_state=execution_state,
        ),
        usage_deltas=list(usage or []),
    )


def tool_state(generation: int) -> dict[str, Any]:
    return {"generation": generation, "tools": {}}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- observation helpers ---------------------------------------------------------------------------


def blob_count(store: SessionStore) -> int | None:
    stats = getattr(store, "blob_stats", None)
    return None if stats is None else stats()["count"]


def observe(store: SessionStore) -> dict[str, Any]:
    """Everything a caller can see of a store, as plain values, to prove nothing changed."""
    read = store.load_session(FullGraph())
    return {
        "session": None if read is None else msgspec.to_builtins(read),
        "head": msgspec.to_builtins(store.load_head()),
        "usage": msgspec.to_builtins(store.load_usage()),
        "meta": msgspec.to_builtins(store.load_session_meta()),
        "blobs": blob_count(store),
    }


def refused(exc_type: type[BaseException], fn: Callable[[], Any], store: SessionStore, what: str) -> BaseException:
    """Call `fn`, require `exc_type`, and require the store to look exactly as before."""
    before = observe(store)
    try:
        fn()
    except exc_type as e:
        after = observe(store)
        assert after == before, f"{what}: refused with {type(e).__name__} but the store changed"
        return e
    except Exception as e:  # noqa: BLE001 - report which error came instead
        raise AssertionError(f"{what}: expected {exc_type.__name__}, got {type(e).__name__}: {e}") from e
    raise AssertionError(f"{what}: expected {exc_type.__name__}, but the call succeeded")


def ids(read: Any) -> list[str]:
    return [n.node_id for n in read.graph.nodes]


def _must_read(store: SessionStore, scope: Any = None) -> Any:
    read = store.load_session(scope if scope is not None else FullGraph())
    assert read is not None, "load_session returned None after a commit"
    return read


# -- C: the session store (checklist section 3.C) -------------------------------------------------


def c01_runtime_persistence_reports_declared_durability(h: SessionHarness) -> None:
    store = h.make()
    assert store.durability_tier() == h.expected_tier
    assert isinstance(store, SessionStore)


def c02_commit_increments_head_and_round_trips_agent_frames(h: SessionHarness) -> None:
    store = h.make()
    initial = agent_frame("root:frame:initial", "root", status="superseded")
    second = agent_frame(
        "frame-2",
        "root",
        previous="root:frame:initial",
        reason="plan_mode",
        execution_state_snapshot=b"frame-vm",
    )
    commit = runtime_commit(
        "root",
        agent_frames=[initial, second],
        current_agent_frame_id="frame-2",
        execution_state=b"frame-vm",
        model_id="gpt-5.4-mini",
    )
    result = store.commit_runtime_state(commit)
    assert result.head_revision == 1
    read = _must_read(store)
    assert read.head_revision == 1
    assert read.current_agent_frame_id == "frame-2"
    assert len(read.agent_frames) == 2
    frame2 = [f for f in read.agent_frames if f["frame_id"] == "frame-2"]
    assert len(frame2) == 1
    assert frame2[0]["reason"] == "plan_mode"
    assert frame2[0]["execution_state_snapshot"] == b"frame-vm"
    assert type(frame2[0]["execution_state_snapshot"]) is bytes
    # Every field of every frame round-trips, in order.
    assert read.agent_frames == [initial, second]
    assert read.config == commit.config
    assert read.checkpoint is not None
    assert read.checkpoint.execution_state == b"frame-vm"
    # A second commit moves the head on.
    assert store.commit_runtime_state(runtime_commit("root", turn_index=1)).head_revision == 2
    assert _must_read(store).head_revision == 2


def c03_commit_rejects_a_different_session_id(h: SessionHarness) -> None:
    store = h.make()
    store.commit_runtime_state(runtime_commit("alpha"))
    assert store.session_id == "alpha"
    try:
        store.commit_runtime_state(runtime_commit("beta"))
    except SessionBindingMismatch as e:
        assert e.bound_session_id == "alpha"
        assert e.attempted_session_id == "beta"
    else:
        raise AssertionError("a commit for another session was accepted")
    assert _must_read(store).session_id == "alpha"


def c04_load_hydrates_checkpoint_and_usage(h: SessionHarness) -> None:
    store = h.make()
    usage = TokenLedgerEntry(
        "turn", "mock-model", TokenUsage(input_tokens=11, output_tokens=7, cached_input_tokens=3, reasoning_tokens=5)
    )
    result = store.commit_runtime_state(
        runtime_commit(
            "hydrated",
            tool_state=tool_state(9),
            plugin_snapshot={"plugins": {}},
            plugin_snapshot_revision=12,
            usage=[usage],
        )
    )
    read = _must_read(store)
    assert read.session_id == "hydrated"
    assert read.checkpoint_ref == result.checkpoint_ref
    cp = read.checkpoint
    assert cp is not None
    # Re-hydrated, not only referenced.
    assert cp.tool_state is not None and cp.tool_state["generation"] == 9
    assert cp.tool_state == tool_state(9)
    assert cp.tool_state_ref is not None and cp.tool_state_ref == result.manifest.tool_state_ref
    assert cp.plugin_snapshot == {"plugins": {}}
    assert cp.plugin_snapshot_revision == 12
    assert cp.turn_state == turn_state(0)
    assert len(read.token_ledger) == 1
    assert read.token_ledger[0].usage.input_tokens == 11
    assert read.token_ledger[0] == usage
    assert store.load_usage() == [usage]


def c05_active_path_read_scope_selects_only_requested_ancestry(h: SessionHarness) -> None:
    store = h.make()
    graph = [
        node("root-node", None),
        node("left-node", "root-node"),
        node("left-leaf", "left-node"),
        node("right-leaf", "root-node"),
    ]
    store.commit_runtime_state(runtime_commit("branchy", nodes=graph, leaf="left-leaf"))
    full = _must_read(store, FullGraph())
    assert ids(full) == ["root-node", "left-node", "left-leaf", "right-leaf"]
    assert full.graph.leaf_node_id == "left-leaf"
    assert [n.payload for n in full.graph.nodes] == [n.payload for n in graph]
    assert full.graph.nodes[1].parent_node_id == "root-node"
    persisted = _must_read(store, ActivePath(None))
    assert ids(persisted) == ["root-node", "left-node", "left-leaf"]
    assert persisted.graph.leaf_node_id == "left-leaf"
    explicit = _must_read(store, ActivePath("right-leaf"))
    assert ids(explicit) == ["root-node", "right-leaf"]
    assert explicit.graph.leaf_node_id == "right-leaf"
    # An unknown leaf gives an empty path, not an error and not the persisted path.
    assert ids(_must_read(store, ActivePath("no-such-node"))) == []


def c16_session_metadata_round_trips(h: SessionHarness) -> None:
    store = h.make()
    assert store.load_session_meta() is None
    meta = SessionMeta(
        session_id="root",
        session_name="Conformance Root",
        created_at=CREATED,
        model="gpt-5.4-mini",
        cwd="/home/dev/project",
        relation=RootRelation(),
    )
    store.save_session_meta(meta)
    loaded = store.load_session_meta()
    assert loaded is not None
    assert loaded == meta
    assert store.load_session() is None  # meta alone makes no head
    child = SessionMeta(
        session_id="root",
        session_name="Renamed",
        created_at=CREATED,
        model="other-model",
        cwd=None,
        relation=ChildRelation(parent_session_id="parent-1", caused_by={"type": "turn", "turn_id": "t1"}),
    )
    store.save_session_meta(child)
    assert store.load_session_meta() == child


def c17_tombstone_vacuum_and_gc_are_minimally_consistent(h: SessionHarness) -> None:
    store = h.make()
    store.commit_runtime_state(
        runtime_commit("root", nodes=[node("node-live"), node("node-delete", "node-live")], leaf="node-delete")
    )
    assert store.load_node("node-delete") is not None
    assert store.load_node("node-delete").payload == node("node-delete").payload  # type: ignore[union-attr]
    assert store.tombstone_nodes(["node-delete"]) == 1
    assert store.load_node("node-delete") is None
    assert store.load_node("node-live") is not None
    read = _must_read(store)
    assert "node-delete" not in ids(read)
    assert ids(read) == ["node-live"]
    report = store.vacuum()
    assert report.removed_node_count == 1
    assert store.vacuum().removed_node_count == 0  # counts only what this call removed
    gc = store.gc_unreachable()
    assert isinstance(gc, GcReport)
    assert gc.deleted_blob_count == 0  # the head checkpoint is a root
    assert _must_read(store).checkpoint is not None


def c18_final_commit_stamp_is_idempotent_and_conflicts_on_changed_hash(h: SessionHarness) -> None:
    store = h.make()
    base = runtime_commit("root")
    digest = base.turn_commit_hash()
    stamped = base.with_turn_commit(TurnCommitStamp("root", "provider-turn", digest))
    first = store.commit_runtime_state(stamped)
    retry = store.commit_runtime_state(stamped)
    assert retry.head_revision == first.head_revision
    assert retry.checkpoint_ref == first.checkpoint_ref
    assert _must_read(store).head_revision == first.head_revision  # the retry wrote nothing
    # The CAS revision and the stamp are not part of the identity.
    r2 = msgspec.structs.replace(runtime_commit("root"), expected_head_revision=first.head_revision)
    assert r2.turn_commit_hash() == digest
    assert stamped.turn_commit_hash() == digest
    # The identity does follow semantic state.
    changed = runtime_commit("root", turn_index=1)
    assert changed.turn_commit_hash() != digest
    refused(
        TurnCommitConflict,
        lambda: store.commit_runtime_state(changed.with_turn_commit(TurnCommitStamp("root", "provider-turn", changed.turn_commit_hash()))),
        store,
        "same turn id with a different hash",
    )
    # A stamp naming another session than the commit is a conflict too (checklist 2.2 step 2.1).
    refused(
        TurnCommitConflict,
        lambda: store.commit_runtime_state(base.with_turn_commit(TurnCommitStamp("other", "turn-x", digest))),
        store,
        "stamp for another session",
    )


# -- C19 (reopen): meta and commit survive; queue and intents come with those features ------------


def c19_runtime_persistence_survives_reopen(h: SessionHarness) -> None:
    store = h.make()
    store.save_session_meta(
        SessionMeta(
            session_id="root",
            session_name="Durable Root",
            created_at=CREATED,
            model="gpt-5.4-mini",
            cwd="/home/dev/reopen",
            relation=RootRelation(),
        )
    )
    first = store.commit_runtime_state(
        runtime_commit("root", tool_state=tool_state(77), nodes=[node("n1")], leaf="n1")
    )
    other = h.reopen(store)
    assert other is not None
    meta = other.load_session_meta()
    assert meta is not None and meta.session_name == "Durable Root"
    assert meta.cwd == "/home/dev/reopen"
    read = _must_read(other)
    assert read.session_id == "root"
    assert read.head_revision == first.head_revision
    assert read.checkpoint is not None and read.checkpoint.tool_state["generation"] == 77
    assert ids(read) == ["n1"]
    # Both handles see one storage: a commit through the second is seen by the first.
    second = other.commit_runtime_state(
        runtime_commit("root", turn_index=1, expected_head_revision=first.head_revision)
    )
    assert second.head_revision == first.head_revision + 1
    assert _must_read(store).head_revision == second.head_revision


def head_revision_cas_holds_across_handles(h: SessionHarness) -> None:
    """S-1 without threads: a handle committing on a revision another handle moved past fails."""
    a = h.make()
    a.commit_runtime_state(runtime_commit("root"))
    b = h.reopen(a)
    assert b is not None
    assert _must_read(b).head_revision == 1
    a.commit_runtime_state(runtime_commit("root", turn_index=1, expected_head_revision=1))
    e = refused(
        HeadRevisionConflict,
        lambda: b.commit_runtime_state(runtime_commit("root", turn_index=2, expected_head_revision=1)),
        b,
        "stale revision through a second handle",
    )
    assert (e.expected, e.actual) == (1, 2)  # type: ignore[attr-defined]


# -- F: named artifacts (the lashlang artifact store, generalised) -------------------------------


def _artifact_bytes() -> bytes:
    # Every byte value, and long enough to be compressed: the round trip must still be exact.
    return bytes(range(256)) * 40 + b"process echo(value: str) { finish value }"


def f01_artifact_put_get_round_trips(h: SessionHarness) -> None:
    store = h.make()
    data = _artifact_bytes()
    ref = store.put_artifact("echo-module", data)
    assert ref == sha256(data)
    loaded = store.get_artifact("echo-module")
    assert loaded == data
    assert type(loaded) is bytes
    small = b"\x00small\xff"
    store.put_artifact("small", small)
    assert store.get_artifact("small") == small
    assert ("default", "echo-module", ref) in store.list_artifacts()
    # Replacing a name replaces its bytes.
    store.put_artifact("small", b"replaced")
    assert store.get_artifact("small") == b"replaced"
    # Namespaces keep equal names apart.
    store.put_artifact("echo-module", b"other namespace", namespace="lashlang")
    assert store.get_artifact("echo-module", namespace="lashlang") == b"other namespace"
    assert store.get_artifact("echo-module") == data


def f02_artifact_get_unknown_is_none(h: SessionHarness) -> None:
    store = h.make()
    assert store.get_artifact("echo-module") is None
    store.put_artifact("echo-module", b"x", namespace="a")
    assert store.get_artifact("echo-module", namespace="b") is None
    assert store.get_artifact("echo-module") is None


def f03_artifact_reports_declared_tier(h: SessionHarness) -> None:
    store = h.make()
    store.put_artifact("echo-module", b"x")
    assert store.durability_tier() == h.expected_tier


def f04_artifact_store_survives_reopen(h: SessionHarness) -> None:
    store = h.make()
    data = _artifact_bytes()
    ref = store.put_artifact("echo-module", data)
    other = h.reopen(store)
    assert other is not None
    assert other.get_artifact("echo-module") == data
    assert ("default", "echo-module", ref) in other.list_artifacts()


# -- checklist section 6: promised, never asserted by the reference -------------------------------


def head_revision_conflict_on_stale_expected_revision_writes_nothing(h: SessionHarness) -> None:
    store = h.make()
    e = refused(
        HeadRevisionConflict,
        lambda: store.commit_runtime_state(runtime_commit("root", expected_head_revision=3)),
        store,
        "expected revision 3 on an empty store",
    )
    assert (e.expected, e.actual) == (3, 0)  # type: ignore[attr-defined]
    assert store.load_session() is None
    assert store.session_id is None  # a refused first commit does not bind the store

    assert store.commit_runtime_state(runtime_commit("root", expected_head_revision=0)).head_revision == 1
    stale = runtime_commit(
        "root",
        expected_head_revision=0,
        turn_index=5,
        tool_state=tool_state(5),
        nodes=[node("x")],
        leaf="x",
        usage=[TokenLedgerEntry("turn", "m", TokenUsage(input_tokens=1))],
    )
    e = refused(HeadRevisionConflict, lambda: store.commit_runtime_state(stale), store, "stale revision 0")
    assert (e.expected, e.actual) == (0, 1)  # type: ignore[attr-defined]
    e = refused(
        HeadRevisionConflict,
        lambda: store.commit_runtime_state(msgspec.structs.replace(stale, expected_head_revision=2)),
        store,
        "revision from the future",
    )
    assert (e.expected, e.actual) == (2, 1)  # type: ignore[attr-defined]
    read = _must_read(store)
    assert read.head_revision == 1 and read.token_ledger == [] and ids(read) == []
    # The right revision goes through.
    assert store.commit_runtime_state(msgspec.structs.replace(stale, expected_head_revision=1)).head_revision == 2


def head_revision_increments_by_one_per_commit(h: SessionHarness) -> None:
    store = h.make()
    revisions = []
    expected: int | None = None
    for i in range(3):
        r = store.commit_runtime_state(runtime_commit("root", turn_index=i, expected_head_revision=expected))
        revisions.append(r.head_revision)
        expected = r.head_revision
    assert revisions == [1, 2, 3]
    assert _must_read(store).head_revision == 3
    head = store.load_head()
    assert head is not None and head.head_revision == 3 and head.session_id == "root"
    # A commit without CAS still counts on from the stored revision.
    assert store.commit_runtime_state(runtime_commit("root", turn_index=9)).head_revision == 4


def graph_append_adds_nodes_moves_leaf_and_checks_parents(h: SessionHarness) -> None:
    store = h.make()
    store.commit_runtime_state(runtime_commit("root", nodes=[node("r")], leaf="r"))
    # Parents may be stored already or come earlier in the same delta.
    r = store.commit_runtime_state(
        runtime_commit(
            "root",
            graph=GraphAppend([node("a", "r"), node("b", "a")], "b"),
            expected_head_revision=1,
            turn_index=1,
        )
    )
    assert r.head_revision == 2
    read = _must_read(store)
    assert ids(read) == ["r", "a", "b"]
    assert read.graph.leaf_node_id == "b"
    assert ids(_must_read(store, ActivePath())) == ["r", "a", "b"]
    head = store.load_head()
    assert head is not None and head.graph_node_count == 3 and head.leaf_node_id == "b"
    # A branch from an older node moves the leaf to the branch.
    store.commit_runtime_state(runtime_commit("root", graph=GraphAppend([node("c", "r")], "c"), turn_index=2))
    read = _must_read(store)
    assert ids(read) == ["r", "a", "b", "c"]
    assert read.graph.leaf_node_id == "c"
    assert ids(_must_read(store, ActivePath())) == ["r", "c"]
    assert ids(_must_read(store, ActivePath("b"))) == ["r", "a", "b"]
    # Parents are checked against the stored graph.
    refused(
        ValidationError,
        lambda: store.commit_runtime_state(runtime_commit("root", graph=GraphAppend([node("d", "ghost")], "d"))),
        store,
        "append under a parent that does not exist",
    )
    refused(
        ValidationError,
        lambda: store.commit_runtime_state(
            runtime_commit("root", graph=GraphAppend([node("child", "later"), node("later", "r")], "child"))
        ),
        store,
        "append whose parent comes later in the delta",
    )
    store.tombstone_nodes(["c"])
    refused(
        ValidationError,
        lambda: store.commit_runtime_state(runtime_commit("root", graph=GraphAppend([node("d", "c")], "d"))),
        store,
        "append under a tombstoned parent",
    )


def graph_unchanged_keeps_nodes_and_moves_leaf(h: SessionHarness) -> None:
    store = h.make()
    store.commit_runtime_state(
        runtime_commit("root", nodes=[node("r"), node("a", "r"), node("b", "r")], leaf="a", tool_state=tool_state(1))
    )
    r = store.commit_runtime_state(
        runtime_commit("root", graph=GraphUnchanged("b"), expected_head_revision=1, tool_state=tool_state(2))
    )
    assert r.head_revision == 2
    read = _must_read(store)
    assert ids(read) == ["r", "a", "b"]
    assert read.graph.leaf_node_id == "b"
    assert read.checkpoint is not None and read.checkpoint.tool_state == tool_state(2)
    assert ids(_must_read(store, ActivePath())) == ["r", "b"]
    head = store.load_head()
    assert head is not None and head.graph_node_count == 3
    store.commit_runtime_state(runtime_commit("root", graph=GraphUnchanged("b"), turn_index=3))
    assert ids(_must_read(store)) == ["r", "a", "b"]
    refused(
        ValidationError,
        lambda: store.commit_runtime_state(runtime_commit("root", graph=GraphUnchanged("ghost"))),
        store,
        "unchanged graph with an unknown leaf",
    )
    store.tombstone_nodes(["a"])
    refused(
        ValidationError,
        lambda: store.commit_runtime_state(runtime_commit("root", graph=GraphUnchanged("a"))),
        store,
        "unchanged graph with a tombstoned leaf",
    )


# -- graph maintenance and reads -----------------------------------------------------------------


def tombstoning_the_leaf_moves_it_to_nearest_live_ancestor(h: SessionHarness) -> None:
    store = h.make()
    store.commit_runtime_state(
        runtime_commit("root", nodes=[node("r"), node("a", "r"), node("b", "a"), node("c", "b")], leaf="c")
    )
    # Tombstoning two nodes at once walks through both.
    assert store.tombstone_nodes(["c", "b"]) == 2
    head = store.load_head()
    assert head is not None
    assert head.leaf_node_id == "a"
    assert head.head_revision == 2  # the visible session changed
    assert head.graph_node_count == 2
    read = _must_read(store)
    assert read.graph.leaf_node_id == "a"
    assert ids(read) == ["r", "a"]
    assert ids(_must_read(store, ActivePath())) == ["r", "a"]
    # Hiding nothing changes nothing.
    assert store.tombstone_nodes(["c", "no-such-node"]) == 0
    assert store.load_head().head_revision == 2  # type: ignore[union-attr]
    # A runtime holding revision 1 must reload before it commits over the edit.
    refused(
        HeadRevisionConflict,
        lambda: store.commit_runtime_state(runtime_commit("root", graph=GraphUnchanged("a"), expected_head_revision=1)),
        store,
        "commit on the revision before a tombstone",
    )
    # Tombstoning a node that is not the leaf keeps the leaf and cuts the path above it.
    store.commit_runtime_state(
        runtime_commit("root", graph=GraphAppend([node("d", "a")], "d"), expected_head_revision=2)
    )
    assert store.tombstone_nodes(["a"]) == 1
    head = store.load_head()
    assert head is not None and head.leaf_node_id == "d" and head.head_revision == 4
    assert ids(_must_read(store, ActivePath())) == ["d"]
    assert ids(_must_read(store)) == ["r", "d"]


def load_session_without_head_is_none(h: SessionHarness) -> None:
    store = h.make()
    assert store.load_session() is None
    assert store.load_session(ActivePath()) is None
    assert store.load_head() is None
    assert store.load_node("anything") is None
    assert store.load_usage() == []
    assert store.session_id is None
    store.save_session_meta(SessionMeta(session_id="root", session_name="n", created_at=CREATED))
    assert store.load_session() is None
    assert store.load_head() is None
    assert store.session_id == "root"


def usage_ledger_merges_by_source_and_model(h: SessionHarness) -> None:
    store = h.make()

    def u(source: str, model: str, i: int = 0, o: int = 0, c: int = 0, r: int = 0) -> TokenLedgerEntry:
        return TokenLedgerEntry(
            source, model, TokenUsage(input_tokens=i, output_tokens=o, cached_input_tokens=c, reasoning_tokens=r)
        )

    store.commit_runtime_state(runtime_commit("root", usage=[u("turn", "m1", 1, 2, 3, 4), u("tool", "m1", 5)]))
    store.commit_runtime_state(
        runtime_commit("root", usage=[u("turn", "m2", 7), u("turn", "m1", 10, 20, 30, 40), u("empty", "m", 0)])
    )
    store.commit_runtime_state(runtime_commit("root", usage=[u("cached", "m1", c=9)]))
    expected = [
        u("turn", "m1", 11, 22, 33, 44),
        u("tool", "m1", 5),
        u("turn", "m2", 7),
        # Cached input is billed usage: an entry with only cached tokens is kept (the port's rule).
        u("cached", "m1", c=9),
    ]
    assert _must_read(store).token_ledger == expected
    assert store.load_usage() == expected


# -- blobs ---------------------------------------------------------------------------------------


def blob_round_trip_compresses_large_tool_state(h: SessionHarness) -> None:
    store = h.make()
    before = blob_count(store)
    big = b'{"tool":"shell","output":"' + b"line of repetitive tool output\n" * 400 + b'"}'
    assert len(big) > 4096
    ref = store.put_blob(big, BlobDescriptor.tool_state_snapshot())
    assert ref == sha256(big)
    info = store.blob_info(ref)
    assert info is not None
    assert info.compression == Compression.ZSTD
    assert info.kind == BlobKind.TOOL_STATE
    assert info.raw_size == len(big)
    assert info.stored_size < len(big)
    assert store.get_blob(ref) == big
    # Small blobs and blobs without the compressible hint are stored as they are.
    small = b"tiny tool state"
    sref = store.put_blob(small, BlobDescriptor.tool_state_snapshot())
    assert store.blob_info(sref).compression == Compression.NONE  # type: ignore[union-attr]
    assert store.get_blob(sref) == small
    gref = store.put_blob(big + b"!")
    ginfo = store.blob_info(gref)
    assert ginfo is not None and ginfo.compression == Compression.NONE and ginfo.kind == BlobKind.GENERIC
    assert store.get_blob(gref) == big + b"!"
    # Content addressing: the same bytes again add nothing.
    assert store.put_blob(big, BlobDescriptor.tool_state_snapshot()) == ref
    if before is not None:
        assert blob_count(store) == before + 3
    # Typed blobs round-trip values.
    value = {"generation": 3, "tools": {"shell": {"enabled": True, "raw": b"\x00\x01"}}, "list": [1, 2.5, None]}
    tref = store.put_typed_blob(value, BlobDescriptor.tool_state_snapshot())
    assert store.get_typed_blob(tref) == value


def get_blob_of_unknown_ref_is_none(h: SessionHarness) -> None:
    store = h.make()
    unknown = sha256(b"never stored")
    assert store.get_blob(unknown) is None
    assert store.blob_info(unknown) is None
    assert store.get_typed_blob(unknown) is None
    assert store.get_checkpoint(unknown) is None
    store.put_blob(b"something else")
    assert store.get_blob(unknown) is None


# -- picker --------------------------------------------------------------------------------------


def picker_info_reports_first_user_message_and_count(h: SessionHarness) -> None:
    store = h.make()
    assert store.load_picker_info() is None
    store.save_session_meta(
        SessionMeta(session_id="root", session_name="Picker", created_at=CREATED, cwd="/work", relation=RootRelation())
    )
    info = store.load_picker_info()
    assert info is not None
    assert (info.session_id, info.cwd, info.first_user_message, info.user_message_count) == ("root", "/work", "", 0)
    nodes = [
        node("u1", None, {"role": "user", "content": "  hello there  "}),
        node("a1", "u1", {"role": "assistant", "content": "hi"}),
        node("u2", "a1", {"role": "user", "parts": [{"type": "text", "text": "second question"}]}),
        node("p1", "u2", {"kind": "plugin", "body": {"role": "user"}}),
    ]
    store.commit_runtime_state(runtime_commit("root", nodes=nodes, leaf="p1"))
    info = store.load_picker_info()
    assert info is not None
    assert info.first_user_message == "hello there"
    assert info.user_message_count == 2
    assert info.relation == RootRelation()
    # Only live messages count.
    store.tombstone_nodes(["u1"])
    info = store.load_picker_info()
    assert info is not None
    assert info.first_user_message == "second question"
    assert info.user_message_count == 1


# -- garbage collection (reference storage_fixes / store_gc) -------------------------------------


def s02_gc_keeps_live_committed_checkpoint_blobs(h: SessionHarness) -> None:
    store = h.make()
    orphan = store.put_blob(b"orphan plugin snapshot", BlobDescriptor.plugin_session_snapshot())
    result = store.commit_runtime_state(
        runtime_commit(
            "root",
            tool_state=tool_state(3),
            plugin_snapshot={"plugins": {"p": {"meta": {"revision": 5}}}},
            plugin_snapshot_revision=5,
            execution_state=bytes.fromhex("DEADBEEF"),
        )
    )
    m = result.manifest
    live = [result.checkpoint_ref, m.tool_state_ref, m.plugin_snapshot_ref, m.execution_state_ref]
    assert all(r is not None for r in live)
    report = store.gc_unreachable()
    assert report.deleted_blob_count >= 1
    assert store.get_blob(orphan) is None
    for ref in live:
        assert store.get_blob(ref) is not None, f"live blob {ref} was collected"  # type: ignore[arg-type]
    cp = _must_read(store).checkpoint
    assert cp is not None and cp.execution_state == bytes.fromhex("DEADBEEF")
    assert cp.plugin_snapshot_revision == 5 and cp.tool_state == tool_state(3)
    # A second collection finds nothing more to delete.
    assert store.gc_unreachable().deleted_blob_count == 0


def g01_gc_keeps_rooted_checkpoint_blobs(h: SessionHarness) -> None:
    store = h.make()
    stored = store.put_checkpoint(
        HydratedSessionCheckpoint(
            turn_state=turn_state(0),
            tool_state=tool_state(7),
            plugin_snapshot={"plugins": {}},
            plugin_snapshot_revision=11,
        )
    )
    tool_ref, plugin_ref = stored.manifest.tool_state_ref, stored.manifest.plugin_snapshot_ref
    assert tool_ref is not None and plugin_ref is not None
    # The head takes the stored checkpoint by passing its refs through (no inline snapshots).
    commit = msgspec.structs.replace(
        runtime_commit("root"),
        checkpoint=HydratedSessionCheckpoint(
            turn_state=turn_state(0),
            tool_state_ref=tool_ref,
            plugin_snapshot_ref=plugin_ref,
            plugin_snapshot_revision=11,
        ),
    )
    result = store.commit_runtime_state(commit)
    # Same manifest content, same (content-addressed) ref: the head roots the stored checkpoint.
    assert result.checkpoint_ref == stored.checkpoint_ref
    orphan = store.put_artifact_blob(BlobDescriptor.artifact(), b"orphan artifact blob")
    report = store.gc_unreachable()
    assert report.deleted_blob_count == 1
    assert store.get_blob(orphan) is None
    for ref in (stored.checkpoint_ref, tool_ref, plugin_ref):
        assert store.get_blob(ref) is not None
    reloaded = store.get_checkpoint(stored.checkpoint_ref)
    assert reloaded is not None
    assert reloaded.tool_state_ref == tool_ref and reloaded.plugin_snapshot_ref == plugin_ref
    assert reloaded.tool_state == tool_state(7)
    assert reloaded.plugin_snapshot_revision == 11


def g02_auto_gc_runs_after_commit_without_reentrant_locking(h: SessionHarness) -> None:
    clock = ManualClock()
    store = h.make(StoreOptions(auto_gc_every_commits=1, clock=clock))
    orphan = store.put_blob(b"orphan before the commit")
    outcome: list[Any] = []
    # The automatic collection spares blobs younger than its grace period (a runtime may have put
    # them for its next commit); the orphan is older than that.
    clock.advance(store.options.gc_grace_ms + 1)
    young = store.put_blob(b"put just before the commit: inside the grace period")

    def commit() -> None:
        try:
            outcome.append(store.commit_runtime_state(runtime_commit("root", tool_state=tool_state(1))))
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            outcome.append(e)

    t = threading.Thread(target=commit, daemon=True)
    t.start()
    t.join(30)
    assert not t.is_alive(), "commit with auto GC did not return (deadlock?)"
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    result = outcome[0]
    assert store.get_blob(orphan) is None, "auto GC after the commit did not collect the orphan"
    assert store.get_blob(young) is not None, "auto GC collected a blob inside its grace period"
    assert getattr(store, "last_gc_error", None) is None
    assert store.get_blob(result.checkpoint_ref) is not None
    assert _must_read(store).checkpoint.tool_state == tool_state(1)  # type: ignore[union-attr]


# -- factory (reference store_gc G-4..G-6) -------------------------------------------------------


def g04_factory_creates_metadata_once_and_preserves_it(h: SessionHarness) -> None:
    factory = h.make_factory()
    relation = ChildRelation(parent_session_id="chat/parent", caused_by=None)
    store = factory.create_store("chat/alpha", model="first-model", relation=relation, cwd="/w")
    meta = store.load_session_meta()
    assert meta is not None
    assert meta.session_id == "chat/alpha"
    assert meta.model == "first-model"
    assert meta.relation == relation
    assert meta.cwd == "/w"
    assert store.session_id == "chat/alpha"
    store.save_session_meta(
        SessionMeta(
            session_id="chat/alpha",
            session_name="Renamed",
            created_at="original",
            model="preserved-model",
            cwd="/w",
            relation=relation,
        )
    )
    store.close()
    again = factory.create_store("chat/alpha", model="second-model")
    meta = again.load_session_meta()
    assert meta is not None
    assert (meta.session_name, meta.model, meta.created_at) == ("Renamed", "preserved-model", "original")
    assert meta.relation == relation


def g05_factory_is_usable_as_session_store_factory(h: SessionHarness) -> None:
    factory = h.make_factory()
    assert isinstance(factory, SessionStoreFactory)
    assert factory.durability_tier() == h.expected_tier
    assert not factory.has_session("chat-1")
    try:
        factory.open_store("chat-1")
    except SessionNotFound as e:
        assert e.session_id == "chat-1"
    else:
        raise AssertionError("open_store of a session that does not exist succeeded")
    store = factory.create_store("chat-1", model="gpt-5")
    assert isinstance(store, SessionStore)
    meta = store.load_session_meta()
    assert meta is not None and meta.session_id == "chat-1" and meta.model == "gpt-5"
    assert store.durability_tier() == h.expected_tier
    store.commit_runtime_state(runtime_commit("chat-1"))
    # The store is fixed to its session.
    try:
        store.commit_runtime_state(runtime_commit("chat-2"))
    except SessionBindingMismatch:
        pass
    else:
        raise AssertionError("a factory store accepted a commit for another session")
    assert factory.has_session("chat-1")
    opened = factory.open_store("chat-1")
    assert _must_read(opened).session_id == "chat-1"
    summaries = factory.list_sessions()
    assert [s.session_id for s in summaries] == ["chat-1"]
    assert summaries[0].head_revision == 1 and summaries[0].error is None
    try:
        factory.create_store("")
    except ValidationError:
        pass
    else:
        raise AssertionError("create_store('') was accepted")


def g06_factory_delete_session_is_idempotent(h: SessionHarness) -> None:
    factory = h.make_factory()
    store = factory.create_store("doomed")
    store.commit_runtime_state(runtime_commit("doomed", tool_state=tool_state(1)))
    keep = factory.create_store("kept")
    assert factory.delete_session("doomed") is True
    assert factory.has_session("doomed") is False
    assert factory.delete_session("doomed") is False
    assert [s.session_id for s in factory.list_sessions()] == ["kept"]
    try:
        factory.open_store("doomed")
    except SessionNotFound:
        pass
    else:
        raise AssertionError("open_store found a deleted session")
    fresh = factory.create_store("doomed")
    assert fresh.load_session() is None
    assert keep.load_session_meta() is not None


# -- bad input: refused with ValidationError before anything is written ---------------------------


def bad_input_empty_or_non_string_ids_are_refused(h: SessionHarness) -> None:
    store = h.make()
    for bad in ("", "   ", 5, None, b"root"):
        refused(
            ValidationError,
            lambda bad=bad: store.commit_runtime_state(runtime_commit(bad)),  # type: ignore[arg-type]
            store,
            f"commit with session_id {bad!r}",
        )
        refused(
            ValidationError,
            lambda bad=bad: store.save_session_meta(SessionMeta(session_id=bad, session_name="n", created_at=CREATED)),  # type: ignore[arg-type]
            store,
            f"meta with session_id {bad!r}",
        )
    for bad_node in (node(""), node(7), node("x", ""), node("self", "self")):  # type: ignore[arg-type]
        refused(
            ValidationError,
            lambda n=bad_node: store.commit_runtime_state(runtime_commit("root", nodes=[n])),
            store,
            f"node {bad_node.node_id!r} under {bad_node.parent_node_id!r}",
        )
    refused(
        ValidationError,
        lambda: store.commit_runtime_state(
            runtime_commit("root").with_turn_commit(TurnCommitStamp("root", "", "hash"))
        ),
        store,
        "turn stamp with an empty turn id",
    )
    refused(ValidationError, lambda: store.put_artifact("", b"x"), store, "artifact with an empty name")
    refused(ValidationError, lambda: store.load_node(""), store, "load_node('')")
    refused(ValidationError, lambda: store.tombstone_nodes([""]), store, "tombstone ''")
    refused(ValidationError, lambda: store.get_blob("not-a-ref"), store, "get_blob of a malformed ref")
    refused(ValidationError, lambda: store.put_blob("text, not bytes"), store, "put_blob of a str")  # type: ignore[arg-type]
    refused(
        ValidationError,
        lambda: store.commit_runtime_state(runtime_commit("root", expected_head_revision=-1)),
        store,
        "negative expected revision",
    )
    refused(
        ValidationError,
        lambda: store.commit_runtime_state(
            runtime_commit("root", usage=[TokenLedgerEntry("t", "m", TokenUsage(input_tokens=-1))])
        ),
        store,
        "negative token count",
    )
    assert store.load_session() is None
    assert store.session_id is None
    # The store is still usable and unbound.
    assert store.commit_runtime_state(runtime_commit("root")).head_revision == 1


def bad_input_non_json_payloads_are_refused(h: SessionHarness) -> None:
    store = h.make()

    class Custom:
        pass

    cases: list[tuple[str, Callable[[], RuntimeCommit]]] = [
        ("set in config", lambda: runtime_commit("root", config={"model": {1, 2}})),
        ("object() in config", lambda: runtime_commit("root", config={"x": object()})),
        ("NaN in config", lambda: runtime_commit("root", config={"temperature": float("nan")})),
        ("inf in config", lambda: runtime_commit("root", config={"t": math.inf})),
        ("int key in config", lambda: runtime_commit("root", config={1: "one"})),
        (
            "set deep in agent_frames",
            lambda: runtime_commit("root", agent_frames=[{"frame_id": "f", "assignment": {"a": [{"b": {"c": [{1}]}}]}}]),
        ),
        (
            "object() deep in agent_frames",
            lambda: runtime_commit("root", agent_frames=[agent_frame("f", "root"), {"deep": [[[{"k": Custom()}]]]}]),
        ),
        ("int key deep in agent_frames", lambda: runtime_commit("root", agent_frames=[{"x": [{2: "two"}]}])),
        ("NaN deep in tool_state", lambda: runtime_commit("root", tool_state={"tools": {"t": [1, {"v": float("nan")}]}})),
        ("set deep in tool_state", lambda: runtime_commit("root", tool_state={"tools": {"t": [frozenset()]}})),
        ("int key in tool_state", lambda: runtime_commit("root", tool_state={"tools": {3: {}}})),
        ("object() in plugin_snapshot", lambda: runtime_commit("root", plugin_snapshot={"plugins": {"p": object()}})),
        (
            "NaN in node payload",
            lambda: runtime_commit("root", nodes=[node("n", None, {"x": [float("nan")]})], leaf="n"),
        ),
        (
            "set in node caused_by",
            lambda: runtime_commit(
                "root", nodes=[msgspec.structs.replace(node("n"), caused_by={"ids": {"a"}})], leaf="n"
            ),
        ),
        (
            "NaN in turn_state",
            lambda: msgspec.structs.replace(
                runtime_commit("root"), checkpoint=HydratedSessionCheckpoint(turn_state={"x": float("nan")})
            ),
        ),
    ]
    before_blobs = blob_count(store)
    for what, build in cases:
        refused(ValidationError, lambda build=build: store.commit_runtime_state(build()), store, what)
        assert store.load_session() is None, what
        assert store.session_id is None, f"{what}: a refused commit bound the store"
    refused(ValidationError, lambda: store.put_typed_blob({"s": {1}}), store, "typed blob with a set")
    refused(
        ValidationError,
        lambda: store.put_checkpoint(HydratedSessionCheckpoint(tool_state={"x": float("nan")})),
        store,
        "put_checkpoint with NaN",
    )
    assert blob_count(store) == before_blobs
    # Only what reads back equal in value and type is accepted: a tuple would come back a list,
    # a str enum a plain str, a bytearray bytes.
    for what, value in (("tuple", (1, 2)), ("str enum", BlobKind.TOOL_STATE), ("bytearray", bytearray(b"x")),
                        ("int subclass", BlobKindInt.ONE)):
        refused(ValidationError, lambda value=value: store.commit_runtime_state(
            runtime_commit("root", tool_state={"v": value})), store, what)
    assert store.load_session() is None
    ok = runtime_commit("root", tool_state={"raw": b"\x00\xff", "pair": [1, 2], "tier": "tool_state"})
    store.commit_runtime_state(ok)
    cp = _must_read(store).checkpoint
    assert cp is not None and cp.tool_state == {"raw": b"\x00\xff", "pair": [1, 2], "tier": "tool_state"}


class BlobKindInt(enum.IntEnum):
    ONE = 1


def bad_input_graph_parent_must_exist(h: SessionHarness) -> None:
    store = h.make()
    refused(
        ValidationError,
        lambda: store.commit_runtime_state(runtime_commit("root", nodes=[node("a", "ghost")], leaf="a")),
        store,
        "replace-full graph with a missing parent",
    )
    refused(
        ValidationError,
        lambda: store.commit_runtime_state(runtime_commit("root", nodes=[node("b", "a"), node("a")], leaf="b")),
        store,
        "replace-full graph with a child before its parent",
    )
    refused(
        ValidationError,
        lambda: store.commit_runtime_state(runtime_commit("root", graph=GraphAppend([node("a", "ghost")], "a"))),
        store,
        "append to an empty store under a missing parent",
    )
    assert store.load_session() is None and store.session_id is None
    store.commit_runtime_state(runtime_commit("root", nodes=[node("r")], leaf="r"))
    refused(
        ValidationError,
        lambda: store.commit_runtime_state(
            runtime_commit("root", graph=GraphAppend([node("a", "r"), node("b", "ghost")], "b"))
        ),
        store,
        "append where only the second node has a missing parent",
    )
    assert ids(_must_read(store)) == ["r"]


def bad_input_append_cannot_reuse_node_id(h: SessionHarness) -> None:
    store = h.make()
    store.commit_runtime_state(runtime_commit("root", nodes=[node("r"), node("a", "r"), node("gone", "r")], leaf="a"))
    store.tombstone_nodes(["gone"])
    refused(
        ValidationError,
        lambda: store.commit_runtime_state(runtime_commit("root", graph=GraphAppend([node("a", "r")], "a"))),
        store,
        "append reusing a live node id",
    )
    refused(
        ValidationError,
        lambda: store.commit_runtime_state(runtime_commit("root", graph=GraphAppend([node("gone", "r")], "gone"))),
        store,
        "append reusing a tombstoned node id",
    )
    refused(
        ValidationError,
        lambda: store.commit_runtime_state(
            runtime_commit("root", graph=GraphAppend([node("x", "r"), node("x", "r")], "x"))
        ),
        store,
        "append with the same id twice",
    )
    refused(
        ValidationError,
        lambda: store.commit_runtime_state(runtime_commit("root", nodes=[node("r"), node("r")], leaf="r")),
        store,
        "replace-full with the same id twice",
    )
    assert ids(_must_read(store)) == ["r", "a"]


def bad_input_leaf_must_be_a_live_node(h: SessionHarness) -> None:
    store = h.make()
    refused(
        ValidationError,
        lambda: store.commit_runtime_state(runtime_commit("root", nodes=[node("r")], leaf="ghost")),
        store,
        "replace-full with a leaf outside the graph",
    )
    refused(
        ValidationError,
        lambda: store.commit_runtime_state(runtime_commit("root", graph=GraphUnchanged("ghost"))),
        store,
        "unchanged graph on an empty store with a leaf",
    )
    assert store.load_session() is None
    store.commit_runtime_state(runtime_commit("root", nodes=[node("r")], leaf="r"))
    refused(
        ValidationError,
        lambda: store.commit_runtime_state(runtime_commit("root", graph=GraphAppend([node("a", "r")], "ghost"))),
        store,
        "append with a leaf that is not a node",
    )
    refused(
        ValidationError,
        lambda: store.commit_runtime_state(runtime_commit("root", graph=GraphUnchanged("ghost"))),
        store,
        "unchanged graph with a leaf that is not a node",
    )


def bad_input_commit_for_another_session_is_refused(h: SessionHarness) -> None:
    store = h.make()
    store.commit_runtime_state(runtime_commit("alpha", nodes=[node("r")], leaf="r", tool_state=tool_state(1)))
    e = refused(
        SessionBindingMismatch,
        lambda: store.commit_runtime_state(
            runtime_commit(
                "beta",
                tool_state=tool_state(2),
                usage=[TokenLedgerEntry("t", "m", TokenUsage(input_tokens=1))],
            )
        ),
        store,
        "commit for another session",
    )
    assert (e.bound_session_id, e.attempted_session_id) == ("alpha", "beta")  # type: ignore[attr-defined]
    refused(
        SessionBindingMismatch,
        lambda: store.save_session_meta(SessionMeta(session_id="beta", session_name="b", created_at=CREATED)),
        store,
        "meta for another session",
    )
    # A store bound by its meta refuses other sessions too.
    other = h.make()
    other.save_session_meta(SessionMeta(session_id="gamma", session_name="g", created_at=CREATED))
    refused(
        SessionBindingMismatch,
        lambda: other.commit_runtime_state(runtime_commit("delta")),
        other,
        "commit for another session than the meta's",
    )


def bad_input_checkpoint_refs_must_exist(h: SessionHarness) -> None:
    store = h.make()
    missing = sha256(b"no such snapshot")
    for field in ("tool_state_ref", "plugin_snapshot_ref", "execution_state_ref"):
        cp = HydratedSessionCheckpoint(turn_state=turn_state(0), **{field: missing})
        refused(
            ValidationError,
            lambda cp=cp: store.commit_runtime_state(msgspec.structs.replace(runtime_commit("root"), checkpoint=cp)),
            store,
            f"commit whose {field} names a missing blob",
        )
        refused(ValidationError, lambda cp=cp: store.put_checkpoint(cp), store, f"put_checkpoint with a missing {field}")
        refused(
            ValidationError,
            lambda field=field: store.commit_runtime_state(
                msgspec.structs.replace(
                    runtime_commit("root"), checkpoint=HydratedSessionCheckpoint(**{field: "not-a-ref"})
                )
            ),
            store,
            f"commit whose {field} is malformed",
        )
    assert store.load_session() is None and store.session_id is None


# -- registry ------------------------------------------------------------------------------------

SESSION_SCENARIOS: list[Scenario] = [
    c01_runtime_persistence_reports_declared_durability,
    c02_commit_increments_head_and_round_trips_agent_frames,
    c03_commit_rejects_a_different_session_id,
    c04_load_hydrates_checkpoint_and_usage,
    c05_active_path_read_scope_selects_only_requested_ancestry,
    c16_session_metadata_round_trips,
    c17_tombstone_vacuum_and_gc_are_minimally_consistent,
    c18_final_commit_stamp_is_idempotent_and_conflicts_on_changed_hash,
    f01_artifact_put_get_round_trips,
    f02_artifact_get_unknown_is_none,
    f03_artifact_reports_declared_tier,
    head_revision_conflict_on_stale_expected_revision_writes_nothing,
    head_revision_increments_by_one_per_commit,
    graph_append_adds_nodes_moves_leaf_and_checks_parents,
    graph_unchanged_keeps_nodes_and_moves_leaf,
    tombstoning_the_leaf_moves_it_to_nearest_live_ancestor,
    load_session_without_head_is_none,
    usage_ledger_merges_by_source_and_model,
    blob_round_trip_compresses_large_tool_state,
    get_blob_of_unknown_ref_is_none,
    picker_info_reports_first_user_message_and_count,
    s02_gc_keeps_live_committed_checkpoint_blobs,
    g01_gc_keeps_rooted_checkpoint_blobs,
    g02_auto_gc_runs_after_commit_without_reentrant_locking,
    g04_factory_creates_metadata_once_and_preserves_it,
    g05_factory_is_usable_as_session_store_factory,
    g06_factory_delete_session_is_idempotent,
    bad_input_empty_or_non_string_ids_are_refused,
    bad_input_non_json_payloads_are_refused,
    bad_input_graph_parent_must_exist,
    bad_input_append_cannot_reuse_node_id,
    bad_input_leaf_must_be_a_live_node,
    bad_input_commit_for_another_session_is_refused,
    bad_input_checkpoint_refs_must_exist,
]

#: Only for durable backends (`harness.reopen(store)` gives a second handle).
REOPEN_SCENARIOS: list[Scenario] = [
    c19_runtime_persistence_survives_reopen,
    f04_artifact_store_survives_reopen,
    head_revision_cas_holds_across_handles,
]

ALL_SCENARIOS: list[Scenario] = [*SESSION_SCENARIOS, *REOPEN_SCENARIOS]

_names = [s.__name__ for s in ALL_SCENARIOS]
assert len(set(_names)) == len(_names), "scenario names must be unique"


def run_session_suite(harness: SessionHarness) -> list[str]:
    """Run every scenario that applies to `harness`, each on its own fresh stores.

    Stops at the first failure (the error propagates). Returns the names of the scenarios run.
    Test runners should rather generate one test per scenario, as lashstore's own tests do.
    """
    ran = []
    for scenario in SESSION_SCENARIOS + (REOPEN_SCENARIOS if harness.durable else []):
        try:
            scenario(harness)
        finally:
            harness.close()
        ran.append(scenario.__name__)
    return ran
