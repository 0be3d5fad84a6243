"""`lashstore gc`, `vacuum`, `retain`, `verify`, `export`, `import`, `migrate`: operating a store.

Each is a thin layer over `lashstore.ops`: parse flags, show a progress bar on stderr while the
work runs, print a table (or `--json`), and exit with a status that says what happened.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from .. import ops
from ..errors import SessionNotFound
from . import render
from .common import EXIT_ERROR, EXIT_NOT_FOUND, EXIT_OK, EXIT_USAGE, open_deployment

__all__ = ["add_parsers", "parse_duration", "EXIT_DAMAGED", "EXIT_EXISTS"]

EXIT_DAMAGED = 4  # verify found damaged records
EXIT_EXISTS = 5  # import refused: the session exists (use --replace)

_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "min": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|min|m|h|d|w)?\s*$")


def parse_duration(text: str) -> int:
    """'90s', '15m', '12h', '7d', '2w', '500ms' -> milliseconds; a bare number is seconds."""
    m = _DURATION.match(text)
    if m is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (e.g. 30s, 15m, 12h, 7d, 2w)")
    return int(float(m.group(1)) * _UNITS[m.group(2) or "s"])


def _count(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {n}")
    return n


def _positive(text: str) -> int:
    n = _count(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def _human_ms(ms: int | None) -> str:
    if ms is None:
        return "-"
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms >= size:
            value = ms / size
            return f"{value:g}{unit}" if value == int(value) else f"{value:.1f}{unit}"
    raise AssertionError("unreachable")


def _size(n: int | None) -> str:
    return "-" if n is None else render.human_bytes(n)


@contextlib.contextmanager
def _progress(enabled: bool = True) -> Iterator[Any]:
    """A progress bar on stderr, fed by the ops' progress callback."""
    if not enabled:
        yield None
        return
    console = render.err()
    with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console) as bar:
        tasks: dict[str, Any] = {}

        def update(label: str, done: int, total: int) -> None:
            if label not in tasks:
                tasks[label] = bar.add_task(label, total=total)
            bar.update(tasks[label], completed=done, total=total)

        yield update


def _add(sub: Any, name: str, parents: list[argparse.ArgumentParser], help: str, description: str,
         epilog: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, parents=parents, help=help, description=description, epilog=epilog,
                          formatter_class=argparse.RawDescriptionHelpFormatter)


GC_EPILOG = """\
examples:
  lashstore gc --dry-run                 # what would go, nothing deleted
  lashstore gc                           # collect, then shrink the files that changed
  lashstore gc --grace 0s                # also blobs written in the last 10 minutes (no writer running!)
  lashstore gc --session chat-42 --json

A blob is kept while a session head's checkpoint, a named artifact or an attachment reaches it,
and also while it is younger than the grace period (default 10m): a runtime may have put it for
a commit it has not made yet. Exit status 1 when a session could not be collected (its head or
checkpoint is damaged: run `lashstore verify`).
"""

VACUUM_EPILOG = """\
examples:
  lashstore vacuum
  lashstore vacuum --session chat-42 --json

Removes tombstoned nodes for good, then runs SQLite VACUUM and a WAL checkpoint on every file
(sessions and registries), so free pages go back to the file system.
"""

RETAIN_EPILOG = """\
examples:
  lashstore retain --keep-turns 50 --dry-run
  lashstore retain --keep-turns 50 --finished-work-older-than 7d --turn-stamps-older-than 7d
  lashstore retain --idle-for 90d                           # delete sessions untouched for 90 days
  lashstore retain --processes-older-than 30d --occurrences-older-than 30d --effects-older-than 30d
  lashstore retain --keep-turns 50 --grace 0s --json        # and collect every unreachable blob

Durations: 500ms, 30s, 15m, 12h, 7d, 2w (a bare number is seconds). A turn starts at a user
message on the active path; --keep-turns N keeps the last N turns and every branch that forks
inside them, and removes the rest of the graph. After the policies, unreachable blobs older than
--grace are collected and the changed files shrunk (--no-reclaim skips that). Nothing is deleted
with --dry-run.
"""

VERIFY_EPILOG = """\
examples:
  lashstore verify
  lashstore verify --session chat-42
  lashstore verify --json | jq '.problems[] | [.what, .key, .detail]'

Exit status 0 when everything checks out, 4 when any record is damaged (each is listed).
Files are opened read-only; nothing is repaired.
"""

EXPORT_EPILOG = """\
examples:
  lashstore export chat-42 -o chat-42.jsonl
  lashstore export chat-42 -o - | gzip > chat-42.jsonl.gz
  lashstore export --all -o backup/                   # one FILE per session in backup/

The file is JSON Lines (format lashstore-session, version 1; see docs/export-format.md):
a header, one line per record, blobs inline in base64, and an end line.
"""

IMPORT_EPILOG = """\
examples:
  lashstore import chat-42.jsonl
  lashstore --store sqlite:////srv/agents import backup/*.jsonl
  lashstore import chat-42.jsonl --replace            # overwrite the session if it exists

Exit status 5 when a session exists already (nothing is written; use --replace), 1 when a file
is not a lashstore export, has an unknown version, or is damaged.
"""

MIGRATE_EPILOG = """\
examples:
  lashstore migrate --dry-run
  lashstore migrate

Opening a store for writing migrates it anyway; this does every file at once and says which
versions each had. A file newer than this lashstore is reported and left alone (exit status 1).
"""


def add_parsers(subparsers: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = _add(subparsers, "gc", parents, "collect unreachable blobs and shrink the files",
             "Delete the blobs nothing reaches (no head checkpoint, named artifact or attachment) in every "
             "session, then shrink the files that changed. Reports blobs and bytes deleted and the file sizes "
             "before and after.", GC_EPILOG)
    p.add_argument("--grace", type=parse_duration, default=ops.DEFAULT_GC_GRACE_MS, metavar="DURATION",
                   help="keep unreachable blobs younger than this (default: 10m)")
    p.add_argument("--dry-run", action="store_true", help="report what would be deleted; delete nothing")
    p.add_argument("--no-shrink", action="store_true", help="delete the rows but do not VACUUM the files")
    p.add_argument("--session", action="append", metavar="ID", help="only this session (repeatable)")
    p.add_argument("--json", action="store_true", help="print JSON instead")
    p.set_defaults(handler=run_gc)

    p = _add(subparsers, "vacuum", parents, "remove tombstoned nodes and shrink every file",
             "Remove tombstoned nodes from every session, then VACUUM every file of the deployment "
             "(sessions and registries) and truncate its WAL. Reports file sizes before and after.", VACUUM_EPILOG)
    p.add_argument("--session", action="append", metavar="ID", help="only this session (repeatable)")
    p.add_argument("--json", action="store_true", help="print JSON instead")
    p.set_defaults(handler=run_vacuum)

    p = _add(subparsers, "retain", parents, "apply retention policies (by age and count)",
             "Forget what the policies say may go: idle sessions, graph history beyond the last N turns, "
             "finished queued work, turn stamps, usage rows, finished processes, host-event occurrences and "
             "effect records. Then collect unreachable blobs and shrink the files.", RETAIN_EPILOG)
    g = p.add_argument_group("sessions")
    g.add_argument("--idle-for", type=parse_duration, metavar="DURATION",
                   help="delete sessions untouched for at least this long (with their grants and subscriptions)")
    g.add_argument("--keep-turns", type=_positive, metavar="N", help="keep the last N turns of each session's graph")
    g.add_argument("--finished-work-older-than", type=parse_duration, metavar="DURATION",
                   help="completed and cancelled queued work finished this long ago")
    g.add_argument("--turn-stamps-older-than", type=parse_duration, metavar="DURATION",
                   help="turn stamps (retry records) committed this long ago")
    g.add_argument("--keep-turn-stamps", type=_count, metavar="N", help="keep only the newest N turn stamps")
    g.add_argument("--compact-usage", action="store_true",
                   help="fold usage rows into one per (source, model); totals do not change")
    g = p.add_argument_group("registries")
    g.add_argument("--processes-older-than", type=parse_duration, metavar="DURATION",
                   help="finished processes (and their events) terminal this long ago")
    g.add_argument("--occurrences-older-than", type=parse_duration, metavar="DURATION",
                   help="host-event occurrences (and their deliveries) recorded this long ago")
    g.add_argument("--effects-older-than", type=parse_duration, metavar="DURATION",
                   help="completed and failed effect records updated this long ago")
    g = p.add_argument_group("run")
    g.add_argument("--dry-run", action="store_true", help="report what would go; change nothing")
    g.add_argument("--no-reclaim", action="store_true", help="do not collect blobs or shrink files afterwards")
    g.add_argument("--grace", type=parse_duration, default=ops.DEFAULT_GC_GRACE_MS, metavar="DURATION",
                   help="keep unreachable blobs younger than this (default: 10m)")
    g.add_argument("--session", action="append", metavar="ID", help="only this session (repeatable)")
    g.add_argument("--json", action="store_true", help="print JSON instead")
    p.set_defaults(handler=run_retain)

    p = _add(subparsers, "verify", parents, "check every record, blob hash and checkpoint",
             "Check the deployment: SQLite integrity, every blob's sha256, every record decodes, every "
             "checkpoint a head names is complete. Lists each damaged record.", VERIFY_EPILOG)
    p.add_argument("--session", action="append", metavar="ID", help="only this session (repeatable)")
    p.add_argument("--no-registries", action="store_true", help="skip processes.db, host_events.db, effects.db")
    p.add_argument("--json", action="store_true", help="print JSON instead")
    p.set_defaults(handler=run_verify)

    p = _add(subparsers, "export", parents, "write sessions to portable JSON Lines files",
             "Write a session (its meta, head, whole graph with tombstones, reachable blobs, usage, turn "
             "stamps, queued work, attachments and artifacts) to a versioned JSON Lines file that "
             "`lashstore import` loads into any backend.", EXPORT_EPILOG)
    p.add_argument("sessions", nargs="*", metavar="SESSION", help="session ids (see `lashstore sessions`)")
    p.add_argument("--all", action="store_true", help="every session")
    p.add_argument("-o", "--output", required=True, metavar="PATH",
                   help="the file ('-' for stdout; a device or FIFO is written to, never replaced); a directory with "
                        "several sessions or --all")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(handler=run_export)

    p = _add(subparsers, "import", parents, "load sessions from export files",
             "Load sessions written by `lashstore export`. Refuses a file of an unknown format or version, "
             "a damaged or cut-off file, and a session that exists (unless --replace).", IMPORT_EPILOG)
    p.add_argument("files", nargs="+", metavar="FILE", help="export files ('-' for stdin)")
    p.add_argument("--replace", action="store_true", help="overwrite a session that exists")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(handler=run_import)

    p = _add(subparsers, "migrate", parents, "run schema migrations on every file",
             "Bring every file of the deployment to this lashstore's schema version and report the "
             "versions before and after.", MIGRATE_EPILOG)
    p.add_argument("--dry-run", action="store_true", help="only report which files would move")
    p.add_argument("--json", action="store_true", help="print JSON instead")
    p.set_defaults(handler=run_migrate)


# -- gc and vacuum ------------------------------------------------------------------------------


def _table(title: str, columns: list[tuple[str, str]]) -> Table:
    t = Table(title=title, title_justify="left")
    for i, (name, justify) in enumerate(columns):
        # Ids and numbers never wrap (ids are what a user copies); free text folds.
        t.add_column(name, justify=justify, overflow="fold", no_wrap=i == 0 or justify == "right")  # type: ignore[arg-type]
    return t


def _error_lines(rows: list[Any], key: str) -> None:
    for r in rows:
        if getattr(r, "error", None):
            render.print_error(f"{getattr(r, key)}: {r.error}")


def run_gc(args: argparse.Namespace) -> int:
    with open_deployment(args.store) as dep, _progress(not args.json) as tick:
        report = ops.gc(dep, grace_ms=args.grace, dry_run=args.dry_run, shrink=not args.no_shrink,
                        sessions=args.session, progress=tick)
    if args.json:
        render.write_json(report)
    elif not report.sessions:
        render.out().print(Text(f"no sessions in {args.store}", style="dim"))
    else:
        verb = "would delete" if report.dry_run else "deleted"
        t = _table(f"Garbage collection ({'dry run, ' if report.dry_run else ''}grace {_human_ms(report.grace_ms)})",
                   [("session", "left"), ("blobs to delete" if report.dry_run else "blobs deleted", "right"),
                    ("bytes", "right"), ("blobs kept", "right"), ("file before", "right"), ("file after", "right")])
        for s in report.sessions:
            t.add_row(Text(s.session_id, style="cyan"), str(s.deleted_blob_count), _size(s.deleted_bytes),
                      str(s.retained_blob_count), _size(s.bytes_before),
                      Text("error", style="red") if s.error else _size(s.bytes_after))
        console = render.out()
        console.print(t)
        line = f"{verb} {report.deleted_blob_count} blobs ({report.deleted_bytes:,} bytes of rows)"
        if report.reclaimed_bytes is not None:
            line += (f"; files {report.bytes_before:,} -> {report.bytes_after:,} bytes, "
                     f"reclaimed {report.reclaimed_bytes:,} bytes")
        console.print(Text(line, style="bold"))
    _error_lines(report.sessions, "session_id")
    return EXIT_ERROR if report.errors else EXIT_OK


def run_vacuum(args: argparse.Namespace) -> int:
    with open_deployment(args.store) as dep, _progress(not args.json) as tick:
        report = ops.vacuum(dep, sessions=args.session, progress=tick)
    if args.json:
        render.write_json(report)
    elif not report.files:
        render.out().print(Text(f"nothing to vacuum in {args.store}", style="dim"))
    else:
        t = _table("Vacuum", [("file", "left"), ("kind", "left"), ("tombstoned nodes removed", "right"),
                              ("before", "right"), ("after", "right")])
        for f in report.files:
            t.add_row(Text(f.name, style="cyan"), f.kind, str(f.removed_node_count), _size(f.bytes_before),
                      Text("error", style="red") if f.error else _size(f.bytes_after))
        console = render.out()
        console.print(t)
        console.print(Text(
            f"removed {report.removed_node_count} tombstoned nodes; files {report.bytes_before:,} -> "
            f"{report.bytes_after:,} bytes, reclaimed {report.reclaimed_bytes:,} bytes", style="bold"))
    _error_lines(report.files, "name")
    return EXIT_ERROR if report.errors else EXIT_OK


# -- retain -------------------------------------------------------------------------------------


def run_retain(args: argparse.Namespace) -> int:
    policy = ops.RetentionPolicy(
        session_idle_ms=args.idle_for,
        keep_turns=args.keep_turns,
        finished_work_older_than_ms=args.finished_work_older_than,
        turn_stamps_older_than_ms=args.turn_stamps_older_than,
        keep_turn_stamps=args.keep_turn_stamps,
        compact_usage=args.compact_usage,
        processes_older_than_ms=args.processes_older_than,
        occurrences_older_than_ms=args.occurrences_older_than,
        effects_older_than_ms=args.effects_older_than,
        reclaim=not args.no_reclaim,
        gc_grace_ms=args.grace,
        sessions=args.session,
    )
    if policy.is_empty():
        render.print_error("retain: give at least one policy (--keep-turns, --idle-for, "
                           "--finished-work-older-than, ...); see `lashstore retain --help`")
        return EXIT_USAGE
    with open_deployment(args.store) as dep, _progress(not args.json) as tick:
        report = ops.retain(dep, policy, dry_run=args.dry_run, progress=tick)
    if args.json:
        render.write_json(report)
    else:
        _print_retain(report, args.store)
    _error_lines(report.sessions, "session_id")
    return EXIT_ERROR if report.errors else EXIT_OK


def _print_retain(r: ops.RetentionReport, store: str) -> None:
    console = render.out()
    if not r.sessions:
        console.print(Text(f"no sessions in {store}", style="dim"))
    verb = "would remove" if r.dry_run else "removed"
    t = _table(f"Retention{' (dry run: nothing was changed)' if r.dry_run else ''}",
               [("session", "left"), ("idle", "right"), ("nodes", "right"), ("turns kept", "right"),
                ("work", "right"), ("stamps", "right"), ("usage", "right"),
                ("blobs", "right"), ("before", "right"), ("after", "right")])
    for s in r.sessions:
        if s.deleted:
            nodes = Text("session deleted" if not r.dry_run else "session would be deleted", style="yellow")
            t.add_row(Text(s.session_id, style="cyan"), _human_ms(s.idle_ms), nodes, "", "", "", "", "",
                      _size(s.bytes_before), _size(s.bytes_after))
            continue
        g = s.graph
        kept = "-" if g is None else f"{g.kept_turns} of {g.turns_on_active_path}"
        t.add_row(Text(s.session_id, style="cyan"), _human_ms(s.idle_ms),
                  "-" if g is None else str(g.removed_node_count), kept, str(s.queue_batches), str(s.turn_stamps),
                  str(s.usage_rows), f"{s.blobs} ({_size(s.blob_bytes)})", _size(s.bytes_before),
                  Text("error", style="red") if s.error else _size(s.bytes_after))
    if r.sessions:
        console.print(t)
    p = r.policy
    if any(x is not None for x in (p.processes_older_than_ms, p.occurrences_older_than_ms, p.effects_older_than_ms)):
        console.print(Text(f"registries: {verb} {r.processes} finished processes, {r.occurrences} occurrences "
                           f"({r.deliveries} deliveries), {r.effects} effect records"))
    line = (f"{verb} {len(r.sessions_deleted)} sessions, {r.graph_nodes} graph nodes, {r.queue_batches} finished "
            f"batches, {r.turn_stamps} turn stamps, {r.usage_rows} usage rows, {r.blobs} blobs "
            f"({r.blob_bytes:,} bytes)")
    console.print(Text(line, style="bold"))
    if r.reclaimed_bytes is not None:
        console.print(Text(f"files {r.bytes_before:,} -> {r.bytes_after:,} bytes: reclaimed {r.reclaimed_bytes:,} "
                           f"bytes ({render.human_bytes(r.reclaimed_bytes)})", style="bold green"))


# -- verify -------------------------------------------------------------------------------------


def run_verify(args: argparse.Namespace) -> int:
    with open_deployment(args.store) as dep, _progress(not args.json) as tick:
        report = ops.verify(dep, sessions=args.session, registries=not args.no_registries, progress=tick)
    if args.json:
        render.write_json({"ok": report.ok, **msgspec.to_builtins(report)})
        return EXIT_OK if report.ok else EXIT_DAMAGED
    console = render.out()
    if not report.checked:
        console.print(Text(f"nothing to verify in {args.store}", style="dim"))
        return EXIT_OK
    t = _table("Verified", [("file", "left"), ("kind", "left"), ("session", "left"), ("records", "right"),
                            ("problems", "right")])
    for c in report.checked:
        name = Path(c.location).name if "/" in c.location else c.location
        t.add_row(Text(name), c.kind, Text(c.session_id or "-", style="cyan"), f"{c.records:,}",
                  Text(str(c.problems), style="red bold" if c.problems else "green"))
    console.print(t)
    for n in report.notes:
        console.print(Text(f"note: {Path(n.location).name}: {n.detail}", style="yellow"))
    if report.ok:
        console.print(Text(f"ok: {report.records:,} records in {len(report.checked)} files, no damage found",
                           style="bold green"))
        return EXIT_OK
    p = _table(f"{len(report.problems)} damaged records", [("file", "left"), ("what", "left"), ("key", "left"),
                                                           ("detail", "left")])
    for pr in report.problems:
        name = Path(pr.location).name if "/" in pr.location else pr.location
        key = render.short_ref(pr.key, 16) if _is_ref(pr.key) else pr.key
        p.add_row(Text(name), Text(pr.what, style="red"), Text(key), Text(pr.detail))
    console.print(p)
    render.print_error(f"{len(report.problems)} damaged records found")
    return EXIT_DAMAGED


def _is_ref(key: str) -> bool:
    return len(key) == 64 and all(c in "0123456789abcdef" for c in key)


# -- export and import --------------------------------------------------------------------------


def run_export(args: argparse.Namespace) -> int:
    from ..backends.sqlite.factory import safe_file_name

    if args.all == bool(args.sessions):
        render.print_error("export: name the sessions or give --all (not both)")
        return EXIT_USAGE
    to_stdout = args.output == "-"
    summaries: list[ops.TransferSummary] = []
    with open_deployment(args.store) as dep:
        ids = [s.session_id for s in dep.sessions.list_sessions() if s.error is None] if args.all else args.sessions
        many = args.all or len(ids) > 1
        if many and to_stdout:
            render.print_error("export: several sessions need a directory (-o DIR), not stdout")
            return EXIT_USAGE
        out_dir = Path(args.output) if many else None
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
        with _progress(not args.json and not to_stdout and many) as tick:
            for i, sid in enumerate(ids, 1):
                try:
                    if to_stdout:
                        summary = ops.export_session(dep, sid, sys.stdout.buffer)
                        sys.stdout.buffer.flush()
                    else:
                        path = (out_dir / (safe_file_name(sid)[:-3] + ".jsonl")) if out_dir else Path(args.output)
                        summary = ops.export_session_to(dep, sid, path)
                except SessionNotFound:
                    render.print_error(f"no session {sid!r} in store {args.store}; `lashstore sessions` lists them")
                    return EXIT_NOT_FOUND
                summaries.append(summary)
                if tick is not None:
                    tick("exporting", i, len(ids))
    if args.json:
        if to_stdout:
            render.err().print(msgspec.json.encode(summaries).decode(), soft_wrap=True)
        else:
            render.write_json(summaries)
        return EXIT_OK
    console = render.err() if to_stdout else render.out()
    t = _table("Exported", [("session", "left"), ("head revision", "right"), ("records", "left"),
                            ("bytes", "right"), ("file", "left")])
    for s in summaries:
        t.add_row(Text(s.session_id, style="cyan"), str(s.head_revision if s.head_revision is not None else "-"),
                  Text(", ".join(f"{n} {k}" for k, n in s.counts.items())), f"{s.bytes:,}", Text(s.path or "stdout"))
    console.print(t)
    return EXIT_OK


def run_import(args: argparse.Namespace) -> int:
    summaries: list[Any] = []
    status = EXIT_OK
    with open_deployment(args.store) as dep, _progress(not args.json and len(args.files) > 1) as tick:
        for i, name in enumerate(args.files, 1):
            try:
                if name == "-":
                    summary = ops.import_session(dep, sys.stdin.buffer, replace=args.replace)
                else:
                    with open(name, "rb") as f:
                        summary = ops.import_session(dep, f, replace=args.replace)
                summary.path = name
                summaries.append(summary)
            except OSError as e:
                render.print_error(f"{name}: {e.strerror or e}")
                summaries.append({"path": name, "error": str(e), "reason": "io"})
                status = EXIT_ERROR
            except ops.ImportRefused as e:
                render.print_error(f"{name}: {e}")
                summaries.append({"path": name, "error": str(e), "reason": e.reason})
                if e.reason == "exists":
                    status = status if status == EXIT_ERROR else EXIT_EXISTS
                else:
                    status = EXIT_ERROR
            if tick is not None:
                tick("importing", i, len(args.files))
    if args.json:
        render.write_json(summaries)
        return status
    ok = [s for s in summaries if type(s) is ops.TransferSummary]
    if ok:
        t = _table("Imported", [("session", "left"), ("", "left"), ("head revision", "right"),
                                ("records", "left"), ("file", "left")])
        for s in ok:
            t.add_row(Text(s.session_id, style="cyan"),
                      Text("replaced" if s.replaced else "new", style="yellow" if s.replaced else "green"),
                      str(s.head_revision if s.head_revision is not None else "-"),
                      Text(", ".join(f"{n} {k}" for k, n in s.counts.items())), Text(s.path or "-"))
        render.out().print(t)
    return status


# -- migrate ------------------------------------------------------------------------------------


def run_migrate(args: argparse.Namespace) -> int:
    with open_deployment(args.store) as dep, _progress(not args.json) as tick:
        report = ops.migrate(dep, dry_run=args.dry_run, progress=tick)
    if args.json:
        render.write_json(report)
        return EXIT_ERROR if report.errors else EXIT_OK
    console = render.out()
    if report.note:
        console.print(Text(report.note, style="dim"))
        return EXIT_OK
    t = _table(f"Schema versions{' (dry run)' if report.dry_run else ''}",
               [("file", "left"), ("kind", "left"), ("before", "right"), ("after", "right"), ("latest", "right"),
                ("", "left")])
    for f in report.files:
        if f.error:
            state = Text(f.error, style="red")
        elif f.migrated:
            state = Text("would migrate" if report.dry_run else "migrated", style="yellow")
        else:
            state = Text("up to date", style="green")
        t.add_row(Text(Path(f.path).name), f.kind or "-", str(f.before if f.before is not None else "-"),
                  str(f.after if f.after is not None else "-"), str(f.latest if f.latest is not None else "-"), state)
    console.print(t)
    verb = "would migrate" if report.dry_run else "migrated"
    console.print(Text(f"{verb} {report.migrated} of {len(report.files)} files", style="bold"))
    return EXIT_ERROR if report.errors else EXIT_OK
