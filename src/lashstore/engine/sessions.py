"""The session store, written once: every public method of `contracts.SessionStore` over a `Db`.

The order of a turn commit is the reference's, on every backend: validation and encoding before
the transaction; then, under the session's write lock, the binding check, the turn-stamp replay,
the head compare-and-swap, queue completions, pass-through refs, the graph plan, and one write of
everything. A backend gives the transaction (`engine.tx`); statements are `backends.sql.sessions`;
decisions are `rules/`.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from ..backends.common import (
    HeadBody,
    assemble_session_read,
    check_scope,
    decode_manifest,
    decode_result,
    decode_typed,
    head_meta,
    hydrate,
    prepare_blob,
    prepare_checkpoint,
)
from ..backends.sql import sessions as sql
from ..codec import check_json, pack, pack_canonical
from ..errors import (
    CorruptRecord,
    HeadRevisionConflict,
    SessionBindingMismatch,
    SessionDeleted,
    StoreBusy,
    ValidationError,
)
from ..model.blobs import BlobDescriptor, BlobInfo
from ..model.session import (
    DurabilityTier,
    GcReport,
    GraphNode,
    HydratedSessionCheckpoint,
    PersistedSessionRead,
    RuntimeCommit,
    RuntimeCommitResult,
    SessionHeadMeta,
    SessionMeta,
    SessionPickerInfo,
    SessionReadScope,
    StoredSessionCheckpoint,
    TokenLedgerEntry,
    VacuumReport,
)
from ..options import StoreOptions
from ..rules import commit as commit_rules
from ..rules import graph as graph_rules
from ..rules import validate as v
from ..rules.gc import mark_reachable
from ..rules.picker import Summariser, summarise
from .attachments import AttachmentMethods
from .maintenance import MaintenanceMethods
from .queue import QueueMethods
from .base import DbStore
from .tx import Db, Tx, UniqueViolation

__all__ = ["SessionEngine"]

log = logging.getLogger("lashstore")


class _ReusedNodeId(UniqueViolation):
    """An appended node id hit the unique key of graph_nodes; the transaction rolled back."""


class SessionEngine(DbStore, QueueMethods, AttachmentMethods, MaintenanceMethods):
    """One session's store over a database (`engine.tx.Db`).

    session_id: the session this store holds (the factory fixes it); without it the first commit
        binds the store, as in the reference.
    expects_meta: the session was opened through its factory, so it has a meta row; once that row
        is gone the session was deleted (by any handle, any process) and this store refuses.
    tier: the durability the backend gives.
    Thread-safe: every operation is one transaction of the database object.
    """

    def __init__(
        self,
        db: Db,
        *,
        session_id: str | None = None,
        options: StoreOptions | None = None,
        summariser: Summariser = summarise,
        tier: DurabilityTier = DurabilityTier.DURABLE,
        expects_meta: bool = False,
        owns_db: bool = True,
    ) -> None:
        if session_id is not None:
            v.check_id(session_id, "session_id")
        super().__init__(db, options=options, tier=tier, owns_db=owns_db)
        self._fixed = session_id
        self._bound_cache = session_id
        self._bind_lock = threading.Lock()
        self._profile = self._opts.blob_profile
        self._level = self._opts.compression_level
        self._summarise = summariser
        self._expects_meta = expects_meta
        self._commits = 0
        self.last_gc_error: BaseException | None = None
        # ((session, revision, checkpoint ref), snapshot refs of that checkpoint) from this object's
        # last commit: while the head is exactly that, those blobs exist (a head's snapshots are
        # GC roots), so passing them through needs no lookup.
        self._head_children: tuple[tuple[str, int, str | None] | None, frozenset[str]] = (None, frozenset())

    _what = "session store"

    @property
    def session_id(self) -> str | None:
        if self._bound_cache is None:
            self._remember(self._read(self._bound, "session id"))
        return self._bound_cache

    def _remember(self, sid: str | None) -> None:
        if sid is not None and self._bound_cache is None:
            with self._bind_lock:
                if self._bound_cache is None:
                    self._bound_cache = sid

    def _bound(self, t: Tx) -> str | None:
        """The session this store holds: fixed, else the head's, else the meta's, else None."""
        if self._bound_cache is not None:
            return self._bound_cache
        ids = sql.stored_session_ids(t, 2)
        if len(ids) > 1:
            raise ValidationError(
                "this database holds several sessions; open the store with session_id=... (or through the "
                "factory) to choose one"
            )
        return ids[0] if ids else None

    def _bind_check(self, t: Tx, session_id: str) -> None:
        bound = self._bound(t)
        if bound is not None and bound != session_id:
            raise SessionBindingMismatch(bound, session_id)

    def _owner(self, t: Tx) -> str:
        """Whose named artifacts this store sees: its session's ("" while it holds none yet)."""
        return self._bound(t) or ""

    def _check_not_deleted(self, t: Tx, sid: str) -> None:
        """Where the session's head is missing: a deleted session, or one without commits yet."""
        if self._expects_meta and not sql.has_meta(t, sid):
            raise SessionDeleted(sid)

    # -- blobs ---------------------------------------------------------------------------------
    def put_blob(self, content: bytes, descriptor: BlobDescriptor | None = None) -> str:
        if not isinstance(content, (bytes, bytearray, memoryview)):
            raise ValidationError(f"blob content must be bytes, got {type(content).__name__}")
        b = prepare_blob(bytes(content), descriptor or BlobDescriptor(), self._profile, self._level)
        self._write(lambda t: sql.insert_blobs(t, [b], t.now()), "put blob")
        return b.ref

    def put_artifact_blob(self, descriptor: BlobDescriptor, content: bytes) -> str:
        return self.put_blob(content, descriptor)

    def get_blob(self, ref: str) -> bytes | None:
        v.check_ref(ref, "ref")
        return self._read(lambda t: sql.load_blob(t, ref), "get blob")

    def blob_info(self, ref: str) -> BlobInfo | None:
        v.check_ref(ref, "ref")
        return self._read(lambda t: sql.blob_info(t, ref), "blob info")

    def put_typed_blob(self, value: Any, descriptor: BlobDescriptor | None = None) -> str:
        check_json(value, "value")
        return self.put_blob(pack_canonical(value), descriptor)

    def get_typed_blob(self, ref: str, type: Any = Any) -> Any:
        data = self.get_blob(ref)
        return None if data is None else decode_typed(ref, data, type)

    def blob_stats(self) -> dict[str, int]:
        """Count, logical bytes and stored bytes of every blob of the database (a SQLite session
        file holds its session's; PostgreSQL and memory share blobs across the deployment)."""
        return self._read(sql.blob_stats, "blob stats")

    # -- checkpoints ---------------------------------------------------------------------------
    def put_checkpoint(self, checkpoint: HydratedSessionCheckpoint) -> StoredSessionCheckpoint:
        v.check_checkpoint(checkpoint)
        p = prepare_checkpoint(checkpoint, self._profile, self._level)

        def tx(t: Tx) -> None:
            sql.require_refs(t, p.passthrough_refs, p.decoded_refs)
            sql.insert_blobs(t, p.blobs, t.now())

        self._write(tx, "put checkpoint")
        return StoredSessionCheckpoint(p.checkpoint_ref, p.manifest)

    def get_checkpoint(self, ref: str) -> HydratedSessionCheckpoint | None:
        v.check_ref(ref, "ref")
        return self._read(lambda t: self._get_checkpoint(t, ref), "get checkpoint")

    @staticmethod
    def _get_checkpoint(t: Tx, ref: str) -> HydratedSessionCheckpoint | None:
        data = sql.load_blob(t, ref)
        if data is None:
            return None
        return hydrate(ref, decode_manifest(ref, data), lambda r: sql.load_blob(t, r))

    # -- named artifacts -----------------------------------------------------------------------
    def put_artifact(self, name: str, content: bytes, *, namespace: str = "default") -> str:
        v.check_id(name, "name")
        v.check_id(namespace, "namespace")
        if not isinstance(content, (bytes, bytearray, memoryview)):
            raise ValidationError(f"artifact content must be bytes, got {type(content).__name__}")
        b = prepare_blob(bytes(content), BlobDescriptor.artifact(), self._profile, self._level)

        def tx(t: Tx) -> None:
            now = t.now()
            sql.insert_blobs(t, [b], now)
            sql.put_artifact(t, self._owner(t), namespace, name, b.ref, now)

        self._write(tx, "put artifact")
        return b.ref

    def get_artifact(self, name: str, *, namespace: str = "default") -> bytes | None:
        v.check_id(name, "name")
        v.check_id(namespace, "namespace")
        def tx(t: Tx) -> tuple[str, bytes | None] | None:
            ref = sql.artifact_ref(t, self._owner(t), namespace, name)
            return None if ref is None else (ref, sql.load_blob(t, ref))

        found = self._read(tx, "get artifact")
        if found is None:
            return None
        ref, data = found
        if data is None:
            raise CorruptRecord("artifact", f"{namespace}/{name}", f"its blob {ref} is missing")
        return data

    def delete_artifact(self, name: str, *, namespace: str = "default") -> bool:
        v.check_id(name, "name")
        v.check_id(namespace, "namespace")
        return self._write(lambda t: sql.delete_artifact(t, self._owner(t), namespace, name), "delete artifact")

    def list_artifacts(self, *, namespace: str | None = None) -> list[tuple[str, str, str]]:
        v.check_optional_id(namespace, "namespace")
        return self._read(lambda t: sql.list_artifacts(t, self._owner(t), namespace), "list artifacts")

    # -- meta ----------------------------------------------------------------------------------
    def save_session_meta(self, meta: SessionMeta) -> None:
        v.check_meta(meta)

        def tx(t: Tx) -> None:
            self._bind_check(t, meta.session_id)
            sql.save_meta(t, meta, overwrite=True)

        self._write(tx, "save session meta")
        self._remember(meta.session_id)

    def _create_meta_once(self, meta: SessionMeta) -> None:
        """The factory's create: a session that has a meta keeps it (concurrent creators never
        overwrite each other)."""

        def tx(t: Tx) -> None:
            self._bind_check(t, meta.session_id)
            sql.save_meta(t, meta, overwrite=False)

        self._write(tx, "create session meta")
        self._remember(meta.session_id)

    def _load_meta(self, t: Tx) -> SessionMeta | None:
        sid = self._bound(t)
        return None if sid is None else sql.load_meta(t, sid)

    def load_session_meta(self) -> SessionMeta | None:
        return self._read(self._load_meta, "load session meta")

    def load_picker_info(self) -> SessionPickerInfo | None:
        def tx(t: Tx) -> tuple[SessionMeta, list[GraphNode]] | None:
            meta = self._load_meta(t)
            return None if meta is None else (meta, sql.live_nodes(t, meta.session_id))

        found = self._read(tx, "load picker info")
        if found is None:
            return None
        meta, nodes = found
        first, count = self._summarise(nodes)
        return SessionPickerInfo(
            session_id=meta.session_id, cwd=meta.cwd, relation=meta.relation, first_user_message=first,
            user_message_count=count,
        )

    # -- reads ---------------------------------------------------------------------------------
    def _head(self, t: Tx) -> tuple[str | None, tuple | None]:
        sid = self._bound(t)
        row = None if sid is None else sql.head_row(t, sid)
        if row is None and sid is not None:
            self._check_not_deleted(t, sid)
        return sid, row

    def load_head(self) -> SessionHeadMeta | None:
        row = self._read(lambda t: self._head(t)[1], "load head")
        return None if row is None else head_meta(row)

    def load_usage(self) -> list[TokenLedgerEntry]:
        def tx(t: Tx) -> list[TokenLedgerEntry]:
            sid = self._bound(t)
            return [] if sid is None else sql.usage(t, sid)

        return self._read(tx, "load usage")

    def load_session(self, scope: SessionReadScope | None = None) -> PersistedSessionRead | None:
        scope = check_scope(scope)

        def tx(t: Tx) -> PersistedSessionRead | None:
            sid, row = self._head(t)
            if row is None:
                return None
            return assemble_session_read(
                scope,
                head_meta(row),
                lambda leaf, limit: sql.path_nodes(t, sid, leaf, limit),
                lambda: sql.live_nodes(t, sid),
                lambda ref: self._get_checkpoint(t, ref),
                lambda: sql.usage(t, sid),
            )

        return self._read(tx, "load session")

    def load_node(self, node_id: str) -> GraphNode | None:
        v.check_id(node_id, "node_id")

        def tx(t: Tx) -> GraphNode | None:
            sid = self._bound(t)
            return None if sid is None else sql.live_node(t, sid, node_id)

        return self._read(tx, "load node")

    # -- the turn commit -----------------------------------------------------------------------
    def _lock_head(self, t: Tx, sid: str) -> tuple | None:
        """Lock the session's head; a session's first commit locks the session id instead (a row
        that does not exist yet cannot be locked)."""
        head = sql.lock_head(t, sid)
        if head is None:
            t.lock("session", sid)
            self._check_not_deleted(t, sid)
            head = sql.lock_head(t, sid)
        return head

    def commit_runtime_state(self, commit: RuntimeCommit) -> RuntimeCommitResult:
        v.check_commit(commit)
        # Encode everything before the transaction.
        prepared = prepare_checkpoint(commit.checkpoint, self._profile, self._level)
        node_bodies = [pack(n) for n in getattr(commit.graph, "nodes", ())]
        head_body = pack(HeadBody(commit.config, commit.agent_frames, commit.current_agent_frame_id))
        sid = commit.session_id
        stamp = commit.turn_commit

        def tx(t: Tx) -> tuple[RuntimeCommitResult, bool, Any]:
            self._bind_check(t, sid)
            head = self._lock_head(t, sid)
            row = sql.turn_stamp(t, sid, stamp.turn_id) if stamp is not None and stamp.session_id == sid else None
            if commit_rules.check_turn_stamp(commit, row[0] if row else None):
                return decode_result(f"{sid}/{stamp.turn_id}", row[1]), True, None  # type: ignore[union-attr,index]
            return self._write_commit(t, commit, head, prepared, node_bodies, head_body)

        try:
            result, replayed, children = self._write(tx, "commit runtime state")
        except _ReusedNodeId:
            self._explain_reused_node(commit)
        except StoreBusy:
            # Contention on the head surfaces as the typed conflict when the caller named a
            # revision the head has since left (upstream bug 19).
            expected = commit.expected_head_revision
            if expected is not None:
                actual = self._read(lambda t: sql.head_revision(t, sid), "commit runtime state: read the head")
                if actual != expected:
                    raise HeadRevisionConflict(expected, actual) from None
            raise
        self._remember(sid)
        if not replayed:
            self._head_children = children
            self._after_commit()
        return result

    def _write_commit(
        self, t: Tx, commit: RuntimeCommit, head: tuple | None, prepared: Any, node_bodies: list[bytes],
        head_body: bytes,
    ) -> tuple[RuntimeCommitResult, bool, Any]:
        sid = commit.session_id
        actual, live_count, head_leaf, head_ref = head if head else (0, 0, None, None)
        next_rev = commit_rules.check_cas(commit, actual)
        now = t.now()
        self._check_completions(t, commit, now)
        known = self._head_children[1] if self._head_children[0] == (sid, actual, head_ref) else frozenset()
        sql.require_refs(t, [r for r in prepared.passthrough_refs if r not in known], prepared.decoded_refs)
        # What the graph rules need to know about stored nodes: the head's leaf is live (every
        # write keeps that true), and an appended id that exists hits the unique key below, so the
        # usual append (under the leaf) needs no lookup at all.
        stored: dict[str, bool] = {} if head_leaf is None else {head_leaf: False}
        skipped = graph_rules.unique_new_ids(commit.graph)
        unknown = graph_rules.ids_to_look_up(commit.graph) - stored.keys() - skipped
        if unknown:
            stored.update(sql.node_states(t, sid, unknown))
        try:
            plan = graph_rules.plan_graph_delta(commit.graph, stored, live_count)
        except ValidationError:
            if skipped:  # report the error a full lookup gives
                stored.update(sql.node_states(t, sid, skipped))
                graph_rules.plan_graph_delta(commit.graph, stored, live_count)
            raise
        # Writes whose results nobody reads: on PostgreSQL they travel with the COMMIT.
        sql.insert_blobs(t, prepared.blobs, now, defer=True)
        if commit.usage_deltas:
            sql.insert_usage(t, sid, next_rev, commit.usage_deltas, now)
        if plan.replace:
            sql.delete_nodes(t, sid)
        if plan.insert:
            t.unique_errors["graph_nodes"] = _ReusedNodeId
            sql.insert_nodes(t, sid, plan.insert, node_bodies)
        write_head = sql.insert_head if head is None else sql.update_head
        write_head(t, sid, next_rev, prepared.checkpoint_ref, plan.leaf_node_id, plan.node_count, now, head_body)
        result = RuntimeCommitResult(next_rev, prepared.checkpoint_ref, prepared.manifest)
        self._consume_completions(t, commit, now)
        self._stamp_attachments(t, commit, now)
        stamp = commit.turn_commit
        if stamp is not None:
            sql.insert_turn_stamp(t, stamp.session_id, stamp.turn_id, stamp.turn_commit_hash, pack(result), now)
        m = prepared.manifest
        children = ((sid, next_rev, prepared.checkpoint_ref),
                    frozenset({m.tool_state_ref, m.plugin_snapshot_ref, m.execution_state_ref} - {None}))
        return result, False, children

    def _explain_reused_node(self, commit: RuntimeCommit) -> None:
        """Raise the graph rules' error for a commit whose insert hit an existing node id."""
        sid = commit.session_id

        def tx(t: Tx) -> tuple[dict[str, bool], int]:
            stored = sql.node_states(t, sid, graph_rules.ids_to_look_up(commit.graph))
            head = sql.head_row(t, sid)
            return stored, head_meta(head).graph_node_count if head else 0

        stored, count = self._read(tx, "commit runtime state")
        graph_rules.plan_graph_delta(commit.graph, stored, count)
        raise ValidationError("graph: an appended node id already exists; node ids are never reused")

    def _after_commit(self) -> None:
        every = self._opts.auto_gc_every_commits
        if not every:
            return
        self._commits += 1
        if self._commits % every == 0:
            # The commit is durable already; a failed collection must not make it look failed.
            try:
                self.gc_unreachable(grace_ms=self._opts.gc_grace_ms)
                self.last_gc_error = None
            except Exception as e:  # noqa: BLE001 - kept for the caller, and logged loudly
                self.last_gc_error = e
                log.error("automatic gc_unreachable after commit failed: %s", e)

    # -- graph maintenance ---------------------------------------------------------------------
    def tombstone_nodes(self, node_ids: list[str]) -> int:
        ids = graph_rules.tombstone_ids(node_ids)
        if not ids:
            return 0

        def tx(t: Tx) -> int:
            sid = self._bound(t)
            if sid is None:
                return 0
            head = self._lock_head(t, sid)
            hidden = sql.tombstone(t, sid, ids)
            if hidden and head is not None:
                total, live = sql.node_counts(t, sid)
                leaf = graph_rules.repair_leaf(head[2], lambda nid: sql.node_parent(t, sid, nid), total, set(ids))
                # The visible session changed, so the revision moves: a runtime holding the old
                # head must reload before it commits over the edit.
                sql.move_head(t, sid, leaf, live, t.now())
            return hidden

        return self._write(tx, "tombstone nodes")

    def vacuum(self) -> VacuumReport:
        def tx(t: Tx) -> int:
            sid = self._bound(t)
            return 0 if sid is None else sql.vacuum(t, sid)

        return VacuumReport(removed_node_count=self._write(tx, "vacuum"))

    # -- garbage collection --------------------------------------------------------------------
    def gc_unreachable(self, *, grace_ms: int = 0, dry_run: bool = False) -> GcReport:
        """Delete every blob of the database not reachable from a head checkpoint, a named
        artifact or an attachment-manifest row of any session in it, except blobs written less
        than `grace_ms` ago (a runtime may have put them for its next commit; the automatic
        collection after commits uses options.gc_grace_ms). `dry_run` reports without deleting.

        Writers of blobs wait for the sweep (SQLite: the write lock; PostgreSQL: an EXCLUSIVE
        lock on the blob table). A head or manifest that cannot be decoded raises CorruptRecord
        and nothing is deleted.
        """
        v.check_nonneg_int(grace_ms, "grace_ms")

        def tx(t: Tx) -> GcReport:
            if not dry_run:
                sql.lock_blobs(t)
            checkpoints = [r for r in (head_meta(row).checkpoint_ref for row in sql.all_head_rows(t)) if r]
            others = sql.other_roots(t)

            def load_manifest(ref: str) -> Any:
                data = sql.load_blob(t, ref)
                return None if data is None else decode_manifest(ref, data)

            retained = mark_reachable(checkpoints, others, load_manifest)
            cutoff = t.now() - grace_ms
            sizes = sql.blob_sizes(t)
            doomed = [(h, size) for h, size, created in sizes if h not in retained and created <= cutoff]
            if not dry_run:
                sql.delete_blobs(t, [h for h, _ in doomed])
            return GcReport(
                root_count=len(set(checkpoints)) + len(set(others)),
                retained_blob_count=len(sizes) - len(doomed),
                deleted_blob_count=len(doomed),
                deleted_bytes=sum(int(s) for _, s in doomed),
            )

        return (self._read if dry_run else self._write)(tx, "gc")
