"""Records of store maintenance: graph pruning, verification findings, and a session's dump.

Backends produce and consume these (`backends/*/maintenance.py`); `lashstore.ops` turns them
into reports and into the export file. A dump holds decoded values, never a backend's rows, so a
session moves between backends (memory, SQLite, Postgres) unchanged.
"""

from __future__ import annotations

from typing import Any

import msgspec

from .session import GcReport, GraphNode, RuntimeCommitResult, SessionMeta, TokenUsage

__all__ = [
    "GraphPruneResult",
    "Problem",
    "DumpHead",
    "DumpNode",
    "DumpBlob",
    "DumpUsage",
    "DumpTurn",
    "DumpBatch",
    "DumpAttachment",
    "DumpArtifact",
    "SessionDump",
    "RegistryDump",
    "GcReport",
    "FileMigration",
]


class GraphPruneResult(msgspec.Struct, kw_only=True):
    """What `prune_graph` removed (or, in a dry run, would remove) from one session.

    A turn starts at a user-message node on the active path (the picker's rule). Everything that
    is not the K-th last turn's user node or one of its descendants goes; that node becomes a
    root (its parent is set to None)."""

    session_id: str
    turns_on_active_path: int = 0
    kept_turns: int = 0
    cut_node_id: str | None = None
    removed_node_count: int = 0
    removed_bytes: int = 0  # encoded node bodies
    head_revision: int | None = None  # after the prune (bumped once when anything was removed)


class Problem(msgspec.Struct, kw_only=True):
    """One damaged record found by verify."""

    location: str  # the file (SQLite) or "memory:<session>"
    what: str  # "file", "integrity", "blob", "graph node", "session head", "checkpoint", ...
    key: str  # which record: a blob ref, a node id, a batch id, a page
    detail: str


# -- the dump of one session -------------------------------------------------------------------


class DumpHead(msgspec.Struct, kw_only=True):
    head_revision: int
    config: Any = None
    agent_frames: list[Any] = msgspec.field(default_factory=list)
    current_agent_frame_id: str = ""
    checkpoint_ref: str | None = None
    leaf_node_id: str | None = None
    node_count: int = 0
    updated_at_ms: int = 0


class DumpNode(msgspec.Struct, kw_only=True):
    node: GraphNode
    tombstoned: bool = False


class DumpBlob(msgspec.Struct, kw_only=True):
    """A blob as stored: `data` is the stored form (compressed when `compression` says so)."""

    ref: str
    kind: str
    compression: str
    raw_size: int
    data: bytes
    created_at_ms: int | None = None


class DumpUsage(msgspec.Struct, kw_only=True):
    """One ledger entry as committed (not merged). `revision`/`idx` are kept where the backend
    records them, so the merged ledger comes back in the same order."""

    source: str
    model: str
    usage: TokenUsage
    revision: int | None = None
    idx: int | None = None
    created_at_ms: int | None = None


class DumpTurn(msgspec.Struct, kw_only=True):
    turn_id: str
    turn_commit_hash: str
    result: RuntimeCommitResult
    committed_at_ms: int | None = None


class DumpBatch(msgspec.Struct, kw_only=True):
    batch_id: str
    enqueue_seq: int
    source_key: str | None
    state: str
    delivery_policy: str
    slot_policy: str
    merge_key: str | None
    available_at_ms: int
    enqueued_at_ms: int
    items: list[tuple[str, Any]]  # (item id, payload)
    claim_id: str | None = None
    claim_owner_id: str | None = None
    claim_token: str | None = None
    claim_fencing_token: int = 0
    claim_claimed_at_ms: int = 0
    claim_expires_at_ms: int = 0
    finished_at_ms: int | None = None


class DumpAttachment(msgspec.Struct, kw_only=True):
    attachment_id: str
    canonical_uri: str
    intent_at_ms: int
    committed_at_ms: int | None = None
    media_type: str | None = None
    byte_len: int | None = None
    width: int | None = None
    height: int | None = None
    label: str | None = None


class DumpArtifact(msgspec.Struct, kw_only=True):
    namespace: str
    name: str
    blob_ref: str
    created_at_ms: int | None = None


class SessionDump(msgspec.Struct, kw_only=True):
    """Everything one session holds, decoded. Blobs: those the session can reach (its head's
    checkpoint and snapshots, its attachments, the store's named artifacts); garbage stays behind."""

    session_id: str
    meta: SessionMeta | None = None
    head: DumpHead | None = None
    nodes: list[DumpNode] = msgspec.field(default_factory=list)  # insertion order
    blobs: list[DumpBlob] = msgspec.field(default_factory=list)
    usage: list[DumpUsage] = msgspec.field(default_factory=list)  # commit order
    turns: list[DumpTurn] = msgspec.field(default_factory=list)
    batches: list[DumpBatch] = msgspec.field(default_factory=list)  # enqueue order
    attachments: list[DumpAttachment] = msgspec.field(default_factory=list)
    artifacts: list[DumpArtifact] = msgspec.field(default_factory=list)


class RegistryDump(msgspec.Struct, kw_only=True):
    """Every row of a registry (processes, host events or effects), in the form both backends
    share (`backends.sql.rows`), and the counters it numbers new rows from (the lease fencing
    counter; the host-event counters). What `lashstore copy` moves between deployments."""

    tables: dict[str, list[tuple]]
    counters: dict[str, int] = msgspec.field(default_factory=dict)


class FileMigration(msgspec.Struct, kw_only=True):
    """One database (a SQLite file, a PostgreSQL component) brought to this release's schema."""

    path: str
    kind: str | None
    before: int | None
    after: int | None
    latest: int | None
    error: str | None = None

    @property
    def migrated(self) -> bool:
        return self.before is not None and self.after is not None and self.after != self.before
