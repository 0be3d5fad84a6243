"""`lashstore graph SESSION`: the conversation as a tree, branches and tombstones included.

A run of nodes with one child each is drawn as one column (a conversation is long and mostly
linear); where a node has several children, the one on the active path (else the newest)
continues the column and each other child opens an indented branch.
"""

from __future__ import annotations

import argparse
from typing import Any

import msgspec
from rich.text import Text
from rich.tree import Tree

from ..errors import SessionNotFound
from ..model.session import GraphNode
from . import render
from .common import EXIT_NOT_FOUND, EXIT_OK, open_deployment

__all__ = ["add_parser", "run_graph", "GraphReport", "GraphEntry"]

EPILOG = """\
examples:
  lashstore graph demo-session
  lashstore graph demo-session --no-text             # ids and roles only
  lashstore graph demo-session --json | jq '.nodes[] | select(.tombstoned)'

● marks the active path (what a runtime loads), ✝ a tombstoned node (hidden from every read
until `lashstore vacuum` removes it). Exits with status 3 when there is no such session.
"""


class GraphEntry(msgspec.Struct, kw_only=True):
    node_id: str
    parent_node_id: str | None
    tombstoned: bool
    on_active_path: bool
    role: str
    text: str
    children: list[str]
    timestamp: str = ""


class GraphReport(msgspec.Struct, kw_only=True):
    session_id: str
    head_revision: int | None
    leaf_node_id: str | None
    node_count: int
    tombstoned_count: int
    branch_count: int  # nodes with more than one child
    roots: list[str]
    nodes: list[GraphEntry]


def add_parser(subparsers: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "graph",
        parents=parents,
        help="draw a session's conversation graph as a tree",
        description="Draw every stored node of a session as a tree: branches (edited messages, retries), "
        "tombstoned nodes, the active path and the leaf.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("session", metavar="SESSION", help="session id (see `lashstore sessions`)")
    p.add_argument("--no-text", action="store_true", help="only ids and roles, no message text")
    p.add_argument("--json", action="store_true", help="print JSON instead")
    p.set_defaults(handler=run_graph)


def build_report(session_id: str, stored: list[tuple[GraphNode, bool]], leaf: str | None,
                 head_revision: int | None) -> GraphReport:
    by_id = {n.node_id: (n, t) for n, t in stored}
    children: dict[str, list[str]] = {n.node_id: [] for n, _ in stored}
    roots: list[str] = []
    for n, _ in stored:
        if n.parent_node_id is not None and n.parent_node_id in by_id:
            children[n.parent_node_id].append(n.node_id)
        else:
            roots.append(n.node_id)
    # The active path as the store reads it: up from the leaf through live nodes.
    on_path: set[str] = set()
    cur = leaf
    while cur is not None and cur in by_id and not by_id[cur][1] and cur not in on_path:
        on_path.add(cur)
        cur = by_id[cur][0].parent_node_id
    nodes = []
    for n, t in stored:
        role, text = render.node_role_text(n.payload)
        nodes.append(GraphEntry(node_id=n.node_id, parent_node_id=n.parent_node_id, tombstoned=t,
                                on_active_path=n.node_id in on_path, role=role, text=text,
                                children=children[n.node_id], timestamp=n.timestamp))
    return GraphReport(
        session_id=session_id, head_revision=head_revision, leaf_node_id=leaf, node_count=len(stored),
        tombstoned_count=sum(1 for _, t in stored if t), branch_count=sum(1 for c in children.values() if len(c) > 1),
        roots=roots, nodes=nodes,
    )


def run_graph(args: argparse.Namespace) -> int:
    with open_deployment(args.store) as dep:
        try:
            store = dep.sessions.open_store(args.session)
        except SessionNotFound:
            render.print_error(
                f"no session {args.session!r} in store {args.store}; `lashstore sessions` lists the sessions there"
            )
            return EXIT_NOT_FOUND
        try:
            stored = store.list_graph_nodes()
            head = store.load_head()
        finally:
            store.close()
    report = build_report(args.session, stored, head.leaf_node_id if head else None,
                          head.head_revision if head else None)
    if args.json:
        render.write_json(report)
        return EXIT_OK
    console = render.out()
    console.print(tree(report, text=not args.no_text))
    console.print(Text(
        f"{report.node_count} nodes, {report.branch_count} branch point{'s' * (report.branch_count != 1)}, "
        f"{report.tombstoned_count} tombstoned; ● active path, ✝ tombstoned", style="dim"))
    return EXIT_OK


def tree(report: GraphReport, *, text: bool = True) -> Tree:
    entries = {e.node_id: e for e in report.nodes}
    title = Text(f"{report.session_id}", style="bold")
    title.append(f"  revision {report.head_revision if report.head_revision is not None else '-'}", style="dim")
    root = Tree(title, guide_style="dim")

    def label(e: GraphEntry) -> Text:
        t = Text()
        if e.tombstoned:
            t.append("✝ ", style="red")
        elif e.on_active_path:
            t.append("● ", style="green")
        else:
            t.append("○ ", style="dim")
        t.append(e.node_id, style="dim strike" if e.tombstoned else ("cyan" if e.on_active_path else ""))
        t.append(f"  {e.role}", style="dim" if e.tombstoned else _role_style(e.role))
        if text and e.text:
            t.append(f"  {e.text}", style="dim" if e.tombstoned or not e.on_active_path else "")
        if e.node_id == report.leaf_node_id:
            t.append("  (leaf)", style="bold green")
        if e.tombstoned:
            t.append("  (tombstoned)", style="red")
        if e.parent_node_id is not None and e.parent_node_id not in entries:
            t.append(f"  (parent {e.parent_node_id} is gone)", style="yellow")
        return t

    def chain(parent: Tree, start: str) -> None:
        cur: str | None = start
        while cur is not None:
            e = entries[cur]
            parent.add(label(e))
            kids = e.children
            if not kids:
                return
            if len(kids) == 1:
                cur = kids[0]
                continue
            main = next((k for k in kids if entries[k].on_active_path), kids[-1])
            for k in kids:
                if k != main:
                    size = _subtree_size(entries, k)
                    branch = parent.add(Text(f"branch at {cur}: {size} node{'s' * (size != 1)}", style="magenta"),
                                        guide_style="magenta")
                    chain(branch, k)
            cur = main

    for r in report.roots:
        if len(report.roots) > 1:
            chain(root.add(Text(f"root {r}", style="bold")), r)
        else:
            chain(root, r)
    return root


def _subtree_size(entries: dict[str, GraphEntry], start: str) -> int:
    n, stack = 0, [start]
    while stack:
        n += 1
        stack.extend(entries[stack.pop()].children)
    return n


def _role_style(role: str) -> str:
    if role == "user":
        return "bold green"
    if role == "assistant":
        return "bold blue"
    if role.startswith("tool"):
        return "bold magenta"
    return "bold"
