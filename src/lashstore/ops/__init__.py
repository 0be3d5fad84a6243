"""Operating a store: retention, garbage collection and vacuum, verification, export and import,
and explicit schema migration. The `lashstore` command is a thin layer over these.

    import lashstore
    from lashstore import ops

    with lashstore.open("sqlite:///agent-store") as dep:
        report = ops.retain(dep, ops.RetentionPolicy(keep_turns=50), dry_run=True)
        report = ops.gc(dep)                 # unreachable blobs, then shrink the files
        report = ops.vacuum(dep)             # tombstoned nodes, then shrink every file
        report = ops.verify(dep)             # report.ok, report.problems
        ops.export_session_to(dep, "chat-42", "chat-42.jsonl")  # or export_session(dep, id, file)
        with open("chat-42.jsonl", "rb") as f:
            ops.import_session(other_dep, f)
"""

from __future__ import annotations

from ..model.maintenance import GraphPruneResult, Problem, SessionDump
from ..rules.maintenance import DEFAULT_GC_GRACE_MS
from .copy import CopyReport, copy
from .export import (
    FORMAT,
    VERSION,
    ExportHeader,
    ImportRefused,
    TransferSummary,
    export_session,
    export_session_to,
    import_session,
    read_dump,
    write_dump,
)
from .gc import FileVacuum, GcRunReport, SessionGc, VacuumRunReport, gc, vacuum
from .migrate import FileMigration, MigrateReport, migrate
from .retention import DAY, HOUR, MINUTE, SECOND, RetentionPolicy, RetentionReport, SessionRetention, retain
from .verify import CheckedLocation, VerifyReport, verify

__all__ = [
    "retain",
    "RetentionPolicy",
    "RetentionReport",
    "SessionRetention",
    "GraphPruneResult",
    "gc",
    "vacuum",
    "GcRunReport",
    "SessionGc",
    "VacuumRunReport",
    "FileVacuum",
    "DEFAULT_GC_GRACE_MS",
    "verify",
    "VerifyReport",
    "CheckedLocation",
    "Problem",
    "export_session",
    "export_session_to",
    "import_session",
    "read_dump",
    "write_dump",
    "ExportHeader",
    "TransferSummary",
    "ImportRefused",
    "SessionDump",
    "FORMAT",
    "VERSION",
    "copy",
    "CopyReport",
    "migrate",
    "MigrateReport",
    "FileMigration",
    "SECOND",
    "MINUTE",
    "HOUR",
    "DAY",
]
