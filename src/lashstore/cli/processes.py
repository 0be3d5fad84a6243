"""`lashstore processes` and `lashstore process ID`: the deployment's process registry."""

from __future__ import annotations

import argparse
from typing import Any

import msgspec
from rich.table import Table
from rich.text import Text

from ..model.process import ProcessEvent, ProcessLease, ProcessRecord
from . import render
from .common import EXIT_NOT_FOUND, EXIT_OK, open_deployment

__all__ = ["add_parsers", "run_processes", "run_process"]

LIST_EPILOG = """\
examples:
  lashstore processes
  lashstore processes --status running
  lashstore processes --json | jq -r '.[] | select(.lease != null) | .process.id'
"""

SHOW_EPILOG = """\
examples:
  lashstore process build-42
  lashstore process build-42 --after 10 --json

Exits with status 3 when the registry holds no such process.
"""


class ProcessRow(msgspec.Struct, kw_only=True):
    process: ProcessRecord
    lease: ProcessLease | None


class ProcessReport(msgspec.Struct, kw_only=True):
    process: ProcessRecord
    lease: ProcessLease | None
    events: list[ProcessEvent]


def add_parsers(subparsers: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "processes",
        parents=parents,
        help="list the background processes of the deployment",
        description="List the processes of the deployment's registry with their status, owner session, "
        "and the lease held on each (owner, fencing token, expiry).",
        epilog=LIST_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--status", choices=["running", "completed", "failed", "cancelled"], help="only this status")
    p.add_argument("--limit", type=int, default=None, help="at most this many")
    p.add_argument("--json", action="store_true", help="print JSON instead")
    p.set_defaults(handler=run_processes)

    p = subparsers.add_parser(
        "process",
        parents=parents,
        help="show one process and its events",
        description="Show one process: its registration, status, lease, and its events in order.",
        epilog=SHOW_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("process_id", metavar="ID", help="process id (see `lashstore processes`)")
    p.add_argument("--after", type=int, default=0, metavar="SEQ", help="only events after this sequence")
    p.add_argument("--json", action="store_true", help="print JSON instead")
    p.set_defaults(handler=run_process)


def _registry_exists(dep: Any) -> bool:
    return dep.storage.has_registry("processes")


def run_processes(args: argparse.Namespace) -> int:
    with open_deployment(args.store) as dep:
        rows: list[ProcessRow] = []
        if _registry_exists(dep):
            reg = dep.processes
            for rec in reg.list_processes(status=args.status, limit=args.limit):
                rows.append(ProcessRow(process=rec, lease=reg.get_process_lease(rec.id)))
    if args.json:
        render.write_json(rows)
        return EXIT_OK
    console = render.out()
    if not rows:
        console.print(Text(f"no processes in {args.store}", style="dim"))
        return EXIT_OK
    t = Table(title=f"{len(rows)} process{'es' * (len(rows) != 1)} in {args.store}", title_justify="left")
    t.add_column("process")
    t.add_column("status")
    t.add_column("owner session")
    t.add_column("lease")
    t.add_column("updated")
    for r in rows:
        rec = r.process
        state = rec.status.state.value
        style = {"running": "green", "completed": "cyan", "failed": "red", "cancelled": "yellow"}[state]
        t.add_row(rec.id, Text(state, style=style), rec.provenance.owner_scope.session_id, _lease_text(r.lease),
                  render.human_time(rec.updated_at_ms))
    console.print(t)
    return EXIT_OK


def _lease_text(lease: ProcessLease | None) -> Text:
    if lease is None:
        return Text("-", style="dim")
    return Text(f"{lease.owner_id} (fencing {lease.fencing_token}, until {render.human_time(lease.expires_at_epoch_ms)})")


def run_process(args: argparse.Namespace) -> int:
    with open_deployment(args.store) as dep:
        rec = None
        if _registry_exists(dep):
            reg = dep.processes
            rec = reg.get_process(args.process_id)
        if rec is None:
            render.print_error(f"no process {args.process_id!r} in {args.store}; `lashstore processes` lists them")
            return EXIT_NOT_FOUND
        report = ProcessReport(
            process=rec, lease=reg.get_process_lease(rec.id), events=reg.events_after(rec.id, args.after)
        )
    if args.json:
        render.write_json(report)
        return EXIT_OK
    console = render.out()
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    grid.add_row("status", Text(rec.status.state.value))
    if rec.status.await_output is not None:
        grid.add_row("output", Text(_compact(rec.status.await_output)))
    grid.add_row("owner scope", Text(rec.provenance.owner_scope.id()))
    grid.add_row("host profile", Text(rec.provenance.host_profile_id))
    grid.add_row("input", Text(_compact(rec.input)))
    grid.add_row("event types", Text(", ".join(t.name for t in rec.event_types)))
    grid.add_row("lease", _lease_text(report.lease))
    grid.add_row("created", Text(render.human_time(rec.created_at_ms)))
    console.print(Text(f"Process {rec.id}", style="bold underline"))
    console.print(grid)
    console.print()
    t = Table(title=f"Events after {args.after}", title_justify="left")
    t.add_column("seq", justify="right")
    t.add_column("type")
    t.add_column("when")
    t.add_column("payload", overflow="ellipsis", no_wrap=True, max_width=60)
    t.add_column("wake")
    for e in report.events:
        wake = e.semantics.wake
        t.add_row(str(e.sequence), e.event_type, render.human_time(e.occurred_at_ms), Text(_compact(e.payload)),
                  Text(wake.dedupe_key if wake is not None else "-"))
    console.print(t)
    return EXIT_OK


def _compact(value: Any, limit: int = 100) -> str:
    text = msgspec.json.encode(msgspec.to_builtins(value)).decode()
    return text if len(text) <= limit else text[: limit - 1] + "…"
