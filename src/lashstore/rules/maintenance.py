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

from ..errors import ValidationError
from ..model.maintenance import SessionDump
from ..model.session import GraphNode
from .picker import user_message_text

__all__ = ["ancestry", "choose_cut", "subtree", "check_dump", "DEFAULT_GC_GRACE_MS"]

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
