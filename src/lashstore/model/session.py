"""Records of the session store: head, checkpoint, graph, usage, commit, meta.

Domain payloads that the store only round-trips (config, agent frames, turn state, tool state,
plugin snapshot, node payloads) are typed `Any`: JSON-compatible values, where `bytes` may appear
anywhere. The store never imports the caller's classes.
"""

from __future__ import annotations

import enum
from typing import Any, Union

import msgspec

__all__ = [
    "DurabilityTier",
    "TokenUsage",
    "TokenLedgerEntry",
    "GraphNode",
    "SessionNodeRecord",
    "SessionGraph",
    "FullGraph",
    "ActivePath",
    "SessionReadScope",
    "GraphUnchanged",
    "GraphAppend",
    "GraphReplaceFull",
    "GraphCommitDelta",
    "SessionCheckpoint",
    "CheckpointManifest",
    "HydratedSessionCheckpoint",
    "StoredSessionCheckpoint",
    "TurnCommitStamp",
    "RuntimeTurnCommitStamp",
    "RuntimeCommit",
    "RuntimeCommitResult",
    "SessionHeadMeta",
    "PersistedSessionRead",
    "RootRelation",
    "ChildRelation",
    "SessionRelation",
    "SessionMeta",
    "SessionPickerInfo",
    "GcReport",
    "VacuumReport",
    "SessionSummary",
]

from .queue import QueuedWorkCompletion


class DurabilityTier(str, enum.Enum):
    """`inline`: lives in this process only. `durable`: survives a crash."""

    INLINE = "inline"
    DURABLE = "durable"


class TokenUsage(msgspec.Struct, kw_only=True):
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    reasoning_tokens: int = 0

    def total(self) -> int:
        """Input + output + reasoning; cached input is part of input and not counted again."""
        return self.input_tokens + self.output_tokens + self.reasoning_tokens

    def is_empty(self) -> bool:
        return self.total() == 0 and self.cached_input_tokens == 0


class TokenLedgerEntry(msgspec.Struct):
    """Usage of one (source, model) pair; the ledger merges entries with the same key."""

    source: str
    model: str
    usage: TokenUsage = msgspec.field(default_factory=TokenUsage)


class GraphNode(msgspec.Struct, kw_only=True):
    """One node of the conversation graph. `payload` is the caller's, opaque to the store."""

    node_id: str
    parent_node_id: str | None = None
    payload: Any = None
    caused_by: Any = None
    agent_frame_id: str | None = None
    timestamp: str = ""


#: The reference's name for `GraphNode`.
SessionNodeRecord = GraphNode


class SessionGraph(msgspec.Struct):
    nodes: list[GraphNode] = msgspec.field(default_factory=list)
    leaf_node_id: str | None = None

    def node_ids(self) -> list[str]:
        return [n.node_id for n in self.nodes]


class FullGraph(msgspec.Struct, tag="full_graph"):
    """Read every live node, in insertion order."""


class ActivePath(msgspec.Struct, tag="active_path"):
    """Read only the ancestry of a leaf (the stored leaf when None), root first."""

    leaf_node_id: str | None = None


SessionReadScope = Union[FullGraph, ActivePath]


class GraphUnchanged(msgspec.Struct, tag="unchanged"):
    """Keep every node; optionally move the leaf."""

    leaf_node_id: str | None = None


class GraphAppend(msgspec.Struct, tag="append"):
    """Add nodes (parents must exist already or earlier in `nodes`) and set the leaf."""

    nodes: list[GraphNode] = msgspec.field(default_factory=list)
    leaf_node_id: str | None = None


class GraphReplaceFull(msgspec.Struct, tag="replace_full"):
    """Replace the whole graph, tombstones included."""

    nodes: list[GraphNode] = msgspec.field(default_factory=list)
    leaf_node_id: str | None = None

    @classmethod
    def of(cls, graph: SessionGraph) -> "GraphReplaceFull":
        return cls(list(graph.nodes), graph.leaf_node_id)


GraphCommitDelta = Union[GraphUnchanged, GraphAppend, GraphReplaceFull]


class SessionCheckpoint(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The stored checkpoint manifest: turn state plus references to snapshot blobs."""

    turn_state: Any = None
    tool_state_ref: str | None = None
    plugin_snapshot_ref: str | None = None
    plugin_snapshot_revision: int | None = None
    execution_state_ref: str | None = None


CheckpointManifest = SessionCheckpoint


class HydratedSessionCheckpoint(msgspec.Struct, kw_only=True):
    """A checkpoint with its snapshots inline.

    On write, an inline snapshot (not None) is stored and replaces its `*_ref`; a None snapshot
    passes its `*_ref` through unchanged (the referenced blob must exist). On read, every
    referenced snapshot is loaded.
    """

    turn_state: Any = None
    tool_state_ref: str | None = None
    tool_state: Any = None
    plugin_snapshot_ref: str | None = None
    plugin_snapshot: Any = None
    plugin_snapshot_revision: int | None = None
    execution_state_ref: str | None = None
    execution_state: bytes | None = None


class StoredSessionCheckpoint(msgspec.Struct):
    checkpoint_ref: str
    manifest: SessionCheckpoint


class TurnCommitStamp(msgspec.Struct):
    """Makes a final turn commit idempotent: same (session, turn, hash) returns the stored result."""

    session_id: str
    turn_id: str
    turn_commit_hash: str


RuntimeTurnCommitStamp = TurnCommitStamp


class RuntimeCommit(msgspec.Struct, kw_only=True):
    """Everything one turn commits, written all-or-nothing by `commit_runtime_state`."""

    session_id: str
    expected_head_revision: int | None = None
    config: Any = None
    agent_frames: list[Any] = msgspec.field(default_factory=list)
    current_agent_frame_id: str = ""
    graph: GraphCommitDelta = msgspec.field(default_factory=GraphUnchanged)
    checkpoint: HydratedSessionCheckpoint = msgspec.field(default_factory=HydratedSessionCheckpoint)
    usage_deltas: list[TokenLedgerEntry] = msgspec.field(default_factory=list)
    turn_commit: TurnCommitStamp | None = None
    completed_queue_claims: list[QueuedWorkCompletion] = msgspec.field(default_factory=list)
    committed_attachment_ids: list[str] = msgspec.field(default_factory=list)

    def turn_commit_hash(self) -> str:
        """The semantic identity of this commit; see `lashstore.turn_commit_hash`."""
        from ..rules.commit import turn_commit_hash

        return turn_commit_hash(self)

    def with_turn_commit(self, stamp: "TurnCommitStamp | str") -> "RuntimeCommit":
        """A copy carrying a turn stamp. A plain turn id gets this commit's own hash."""
        if isinstance(stamp, str):
            stamp = TurnCommitStamp(self.session_id, stamp, self.turn_commit_hash())
        return msgspec.structs.replace(self, turn_commit=stamp)

    def completing_queue_claim(self, completion: QueuedWorkCompletion) -> "RuntimeCommit":
        return msgspec.structs.replace(
            self, completed_queue_claims=[*self.completed_queue_claims, completion]
        )

    def with_committed_attachments(self, ids: list[str]) -> "RuntimeCommit":
        return msgspec.structs.replace(self, committed_attachment_ids=list(ids))


class RuntimeCommitResult(msgspec.Struct):
    head_revision: int
    checkpoint_ref: str
    manifest: SessionCheckpoint


class SessionHeadMeta(msgspec.Struct, kw_only=True):
    """The stored head of a session (one per session)."""

    session_id: str
    head_revision: int = 0
    config: Any = None
    agent_frames: list[Any] = msgspec.field(default_factory=list)
    current_agent_frame_id: str = ""
    checkpoint_ref: str | None = None
    leaf_node_id: str | None = None
    graph_node_count: int = 0
    updated_at_ms: int = 0


class PersistedSessionRead(msgspec.Struct, kw_only=True):
    """What `load_session` returns."""

    session_id: str
    head_revision: int
    config: Any
    agent_frames: list[Any]
    current_agent_frame_id: str
    graph: SessionGraph
    checkpoint_ref: str | None
    checkpoint: HydratedSessionCheckpoint | None
    token_ledger: list[TokenLedgerEntry]


class RootRelation(msgspec.Struct, tag="root"):
    pass


class ChildRelation(msgspec.Struct, tag="child"):
    parent_session_id: str
    caused_by: Any = None


SessionRelation = Union[RootRelation, ChildRelation]


class SessionMeta(msgspec.Struct, kw_only=True):
    session_id: str
    session_name: str
    created_at: str
    model: str = ""
    cwd: str | None = None
    relation: SessionRelation = msgspec.field(default_factory=RootRelation)


class SessionPickerInfo(msgspec.Struct, kw_only=True):
    session_id: str
    cwd: str | None
    relation: SessionRelation
    first_user_message: str
    user_message_count: int


class GcReport(msgspec.Struct, kw_only=True):
    root_count: int = 0
    retained_blob_count: int = 0
    deleted_blob_count: int = 0
    deleted_bytes: int = 0


class VacuumReport(msgspec.Struct, kw_only=True):
    removed_node_count: int = 0


class SessionSummary(msgspec.Struct, kw_only=True):
    """One row of `list_sessions`. A session that cannot be read has `error` set, not a crash."""

    session_id: str
    meta: SessionMeta | None = None
    head_revision: int | None = None
    node_count: int = 0
    updated_at_ms: int | None = None
    path: str | None = None
    error: str | None = None
    #: the schema version of a file an older lashstore wrote (`lashstore migrate` brings it forward)
    older_schema: int | None = None
