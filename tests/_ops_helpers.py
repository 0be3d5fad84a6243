"""Shared by the ops tests: deployments on either backend with a manual clock, and a small agent
that commits turns the way a runtime does (CAS, turn stamps, queue completions, snapshots)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lashstore
from lashstore import (
    ClaimBoundary,
    GraphAppend,
    GraphNode,
    HydratedSessionCheckpoint,
    ManualClock,
    QueuedWorkBatchDraft,
    RuntimeCommit,
    StoreOptions,
    TokenLedgerEntry,
    TokenUsage,
)

BACKENDS = ["memory", "sqlite"]
ALL_BACKENDS = ["memory", "sqlite", "postgres"]


def open_dep(kind: str, tmp_path: Path, clock: ManualClock | None = None, *, pg: str | None = None,
             **kw: Any) -> lashstore.Deployment:
    """A deployment of `kind`; the same `tmp_path` opens the same storage again (for postgres, a
    schema named after it in the database `pg`, the postgres_url fixture's)."""
    options = StoreOptions(clock=clock or ManualClock(), **kw)
    if kind == "memory":
        url = "memory://"
    elif kind == "postgres":
        import hashlib

        from postgres_support import deployment_url

        assert pg is not None, "open_dep('postgres', ...) needs pg=<the postgres_url fixture>"
        url = deployment_url(pg, "d_" + hashlib.sha256(str(tmp_path).encode()).hexdigest()[:20])
    else:
        url = str(tmp_path / "store")
    return lashstore.open(url, options=options)


class Agent:
    """Commits turns to one session: user -> assistant under the current leaf (or `parent`)."""

    def __init__(self, store: Any, session_id: str) -> None:
        self.store = store
        self.sid = session_id
        self.head = 0
        self.leaf: str | None = None
        self.n = 0
        self.plugin_ref: str | None = None

    def reload(self) -> None:
        head = self.store.load_head()
        self.head = head.head_revision if head else 0
        self.leaf = head.leaf_node_id if head else None

    def turn(self, text: str | None = None, *, parent: Any = "leaf", via_queue: bool = False,
             extra_nodes: int = 1, payload_extra: Any = None) -> lashstore.RuntimeCommitResult:
        self.n += 1
        i = self.n
        text = text if text is not None else f"message {i}"
        parent_id = self.leaf if parent == "leaf" else parent
        nodes = [GraphNode(node_id=f"u{i}", parent_node_id=parent_id,
                           payload={"role": "user", "content": text, **({"extra": payload_extra} if payload_extra else {})})]
        prev = f"u{i}"
        for k in range(extra_nodes):
            nid = f"a{i}" if k == extra_nodes - 1 else f"c{i}.{k}"
            nodes.append(GraphNode(node_id=nid, parent_node_id=prev, payload={"role": "assistant", "content": f"reply {i}.{k}"}))
            prev = nid
        plugin = None
        if self.plugin_ref is None or i % 3 == 0:
            plugin = {"facts": [f"fact {j}" for j in range(i)]}
        commit = RuntimeCommit(
            session_id=self.sid,
            expected_head_revision=self.head,
            config={"model": "m1", "turn": i},
            graph=GraphAppend(nodes, prev),
            checkpoint=HydratedSessionCheckpoint(
                turn_state={"turn": i},
                tool_state={"turn": i, "log": ["x" * 200] * (i % 5 + 1)},
                plugin_snapshot=plugin,
                plugin_snapshot_ref=None if plugin is not None else self.plugin_ref,
                plugin_snapshot_revision=i,
                execution_state=f"exec-{i}".encode() * 50,
            ),
            usage_deltas=[
                TokenLedgerEntry("turn", "m1", TokenUsage(input_tokens=100 + i, output_tokens=10)),
                TokenLedgerEntry("summariser", "m2", TokenUsage(input_tokens=5 if i % 2 else 0)),
            ],
        ).with_turn_commit(f"turn-{i}")
        if via_queue:
            self.store.enqueue_queued_work(QueuedWorkBatchDraft(session_id=self.sid, payloads=[{"text": text}],
                                                                source_key=f"msg-{i}"))
            claim = self.store.claim_ready_queued_work(self.sid, "rt", ClaimBoundary.IDLE, 60_000, 1)
            assert claim is not None
            commit = commit.completing_queue_claim(claim.completion())
        result = self.store.commit_runtime_state(commit)
        self.head = result.head_revision
        self.leaf = prev
        self.plugin_ref = result.manifest.plugin_snapshot_ref
        return result
