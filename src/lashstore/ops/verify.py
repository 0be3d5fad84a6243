"""Verify a deployment: is every stored record intact?

Per SQLite session file: `PRAGMA integrity_check`; every blob inflated and checked against its
sha256; every head, graph node, turn result, meta, queued-work batch and item decoded; every
checkpoint a head names hydrated (its snapshots present and intact); every artifact's and
attachment's bytes present. Registry files (processes, host events, effects): integrity and every
row decoded. Files are opened read-only: verify never migrates, converts or repairs anything.
"""

from __future__ import annotations

import msgspec

from ..deployment import Deployment
from ..errors import LashStoreError, UnsupportedSchema
from ..model.maintenance import Problem
from ..model.session import SessionSummary
from ._common import REGISTRIES, Progress, opened, session_summaries, tick

__all__ = ["verify", "VerifyReport", "CheckedLocation", "Problem"]


class CheckedLocation(msgspec.Struct, kw_only=True):
    location: str  # a file, or where the database is (memory:, postgresql:<schema>) and the session
    kind: str  # "session", "registry" or "database" (what every session of a shared database holds)
    session_id: str | None = None
    records: int = 0
    problems: int = 0


class VerifyReport(msgspec.Struct, kw_only=True):
    checked: list[CheckedLocation] = msgspec.field(default_factory=list)
    problems: list[Problem] = msgspec.field(default_factory=list)
    #: findings that are not damage: a file at an older schema version (run `lashstore migrate`)
    notes: list[Problem] = msgspec.field(default_factory=list)
    records: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(
    dep: Deployment,
    *,
    sessions: list[str] | None = None,
    registries: bool = True,
    progress: Progress | None = None,
) -> VerifyReport:
    """Check every session (or `sessions`) and, unless told not to, the registries. Everything is
    opened read-only: verify never migrates, converts or repairs anything."""
    report = VerifyReport()
    mark = dep.incomplete_copy()
    if mark is not None:
        report.problems.append(Problem(
            location=dep.url, what="copy", key=str(mark.get("source")),
            detail=f"this deployment is an unfinished copy of {mark.get('source')} (started {mark.get('started_at')}): "
                   "sessions and records may be missing; run the same `lashstore copy` again to finish it",
        ))
    storage = dep.storage
    rows = session_summaries(dep, sessions)
    if sessions is not None:
        # Asked for by id: one the listing could not name (an unreadable file) is checked too.
        listed = {r.session_id for r in rows}
        rows += [SessionSummary(session_id=s) for s in sessions if s not in listed]
    regs = [name for name, _ in REGISTRIES if registries and sessions is None and storage.has_registry(name)]
    shared = storage.shared and sessions is None and bool(rows)
    total = len(rows) + len(regs) + shared
    done = 0
    cache: dict[str, bool] = {}  # blob ref -> intact, shared by every session of one database
    for row in rows:
        loc = CheckedLocation(location=row.path or f"{storage.location}/{row.session_id}", kind="session",
                              session_id=row.session_id)
        if row.older_schema is not None:
            _add(report, loc, _schema_finding(report, loc, row.older_schema, None))
            done += 1
            tick(progress, "verifying", done, total)
            continue
        try:
            with opened(dep, row.session_id, readonly=True) as store:
                # A file's blobs are its own; a shared database's are checked once for every session.
                blobs = cache if storage.shared else {}
                loc.records, problems = store.verify(blob_cache=blobs)
                if not storage.shared:  # the session's own file: its integrity and every blob in it
                    records, more = store.verify_database(blobs)
                    loc.records += records
                    problems += more
        except UnsupportedSchema as e:
            problems = _schema_finding(report, loc, e.found, e)
        except LashStoreError as e:
            problems = [Problem(location=loc.location, what="file" if row.path else "session",
                                key=row.session_id, detail=f"cannot open: {e}")]
        if not problems and row.error is not None:
            problems = [Problem(location=loc.location, what="file", key=row.session_id, detail=row.error)]
        _add(report, loc, problems)
        done += 1
        tick(progress, "verifying", done, total)
    if shared:
        loc = CheckedLocation(location=storage.location, kind="database")
        with opened(dep, rows[0].session_id, readonly=True) as store:
            loc.records, problems = store.verify_database(cache)
        _add(report, loc, problems)
        done += 1
        tick(progress, "verifying", done, total)
    for name in regs:
        loc = CheckedLocation(location=name, kind="registry")
        try:
            with dep.open_registry(name, readonly=True) as registry:
                loc.location = registry.location
                loc.records, problems = registry.verify()
        except UnsupportedSchema as e:
            problems = _schema_finding(report, loc, e.found, e)
        except LashStoreError as e:
            problems = [Problem(location=loc.location, what="file", key=name, detail=f"cannot open: {e}")]
        _add(report, loc, problems)
        done += 1
        tick(progress, "verifying", done, total)
    report.records = sum(c.records for c in report.checked)
    return report


def _schema_finding(report: VerifyReport, loc: CheckedLocation, found: int, e: UnsupportedSchema | None) -> list[Problem]:
    if e is None or 0 < e.found < e.expected:
        # Not damage: an older schema that a read-only check cannot read.
        report.notes.append(Problem(location=loc.location, what="schema", key=loc.session_id or loc.location,
                                    detail=f"schema version {found}, this lashstore reads a newer one: run "
                                           "`lashstore migrate`, then verify"))
        return []
    return [Problem(location=loc.location, what="file", key=loc.session_id or loc.location, detail=f"cannot open: {e}")]


def _add(report: VerifyReport, loc: CheckedLocation, problems: list[Problem]) -> None:
    loc.problems = len(problems)
    report.checked.append(loc)
    report.problems.extend(problems)
