"""Run schema migrations explicitly, and say which versions each file had before and after.

Opening a store for writing migrates it already; this walks every file of a SQLite deployment
(sessions and registries) so a deployment can be brought forward in one step, e.g. before
read-only tools (`lashstore sessions`, `verify`) are pointed at it.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from ..deployment import Deployment
from ..errors import LashStoreError
from ._common import Progress, registry_files, store_root, tick

__all__ = ["migrate", "MigrateReport", "FileMigration"]


class FileMigration(msgspec.Struct, kw_only=True):
    path: str
    kind: str | None
    before: int | None
    after: int | None
    latest: int | None
    error: str | None = None

    @property
    def migrated(self) -> bool:
        return self.before is not None and self.after is not None and self.after != self.before


class MigrateReport(msgspec.Struct, kw_only=True):
    dry_run: bool
    files: list[FileMigration] = msgspec.field(default_factory=list)
    migrated: int = 0  # files moved forward (dry run: that would be)
    errors: int = 0
    note: str | None = None


def _schemas() -> dict[str, tuple[int, list]]:
    from ..backends.sqlite import effects_schema, host_events_schema, process_schema, schema

    return {s.KIND: (s.LATEST, s.MIGRATIONS) for s in (schema, process_schema, host_events_schema, effects_schema)}


def migrate(dep: Deployment, *, dry_run: bool = False, progress: Progress | None = None) -> MigrateReport:
    """Bring every file of the deployment to the schema version this lashstore writes.

    A file of a newer version, or not a lashstore file, is reported and left alone."""
    report = MigrateReport(dry_run=dry_run)
    root = store_root(dep)
    if root is None:
        report.note = f"{dep.url} has no SQLite files; nothing to migrate (other backends migrate as they connect)"
        return report
    from ..backends.sqlite import maintenance as m
    from ..backends.sqlite.connection import Database

    schemas = _schemas()
    files: list[Path] = list(dep.sessions.session_files()) + registry_files(dep)  # type: ignore[attr-defined]
    for i, path in enumerate(files, 1):
        entry = FileMigration(path=str(path), kind=None, before=None, after=None, latest=None)
        report.files.append(entry)
        try:
            entry.before, entry.kind = m.schema_version(path)
            if entry.kind not in schemas:
                raise LashStoreError(f"not a lashstore file (kind {entry.kind!r}, version {entry.before})")
            latest, migrations = schemas[entry.kind]
            entry.latest = latest
            if dry_run or entry.before == latest:
                entry.after = latest if dry_run and entry.before < latest else entry.before
            else:
                Database(path, kind=entry.kind, migrations=migrations).close()
                entry.after, _ = m.schema_version(path)
        except LashStoreError as e:
            entry.error = str(e)
        tick(progress, "migrating", i, len(files))
    report.migrated = sum(1 for f in report.files if f.migrated)
    report.errors = sum(1 for f in report.files if f.error)
    return report
