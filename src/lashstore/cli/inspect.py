"""`lashstore sessions` and `lashstore show`: views of a store."""

from __future__ import annotations

import argparse
import fnmatch
from typing import Any

import msgspec
from rich.table import Table
from rich.text import Text

from ..errors import SessionNotFound
from ..model.session import (
    ActivePath,
    FullGraph,
    GraphNode,
    SessionCheckpoint,
    SessionMeta,
    SessionPickerInfo,
    SessionSummary,
    TokenLedgerEntry,
)
from . import render
from .queue import QueueReport, load_queue, queue_table
from .common import EXIT_NOT_FOUND, EXIT_OK, open_deployment, session_file

__all__ = ["add_parsers", "run_sessions", "run_show", "ShowReport"]

SESSIONS_EPILOG = """\
examples:
  lashstore sessions
  lashstore sessions --match 'chat-*' --sort updated --limit 20 --offset 20
  lashstore sessions --match research --sort name
  lashstore --store sqlite:////var/lib/agent/sessions sessions
  lashstore sessions --json | jq -r '.[] | select(.error == null) | .session_id'

A session file that cannot be read is listed with its error; the others still list.
"""

SHOW_EPILOG = """\
examples:
  lashstore show demo-session
  lashstore show demo-session --full     # every live node, also those off the active path
  lashstore show demo-session --json | jq '.usage'

Exits with status 3 when the store holds no such session.
"""


def add_parsers(subparsers: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "sessions",
        parents=parents,
        help="list the sessions of the store",
        description="List every session of the store: id, name, model, head revision, live nodes, "
        "last update, and whether it is a root session or the child of another.",
        epilog=SESSIONS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--match", metavar="PATTERN",
                   help="only sessions whose id or name matches: a glob (*, ?, [..]) or else a substring; "
                   "case-insensitive")
    p.add_argument("--sort", choices=["updated", "name", "revision"], default="updated",
                   help="updated: newest first (default); name: by session name, then id; revision: highest first")
    p.add_argument("--limit", type=_non_negative, metavar="N", help="at most N sessions")
    p.add_argument("--offset", type=_non_negative, default=0, metavar="N", help="skip the first N (after sorting)")
    p.add_argument("--json", action="store_true", help="print a JSON list (SessionSummary records) instead")
    p.set_defaults(handler=run_sessions)

    p = subparsers.add_parser(
        "show",
        parents=parents,
        help="show one session: head, active path, usage, blobs",
        description="Show one session: its meta, head revision, checkpoint, leaf, the nodes of the "
        "active path (or of the whole graph with --full), token usage per (source, model) and blob sizes.",
        epilog=SHOW_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("session", metavar="SESSION", help="session id (see `lashstore sessions`)")
    p.add_argument("--full", action="store_true", help="every live node, not only the active path")
    p.add_argument("--json", action="store_true", help="print JSON instead")
    p.set_defaults(handler=run_show)


# -- sessions -----------------------------------------------------------------------------------


def _non_negative(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {n}")
    return n


def select_sessions(
    rows: list[SessionSummary],
    *,
    match: str | None = None,
    sort: str = "updated",
    limit: int | None = None,
    offset: int = 0,
) -> list[SessionSummary]:
    """Filter by id or name (glob, else substring; case-insensitive), sort, then paginate."""
    if match:
        pattern = match.lower()
        glob = any(ch in pattern for ch in "*?[")

        def hit(r: SessionSummary) -> bool:
            for value in (r.session_id, r.meta.session_name if r.meta else None):
                if value is None:
                    continue
                v = value.lower()
                if (fnmatch.fnmatchcase(v, pattern) if glob else pattern in v):
                    return True
            return False

        rows = [r for r in rows if hit(r)]
    if sort == "name":
        rows = sorted(rows, key=lambda r: ((r.meta.session_name if r.meta else r.session_id).lower(), r.session_id))
    elif sort == "revision":
        rows = sorted(rows, key=lambda r: (r.head_revision is None, -(r.head_revision or 0), r.session_id))
    else:
        rows = sorted(rows, key=lambda r: (r.updated_at_ms is None, -(r.updated_at_ms or 0), r.session_id))
    end = None if limit is None else offset + limit
    return rows[offset:end]


def run_sessions(args: argparse.Namespace) -> int:
    with open_deployment(args.store) as dep:
        every = dep.sessions.list_sessions()
        mark = dep.incomplete_copy()
    if mark is not None:
        render.print_warning(
            f"{args.store} is an unfinished copy of {mark.get('source')} (started {mark.get('started_at')}): sessions "
            "may be missing; run the same `lashstore copy` again to finish it"
        )
    rows = select_sessions(every, match=args.match, sort=args.sort, limit=args.limit, offset=args.offset)
    if args.json:
        render.write_json(rows)
        return EXIT_OK
    console = render.out()
    if not every:
        console.print(Text(f"no sessions in {args.store}", style="yellow"))
        console.print(Text("write one with: lashstore demo", style="dim"))
        return EXIT_OK
    if not rows:
        console.print(Text(f"none of the {len(every)} sessions in {args.store} match", style="yellow"))
        return EXIT_OK
    bad = sum(1 for r in rows if r.error)
    title = f"{len(rows)} session{'s' * (len(rows) != 1)} in {args.store}"
    if len(rows) != len(every):
        first = args.offset + 1
        title = f"sessions {first}-{args.offset + len(rows)} of {len(every)} in {args.store}" if (
            args.offset or args.limit is not None) else f"{len(rows)} of {len(every)} sessions in {args.store}"
    console.print(render.sessions_table(rows, title=title, width=console.width))
    if bad:
        render.err().print(Text(f"{bad} session file{'s' * (bad != 1)} could not be read (see the error column)",
                                style="yellow"))
    return EXIT_OK


# -- show ---------------------------------------------------------------------------------------


class ShowReport(msgspec.Struct, kw_only=True):
    """What `show --json` prints."""

    session_id: str
    store: str
    path: str | None
    meta: SessionMeta | None
    head_revision: int | None
    checkpoint_ref: str | None
    leaf_node_id: str | None
    live_node_count: int
    updated_at_ms: int | None
    scope: str  # "active_path" or "full_graph"
    nodes: list[GraphNode]
    active_path: list[str]
    checkpoint: SessionCheckpoint | None
    usage: list[TokenLedgerEntry]
    picker: SessionPickerInfo | None
    blobs: dict[str, int] | None
    config: Any = None
    agent_frames: list[Any] = msgspec.field(default_factory=list)
    current_agent_frame_id: str = ""
    queue: QueueReport | None = None


def _active_ids(nodes: list[GraphNode], leaf: str | None) -> list[str]:
    """Root-to-leaf ids through live nodes only (a tombstone cuts the path, as the store reads it)."""
    parent = {n.node_id: n.parent_node_id for n in nodes}
    path: list[str] = []
    cur = leaf
    while cur is not None and cur in parent and len(path) <= len(parent):
        path.append(cur)
        cur = parent[cur]
    path.reverse()
    return path


def _report(dep: Any, url: str, session_id: str, full: bool) -> ShowReport:
    store = dep.sessions.open_store(session_id)
    try:
        meta = store.load_session_meta()
        head = store.load_head()
        read = store.load_session(FullGraph() if full else ActivePath())
        usage = read.token_ledger if read is not None else store.load_usage()
        picker = store.load_picker_info()
        stats_fn = getattr(store, "blob_stats", None)
        stats = stats_fn() if stats_fn is not None else None
        queue = load_queue(store, session_id)
    finally:
        store.close()
    path = session_file(dep, session_id)
    nodes = read.graph.nodes if read is not None else []
    leaf = read.graph.leaf_node_id if read is not None else None
    checkpoint = None
    if read is not None and read.checkpoint is not None:
        cp = read.checkpoint
        checkpoint = SessionCheckpoint(
            turn_state=cp.turn_state,
            tool_state_ref=cp.tool_state_ref,
            plugin_snapshot_ref=cp.plugin_snapshot_ref,
            plugin_snapshot_revision=cp.plugin_snapshot_revision,
            execution_state_ref=cp.execution_state_ref,
        )
    return ShowReport(
        session_id=session_id,
        store=url,
        path=str(path) if path is not None else None,
        meta=meta,
        head_revision=read.head_revision if read is not None else None,
        checkpoint_ref=read.checkpoint_ref if read is not None else None,
        leaf_node_id=leaf,
        live_node_count=head.graph_node_count if head is not None else 0,
        updated_at_ms=head.updated_at_ms if head is not None else None,
        scope="full_graph" if full else "active_path",
        nodes=nodes,
        active_path=_active_ids(nodes, leaf) if full else [n.node_id for n in nodes],
        checkpoint=checkpoint,
        usage=usage,
        picker=picker,
        blobs=stats,
        config=read.config if read is not None else None,
        agent_frames=read.agent_frames if read is not None else [],
        current_agent_frame_id=read.current_agent_frame_id if read is not None else "",
        queue=queue,
    )


def run_show(args: argparse.Namespace) -> int:
    with open_deployment(args.store) as dep:
        try:
            report = _report(dep, args.store, args.session, args.full)
        except SessionNotFound:
            render.print_error(
                f"no session {args.session!r} in store {args.store}; `lashstore sessions` lists the sessions there"
            )
            return EXIT_NOT_FOUND
    if args.json:
        render.write_json(report)
        return EXIT_OK
    _print_show(report)
    return EXIT_OK


def _print_show(r: ShowReport) -> None:
    console = render.out()
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    m = r.meta
    if m is not None:
        grid.add_row("name", Text(m.session_name))
        grid.add_row("model", Text(m.model or "-"))
        grid.add_row("created", Text(m.created_at))
        grid.add_row("cwd", Text(m.cwd or "-"))
        grid.add_row("relation", Text(render.relation_text(m.relation)))
    if r.path:
        grid.add_row("file", Text(r.path))
    if r.head_revision is None:
        grid.add_row("head", Text("no commit yet", style="yellow"))
    else:
        grid.add_row("head revision", Text(str(r.head_revision)))
        grid.add_row("checkpoint", Text(r.checkpoint_ref or "-"))
        grid.add_row("leaf", Text(r.leaf_node_id or "-"))
        grid.add_row("live nodes", Text(str(r.live_node_count)))
        grid.add_row("updated", Text(render.human_time(r.updated_at_ms)))
    if r.checkpoint is not None:
        cp = r.checkpoint
        grid.add_row("turn state", Text(_compact(cp.turn_state)))
        grid.add_row("snapshots", Text(
            f"tool {render.short_ref(cp.tool_state_ref)}  plugin {render.short_ref(cp.plugin_snapshot_ref)} "
            f"(rev {cp.plugin_snapshot_revision if cp.plugin_snapshot_revision is not None else '-'})  "
            f"execution {render.short_ref(cp.execution_state_ref)}"))
    if r.picker is not None and r.picker.user_message_count:
        first = render.node_role_text({"role": "user", "content": r.picker.first_user_message})[1]
        grid.add_row("user messages", Text(f"{r.picker.user_message_count}, first: {first}"))
    console.print(Text(f"Session {r.session_id}", style="bold underline"))
    console.print(grid)
    console.print()

    if r.scope == "full_graph":
        title = f"Graph: {len(r.nodes)} live nodes (● on the active path)"
        console.print(render.nodes_table(r.nodes, title=title, on_path=set(r.active_path), leaf=r.leaf_node_id))
    else:
        title = f"Active path: {len(r.nodes)} of {r.live_node_count} live nodes"
        console.print(render.nodes_table(r.nodes, title=title, leaf=r.leaf_node_id))
    console.print()
    if r.usage:
        console.print(render.usage_table(r.usage))
    else:
        console.print(Text("no token usage recorded", style="dim"))
    if r.blobs is not None:
        console.print()
        console.print(render.blob_table([(r.session_id, r.blobs)]))
    console.print()
    if r.queue is not None and (r.queue.pending or r.queue.claimed):
        console.print(queue_table(r.queue))
    else:
        console.print(Text("no queued work", style="dim"))


def _compact(value: Any, limit: int = 100) -> str:
    text = msgspec.json.encode(msgspec.to_builtins(value)).decode()
    return text if len(text) <= limit else text[: limit - 1] + "…"
