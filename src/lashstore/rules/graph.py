"""Graph rules: what a delta may do, active paths, and where the leaf goes after a tombstone.

Semantics chosen (the reference left them open, spec W-9/W-10/W-11):
* node ids are unique per session forever until vacuumed; appending an existing id, live or
  tombstoned, is refused with ValidationError;
* a node's parent must already exist (live) or come earlier in the same delta, so the graph can
  never hold a cycle;
* a leaf must name a live node of the resulting graph;
* a tombstoned node cuts the active path (its ancestors are not reached), the same before and
  after vacuum;
* tombstoning the leaf moves the leaf to its nearest live ancestor above the nodes hidden in the
  same call; an earlier tombstone is a cut there too (then there is no leaf until the next commit).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

from ..errors import ValidationError
from ..model.session import GraphAppend, GraphCommitDelta, GraphNode, GraphReplaceFull

__all__ = ["GraphPlan", "ids_to_look_up", "unique_new_ids", "plan_graph_delta", "active_path", "repair_leaf"]


class GraphPlan(NamedTuple):
    replace: bool  # delete every node of the session first
    insert: list[GraphNode]
    leaf_node_id: str | None
    node_count: int  # live nodes after the change


def ids_to_look_up(delta: GraphCommitDelta) -> set[str]:
    """The stored node ids whose state `plan_graph_delta` needs."""
    if isinstance(delta, GraphReplaceFull):
        return set()
    need: set[str] = set()
    if delta.leaf_node_id is not None:
        need.add(delta.leaf_node_id)
    if isinstance(delta, GraphAppend):
        for n in delta.nodes:
            need.add(n.node_id)
            if n.parent_node_id is not None:
                need.add(n.parent_node_id)
    return need


def unique_new_ids(delta: GraphCommitDelta) -> set[str]:
    """Appended ids a backend may skip looking up on the happy path: ids listed once, and not named
    as a parent by a node that comes before (or is) them; if one exists, the UNIQUE constraint
    refuses it anyway. When the plan fails with them skipped, the backend must plan again with
    them looked up, so it reports the same first error as a backend that looked everything up."""
    if not isinstance(delta, GraphAppend):
        return set()
    pos: dict[str, int] = {}
    for i, n in enumerate(delta.nodes):
        if n.node_id in pos:
            return set()  # a duplicate: let the full lookup decide which error comes first
        pos[n.node_id] = i
    late = {n.parent_node_id for i, n in enumerate(delta.nodes) if n.parent_node_id in pos and pos[n.parent_node_id] >= i}
    return set(pos) - late


def plan_graph_delta(
    delta: GraphCommitDelta,
    stored: Mapping[str, bool],
    live_count: int,
) -> GraphPlan:
    """Check `delta` against the stored nodes and say what to write.

    `stored` maps each id of `ids_to_look_up(delta)` that exists to whether it is tombstoned.
    """
    if isinstance(delta, GraphReplaceFull):
        seen: set[str] = set()
        for n in delta.nodes:
            if n.node_id in seen:
                raise ValidationError(f"graph: node {n.node_id!r} appears twice")
            if n.parent_node_id is not None and n.parent_node_id not in seen:
                raise ValidationError(
                    f"graph: parent {n.parent_node_id!r} of node {n.node_id!r} does not exist "
                    "(parents must come before their children)"
                )
            seen.add(n.node_id)
        leaf = delta.leaf_node_id
        if leaf is not None and leaf not in seen:
            raise ValidationError(f"graph: leaf {leaf!r} is not a node of the graph")
        return GraphPlan(True, list(delta.nodes), leaf, len(delta.nodes))

    added: set[str] = set()
    nodes: list[GraphNode] = []
    if isinstance(delta, GraphAppend):
        for n in delta.nodes:
            if n.node_id in added:
                raise ValidationError(f"graph: node {n.node_id!r} appears twice in the delta")
            if n.node_id in stored:
                state = "a tombstoned" if stored[n.node_id] else "an existing"
                raise ValidationError(f"graph: node {n.node_id!r} is {state} node; node ids are never reused")
            p = n.parent_node_id
            if p is not None and p not in added:
                if p not in stored:
                    raise ValidationError(f"graph: parent {p!r} of node {n.node_id!r} does not exist")
                if stored[p]:
                    raise ValidationError(f"graph: parent {p!r} of node {n.node_id!r} is tombstoned")
            added.add(n.node_id)
        nodes = list(delta.nodes)
    leaf = delta.leaf_node_id
    if leaf is not None and leaf not in added and (leaf not in stored or stored[leaf]):
        raise ValidationError(f"graph: leaf {leaf!r} is not a live node")
    return GraphPlan(False, nodes, leaf, live_count + len(nodes))


def active_path(
    leaf: str | None,
    get: Callable[[str], tuple[str | None, bool] | None],
    limit: int,
) -> list[str]:
    """Node ids from the root to `leaf`. `get(id)` gives (parent, tombstoned) or None if absent.

    A missing or tombstoned node ends the walk; `limit` bounds it (a damaged store cannot loop).
    """
    path: list[str] = []
    cur = leaf
    while cur is not None and len(path) <= limit:
        row = get(cur)
        if row is None or row[1]:
            break
        path.append(cur)
        cur = row[0]
    path.reverse()
    return path


def repair_leaf(
    leaf: str | None,
    get: Callable[[str], tuple[str | None, bool] | None],
    limit: int,
    just_hidden: set[str],
) -> str | None:
    """Where the leaf goes after `just_hidden` were tombstoned: itself if still live, else the
    nearest live ancestor above the nodes hidden by this same call. A node tombstoned earlier is
    a cut, as it is for the active path: the walk stops there and the session has no leaf until
    the next commit sets one. (So the answer is the same whether that earlier node was vacuumed.)
    """
    cur = leaf
    steps = 0
    while cur is not None and steps <= limit:
        row = get(cur)
        if row is None:
            return None
        if not row[1]:
            return cur
        if cur not in just_hidden:
            return None
        cur = row[0]
        steps += 1
    return None


def tombstone_ids(ids: Any) -> list[str]:
    from .validate import check_id_list

    return check_id_list(ids, "node_ids")
