"""Decisions shared by every backend's maintenance: where graph retention cuts, what a dump must
satisfy before it is loaded, and the order of checks in verify. No I/O.

What a "turn" is, for retention: a turn starts at a live user-message node (the picker's rule,
`rules.picker.user_message_text`) on the ancestry of the head's leaf, walked through parent
pointers (tombstoned nodes are walked through, not counted). Keeping the last K turns keeps the
K-th last such node and every node below it, branches included; everything else (older turns
and every branch that forked before the cut) goes, and the kept node becomes a root.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..codec import check_json, decode_blob
from ..errors import CorruptRecord, ValidationError
from ..model.blobs import BlobKind, Compression
from ..model.maintenance import SessionDump
from ..model.queue import BatchState, DeliveryPolicy, SlotPolicy
from ..model.session import GraphNode, TokenLedgerEntry
from . import validate as v
from .picker import user_message_text

__all__ = ["ancestry", "choose_cut", "subtree", "check_dump", "check_record", "DEFAULT_GC_GRACE_MS"]

#: Blobs younger than this are never collected by `lashstore.ops.gc`: a runtime may `put_blob`
#: (or `put_checkpoint`) and name the ref in its next commit, which may come a model call later.
DEFAULT_GC_GRACE_MS = 10 * 60 * 1000


def ancestry(leaf: str | None, get: Callable[[str], tuple[str | None, bool] | None], limit: int) -> list[str]:
    """Ids from the oldest reachable ancestor down to `leaf`, through tombstoned nodes too.

    `get(id)` gives (parent, tombstoned) or None when the node is absent (pruned or vacuumed),
    which ends the walk; `limit` bounds it so a damaged store cannot loop."""
    out: list[str] = []
    seen: set[str] = set()
    cur = leaf
    while cur is not None and cur not in seen and len(out) <= limit:
        row = get(cur)
        if row is None:
            break
        seen.add(cur)
        out.append(cur)
        cur = row[0]
    out.reverse()
    return out


def choose_cut(
    path: list[str],
    node: Callable[[str], tuple[GraphNode, bool]],
    keep_turns: int,
) -> tuple[int, str | None]:
    """(turns found on the path, the node to keep from) for keeping `keep_turns` turns.

    `node(id)` gives (decoded node, tombstoned). None when there is nothing older than the last
    `keep_turns` turns, or the oldest kept turn is already the first node (nothing to remove)."""
    if type(keep_turns) is not int or keep_turns < 1:
        raise ValidationError(f"keep_turns must be a positive integer, got {keep_turns!r}")
    starts = []
    for nid in path:
        n, tombstoned = node(nid)
        if not tombstoned and user_message_text(n.payload) is not None:
            starts.append(nid)
    if len(starts) < keep_turns:
        return len(starts), None
    cut = starts[-keep_turns]
    return len(starts), (None if cut == path[0] else cut)


def subtree(root: str, children: Mapping[str | None, Iterable[str]]) -> set[str]:
    """`root` and every node below it."""
    keep = {root}
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in keep:
                keep.add(child)
                stack.append(child)
    return keep


def check_dump(dump: SessionDump) -> None:
    """Refuse a dump that would load into an inconsistent session (ValidationError naming why).

    Parents may be missing (retention and vacuum leave such roots); everything else must hold:
    unique node ids, a live leaf, the head's live-node count, every referenced blob present."""
    sid = dump.session_id
    if dump.meta is not None and dump.meta.session_id != sid:
        raise ValidationError(f"export: meta names session {dump.meta.session_id!r}, not {sid!r}")
    ids: dict[str, bool] = {}
    for dn in dump.nodes:
        if dn.node.node_id in ids:
            raise ValidationError(f"export: node {dn.node.node_id!r} appears twice")
        ids[dn.node.node_id] = dn.tombstoned
    refs = {b.ref for b in dump.blobs}
    head = dump.head
    if head is not None:
        if head.head_revision < 0:
            raise ValidationError("export: negative head revision")
        if head.leaf_node_id is not None and ids.get(head.leaf_node_id, True):
            raise ValidationError(f"export: leaf {head.leaf_node_id!r} is not a live node")
        live = sum(1 for t in ids.values() if not t)
        if head.node_count != live:
            raise ValidationError(f"export: head counts {head.node_count} live nodes, the file holds {live}")
        if head.checkpoint_ref is not None and head.checkpoint_ref not in refs:
            raise ValidationError(f"export: the head's checkpoint {head.checkpoint_ref} is not in the file")
    elif dump.nodes:
        raise ValidationError("export: graph nodes without a head")
    for a in dump.artifacts:
        if a.blob_ref not in refs:
            raise ValidationError(f"export: artifact {a.namespace}/{a.name} names blob {a.blob_ref}, not in the file")
    for att in dump.attachments:
        if att.media_type is not None and att.attachment_id not in refs:
            raise ValidationError(f"export: attachment {att.attachment_id} has no bytes in the file")
    seen_batches: set[str] = set()
    for b in dump.batches:
        if b.batch_id in seen_batches:
            raise ValidationError(f"export: queued-work batch {b.batch_id!r} appears twice")
        seen_batches.add(b.batch_id)
    turns: set[str] = set()
    for t in dump.turns:
        if t.turn_id in turns:
            raise ValidationError(f"export: turn {t.turn_id!r} appears twice")
        turns.add(t.turn_id)


# -- one record of a dump, as a commit would check it ------------------------------------------------

_I64 = (1 << 63) - 1


def _time(value: Any, what: str, optional: bool = False) -> None:
    if value is None and optional:
        return
    if type(value) is not int or not -_I64 <= value <= _I64:
        raise ValidationError(f"{what} must be a 64-bit integer, got {value!r}")


def _count(value: Any, what: str, optional: bool = False) -> None:
    if value is None and optional:
        return
    if type(value) is not int or not 0 <= value <= _I64:
        raise ValidationError(f"{what} must be an integer from 0 to 2**63 - 1, got {value!r}")


def _manifest(m: Any, what: str) -> None:
    check_json(m.turn_state, f"{what}.turn_state")
    for name in ("tool_state_ref", "plugin_snapshot_ref", "execution_state_ref"):
        v.check_ref(getattr(m, name), f"{what}.{name}")
    _count(m.plugin_snapshot_revision, f"{what}.plugin_snapshot_revision", optional=True)


def check_record(kind: str, r: Any) -> None:
    """Refuse (ValidationError) a record of an export file that a commit would refuse: ids, text,
    payloads, token counts and times, blob refs and kinds, and a blob whose data does not inflate
    to the content its ref names."""
    if kind == "meta":
        v.check_meta(r)
    elif kind == "head":
        _count(r.head_revision, "head_revision")
        check_json(r.config, "config")
        check_json(r.agent_frames, "agent_frames")
        v.check_text(r.current_agent_frame_id, "current_agent_frame_id")
        v.check_ref(r.checkpoint_ref, "checkpoint_ref")
        v.check_optional_id(r.leaf_node_id, "leaf_node_id")
        _count(r.node_count, "node_count")
        _time(r.updated_at_ms, "updated_at_ms")
    elif kind == "node":
        v.check_node(r.node, "node")
        if type(r.tombstoned) is not bool:
            raise ValidationError("node tombstoned must be true or false")
    elif kind == "blob":
        v.check_ref(r.ref, "ref")
        if r.ref is None:
            raise ValidationError("blob ref is missing")
        try:
            BlobKind(r.kind)
            Compression(r.compression)
        except ValueError as e:
            raise ValidationError(f"blob {r.ref}: {e}") from None
        _time(r.created_at_ms, "created_at_ms", optional=True)
        try:
            decode_blob(r.ref, r.compression, r.raw_size, r.data)
        except CorruptRecord as e:
            raise ValidationError(f"blob {r.ref}: {e.detail}") from None
    elif kind == "usage":
        v.check_usage([TokenLedgerEntry(r.source, r.model, r.usage)], "usage")
        _count(r.revision, "usage revision", optional=True)
        _count(r.idx, "usage idx", optional=True)
        _time(r.created_at_ms, "usage created_at_ms", optional=True)
    elif kind == "turn":
        v.check_id(r.turn_id, "turn_id")
        v.check_id(r.turn_commit_hash, "turn_commit_hash")
        _count(r.result.head_revision, "turn result head_revision")
        v.check_ref(r.result.checkpoint_ref, "turn result checkpoint_ref")
        _manifest(r.result.manifest, "turn result manifest")
        _time(r.committed_at_ms, "committed_at_ms", optional=True)
    elif kind == "batch":
        v.check_id(r.batch_id, "batch_id")
        _count(r.enqueue_seq, "enqueue_seq")
        v.check_optional_id(r.source_key, "source_key")
        try:
            BatchState(r.state)
            DeliveryPolicy(r.delivery_policy)
            SlotPolicy(r.slot_policy)
        except ValueError as e:
            raise ValidationError(f"batch {r.batch_id}: {e}") from None
        v.check_optional_text(r.merge_key, "merge_key")
        for name in ("available_at_ms", "enqueued_at_ms", "claim_claimed_at_ms", "claim_expires_at_ms"):
            _time(getattr(r, name), name)
        _time(r.finished_at_ms, "finished_at_ms", optional=True)
        for name in ("claim_id", "claim_owner_id", "claim_token"):
            v.check_optional_id(getattr(r, name), name)
        _count(r.claim_fencing_token, "claim_fencing_token")
        if not r.items:
            raise ValidationError(f"batch {r.batch_id} has no items")
        for i, (item_id, payload) in enumerate(r.items):
            v.check_id(item_id, f"items[{i}] id")
            check_json(payload, f"items[{i}] payload")
    elif kind == "attachment":
        v.check_id(r.attachment_id, "attachment_id")
        v.check_id(r.canonical_uri, "canonical_uri")
        _time(r.intent_at_ms, "intent_at_ms")
        _time(r.committed_at_ms, "committed_at_ms", optional=True)
        v.check_optional_text(r.media_type, "media_type")
        for name in ("byte_len", "width", "height"):
            _count(getattr(r, name), name, optional=True)
        v.check_optional_text(r.label, "label")
    elif kind == "artifact":
        v.check_id(r.namespace, "namespace")
        v.check_id(r.name, "name")
        v.check_ref(r.blob_ref, "blob_ref")
        if r.blob_ref is None:
            raise ValidationError("artifact blob_ref is missing")
        _time(r.created_at_ms, "created_at_ms", optional=True)
    else:  # pragma: no cover - the reader knows its kinds
        raise ValidationError(f"unknown record type {kind!r}")
