"""Checks on caller input, run before a transaction starts so nothing half-written can follow."""

from __future__ import annotations

from typing import Any

from ..codec import check_json, check_text
from ..errors import ValidationError
from ..model.session import (
    ChildRelation,
    RootRelation,
    GraphAppend,
    GraphNode,
    GraphReplaceFull,
    GraphUnchanged,
    HydratedSessionCheckpoint,
    RuntimeCommit,
    SessionMeta,
    TokenLedgerEntry,
    TokenUsage,
)

__all__ = [
    "MAX_ID_BYTES",
    "MAX_TOKENS",
    "check_id",
    "check_id_list",
    "check_text",
    "check_optional_text",
    "check_token_count",
    "check_optional_id",
    "check_ref",
    "check_nonneg_int",
    "check_node",
    "check_commit",
    "check_checkpoint",
    "check_meta",
    "check_usage",
]

_HEX = frozenset("0123456789abcdef")


#: The longest id (session, node, turn, artifact, batch, process, ...) in UTF-8 bytes. Ids are
#: index keys; a PostgreSQL index entry holds at most about 2.7 KB, and some keys join three ids.
MAX_ID_BYTES = 512
#: The largest token count one usage entry may carry (2**53 - 1, the largest integer every JSON
#: reader keeps exactly). Totals are summed without overflow however many entries there are.
MAX_TOKENS = (1 << 53) - 1


def check_id(value: Any, what: str) -> str:
    """An id: a non-blank string of valid Unicode, no NUL, at most MAX_ID_BYTES in UTF-8."""
    if type(value) is not str or not value.strip():
        raise ValidationError(f"{what} must be a non-empty string, got {value!r}")
    check_text(value, what)
    if len(value) * 4 > MAX_ID_BYTES and len(value.encode("utf-8")) > MAX_ID_BYTES:
        raise ValidationError(
            f"{what} is {len(value.encode('utf-8'))} bytes long in UTF-8; ids are at most {MAX_ID_BYTES} bytes"
        )
    return value


def check_optional_id(value: Any, what: str) -> str | None:
    if value is None:
        return None
    return check_id(value, what)


def check_id_list(value: Any, what: str) -> list[str]:
    """A list (or tuple) of ids. A string is refused, not taken as its characters."""
    if not isinstance(value, (list, tuple)):
        raise ValidationError(f"{what} must be a list of ids, got {type(value).__name__}")
    for i, x in enumerate(value):
        check_id(x, f"{what}[{i}]")
    return list(value)


def check_optional_text(value: Any, what: str) -> str | None:
    if value is None:
        return None
    return check_text(value, what)


def check_token_count(value: Any, what: str) -> int:
    if type(value) is not int or not 0 <= value <= MAX_TOKENS:
        raise ValidationError(f"{what} must be an integer from 0 to {MAX_TOKENS} (2**53 - 1), got {value!r}")
    return value


def check_ref(value: Any, what: str) -> str | None:
    if value is None:
        return None
    if type(value) is not str or len(value) != 64 or not _HEX.issuperset(value):
        raise ValidationError(f"{what} must be a blob ref (64 lowercase hex characters), got {value!r}")
    return value


def check_nonneg_int(value: Any, what: str, optional: bool = False) -> None:
    if value is None and optional:
        return
    if type(value) is not int or value < 0:
        raise ValidationError(f"{what} must be a non-negative integer, got {value!r}")


def check_node(node: Any, what: str) -> GraphNode:
    if not isinstance(node, GraphNode):
        raise ValidationError(f"{what} must be a GraphNode, got {type(node).__name__}")
    check_id(node.node_id, f"{what}.node_id")
    if node.parent_node_id is not None:
        check_id(node.parent_node_id, f"{what}.parent_node_id")
        if node.parent_node_id == node.node_id:
            raise ValidationError(f"{what}: node {node.node_id!r} cannot be its own parent")
    check_optional_id(node.agent_frame_id, f"{what}.agent_frame_id")
    check_text(node.timestamp, f"{what}.timestamp")
    check_json(node.payload, f"{what}.payload")
    check_json(node.caused_by, f"{what}.caused_by")
    return node


def check_checkpoint(cp: Any, what: str = "checkpoint") -> HydratedSessionCheckpoint:
    if not isinstance(cp, HydratedSessionCheckpoint):
        raise ValidationError(f"{what} must be a HydratedSessionCheckpoint")
    check_json(cp.turn_state, f"{what}.turn_state")
    check_json(cp.tool_state, f"{what}.tool_state")
    check_json(cp.plugin_snapshot, f"{what}.plugin_snapshot")
    check_ref(cp.tool_state_ref, f"{what}.tool_state_ref")
    check_ref(cp.plugin_snapshot_ref, f"{what}.plugin_snapshot_ref")
    check_ref(cp.execution_state_ref, f"{what}.execution_state_ref")
    check_nonneg_int(cp.plugin_snapshot_revision, f"{what}.plugin_snapshot_revision", optional=True)
    if cp.execution_state is not None and not isinstance(cp.execution_state, (bytes, bytearray)):
        raise ValidationError(f"{what}.execution_state must be bytes or None")
    return cp


def check_usage(entries: Any, what: str = "usage_deltas") -> list[TokenLedgerEntry]:
    if not isinstance(entries, list):
        raise ValidationError(f"{what} must be a list of TokenLedgerEntry")
    for i, e in enumerate(entries):
        w = f"{what}[{i}]"
        if not isinstance(e, TokenLedgerEntry):
            raise ValidationError(f"{w} must be a TokenLedgerEntry")
        check_text(e.source, f"{w}.source")
        check_text(e.model, f"{w}.model")
        u = e.usage
        if not isinstance(u, TokenUsage):
            raise ValidationError(f"{w}.usage must be a TokenUsage")
        for name in ("input_tokens", "output_tokens", "cached_input_tokens", "reasoning_tokens"):
            check_token_count(getattr(u, name), f"{w}.usage.{name}")
    return entries


def check_relation(relation: Any, what: str = "relation") -> Any:
    if isinstance(relation, RootRelation):
        return relation
    if not isinstance(relation, ChildRelation):
        raise ValidationError(f"{what} must be RootRelation or ChildRelation, got {type(relation).__name__}")
    check_id(relation.parent_session_id, f"{what}.parent_session_id")
    check_json(relation.caused_by, f"{what}.caused_by")
    return relation


def check_meta(meta: Any) -> SessionMeta:
    if not isinstance(meta, SessionMeta):
        raise ValidationError("meta must be a SessionMeta")
    check_id(meta.session_id, "meta.session_id")
    for name in ("session_name", "created_at", "model"):
        check_text(getattr(meta, name), f"meta.{name}")
    check_optional_text(meta.cwd, "meta.cwd")
    check_relation(meta.relation, "meta.relation")
    return meta


def check_commit(commit: Any) -> RuntimeCommit:
    """Everything about a commit that can be checked without reading the store."""
    if not isinstance(commit, RuntimeCommit):
        raise ValidationError(f"expected a RuntimeCommit, got {type(commit).__name__}")
    check_id(commit.session_id, "commit.session_id")
    check_nonneg_int(commit.expected_head_revision, "commit.expected_head_revision", optional=True)
    check_json(commit.config, "commit.config")
    if not isinstance(commit.agent_frames, list):
        raise ValidationError("commit.agent_frames must be a list")
    check_json(commit.agent_frames, "commit.agent_frames")
    check_text(commit.current_agent_frame_id, "commit.current_agent_frame_id")
    check_checkpoint(commit.checkpoint, "commit.checkpoint")
    check_usage(commit.usage_deltas, "commit.usage_deltas")
    g = commit.graph
    if isinstance(g, GraphUnchanged):
        check_optional_id(g.leaf_node_id, "commit.graph.leaf_node_id")
    elif isinstance(g, (GraphAppend, GraphReplaceFull)):
        check_optional_id(g.leaf_node_id, "commit.graph.leaf_node_id")
        if not isinstance(g.nodes, list):
            raise ValidationError("commit.graph.nodes must be a list")
        for i, n in enumerate(g.nodes):
            check_node(n, f"commit.graph.nodes[{i}]")
    else:
        raise ValidationError(
            "commit.graph must be GraphUnchanged, GraphAppend or GraphReplaceFull, "
            f"got {type(g).__name__}"
        )
    st = commit.turn_commit
    if st is not None:
        check_id(st.session_id, "commit.turn_commit.session_id")
        check_id(st.turn_id, "commit.turn_commit.turn_id")
        check_id(st.turn_commit_hash, "commit.turn_commit.turn_commit_hash")
    if not isinstance(commit.completed_queue_claims, list):
        raise ValidationError("commit.completed_queue_claims must be a list")
    for i, c in enumerate(commit.completed_queue_claims):
        w = f"commit.completed_queue_claims[{i}]"
        check_id(c.session_id, f"{w}.session_id")
        check_id(c.claim_id, f"{w}.claim_id")
        check_id(c.lease_token, f"{w}.lease_token")
        if not isinstance(c.batch_ids, list) or not c.batch_ids:
            raise ValidationError(f"{w}.batch_ids must be a non-empty list")
        for j, b in enumerate(c.batch_ids):
            check_id(b, f"{w}.batch_ids[{j}]")
    if not isinstance(commit.committed_attachment_ids, list):
        raise ValidationError("commit.committed_attachment_ids must be a list")
    for i, a in enumerate(commit.committed_attachment_ids):
        check_id(a, f"commit.committed_attachment_ids[{i}]")
    return commit
