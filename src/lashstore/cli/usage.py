"""`lashstore usage [SESSION]`: token usage per model and source, for one session or all."""

from __future__ import annotations

import argparse
from typing import Any

import msgspec
from rich.table import Table
from rich.text import Text

from ..errors import LashStoreError, SessionNotFound
from ..model.session import TokenLedgerEntry
from ..rules.usage import merge_ledger
from . import render
from .common import EXIT_ERROR, EXIT_NOT_FOUND, EXIT_OK, open_deployment

__all__ = ["add_parser", "run_usage", "UsageReport", "SessionUsage"]

EPILOG = """\
examples:
  lashstore usage                      # every session: totals per (source, model), then per session
  lashstore usage demo-session         # one session's ledger
  lashstore usage --by session --json | jq '.sessions[] | [.session_id, .total]'

Counts are tokens as committed by the runtime (merged per source and model). Exits with status
3 when a named session does not exist, 1 when some session could not be read (listed with its error).
"""


class SessionUsage(msgspec.Struct, kw_only=True):
    session_id: str
    usage: list[TokenLedgerEntry]
    total: int
    error: str | None = None


class UsageReport(msgspec.Struct, kw_only=True):
    sessions: list[SessionUsage]
    totals: list[TokenLedgerEntry]  # per (source, model), over the sessions listed
    total: int


def add_parser(subparsers: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "usage",
        parents=parents,
        help="token usage per model and source",
        description="Token usage (input, cached, output, reasoning) per (source, model): for one session, or "
        "summed over every session with a line per session.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("session", nargs="?", metavar="SESSION", help="only this session")
    p.add_argument("--by", choices=["model", "session", "both"], default="both",
                   help="across sessions: totals per model, a line per session, or both (default)")
    p.add_argument("--json", action="store_true", help="print JSON instead")
    p.set_defaults(handler=run_usage)


def collect(dep: Any, only: str | None) -> UsageReport:
    ids = [only] if only is not None else [s.session_id for s in dep.sessions.list_sessions()]
    rows: list[SessionUsage] = []
    for sid in sorted(ids):
        try:
            store = dep.sessions.open_store(sid)
        except SessionNotFound:
            if only is not None:
                raise
            rows.append(SessionUsage(session_id=sid, usage=[], total=0, error="cannot be opened"))
            continue
        except LashStoreError as e:
            rows.append(SessionUsage(session_id=sid, usage=[], total=0, error=str(e)))
            continue
        try:
            entries = store.load_usage()
            rows.append(SessionUsage(session_id=sid, usage=entries, total=sum(e.usage.total() for e in entries)))
        except LashStoreError as e:
            rows.append(SessionUsage(session_id=sid, usage=[], total=0, error=str(e)))
        finally:
            store.close()
    totals = merge_ledger(e for r in rows for e in r.usage)
    return UsageReport(sessions=rows, totals=totals, total=sum(r.total for r in rows))


def run_usage(args: argparse.Namespace) -> int:
    with open_deployment(args.store) as dep:
        try:
            report = collect(dep, args.session)
        except SessionNotFound:
            render.print_error(
                f"no session {args.session!r} in store {args.store}; `lashstore sessions` lists the sessions there"
            )
            return EXIT_NOT_FOUND
    bad = [r for r in report.sessions if r.error]
    for r in bad:
        render.print_error(f"{r.session_id}: {r.error}")
    if args.json:
        render.write_json(report)
        return EXIT_ERROR if bad else EXIT_OK
    console = render.out()
    if args.session is not None:
        s = report.sessions[0]
        if s.usage:
            console.print(render.usage_table(s.usage, title=f"Token usage of {s.session_id}"))
        else:
            console.print(Text(f"no token usage recorded in {s.session_id}", style="dim"))
        return EXIT_ERROR if bad else EXIT_OK
    if not report.sessions:
        console.print(Text(f"no sessions in {args.store}", style="dim"))
        return EXIT_OK
    if args.by in ("model", "both"):
        n = len(report.sessions)
        console.print(render.usage_table(report.totals, title=f"Token usage of {n} session{'s' * (n != 1)}"))
    if args.by in ("session", "both"):
        if args.by == "both":
            console.print()
        console.print(_per_session(report))
    return EXIT_ERROR if bad else EXIT_OK


def _per_session(report: UsageReport) -> Table:
    t = Table(title="Per session", title_justify="left")
    t.add_column("session", style="cyan")
    t.add_column("models")
    for name in ("input", "cached", "output", "reasoning", "total"):
        t.add_column(name, justify="right")
    sums = [0, 0, 0, 0]
    for r in sorted(report.sessions, key=lambda r: (-r.total, r.session_id)):
        if r.error:
            t.add_row(Text(r.session_id), Text("error", style="red"), "", "", "", "", "")
            continue
        u = [sum(getattr(e.usage, f) for e in r.usage)
             for f in ("input_tokens", "cached_input_tokens", "output_tokens", "reasoning_tokens")]
        sums = [a + b for a, b in zip(sums, u)]
        models = ", ".join(dict.fromkeys(e.model for e in r.usage)) or "-"
        t.add_row(Text(r.session_id), Text(models), *(f"{x:,}" for x in u), f"{r.total:,}")
    if len(report.sessions) > 1:
        t.add_section()
        t.add_row(Text("all", style="bold"), "", *(Text(f"{x:,}", style="bold") for x in [*sums, report.total]))
    return t
