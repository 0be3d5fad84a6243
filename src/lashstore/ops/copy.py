"""Copy a whole deployment to another backend, verified, and resumable.

Every session (meta, head, graph with its tombstones, the blobs it reaches, usage, turn stamps,
queued work and its claims, attachment manifest, named artifacts) moves as its dump
(`dump_session` / `load_session_dump`, the form `lashstore export` writes), and every registry
(processes with events, wakes, grants, leases and the fencing counter; trigger subscriptions,
occurrences, deliveries and their counters; effect records) as its rows (`dump_registry` /
`load_registry`): the same public methods on every backend, so any durable deployment copies to
any other. After writing, each session and registry is read back from the destination and
compared with the source, and every blob's hash is checked on the way in.

While a copy runs, the destination carries a mark (a file in a SQLite directory, a table in a
PostgreSQL schema) naming its source: `lashstore.ops.verify` reports such a destination as an
incomplete copy, `lashstore sessions` warns, and only the last step, after every check passed,
removes the mark. A copy that was killed is resumed by running it again with the same source:
sessions and registries already there and equal to the source are kept, the rest is written.
Each session and each registry is written in one transaction, so nothing half-written is ever
taken for done.

The source is opened read-only (nothing in it changes; a file at an older schema is refused with
the advice to migrate it first) and should be quiescent: the copy reads one session at a time.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

import msgspec

from ..errors import CorruptRecord, ValidationError
from ..model.maintenance import RegistryDump, SessionDump
from ._common import REGISTRIES, Progress, tick

__all__ = ["copy", "CopyReport"]


@dataclasses.dataclass
class CopyReport:
    source: str
    destination: str
    sessions: int = 0
    blobs: int = 0
    blob_bytes: int = 0
    #: records copied, by kind: session records ("nodes", "usage", ...) and registry tables
    rows: dict[str, int] = dataclasses.field(default_factory=dict)
    verified: bool = False
    #: sessions and registries found already copied by an earlier, interrupted run of the same copy
    resumed: int = 0
    notes: list[str] = dataclasses.field(default_factory=list)


def _open(url: str, *, source: bool) -> Any:
    from ..deployment import open as open_deployment
    from ..deployment import parse_url

    if parse_url(url)[0] == "memory":
        raise ValidationError(f"{url}: lashstore copy moves durable deployments (a sqlite directory or "
                              "postgresql://); a memory deployment ends with its process")
    return open_deployment(url, readonly=True) if source else open_deployment(url)


def _describe(dep: Any) -> str:
    return f"{dep.backend} {dep.storage.location}"


def _session_counts(dump: SessionDump) -> dict[str, int]:
    return {"nodes": len(dump.nodes), "usage": len(dump.usage), "turns": len(dump.turns),
            "queued batches": len(dump.batches), "attachments": len(dump.attachments),
            "artifacts": len(dump.artifacts)}


def _same(a: SessionDump, b: SessionDump) -> bool:
    """Equal dumps, but for the numbers that only order queued batches: sessions share one
    queue sequence in a PostgreSQL schema, so a loaded session's batches may be numbered anew
    (in the same order)."""
    def plain(d: SessionDump) -> SessionDump:
        return msgspec.structs.replace(d, batches=[msgspec.structs.replace(x, enqueue_seq=0) for x in d.batches])

    return plain(a) == plain(b)


def _start(src: Any, dst: Any, sessions: list[str], registries: dict[str, RegistryDump]) -> bool:
    """Mark the destination (or find the mark of an earlier run of this copy); True to resume."""
    mark = dst.incomplete_copy()
    if mark is not None:
        if mark.get("source") != _describe(src):
            raise ValidationError(
                f"the destination is an unfinished copy of {mark.get('source')}, not of {_describe(src)}; finish "
                "that copy (run it again), or copy into an empty deployment"
            )
        return True
    clash = [s for s in sessions if dst.sessions.has_session(s)]
    if clash:
        shown = ", ".join(repr(s) for s in clash[:5]) + (" ..." if len(clash) > 5 else "")
        raise ValidationError(f"the destination already holds {len(clash)} of the sessions to copy ({shown}); "
                              "nothing was copied")
    busy = [name for name in registries if any(getattr(dst, name).dump_registry().tables.values())]
    if busy:
        raise ValidationError(f"the destination's {', '.join(busy)} already hold rows; copy into an empty deployment")
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
    dst.storage.set_copy_mark({"source": _describe(src), "started_at": now})
    return False


def _copy_session(src: Any, dst: Any, sid: str, resuming: bool) -> tuple[SessionDump, bool]:
    """Write one session into the destination (unless an earlier run did); (its dump, resumed)."""
    with src.sessions.open_store(sid, readonly=True) as store:
        dump = store.dump_session(sid)
    existed = dst.sessions.has_session(sid)
    if existed:
        with dst.sessions.open_store(sid) as store:
            there = store.dump_session(sid)
        if _same(there, dump):
            return dump, True
        # A run killed between creating the session and loading it leaves it empty (but for
        # the meta its creation wrote).
        if not resuming or msgspec.structs.replace(there, meta=None) != SessionDump(session_id=sid):
            raise ValidationError(
                f"session {sid!r} in the destination differs from the source (it was changed after the "
                "interrupted copy wrote it); remove the destination and copy again"
            )
    store = dst.sessions.open_store(sid) if existed else dst.sessions.create_store(sid)
    try:
        store.load_session_dump(dump)
    except BaseException:
        store.close()
        if not existed:
            dst.sessions.delete_session(sid)
        raise
    store.close()
    return dump, False


def copy(source: str, destination: str, *, progress: Progress | None = None) -> CopyReport:
    """Copy the deployment at `source` into `destination`, verify it, and unmark it.

    Raises ValidationError when the source holds nothing or the destination holds other data (or
    an unfinished copy of another source), CorruptRecord when the source is damaged or the
    verification fails; the destination then stays marked as an incomplete copy, and running the
    same copy again resumes it."""
    src = _open(source, source=True)
    try:
        dst = _open(destination, source=False)
    except BaseException:
        src.close()
        raise
    report = CopyReport(source=_describe(src), destination=_describe(dst))
    try:
        sessions = sorted(s.session_id for s in src.sessions.list_sessions())
        registries: dict[str, RegistryDump] = {}
        for name, attr in REGISTRIES:
            if not src.storage.has_registry(name):
                continue
            registry = src.open_registry(name, readonly=True)
            try:
                _, problems = registry.verify()
                if problems:
                    p = problems[0]
                    raise CorruptRecord(p.what, p.key, f"{p.detail} (in the source's {name}; "
                                        f"{len(problems)} problem(s): run `lashstore verify` on it)")
                registries[attr] = registry.dump_registry()
            finally:
                registry.close()
        if not sessions and not any(any(d.tables.values()) for d in registries.values()):
            raise ValidationError(f"{source} holds no sessions and no registry rows: nothing to copy "
                                  "(is it the right URL?)")
        resuming = _start(src, dst, sessions, registries)
        for i, sid in enumerate(sessions, 1):
            dump, resumed = _copy_session(src, dst, sid, resuming)
            report.resumed += resumed
            with dst.sessions.open_store(sid) as store:
                if not _same(store.dump_session(sid), dump):
                    raise CorruptRecord("copied session", sid, "it reads back differently from the destination")
            for kind, n in _session_counts(dump).items():
                report.rows[kind] = report.rows.get(kind, 0) + n
            report.blobs += len(dump.blobs)
            report.blob_bytes += sum(len(b.data) for b in dump.blobs)
            report.sessions += 1
            tick(progress, "sessions", i, len(sessions))
        for i, (attr, dump) in enumerate(registries.items(), 1):
            target = getattr(dst, attr)
            there = target.dump_registry()
            if not any(there.tables.values()):
                target.load_registry(dump)
            elif there.tables == dump.tables:
                report.resumed += 1
            else:
                # Each registry is loaded in one transaction, so rows there that differ are not ours.
                raise ValidationError(f"the destination's {attr} differ from the source's; remove the destination "
                                      "and copy again")
            back = target.dump_registry()
            if back.tables != dump.tables:
                raise CorruptRecord("copied registry", attr, "it reads back differently from the destination")
            behind = [k for k, n in dump.counters.items() if back.counters.get(k, 0) < n]
            if behind:
                raise CorruptRecord("copied registry", attr, f"its counters {', '.join(behind)} are behind the source's")
            for table, rows in dump.tables.items():
                report.rows[table] = len(rows)
            tick(progress, "processes, triggers, effects", i, len(registries))
        dst.storage.set_copy_mark(None)
        report.verified = True
        return report
    finally:
        dst.close()
        src.close()
