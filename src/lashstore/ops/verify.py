"""Verify a deployment: is every stored record intact?

Per SQLite session file: `PRAGMA integrity_check`; every blob inflated and checked against its
sha256; every head, graph node, turn result, meta, queued-work batch and item decoded; every
checkpoint a head names hydrated (its snapshots present and intact); every artifact's and
attachment's bytes present. Registry files (processes, host events, effects): integrity and every
row decoded. Files are opened read-only: verify never migrates, converts or repairs anything.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from ..deployment import Deployment
from ..errors import LashStoreError, UnsupportedSchema
from ..model.maintenance import Problem
from ._common import Progress, maintenance, opened, registry_files, session_summaries, store_root, tick

__all__ = ["verify", "VerifyReport", "CheckedLocation", "Problem"]


class CheckedLocation(msgspec.Struct, kw_only=True):
    location: str  # a file, or <scheme>:<session> (memory:, postgresql:), postgresql:blobs
    kind: str  # "session", "registry" or "blobs"
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
    """Check every session (or `sessions`) and, unless told not to, the registry files."""
    report = VerifyReport()
    mark = dep.incomplete_copy()
    if mark is not None:
        report.problems.append(Problem(
            location=dep.url, what="copy", key=str(mark.get("source")),
            detail=f"this deployment is an unfinished copy of {mark.get('source')} (started {mark.get('started_at')}): "
                   "sessions and records may be missing; run the same `lashstore copy` again to finish it",
        ))
    root = store_root(dep)
    if root is not None:
        _verify_sqlite(dep, root, sessions, registries, report, progress)
    else:
        _verify_sessions(dep, sessions, report, progress)
    report.records = sum(c.records for c in report.checked)
    return report


def _verify_sessions(dep: Deployment, sessions: list[str] | None, report: VerifyReport,
                     progress: Progress | None) -> None:
    """A deployment without files (memory, PostgreSQL): session by session, then, where blobs are
    shared by the deployment, every blob no session reaches."""
    scheme = dep.url.split("://", 1)[0] if "://" in dep.url else "sqlite"
    rows = session_summaries(dep, sessions)
    blob_cache: dict[str, bool] = {}
    for i, row in enumerate(rows, 1):
        loc = CheckedLocation(location=f"{scheme}:{row.session_id}", kind="session", session_id=row.session_id)
        try:
            with opened(dep, row.session_id) as store:
                if hasattr(store, "verify_unreferenced_blobs"):
                    loc.records, problems = store.verify(blob_cache=blob_cache)
                else:
                    loc.records, problems = maintenance(store).verify_session_store(store)
        except LashStoreError as e:
            problems = [Problem(location=loc.location, what="session", key=row.session_id, detail=str(e))]
        _add(report, loc, problems)
        tick(progress, "verifying", i, len(rows))
    if sessions is None and scheme in ("postgresql", "postgres"):
        # Blobs nothing references yet: through a store of the deployment (any will do).
        store = dep.sessions.open_store(rows[0].session_id) if rows else None
        if store is None:
            from ..backends.postgres import PostgresSessionStore

            store = PostgresSessionStore(dep.sessions._db)  # type: ignore[attr-defined]
        try:
            loc = CheckedLocation(location=f"{scheme}:blobs", kind="blobs")
            loc.records, problems = store.verify_unreferenced_blobs(blob_cache)
            _add(report, loc, problems)
        finally:
            store.close()


def _add(report: VerifyReport, loc: CheckedLocation, problems: list[Problem]) -> None:
    loc.problems = len(problems)
    report.checked.append(loc)
    report.problems.extend(problems)


def _verify_sqlite(
    dep: Deployment, root: Path, sessions: list[str] | None, registries: bool, report: VerifyReport,
    progress: Progress | None,
) -> None:
    from ..backends.sqlite import maintenance as m
    from ..backends.sqlite.store import SqliteSessionStore

    factory = dep.sessions
    files: list[tuple[Path, str | None]]
    if sessions is None:
        files = [(p, None) for p in factory.session_files()]  # type: ignore[attr-defined]
    else:
        files = [(factory.path_for_session(s), s) for s in sessions]  # type: ignore[attr-defined]
    regs = registry_files(dep) if registries and sessions is None else []
    total = len(files) + len(regs)
    done = 0
    for path, sid in files:
        loc = CheckedLocation(location=str(path), kind="session", session_id=sid)
        problems: list[Problem]
        if not path.exists():
            problems = [Problem(location=str(path), what="file", key=str(path), detail=f"no session {sid!r} in the store")]
        else:
            try:
                store = SqliteSessionStore(path, options=dep.options, readonly=True)
            except UnsupportedSchema as e:
                if 0 < e.found < e.expected:
                    # Not damage: an older schema that a read-only check cannot read.
                    report.notes.append(Problem(location=str(path), what="schema", key=path.name,
                                                detail=f"schema version {e.found}, this lashstore reads "
                                                       f"{e.expected}: run `lashstore migrate`, then verify"))
                    problems = []
                else:
                    problems = [Problem(location=str(path), what="file", key=path.name, detail=f"cannot open: {e}")]
            except LashStoreError as e:
                problems = [Problem(location=str(path), what="file", key=path.name, detail=f"cannot open: {e}")]
            else:
                try:
                    ids = m.session_ids(store)
                    loc.session_id = sid or (ids[0] if len(ids) == 1 else None)
                    loc.records, problems = m.verify_session_store(store)
                except LashStoreError as e:
                    problems = [Problem(location=str(path), what="file", key=path.name, detail=str(e))]
                finally:
                    store.close()
        _add(report, loc, problems)
        done += 1
        tick(progress, "verifying", done, total)
    for path in regs:
        loc = CheckedLocation(location=str(path), kind="registry")
        loc.records, problems = m.verify_registry_file(path)
        _add(report, loc, problems)
        done += 1
        tick(progress, "verifying", done, total)
