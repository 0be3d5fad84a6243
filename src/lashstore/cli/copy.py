"""`lashstore copy SRC_URL DST_URL`: argparse and rendering over `lashstore.ops.copy`."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from ..errors import LashStoreError
from ..ops.copy import CopyReport, copy
from . import render
from .common import EXIT_ERROR, EXIT_OK

__all__ = ["add_parser", "run_copy", "copy_deployment", "CopyReport"]

#: The library function (kept under its earlier name).
copy_deployment = copy

EPILOG = """\
examples:
  lashstore copy ./.lashstore 'postgresql://agent@db:5432/agents?schema=lashstore'
  lashstore copy 'postgresql://agent@db/agents' sqlite:////var/backups/lashstore
  lashstore copy ./.lashstore postgresql://postgres@127.0.0.1/test --json

Both URLs are store URLs (a directory, sqlite:///dir, postgresql://...?schema=name). The copy is
verified: row fingerprints per session and table, and the hash of every blob. Exit status 1 when
the destination already holds copied data or the verification fails.
"""


def add_parser(subparsers: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "copy",
        parents=parents,
        help="copy a whole deployment to another store (sqlite <-> postgres), verified",
        description="Copy every session, process, trigger and effect record from SRC to DST, then read "
        "everything back from DST and compare it with SRC.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("source", metavar="SRC_URL", help="the deployment to copy from")
    p.add_argument("destination", metavar="DST_URL", help="the deployment to copy into (created if needed)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=run_copy)


def run_copy(args: argparse.Namespace) -> int:
    from rich.table import Table

    from .ops import _progress

    try:
        with _progress(not args.no_progress and not args.json) as progress:
            report = copy(args.source, args.destination, progress=progress)
    except LashStoreError as e:
        render.print_error(f"copy failed: {e}")
        if _marked(args.destination):
            render.print_error("the destination is marked as an incomplete copy; run the same command again to resume")
        return EXIT_ERROR
    if args.json:
        render.write_json(dataclasses.asdict(report))
        return EXIT_OK
    table = Table(title=f"copied {report.source} -> {report.destination}", show_header=True)
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("sessions", str(report.sessions) + (f" ({report.resumed} found already copied)" if report.resumed else ""))
    table.add_row("blobs", f"{report.blobs} ({report.blob_bytes} bytes, hashes checked)")
    for name, n in report.rows.items():
        table.add_row(name, str(n))
    out = render.out()
    out.print(table)
    for note in report.notes:
        out.print(f"note: {note}")
    out.print("[green]verified[/green]: every session and table reads back identically from the destination")
    return EXIT_OK


def _marked(url: str) -> bool:
    try:
        from ..deployment import open as open_deployment

        with open_deployment(url) as dep:
            return dep.incomplete_copy() is not None
    except LashStoreError:
        return False
