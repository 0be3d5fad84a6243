"""Retention: what a deployment may forget, by age and by count, applied in one call.

    policy = RetentionPolicy(keep_turns=50, finished_work_older_than_ms=7 * DAY)
    report = lashstore.ops.retain(deployment, policy, dry_run=True)   # what would go
    report = lashstore.ops.retain(deployment, policy)                 # make it so

Every policy is off unless set. Order: idle sessions are deleted first (through
`Deployment.delete_session`, so their handle grants and trigger subscriptions go too); then, in
each remaining session, graph history, finished queued work, turn stamps and usage rows; then the
registries; then (unless `reclaim=False`) unreachable blobs are collected and the changed files
shrunk, and the report gives the bytes on disk before and after.
"""

from __future__ import annotations

import msgspec

from ..deployment import Deployment
from ..errors import LashStoreError, ValidationError
from ..model.maintenance import GraphPruneResult
from ..rules import validate as v
from ..rules.maintenance import DEFAULT_GC_GRACE_MS
from ._common import Progress, idle_since_ms, opened, session_summaries, tick

__all__ = ["RetentionPolicy", "RetentionReport", "SessionRetention", "retain", "SECOND", "MINUTE", "HOUR", "DAY"]

SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR


class RetentionPolicy(msgspec.Struct, kw_only=True):
    """What to forget. Ages are milliseconds, measured with the deployment's clock."""

    #: delete sessions whose head has not moved for this long (no head: since creation)
    session_idle_ms: int | None = None
    #: keep the last K turns of each session's active path (rules/maintenance.py says what a turn is)
    keep_turns: int | None = None
    #: completed and cancelled queued-work batches finished this long ago
    finished_work_older_than_ms: int | None = None
    #: turn stamps (idempotent-retry records) committed this long ago ...
    turn_stamps_older_than_ms: int | None = None
    #: ... and/or beyond the newest N of each session
    keep_turn_stamps: int | None = None
    #: fold each session's usage rows into one per (source, model); `load_usage` is unchanged
    compact_usage: bool = False
    #: finished processes (with their events, wakes, grants, lease) terminal this long ago
    processes_older_than_ms: int | None = None
    #: host-event occurrences (with their delivery reservations) recorded this long ago
    occurrences_older_than_ms: int | None = None
    #: completed and failed effect records last updated this long ago
    effects_older_than_ms: int | None = None
    #: afterwards: collect unreachable blobs and shrink the changed files
    reclaim: bool = True
    #: blobs younger than this are never collected (a runtime may be about to commit them)
    gc_grace_ms: int = DEFAULT_GC_GRACE_MS
    #: only these sessions (default: every session)
    sessions: list[str] | None = None

    def check(self) -> None:
        for name in ("session_idle_ms", "finished_work_older_than_ms", "turn_stamps_older_than_ms",
                     "keep_turn_stamps", "processes_older_than_ms", "occurrences_older_than_ms",
                     "effects_older_than_ms"):
            v.check_nonneg_int(getattr(self, name), name, optional=True)
        v.check_nonneg_int(self.gc_grace_ms, "gc_grace_ms")
        if self.keep_turns is not None and (type(self.keep_turns) is not int or self.keep_turns < 1):
            raise ValidationError(f"keep_turns must be a positive integer, got {self.keep_turns!r}")

    def is_empty(self) -> bool:
        return all(
            getattr(self, n) is None
            for n in ("session_idle_ms", "keep_turns", "finished_work_older_than_ms", "turn_stamps_older_than_ms",
                      "keep_turn_stamps", "processes_older_than_ms", "occurrences_older_than_ms",
                      "effects_older_than_ms")
        ) and not self.compact_usage

    def per_session(self) -> bool:
        return (self.keep_turns is not None or self.finished_work_older_than_ms is not None
                or self.turn_stamps_older_than_ms is not None or self.keep_turn_stamps is not None
                or self.compact_usage)


class SessionRetention(msgspec.Struct, kw_only=True):
    session_id: str
    path: str | None = None
    deleted: bool = False  # the whole session went (idle)
    idle_ms: int | None = None
    graph: GraphPruneResult | None = None
    queue_batches: int = 0
    turn_stamps: int = 0
    usage_rows: int = 0
    blobs: int = 0  # unreachable blobs collected
    blob_bytes: int = 0
    bytes_before: int = 0
    bytes_after: int | None = None
    error: str | None = None


class RetentionReport(msgspec.Struct, kw_only=True):
    dry_run: bool
    policy: RetentionPolicy
    sessions: list[SessionRetention] = msgspec.field(default_factory=list)
    sessions_deleted: list[str] = msgspec.field(default_factory=list)
    graph_nodes: int = 0
    queue_batches: int = 0
    turn_stamps: int = 0
    usage_rows: int = 0
    blobs: int = 0
    blob_bytes: int = 0
    processes: int = 0
    occurrences: int = 0
    deliveries: int = 0
    effects: int = 0
    #: bytes on disk (database files and WALs) of the sessions and registries this run touched
    bytes_before: int = 0
    bytes_after: int | None = None
    reclaimed_bytes: int | None = None
    errors: int = 0


def retain(
    dep: Deployment,
    policy: RetentionPolicy,
    dry_run: bool = False,
    *,
    progress: Progress | None = None,
) -> RetentionReport:
    """Apply `policy` to the deployment (or, with `dry_run`, report what it would remove and
    change nothing). A session that cannot be read is skipped and reported, never deleted."""
    if type(policy) is not RetentionPolicy:
        raise ValidationError(f"policy must be a RetentionPolicy, got {type(policy).__name__}")
    policy.check()
    report = RetentionReport(dry_run=dry_run, policy=policy)
    now = dep.options.clock.now_ms()
    registries = any(x is not None for x in (policy.processes_older_than_ms, policy.occurrences_older_than_ms,
                                              policy.effects_older_than_ms))
    storage = dep.storage
    reg_before = storage.registry_bytes() if registries else 0
    rows = session_summaries(dep, policy.sessions)
    total = len(rows)
    for i, row in enumerate(rows, 1):
        entry = SessionRetention(session_id=row.session_id, path=row.path,
                                 bytes_before=storage.session_bytes(row.session_id))
        if row.error is not None:
            entry.error = row.error
            report.sessions.append(entry)
            tick(progress, "applying retention", i, total)
            continue
        since = idle_since_ms(row)
        entry.idle_ms = None if since is None else max(0, now - since)
        if policy.session_idle_ms is not None and entry.idle_ms is not None and entry.idle_ms >= policy.session_idle_ms:
            entry.deleted = True
            report.sessions_deleted.append(row.session_id)
            if not dry_run:
                try:
                    dep.delete_session(row.session_id)
                    entry.bytes_after = 0
                except LashStoreError as e:
                    entry.error = str(e)
            report.sessions.append(entry)
            tick(progress, "applying retention", i, total)
            continue
        if policy.per_session() or policy.reclaim:
            try:
                _session(dep, row.session_id, policy, dry_run, entry)
            except LashStoreError as e:
                entry.error = str(e)
        if not dry_run and entry.bytes_after is None:
            entry.bytes_after = storage.session_bytes(row.session_id)
        report.sessions.append(entry)
        tick(progress, "applying retention", i, total)

    if policy.reclaim and storage.shared:
        # Blobs are the deployment's: one collection after every session's pruning.
        live = [s for s in report.sessions if not s.deleted and s.error is None]
        if live:
            try:
                with opened(dep, live[0].session_id) as store:
                    gc = store.collect_garbage(grace_ms=policy.gc_grace_ms, dry_run=dry_run)
                    live[0].blobs, live[0].blob_bytes = gc.deleted_blob_count, gc.deleted_bytes
                    if gc.deleted_blob_count and not dry_run:
                        store.shrink()
            except LashStoreError as e:
                live[0].error = str(e)
    _registries(dep, policy, dry_run, report)
    report.graph_nodes = sum(s.graph.removed_node_count for s in report.sessions if s.graph)
    report.queue_batches = sum(s.queue_batches for s in report.sessions)
    report.turn_stamps = sum(s.turn_stamps for s in report.sessions)
    report.usage_rows = sum(s.usage_rows for s in report.sessions)
    report.blobs = sum(s.blobs for s in report.sessions)
    report.blob_bytes = sum(s.blob_bytes for s in report.sessions)
    report.errors = sum(1 for s in report.sessions if s.error)
    report.bytes_before = sum(s.bytes_before for s in report.sessions) + reg_before
    if not dry_run:
        reg_after = storage.registry_bytes() if registries else 0
        report.bytes_after = sum(s.bytes_after if s.bytes_after is not None else s.bytes_before
                                 for s in report.sessions) + reg_after
        report.reclaimed_bytes = report.bytes_before - report.bytes_after
    return report


#: Sessions written by framework adapters whose graphs are not conversations.
FRAMEWORK_SESSION_PREFIXES = ("langgraph:",)

#: Artifact namespaces that hold copies of graph nodes (the OpenAI Agents adapter's history
#: segments): kept, they would keep serving and storing what pruning removed. They go with the
#: pruned nodes; their reader then reads the graph and writes new ones.
GRAPH_COPY_NAMESPACES = ("agents-history",)


def _session(dep: Deployment, sid: str, policy: RetentionPolicy, dry_run: bool, entry: SessionRetention) -> None:
    with opened(dep, sid) as store:
        changed = False
        # A LangGraph thread's graph is its checkpoint history, not a conversation: pruning it by
        # turns would cut checkpoints the saver still reads. Prune those through the saver.
        if policy.keep_turns is not None and not sid.startswith(FRAMEWORK_SESSION_PREFIXES):
            entry.graph = store.prune_graph(policy.keep_turns, dry_run=dry_run)
            changed |= entry.graph.removed_node_count > 0
            if entry.graph.removed_node_count > 0 and not dry_run:
                for ns in GRAPH_COPY_NAMESPACES:
                    for _, name, _ in store.list_artifacts(namespace=ns):
                        store.delete_artifact(name, namespace=ns)
        if policy.finished_work_older_than_ms is not None:
            entry.queue_batches = store.prune_finished_queue(policy.finished_work_older_than_ms, dry_run=dry_run)
            changed |= entry.queue_batches > 0
        if policy.turn_stamps_older_than_ms is not None or policy.keep_turn_stamps is not None:
            entry.turn_stamps = store.prune_turn_stamps(
                older_than_ms=policy.turn_stamps_older_than_ms, keep_last=policy.keep_turn_stamps, dry_run=dry_run)
            changed |= entry.turn_stamps > 0
        if policy.compact_usage:
            entry.usage_rows = store.compact_usage(dry_run=dry_run)
            changed |= entry.usage_rows > 0
        if policy.reclaim and not dep.storage.shared:
            gc = store.collect_garbage(grace_ms=policy.gc_grace_ms, dry_run=dry_run)
            entry.blobs, entry.blob_bytes = gc.deleted_blob_count, gc.deleted_bytes
            changed |= gc.deleted_blob_count > 0
            if changed and not dry_run:
                store.shrink()


def _registries(dep: Deployment, policy: RetentionPolicy, dry_run: bool, report: RetentionReport) -> None:
    storage = dep.storage
    touched = []
    if policy.processes_older_than_ms is not None and storage.has_registry("processes"):
        reg = dep.processes
        if dry_run:
            cutoff = dep.options.clock.now_ms() - policy.processes_older_than_ms
            report.processes = sum(
                1 for p in reg.list_processes() if p.terminal_at_ms is not None and p.terminal_at_ms <= cutoff
            )
        else:
            report.processes = reg.prune_terminal_processes(policy.processes_older_than_ms)
            touched.append(reg)
    if policy.occurrences_older_than_ms is not None and storage.has_registry("host_events"):
        he = dep.host_events
        report.occurrences, report.deliveries = he.prune_occurrences(policy.occurrences_older_than_ms, dry_run=dry_run)
        touched.append(he)
    if policy.effects_older_than_ms is not None and storage.has_registry("effects"):
        eff = dep.effects
        report.effects = eff.prune_effects(policy.effects_older_than_ms, dry_run=dry_run)
        touched.append(eff)
    if policy.reclaim and not dry_run:
        for store in touched:
            store.shrink()
