"""Run schema migrations explicitly, and say which versions each file had before and after.

Opening a store for writing migrates it already; this walks every file of a SQLite deployment
(sessions and registries) so a deployment can be brought forward in one step, e.g. before
read-only tools (`lashstore sessions`, `verify`) are pointed at it.
"""

from __future__ import annotations

import msgspec

from ..deployment import Deployment
from ..model.maintenance import FileMigration
from ._common import Progress

__all__ = ["migrate", "MigrateReport", "FileMigration"]


class MigrateReport(msgspec.Struct, kw_only=True):
    dry_run: bool
    files: list[FileMigration] = msgspec.field(default_factory=list)
    migrated: int = 0  # files moved forward (dry run: that would be)
    errors: int = 0
    note: str | None = None


def migrate(dep: Deployment, *, dry_run: bool = False, progress: Progress | None = None) -> MigrateReport:
    """Bring every database of the deployment (a SQLite directory's files, a PostgreSQL schema's
    components) to the schema version this lashstore writes. A database of a newer version, or
    not a lashstore one, is reported and left alone."""
    report = MigrateReport(dry_run=dry_run)
    report.files = dep.storage.migrate(dry_run=dry_run, progress=progress)
    if not report.files:
        report.note = f"{dep.url} keeps nothing on disk; nothing to migrate"
    report.migrated = sum(1 for f in report.files if f.migrated)
    report.errors = sum(1 for f in report.files if f.error)
    return report
