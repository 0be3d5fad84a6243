"""`lashstore copy SRC_URL DST_URL`: move a whole deployment from one backend to another.

Every session (meta, head, graph with its tombstones, blobs, usage, turn stamps, queued work and
its claims, attachment manifest, named artifacts) and every process (events, wakes, grants,
leases, the fencing counter), trigger (subscriptions, occurrences, deliveries, counters) and
effect record, from a SQLite directory to a PostgreSQL schema or back (or between two of a
kind). The destination must not hold any of the copied sessions, nor rows in the deployment
tables being copied. After writing, each session and table is read back from the destination
and compared with the source (row fingerprints), and every copied blob's hash is checked.

The source should be quiescent while it is copied: the copy reads one session at a time.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from ..backends.transfer import DEPLOYMENT_TABLES, SESSION_TABLES, digest
from ..errors import CorruptRecord, LashStoreError, ValidationError
from . import render
from .common import EXIT_ERROR, EXIT_OK

__all__ = ["add_parser", "run_copy", "copy_deployment", "open_endpoint", "CopyReport"]

EPILOG = """\
examples:
  lashstore copy ./.lashstore 'postgresql://agent@db:5432/agents?schema=lashstore'
  lashstore copy 'postgresql://agent@db/agents' sqlite:////var/backups/lashstore
  lashstore copy ./.lashstore postgresql://postgres@127.0.0.1/test --json

Both URLs are store URLs (a directory, sqlite:///dir, postgresql://...?schema=name). The copy is
verified: row fingerprints per session and table, and the hash of every blob. Exit status 1 when
the destination already holds copied data or the verification fails.
"""


@dataclasses.dataclass
class CopyReport:
    source: str
    destination: str
    sessions: int = 0
    blobs: int = 0
    blob_bytes: int = 0
    rows: dict[str, int] = dataclasses.field(default_factory=dict)
    verified: bool = False
    notes: list[str] = dataclasses.field(default_factory=list)


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


def open_endpoint(url: str, *, create: bool) -> Any:
    """The transfer endpoint of a store URL."""
    lowered = url.lower()
    if lowered.startswith(("postgresql://", "postgres://")):
        try:
            from ..backends.postgres.transfer import PostgresTransferEndpoint
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ValidationError(f"{url}: the postgres extra is not installed ({e}); pip install 'lashstore[postgres]'") from None
        return PostgresTransferEndpoint(url)
    from ..backends.sqlite.transfer import SqliteTransferEndpoint
    from ..deployment import parse_url

    scheme, location, _ = parse_url(url)
    if scheme != "sqlite":
        raise ValidationError(f"{url}: lashstore copy moves durable deployments (a sqlite directory or postgresql://)")
    return SqliteTransferEndpoint(location, create=create)


def _check_destination(src: Any, dst: Any, sessions: list[str], tables: dict[str, list[tuple]]) -> None:
    clash = [s for s in sessions if dst.has_session(s)]
    if clash:
        shown = ", ".join(repr(s) for s in clash[:5]) + (" ..." if len(clash) > 5 else "")
        raise ValidationError(f"the destination already holds {len(clash)} of the sessions to copy ({shown}); nothing was copied")
    busy = [t for t, rows in tables.items() if rows and not dst.table_is_empty(t)]
    if busy:
        raise ValidationError(f"the destination already holds rows in {', '.join(busy)}; copy into an empty deployment")


def _verify_blobs(rows: list[tuple]) -> int:
    from ..backends.common import check_stored_blob

    n = 0
    for ref, kind, compression, raw_size, _, content in rows:
        check_stored_blob(ref, kind, compression, raw_size, content)  # CorruptRecord on a bad hash
        n += len(content)
    return n


def copy_deployment(source: str, destination: str, *, progress: Any = None) -> CopyReport:
    """Copy and verify; raises LashStoreError (CorruptRecord when the verification fails)."""
    src = open_endpoint(source, create=False)
    try:
        dst = open_endpoint(destination, create=True)
    except BaseException:
        src.close()
        raise
    report = CopyReport(source=src.describe(), destination=dst.describe())
    try:
        sessions = src.session_ids()
        tables = {t: src.read_table(t) for t in DEPLOYMENT_TABLES}
        _check_destination(src, dst, sessions, tables)
        unowned = getattr(src, "unowned_artifacts", lambda: 0)()
        if unowned:
            report.notes.append(f"{unowned} artifacts of stores opened without a session id belong to no session: not copied")
        task = progress.add_task("sessions", total=len(sessions)) if progress else None
        for sid in sessions:
            rows = src.read_session(sid)
            refs = src.session_blob_refs(sid, rows)
            blobs = src.read_blobs(sid, refs)
            report.blob_bytes += _verify_blobs(blobs)
            dst.write_session(sid, rows, blobs)
            # Read back and compare.
            back = dst.read_session(sid)
            for table in (*SESSION_TABLES, "queued_work_items"):
                if digest(back[table]) != digest(rows[table]):
                    raise CorruptRecord("copied session", sid, f"table {table} reads back differently from the destination")
                report.rows[table] = report.rows.get(table, 0) + len(rows[table])
            back_blobs = dst.read_blobs(sid, [b[0] for b in blobs])
            if len(back_blobs) != len(blobs):
                raise CorruptRecord("copied session", sid, f"{len(blobs) - len(back_blobs)} blobs are missing in the destination")
            _verify_blobs(back_blobs)
            report.blobs += len(blobs)
            report.sessions += 1
            if progress:
                progress.update(task, advance=1, description=f"sessions ({sid})")
        task = progress.add_task("processes, triggers, effects", total=len(DEPLOYMENT_TABLES)) if progress else None
        for table, rows in tables.items():
            dst.write_table(table, rows)
            if digest(dst.read_table(table)) != digest(rows):
                raise CorruptRecord("copied table", table, "it reads back differently from the destination")
            report.rows[table] = len(rows)
            if progress:
                progress.update(task, advance=1, description=f"deployment tables ({table})")
        counters = src.read_counters()
        for table, name in (("host_event_subscriptions", "subscription"), ("host_event_occurrences", "occurrence"),
                            ("host_event_deliveries", "delivery")):
            counters[name] = max([counters.get(name, 0)] + [r[0] for r in tables[table]])
        counters["fencing"] = max([counters.get("fencing", 0)] + [r[3] for r in tables["process_leases"]])
        dst.write_counters(counters)
        got = dst.read_counters()
        for name, value in counters.items():
            if got.get(name, 0) < value:
                raise CorruptRecord("copied counter", name, f"the destination holds {got.get(name)} < {value}")
        report.verified = True
        return report
    finally:
        dst.close()
        src.close()


def run_copy(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    show = not args.no_progress and not args.json
    try:
        if show:
            with Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=render.err(),
                transient=False,
            ) as progress:
                report = copy_deployment(args.source, args.destination, progress=progress)
        else:
            report = copy_deployment(args.source, args.destination)
    except LashStoreError as e:
        render.print_error(f"copy failed: {e}")
        return EXIT_ERROR
    if args.json:
        render.write_json(dataclasses.asdict(report))
        return EXIT_OK
    table = Table(title=f"copied {report.source} -> {report.destination}", show_header=True)
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("sessions", str(report.sessions))
    table.add_row("blobs", f"{report.blobs} ({report.blob_bytes} bytes, hashes checked)")
    for name, n in report.rows.items():
        table.add_row(name, str(n))
    out = render.out()
    out.print(table)
    for note in report.notes:
        out.print(f"note: {note}")
    out.print("[green]verified[/green]: every session and table reads back identically from the destination")
    return EXIT_OK
