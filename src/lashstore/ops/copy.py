"""Copy a whole deployment to another backend, verified, and resumable.

Every session (meta, head, graph with its tombstones, blobs, usage, turn stamps, queued work and
its claims, attachment manifest, named artifacts) and every process (events, wakes, grants,
leases, the fencing counter), trigger (subscriptions, occurrences, deliveries, counters) and
effect record, from a SQLite directory to a PostgreSQL schema or back (or between two of a kind).
After writing, each session and table is read back from the destination and compared with the
source (row fingerprints), and every copied blob's hash is checked.

While a copy runs, the destination carries a mark (a file in a SQLite directory, a table in a
PostgreSQL schema) naming its source: `lashstore.ops.verify` reports such a destination as an
incomplete copy, `lashstore sessions` warns, and only the last step, after every check passed,
removes the mark. A copy that was killed is resumed by running it again with the same source:
sessions and tables already there and equal to the source are kept, the rest is written. Each
session is written whole or not at all, so nothing half-written is ever taken for done.

The source should be quiescent while it is copied: the copy reads one session at a time.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

from ..backends.transfer import DEPLOYMENT_TABLES, SESSION_TABLES, digest
from ..errors import CorruptRecord, ValidationError
from ._common import Progress, tick

__all__ = ["copy", "CopyReport", "open_endpoint"]


@dataclasses.dataclass
class CopyReport:
    source: str
    destination: str
    sessions: int = 0
    blobs: int = 0
    blob_bytes: int = 0
    rows: dict[str, int] = dataclasses.field(default_factory=dict)
    verified: bool = False
    #: sessions and tables found already copied by an earlier, interrupted run of the same copy
    resumed: int = 0
    notes: list[str] = dataclasses.field(default_factory=list)


def open_endpoint(url: str, *, create: bool) -> Any:
    """The transfer endpoint of a durable store URL (a SQLite directory or a PostgreSQL schema)."""
    from ..deployment import parse_url

    scheme, location, _ = parse_url(url)
    if scheme == "postgresql":
        try:
            from ..backends.postgres.transfer import PostgresTransferEndpoint
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ValidationError(f"{url}: the postgres extra is not installed ({e}); pip install 'lashstore[postgres]'") from None
        return PostgresTransferEndpoint(url)
    if scheme != "sqlite":
        raise ValidationError(f"{url}: lashstore copy moves durable deployments (a sqlite directory or postgresql://)")
    from ..backends.sqlite.transfer import SqliteTransferEndpoint

    return SqliteTransferEndpoint(location, create=create)


def _verify_blobs(rows: list[tuple]) -> int:
    from ..backends.common import check_stored_blob

    n = 0
    for ref, kind, compression, raw_size, _, content in rows:
        check_stored_blob(ref, kind, compression, raw_size, content)  # CorruptRecord on a bad hash
        n += len(content)
    return n


def _same_session(dst: Any, sid: str, rows: dict[str, list[tuple]], blobs: list[tuple]) -> bool:
    back = dst.read_session(sid)
    if any(digest(back[t]) != digest(rows[t]) for t in (*SESSION_TABLES, "queued_work_items")):
        return False
    return len(dst.read_blobs(sid, [b[0] for b in blobs])) == len(blobs)


def _start(src: Any, dst: Any, sessions: list[str], tables: dict[str, list[tuple]]) -> bool:
    """Mark the destination (or find the mark of an earlier run of this copy); True to resume."""
    mark = dst.read_copy_mark()
    if mark is not None:
        if mark.get("source") != src.describe():
            raise ValidationError(
                f"the destination is an unfinished copy of {mark.get('source')}, not of {src.describe()}; finish "
                "that copy (run it again), or copy into an empty deployment"
            )
        return True
    clash = [s for s in sessions if dst.has_session(s)]
    if clash:
        shown = ", ".join(repr(s) for s in clash[:5]) + (" ..." if len(clash) > 5 else "")
        raise ValidationError(f"the destination already holds {len(clash)} of the sessions to copy ({shown}); nothing was copied")
    busy = [t for t, rows in tables.items() if rows and not dst.table_is_empty(t)]
    if busy:
        raise ValidationError(f"the destination already holds rows in {', '.join(busy)}; copy into an empty deployment")
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
    dst.write_copy_mark({"source": src.describe(), "started_at": now})
    return False


def copy(source: str, destination: str, *, progress: Progress | None = None) -> CopyReport:
    """Copy the deployment at `source` into `destination`, verify it, and unmark it.

    Raises ValidationError when the destination holds other data (or an unfinished copy of
    another source), CorruptRecord when the verification fails; the destination then stays marked
    as an incomplete copy, and running the same copy again resumes it."""
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
        resuming = _start(src, dst, sessions, tables)
        unowned = getattr(src, "unowned_artifacts", lambda: 0)()
        if unowned:
            report.notes.append(f"{unowned} artifacts of stores opened without a session id belong to no session: not copied")
        for i, sid in enumerate(sessions, 1):
            rows = src.read_session(sid)
            blobs = src.read_blobs(sid, src.session_blob_refs(sid, rows))
            report.blob_bytes += _verify_blobs(blobs)
            if resuming and dst.has_session(sid):
                if _same_session(dst, sid, rows, blobs):
                    report.resumed += 1
                else:
                    raise ValidationError(
                        f"session {sid!r} in the destination differs from the source (it was changed after the "
                        "interrupted copy wrote it); remove the destination and copy again"
                    )
            else:
                dst.write_session(sid, rows, blobs)
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
            tick(progress, "sessions", i, len(sessions))
        for i, (table, rows) in enumerate(tables.items(), 1):
            if resuming and not dst.table_is_empty(table):
                if digest(dst.read_table(table)) == digest(rows):
                    report.resumed += 1
                else:
                    # Each table is written in one transaction, so a partial table is not ours.
                    raise ValidationError(
                        f"table {table} in the destination differs from the source; remove the destination and "
                        "copy again"
                    )
            else:
                dst.write_table(table, rows)
            if digest(dst.read_table(table)) != digest(rows):
                raise CorruptRecord("copied table", table, "it reads back differently from the destination")
            report.rows[table] = len(rows)
            tick(progress, "processes, triggers, effects", i, len(tables))
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
        dst.clear_copy_mark()
        report.verified = True
        return report
    finally:
        dst.close()
        src.close()
