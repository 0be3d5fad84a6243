"""`lashstore queue SESSION`: the session's queued work, pending and claimed."""

from __future__ import annotations

import argparse
from typing import Any

import msgspec
from rich.table import Table
from rich.text import Text

from ..errors import SessionNotFound
from ..model.queue import QueuedWorkBatch
from . import render
from .common import EXIT_NOT_FOUND, EXIT_OK, open_deployment

__all__ = ["add_parser", "run_queue", "QueueReport", "ClaimedWork", "load_queue"]

EPILOG = """\
examples:
  lashstore queue demo-session
  lashstore queue demo-session --json | jq '.claimed[].owner_id'

Pending work is queued and held by nobody (an expired claim counts as pending); claimed work is
held by a live claim. Exits with status 3 when the store holds no such session.
"""


class ClaimedWork(msgspec.Struct, kw_only=True):
    batch: QueuedWorkBatch
    claim_id: str
    owner_id: str
    expires_at_ms: int


class QueueReport(msgspec.Struct, kw_only=True):
    session_id: str
    pending: list[QueuedWorkBatch]
    claimed: list[ClaimedWork]


def add_parser(subparsers: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "queue",
        parents=parents,
        help="list a session's queued work, pending and claimed",
        description="List the work queued for a session, in enqueue order: pending batches, and batches "
        "held by a live claim with their owner and lease expiry.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("session", metavar="SESSION", help="session id (see `lashstore sessions`)")
    p.add_argument("--json", action="store_true", help="print JSON instead")
    p.set_defaults(handler=run_queue)


def load_queue(store: Any, session_id: str) -> QueueReport:
    claimed = [
        ClaimedWork(batch=b, claim_id=cid, owner_id=owner, expires_at_ms=exp)
        for b, cid, owner, exp in store.list_claimed_queued_work(session_id)
    ]
    return QueueReport(session_id=session_id, pending=store.list_pending_queued_work(session_id), claimed=claimed)


def run_queue(args: argparse.Namespace) -> int:
    with open_deployment(args.store) as dep:
        try:
            store = dep.sessions.open_store(args.session)
        except SessionNotFound:
            render.print_error(
                f"no session {args.session!r} in store {args.store}; `lashstore sessions` lists the sessions there"
            )
            return EXIT_NOT_FOUND
        try:
            report = load_queue(store, args.session)
        finally:
            store.close()
    if args.json:
        render.write_json(report)
        return EXIT_OK
    print_queue(report)
    return EXIT_OK


def _item_text(payload: Any) -> str:
    if type(payload) is dict and type(payload.get("content")) is str:
        return payload["content"]
    return msgspec.json.encode(payload).decode()


_SHORT = {"earliest_safe_boundary": "earliest-safe", "after_current_turn_commit": "after-commit"}


def queue_table(report: QueueReport) -> Table:
    t = Table(title=f"Queued work of {report.session_id}", title_justify="left")
    t.add_column("#", justify="right", min_width=2)
    t.add_column("batch", no_wrap=True)
    t.add_column("state", no_wrap=True)
    t.add_column("delivery / slot", no_wrap=True)
    t.add_column("merge key", no_wrap=True)
    t.add_column("items", justify="right", min_width=5)
    t.add_column("first item", no_wrap=True, overflow="ellipsis", max_width=34)
    rows = [(b, None) for b in report.pending] + [(c.batch, c) for c in report.claimed]
    rows.sort(key=lambda r: r[0].enqueue_seq)
    for b, c in rows:
        state = Text("pending", style="green") if c is None else Text(
            f"claimed by {c.owner_id} until {render.human_time(c.expires_at_ms)}", style="yellow"
        )
        first = b.items[0].payload if b.items else None
        t.add_row(
            str(b.enqueue_seq),
            b.batch_id[:12] + ("…" if len(b.batch_id) > 12 else ""),
            state,
            f"{_SHORT[b.delivery_policy.value]} / {b.slot_policy.value}",
            b.merge_key or "-",
            str(len(b.items)),
            Text(_item_text(first)),
        )
    return t


def print_queue(report: QueueReport) -> None:
    console = render.out()
    if not report.pending and not report.claimed:
        console.print(Text(f"no queued work for {report.session_id}", style="dim"))
        return
    console.print(queue_table(report))
