"""Garbage collection and vacuum across a deployment, with the disk space they give back.

`gc` deletes, in every session, the blobs no head checkpoint, named artifact or attachment
reaches and that are older than a grace period, then shrinks the files it changed. `vacuum`
removes tombstoned nodes and shrinks every file of the deployment (sessions and registries).
Shrinking is each database's own (`store.shrink()`: SQLite's `VACUUM` plus a WAL checkpoint,
PostgreSQL's `VACUUM`); a SQLite file's size is measured before and after, so the report says what
the disk got back. Where every session shares one database (PostgreSQL, memory), blobs are shared
too, so the collection runs once, through the first session's store.
"""

from __future__ import annotations

import msgspec

from ..deployment import Deployment
from ..errors import LashStoreError
from ..model.session import GcReport
from ..rules.maintenance import DEFAULT_GC_GRACE_MS
from ._common import Progress, opened, session_summaries, tick
from ._common import registries as deployment_registries

__all__ = ["gc", "vacuum", "GcRunReport", "SessionGc", "VacuumRunReport", "FileVacuum", "DEFAULT_GC_GRACE_MS"]


class SessionGc(msgspec.Struct, kw_only=True):
    session_id: str
    path: str | None = None
    deleted_blob_count: int = 0
    deleted_bytes: int = 0  # stored bytes of the deleted blob rows
    retained_blob_count: int = 0
    bytes_before: int = 0  # the file and its WAL
    bytes_after: int | None = None
    error: str | None = None


class GcRunReport(msgspec.Struct, kw_only=True):
    dry_run: bool
    grace_ms: int
    sessions: list[SessionGc] = msgspec.field(default_factory=list)
    deleted_blob_count: int = 0
    deleted_bytes: int = 0
    bytes_before: int = 0
    bytes_after: int | None = None
    reclaimed_bytes: int | None = None
    errors: int = 0


def gc(
    dep: Deployment,
    *,
    grace_ms: int = DEFAULT_GC_GRACE_MS,
    dry_run: bool = False,
    shrink: bool = True,
    sessions: list[str] | None = None,
    progress: Progress | None = None,
) -> GcRunReport:
    """Collect unreachable blobs older than `grace_ms` in every session (or `sessions`).

    A session whose head or manifest cannot be read is left alone and reported (its collection
    aborts rather than delete what a repair needs); the others go on."""
    report = GcRunReport(dry_run=dry_run, grace_ms=grace_ms)
    rows = session_summaries(dep, sessions)
    storage = dep.storage
    for i, row in enumerate(rows, 1):
        entry = SessionGc(session_id=row.session_id, path=row.path, bytes_before=storage.session_bytes(row.session_id))
        report.sessions.append(entry)
        if row.error is not None:
            entry.error = row.error
        elif not storage.shared or i == 1:
            try:
                with opened(dep, row.session_id) as store:
                    r: GcReport = store.collect_garbage(grace_ms=grace_ms, dry_run=dry_run)
                    entry.deleted_blob_count = r.deleted_blob_count
                    entry.deleted_bytes = r.deleted_bytes
                    entry.retained_blob_count = r.retained_blob_count
                    if not dry_run and shrink and r.deleted_blob_count:
                        store.shrink()
            except LashStoreError as e:
                entry.error = str(e)
        if not dry_run:
            entry.bytes_after = storage.session_bytes(row.session_id)
        tick(progress, "collecting garbage", i, len(rows))
    _totals(report)
    return report


def _totals(report: GcRunReport) -> None:
    report.deleted_blob_count = sum(s.deleted_blob_count for s in report.sessions)
    report.deleted_bytes = sum(s.deleted_bytes for s in report.sessions)
    report.bytes_before = sum(s.bytes_before for s in report.sessions)
    report.errors = sum(1 for s in report.sessions if s.error)
    if not report.dry_run:
        report.bytes_after = sum(s.bytes_after if s.bytes_after is not None else s.bytes_before for s in report.sessions)
        report.reclaimed_bytes = report.bytes_before - report.bytes_after


class FileVacuum(msgspec.Struct, kw_only=True):
    name: str  # a session id, or the registry file's name
    kind: str  # "session" or "registry"
    path: str | None = None
    removed_node_count: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    checkpointed: bool = True  # False: a reader kept the WAL from being truncated
    error: str | None = None


class VacuumRunReport(msgspec.Struct, kw_only=True):
    files: list[FileVacuum] = msgspec.field(default_factory=list)
    removed_node_count: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    reclaimed_bytes: int = 0
    errors: int = 0


def vacuum(
    dep: Deployment,
    *,
    sessions: list[str] | None = None,
    registries: bool = True,
    progress: Progress | None = None,
) -> VacuumRunReport:
    """Remove tombstoned nodes from every session and shrink every file of the deployment."""
    report = VacuumRunReport()
    storage = dep.storage
    rows = [r for r in session_summaries(dep, sessions) if r.error is None]
    regs = list(deployment_registries(dep)) if registries and sessions is None else []
    total = len(rows) + len(regs)
    done = 0
    for row in rows:
        entry = FileVacuum(name=row.session_id, kind="session", path=row.path,
                           bytes_before=storage.session_bytes(row.session_id))
        report.files.append(entry)
        try:
            with opened(dep, row.session_id) as store:
                entry.removed_node_count = store.vacuum().removed_node_count
                if not storage.shared or row is rows[-1]:
                    _, _, entry.checkpointed = store.shrink()
        except LashStoreError as e:
            entry.error = str(e)
        entry.bytes_after = storage.session_bytes(row.session_id)
        done += 1
        tick(progress, "vacuuming", done, total)
    for name, registry in regs:
        entry = FileVacuum(name=name, kind="registry", path=registry.location)
        report.files.append(entry)
        try:
            entry.bytes_before, entry.bytes_after, entry.checkpointed = registry.shrink()
        except LashStoreError as e:
            entry.error = str(e)
        done += 1
        tick(progress, "vacuuming", done, total)
    report.removed_node_count = sum(f.removed_node_count for f in report.files)
    report.bytes_before = sum(f.bytes_before for f in report.files)
    report.bytes_after = sum(f.bytes_after for f in report.files)
    report.reclaimed_bytes = report.bytes_before - report.bytes_after
    report.errors = sum(1 for f in report.files if f.error)
    return report
