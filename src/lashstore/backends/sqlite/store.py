"""The session store on SQLite (one file per session by default)."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

from ...codec import check_json, pack, pack_canonical
from ...errors import CorruptRecord, SessionBindingMismatch, SessionDeleted, ValidationError
from ...model.blobs import BlobDescriptor, BlobInfo, BlobKind, Compression
from ...model.session import (
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
    TokenUsage,
    VacuumReport,
)
from ...options import StoreOptions
from ...rules import commit as commit_rules
from ...rules import graph as graph_rules
from ...rules import validate as v
from ...rules.gc import mark_reachable
from ...rules.picker import Summariser, summarise
from ..common import (
    HEAD_COLUMNS,
    check_columns,
    META_COLUMNS,
    meta_from_row,
    head_meta,
    assemble_session_read,
    check_scope,
    HeadBody,
    PreparedBlob,
    check_passthrough,
    check_stored_blob,
    decode_manifest,
    decode_node,
    decode_result,
    decode_typed,
    hydrate,
    prepare_blob,
    prepare_checkpoint,
)
from .attachments import SqliteAttachmentMixin
from .connection import Database
from .maintenance import SqliteMaintenanceMixin
from .queue import SqliteQueueMixin
from .schema import KIND, MIGRATIONS

__all__ = ["SqliteSessionStore"]

log = logging.getLogger("lashstore")

# A re-put refreshes created_at_ms: bytes that were garbage and are put again are young again, so
# the GC grace period protects them until the commit that references them.
_INSERT_BLOB = (
    "INSERT INTO blobs (hash, kind, compression, raw_size, created_at_ms, content) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (hash) DO UPDATE SET created_at_ms = excluded.created_at_ms"
)

class _ReusedNodeId(Exception):
    """Internal: an appended node id hit the UNIQUE constraint; the transaction must roll back."""


_SPLIT = 26
_SPLIT_SUMS = ", ".join(
    f"sum({col} >> {_SPLIT}), sum({col} & {(1 << _SPLIT) - 1})"
    for col in ("input_tokens", "output_tokens", "cached_input_tokens", "reasoning_tokens")
)

_BAD_USAGE = " OR ".join(
    f"typeof({col}) <> 'integer' OR {col} < 0"
    for col in ("input_tokens", "output_tokens", "cached_input_tokens", "reasoning_tokens")
)

_HEAD_COLS = HEAD_COLUMNS
_COMMIT_HEAD_SPEC = (("head_revision", "i"), ("node_count", "i"), ("leaf_node_id", "s?"), ("checkpoint_ref", "s?"))


def _insert_blobs(c: sqlite3.Connection, blobs: list[PreparedBlob], now: int) -> None:
    c.executemany(_INSERT_BLOB, [(b.ref, b.kind, b.compression, b.raw_size, now, b.stored) for b in blobs])


def _load_blob(c: sqlite3.Connection, ref: str) -> bytes | None:
    row = c.execute(
        "SELECT kind, compression, raw_size, content FROM blobs WHERE hash = ?", (ref,)
    ).fetchone()
    if row is None:
        return None
    return check_stored_blob(ref, row[0], row[1], row[2], row[3])


class SqliteSessionStore(SqliteQueueMixin, SqliteAttachmentMixin, SqliteMaintenanceMixin):
    """A session store in one SQLite file.

    `session_id` fixes the session at open (the factory does this); without it the first commit
    binds the store, as in the reference. Thread-safe: one connection, used under a lock.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        session_id: str | None = None,
        options: StoreOptions | None = None,
        summariser: Summariser = summarise,
        readonly: bool = False,
    ) -> None:
        if session_id is not None:
            v.check_id(session_id, "session_id")
        self._opts = options or StoreOptions()
        self.path = str(path)
        self._db = Database(
            self.path,
            kind=KIND,
            migrations=MIGRATIONS,
            synchronous=self._opts.synchronous,
            busy_timeout_ms=self._opts.busy_timeout_ms,
            readonly=(readonly or self._opts.readonly) and self.path != ":memory:",
            on_deleted=None if self.path == ":memory:" else self._deleted_error,
        )
        self._fixed = session_id
        self._bound_cache = session_id
        self._clock = self._opts.clock
        self._profile = self._opts.blob_profile
        self._level = self._opts.compression_level
        self._summarise = summariser
        self._commits = 0
        self.last_gc_error: BaseException | None = None
        # ((session, revision, checkpoint ref), snapshot refs of that checkpoint), from this object's
        # last commit: while the head is exactly that, those blobs exist (GC keeps a head's snapshots).
        self._head_children: tuple[tuple[str, int, str] | None, set[str]] = (None, set())
        self._pending_children = self._head_children

    def _deleted_error(self) -> SessionDeleted:
        return SessionDeleted(self._fixed or self._bound_cache or self.path)

    @classmethod
    def memory(cls, **kw: Any) -> "SqliteSessionStore":
        """A private in-memory SQLite database (durability tier inline)."""
        return cls(":memory:", **kw)

    # -- plumbing ------------------------------------------------------------------------------
    def __enter__(self) -> "SqliteSessionStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    @property
    def closed(self) -> bool:
        return self._db.closed

    def durability_tier(self) -> DurabilityTier:
        return DurabilityTier.INLINE if self.path == ":memory:" else DurabilityTier.DURABLE

    @property
    def options(self) -> StoreOptions:
        return self._opts

    @property
    def session_id(self) -> str | None:
        if self._bound_cache is None:
            with self._db.read("session id") as c:
                self._bound(c)
        return self._bound_cache

    def _bound(self, c: sqlite3.Connection) -> str | None:
        """The session this store holds: fixed, else the head's, else the meta's, else None."""
        if self._bound_cache is not None:
            return self._bound_cache
        ids = [r[0] for r in c.execute("SELECT session_id FROM session_head LIMIT 2")]
        if not ids:
            ids = [r[0] for r in c.execute("SELECT session_id FROM session_meta LIMIT 2")]
        if len(ids) > 1:
            raise ValidationError(
                f"{self.path} holds several sessions; open it with session_id=... to choose one"
            )
        if ids:
            self._bound_cache = ids[0]
        return self._bound_cache

    def _bind_check(self, c: sqlite3.Connection, session_id: str) -> None:
        bound = self._bound(c)
        if bound is not None and bound != session_id:
            raise SessionBindingMismatch(bound, session_id)

    # -- blobs ---------------------------------------------------------------------------------
    def put_blob(self, content: bytes, descriptor: BlobDescriptor | None = None) -> str:
        if not isinstance(content, (bytes, bytearray, memoryview)):
            raise ValidationError(f"blob content must be bytes, got {type(content).__name__}")
        b = prepare_blob(bytes(content), descriptor or BlobDescriptor(), self._profile, self._level)
        with self._db.write("put blob") as c:
            _insert_blobs(c, [b], self._clock.now_ms())
        return b.ref

    def put_artifact_blob(self, descriptor: BlobDescriptor, content: bytes) -> str:
        return self.put_blob(content, descriptor)

    def get_blob(self, ref: str) -> bytes | None:
        v.check_ref(ref, "ref")
        with self._db.read("get blob") as c:
            return _load_blob(c, ref)

    def blob_info(self, ref: str) -> BlobInfo | None:
        v.check_ref(ref, "ref")
        with self._db.read("blob info") as c:
            row = c.execute(
                "SELECT kind, compression, raw_size, length(content) FROM blobs WHERE hash = ?", (ref,)
            ).fetchone()
        if row is None:
            return None
        try:
            return BlobInfo(ref, BlobKind(row[0]), Compression(row[1]), row[2], row[3])
        except ValueError as e:
            raise CorruptRecord("blob", ref, str(e)) from None

    def put_typed_blob(self, value: Any, descriptor: BlobDescriptor | None = None) -> str:
        check_json(value, "value")
        return self.put_blob(pack_canonical(value), descriptor)

    def get_typed_blob(self, ref: str, type: Any = Any) -> Any:
        data = self.get_blob(ref)
        return None if data is None else decode_typed(ref, data, type)

    def blob_stats(self) -> dict[str, int]:
        """Count, logical bytes and stored bytes of every blob in the file."""
        with self._db.read("blob stats") as c:
            n, raw, stored = c.execute(
                "SELECT count(*), coalesce(sum(raw_size), 0), coalesce(sum(length(content)), 0) FROM blobs"
            ).fetchone()
        return {"count": n, "raw_bytes": raw, "stored_bytes": stored}

    # -- checkpoints ---------------------------------------------------------------------------
    def put_checkpoint(self, checkpoint: HydratedSessionCheckpoint) -> StoredSessionCheckpoint:
        v.check_checkpoint(checkpoint)
        p = prepare_checkpoint(checkpoint, self._profile, self._level)
        with self._db.write("put checkpoint") as c:
            self._require_refs(c, p.passthrough_refs, p.decoded_refs)
            _insert_blobs(c, p.blobs, self._clock.now_ms())
        return StoredSessionCheckpoint(p.checkpoint_ref, p.manifest)

    @staticmethod
    def _require_refs(c: sqlite3.Connection, refs: list[str], decoded: list[str]) -> None:
        if refs:
            check_passthrough(refs, decoded, lambda r: _load_blob(c, r))

    def get_checkpoint(self, ref: str) -> HydratedSessionCheckpoint | None:
        v.check_ref(ref, "ref")
        with self._db.read("get checkpoint") as c:
            return self._get_checkpoint(c, ref)

    def _get_checkpoint(self, c: sqlite3.Connection, ref: str) -> HydratedSessionCheckpoint | None:
        data = _load_blob(c, ref)
        if data is None:
            return None
        return hydrate(ref, decode_manifest(ref, data), lambda r: _load_blob(c, r))

    # -- named artifacts -----------------------------------------------------------------------
    def put_artifact(self, name: str, content: bytes, *, namespace: str = "default") -> str:
        v.check_id(name, "name")
        v.check_id(namespace, "namespace")
        if not isinstance(content, (bytes, bytearray, memoryview)):
            raise ValidationError(f"artifact content must be bytes, got {type(content).__name__}")
        b = prepare_blob(bytes(content), BlobDescriptor.artifact(), self._profile, self._level)
        with self._db.write("put artifact") as c:
            now = self._clock.now_ms()
            _insert_blobs(c, [b], now)
            c.execute(
                "INSERT INTO artifact_refs (namespace, name, blob_ref, created_at_ms) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (namespace, name) DO UPDATE SET blob_ref = excluded.blob_ref",
                (namespace, name, b.ref, now),
            )
        return b.ref

    def get_artifact(self, name: str, *, namespace: str = "default") -> bytes | None:
        v.check_id(name, "name")
        with self._db.read("get artifact") as c:
            row = c.execute(
                "SELECT blob_ref FROM artifact_refs WHERE namespace = ? AND name = ?", (namespace, name)
            ).fetchone()
            if row is None:
                return None
            data = _load_blob(c, row[0])
        if data is None:
            raise CorruptRecord("artifact", f"{namespace}/{name}", f"its blob {row[0]} is missing")
        return data

    def delete_artifact(self, name: str, *, namespace: str = "default") -> bool:
        with self._db.write("delete artifact") as c:
            cur = c.execute("DELETE FROM artifact_refs WHERE namespace = ? AND name = ?", (namespace, name))
            return cur.rowcount > 0

    def list_artifacts(self, *, namespace: str | None = None) -> list[tuple[str, str, str]]:
        with self._db.read("list artifacts") as c:
            if namespace is None:
                rows = c.execute("SELECT namespace, name, blob_ref FROM artifact_refs ORDER BY namespace, name")
            else:
                rows = c.execute(
                    "SELECT namespace, name, blob_ref FROM artifact_refs WHERE namespace = ? ORDER BY name",
                    (namespace,),
                )
            return [tuple(r) for r in rows]  # type: ignore[misc]

    # -- meta ----------------------------------------------------------------------------------
    def save_session_meta(self, meta: SessionMeta) -> None:
        v.check_meta(meta)
        relation = pack(meta.relation)
        with self._db.write("save session meta") as c:
            self._bind_check(c, meta.session_id)
            c.execute(
                "INSERT OR REPLACE INTO session_meta (session_id, session_name, created_at, model, cwd, relation) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (meta.session_id, meta.session_name, meta.created_at, meta.model, meta.cwd, relation),
            )
            self._bound_cache = meta.session_id

    def _create_meta_once(self, meta: SessionMeta) -> None:
        """Write the meta unless the session has one: a second create never overwrites."""
        relation = pack(meta.relation)
        with self._db.write("create session meta") as c:
            self._bind_check(c, meta.session_id)
            c.execute(
                "INSERT INTO session_meta (session_id, session_name, created_at, model, cwd, relation) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (session_id) DO NOTHING",
                (meta.session_id, meta.session_name, meta.created_at, meta.model, meta.cwd, relation),
            )
            self._bound_cache = meta.session_id

    def _load_meta(self, c: sqlite3.Connection) -> SessionMeta | None:
        sid = self._bound(c)
        if sid is None:
            return None
        row = c.execute(
            f"SELECT {META_COLUMNS} FROM session_meta WHERE session_id = ?",
            (sid,),
        ).fetchone()
        if row is None:
            return None
        return meta_from_row(row)

    def load_session_meta(self) -> SessionMeta | None:
        with self._db.read("load session meta") as c:
            return self._load_meta(c)

    def load_picker_info(self) -> SessionPickerInfo | None:
        with self._db.read("load picker info") as c:
            meta = self._load_meta(c)
            if meta is None:
                return None
            nodes = self._live_nodes(c, meta.session_id)
        first, count = self._summarise(nodes)
        return SessionPickerInfo(
            session_id=meta.session_id,
            cwd=meta.cwd,
            relation=meta.relation,
            first_user_message=first,
            user_message_count=count,
        )

    # -- reads ---------------------------------------------------------------------------------
    def _head_row(self, c: sqlite3.Connection, sid: str) -> tuple | None:
        return c.execute(f"SELECT {_HEAD_COLS} FROM session_head WHERE session_id = ?", (sid,)).fetchone()

    _head_meta = staticmethod(head_meta)

    def load_head(self) -> SessionHeadMeta | None:
        with self._db.read("load head") as c:
            sid = self._bound(c)
            row = None if sid is None else self._head_row(c, sid)
        return None if row is None else self._head_meta(row)

    @staticmethod
    def _live_nodes(c: sqlite3.Connection, sid: str) -> list[GraphNode]:
        rows = c.execute(
            "SELECT node_id, body FROM graph_nodes WHERE session_id = ? AND tombstoned = 0 ORDER BY seq", (sid,)
        )
        return [decode_node(nid, body) for nid, body in rows]

    @staticmethod
    def _path_nodes(c: sqlite3.Connection, sid: str, leaf: str, limit: int) -> list[GraphNode]:
        rows = c.execute(
            """
            WITH RECURSIVE path (node_id, parent_node_id, body, depth) AS (
                SELECT node_id, parent_node_id, body, 0 FROM graph_nodes
                 WHERE session_id = ?1 AND node_id = ?2 AND tombstoned = 0
                UNION ALL
                SELECT g.node_id, g.parent_node_id, g.body, p.depth + 1
                  FROM path p JOIN graph_nodes g ON g.session_id = ?1 AND g.node_id = p.parent_node_id
                 WHERE g.tombstoned = 0 AND p.depth < ?3
            )
            SELECT node_id, body FROM path ORDER BY depth DESC
            """,
            (sid, leaf, limit),
        ).fetchall()
        return [decode_node(nid, body) for nid, body in rows]

    @staticmethod
    def _usage(c: sqlite3.Connection, sid: str) -> list[TokenLedgerEntry]:
        # The merge rule of rules.usage.merge_ledger, done by SQLite: drop empty entries, add by
        # (source, model), order by first appearance. SQLite's sum() stops at 2**63, so each
        # count (at most 2**53) is summed as two halves that cannot overflow in any file SQLite
        # can hold, and joined in Python, where integers have no bound.
        rows = c.execute(
            f"""
            SELECT source, model, {_SPLIT_SUMS},
                   min(CASE WHEN input_tokens + output_tokens + cached_input_tokens + reasoning_tokens > 0
                            THEN head_revision * 4294967296 + idx END) AS first,
                   sum({_BAD_USAGE})
              FROM usage_deltas
             WHERE session_id = ?
             GROUP BY source, model
             ORDER BY first
            """,
            (sid,),
        )
        out = []
        for r in rows:
            if r[11] or type(r[0]) is not str or type(r[1]) is not str:
                raise CorruptRecord(
                    "usage ledger", sid, f"a row of ({r[0]!r}, {r[1]!r}) holds a token count that is not a "
                    "non-negative integer (or a source or model that is not text); run `lashstore verify`"
                )
            if r[10] is None:
                continue  # only empty rows
            out.append(
                TokenLedgerEntry(
                    r[0],
                    r[1],
                    TokenUsage(
                        input_tokens=(r[2] << _SPLIT) + r[3],
                        output_tokens=(r[4] << _SPLIT) + r[5],
                        cached_input_tokens=(r[6] << _SPLIT) + r[7],
                        reasoning_tokens=(r[8] << _SPLIT) + r[9],
                    ),
                )
            )
        return out

    def load_usage(self) -> list[TokenLedgerEntry]:
        with self._db.read("load usage") as c:
            sid = self._bound(c)
            return [] if sid is None else self._usage(c, sid)

    def load_session(self, scope: SessionReadScope | None = None) -> PersistedSessionRead | None:
        scope = check_scope(scope)
        with self._db.read("load session") as c:
            sid = self._bound(c)
            row = None if sid is None else self._head_row(c, sid)
            if row is None:
                return None
            return assemble_session_read(
                scope,
                self._head_meta(row),
                lambda leaf, limit: self._path_nodes(c, sid, leaf, limit),
                lambda: self._live_nodes(c, sid),
                lambda ref: self._get_checkpoint(c, ref),
                lambda: self._usage(c, sid),
            )

    def load_node(self, node_id: str) -> GraphNode | None:
        v.check_id(node_id, "node_id")
        with self._db.read("load node") as c:
            sid = self._bound(c)
            if sid is None:
                return None
            row = c.execute(
                "SELECT body FROM graph_nodes WHERE session_id = ? AND node_id = ? AND tombstoned = 0",
                (sid, node_id),
            ).fetchone()
        return None if row is None else decode_node(node_id, row[0])

    def _explain_reused_node(self, commit: RuntimeCommit) -> None:
        """Raise the graph rules' error for a commit whose insert hit an existing node id."""
        with self._db.read("commit runtime state") as c:
            sid = commit.session_id
            stored = self._node_states(c, sid, graph_rules.ids_to_look_up(commit.graph))
            head = c.execute("SELECT node_count FROM session_head WHERE session_id = ?", (sid,)).fetchone()
        graph_rules.plan_graph_delta(commit.graph, stored, head[0] if head else 0)
        raise ValidationError("graph: an appended node id already exists; node ids are never reused")

    @staticmethod
    def _node_states(c: sqlite3.Connection, sid: str, ids: set[str]) -> dict[str, bool]:
        """node id -> tombstoned, for those of `ids` that exist."""
        if not ids:
            return {}
        ids_list = list(ids)
        marks = ",".join("?" * len(ids_list))
        return {
            nid: bool(tomb)
            for nid, tomb in c.execute(
                f"SELECT node_id, tombstoned FROM graph_nodes WHERE session_id = ? AND node_id IN ({marks})",
                [sid, *ids_list],
            )
        }

    # -- the turn commit -----------------------------------------------------------------------
    def commit_runtime_state(self, commit: RuntimeCommit) -> RuntimeCommitResult:
        v.check_commit(commit)
        # Encode everything before taking the write lock.
        prepared = prepare_checkpoint(commit.checkpoint, self._profile, self._level)
        graph = commit.graph
        node_bodies = [pack(n) for n in getattr(graph, "nodes", ())]
        head_body = pack(HeadBody(commit.config, commit.agent_frames, commit.current_agent_frame_id))
        sid = commit.session_id
        try:
            with self._db.write("commit runtime state") as c:
                self._bind_check(c, sid)
                stamp = commit.turn_commit
                row = None
                if stamp is not None and stamp.session_id == sid:
                    row = c.execute(
                        "SELECT turn_commit_hash, result FROM turn_commits WHERE session_id = ? AND turn_id = ?",
                        (stamp.session_id, stamp.turn_id),
                    ).fetchone()
                replayed = commit_rules.check_turn_stamp(commit, row[0] if row else None)
                if replayed:
                    result = decode_result(f"{sid}/{stamp.turn_id}", row[1])  # type: ignore[union-attr,index]
                else:
                    result = self._write_commit(c, commit, prepared, node_bodies, head_body)
        except _ReusedNodeId:
            # The transaction rolled back; explain against what is stored.
            self._explain_reused_node(commit)
        if not replayed:
            self._head_children = self._pending_children
        self._after_commit()
        return result

    def _write_commit(
        self,
        c: sqlite3.Connection,
        commit: RuntimeCommit,
        prepared: Any,
        node_bodies: list[bytes],
        head_body: bytes,
    ) -> RuntimeCommitResult:
        sid = commit.session_id
        head = c.execute(
            "SELECT head_revision, node_count, leaf_node_id, checkpoint_ref FROM session_head WHERE session_id = ?",
            (sid,),
        ).fetchone()
        if head is not None:
            check_columns(head, _COMMIT_HEAD_SPEC, "session head", sid)
        actual, live_count, head_leaf, head_ref = head if head else (0, 0, None, None)
        next_rev = commit_rules.check_cas(commit, actual)
        now = self._clock.now_ms()
        self._check_completions(c, commit, now)
        # Snapshot refs passed through from the current head exist (GC keeps a head's snapshots);
        # only refs from elsewhere need a lookup.
        known = self._head_children[1] if self._head_children[0] == (sid, actual, head_ref) else ()
        self._require_refs(c, [r for r in prepared.passthrough_refs if r not in known], prepared.decoded_refs)
        # What the graph rules need to know about stored nodes. The head's leaf is live (an
        # invariant every write keeps), and a reused id among the appended nodes is caught by the
        # UNIQUE constraint below, so the usual append (under the leaf) needs no lookup at all.
        stored: dict[str, bool] = {} if head_leaf is None else {head_leaf: False}
        skipped = graph_rules.unique_new_ids(commit.graph)
        unknown = graph_rules.ids_to_look_up(commit.graph) - stored.keys() - skipped
        if unknown:
            stored.update(self._node_states(c, sid, unknown))
        try:
            plan = graph_rules.plan_graph_delta(commit.graph, stored, live_count)
        except ValidationError:
            if skipped:  # report the error a full lookup gives
                stored.update(self._node_states(c, sid, skipped))
                graph_rules.plan_graph_delta(commit.graph, stored, live_count)
            raise

        _insert_blobs(c, prepared.blobs, now)
        if commit.usage_deltas:
            c.executemany(
                "INSERT INTO usage_deltas (session_id, head_revision, idx, source, model, input_tokens, "
                "output_tokens, cached_input_tokens, reasoning_tokens, created_at_ms) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        sid,
                        next_rev,
                        i,
                        e.source,
                        e.model,
                        e.usage.input_tokens,
                        e.usage.output_tokens,
                        e.usage.cached_input_tokens,
                        e.usage.reasoning_tokens,
                        now,
                    )
                    for i, e in enumerate(commit.usage_deltas)
                ],
            )
        if plan.replace:
            c.execute("DELETE FROM graph_nodes WHERE session_id = ?", (sid,))
        if plan.insert:
            try:
                c.executemany(
                    "INSERT INTO graph_nodes (session_id, node_id, parent_node_id, body) VALUES (?, ?, ?, ?)",
                    [(sid, n.node_id, n.parent_node_id, body) for n, body in zip(plan.insert, node_bodies)],
                )
            except sqlite3.IntegrityError:
                # An appended id already exists. Rows before it in this statement are in now, so
                # the rules are asked after the rollback (commit_runtime_state does that).
                raise _ReusedNodeId() from None
        if head is None:
            c.execute(
                f"INSERT INTO session_head ({_HEAD_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (sid, next_rev, prepared.checkpoint_ref, plan.leaf_node_id, plan.node_count, now, head_body),
            )
        else:
            c.execute(
                "UPDATE session_head SET head_revision = ?, checkpoint_ref = ?, leaf_node_id = ?, node_count = ?, "
                "updated_at_ms = ?, body = ? WHERE session_id = ?",
                (next_rev, prepared.checkpoint_ref, plan.leaf_node_id, plan.node_count, now, head_body, sid),
            )
        result = RuntimeCommitResult(next_rev, prepared.checkpoint_ref, prepared.manifest)
        m = prepared.manifest
        self._pending_children = (
            (sid, next_rev, prepared.checkpoint_ref),
            {m.tool_state_ref, m.plugin_snapshot_ref, m.execution_state_ref} - {None},
        )
        self._consume_completions(c, commit, now)
        self._stamp_attachments(c, commit, now)
        stamp = commit.turn_commit
        if stamp is not None:
            c.execute(
                "INSERT INTO turn_commits (session_id, turn_id, turn_commit_hash, result, committed_at_ms) "
                "VALUES (?, ?, ?, ?, ?)",
                (stamp.session_id, stamp.turn_id, stamp.turn_commit_hash, pack(result), now),
            )
        self._bound_cache = sid
        return result

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
        with self._db.write("tombstone nodes") as c:
            sid = self._bound(c)
            if sid is None:
                return 0
            hidden = 0
            for nid in ids:
                hidden += c.execute(
                    "UPDATE graph_nodes SET tombstoned = 1 WHERE session_id = ? AND node_id = ? AND tombstoned = 0",
                    (sid, nid),
                ).rowcount
            if hidden:
                self._after_tombstone(c, sid, set(ids))
            return hidden

    def _after_tombstone(self, c: sqlite3.Connection, sid: str, just_hidden: set[str]) -> None:
        row = c.execute(
            "SELECT leaf_node_id, head_revision FROM session_head WHERE session_id = ?", (sid,)
        ).fetchone()
        if row is None:
            return
        total, live = c.execute(
            "SELECT count(*), coalesce(sum(tombstoned = 0), 0) FROM graph_nodes WHERE session_id = ?", (sid,)
        ).fetchone()

        def get(nid: str) -> tuple[str | None, bool] | None:
            r = c.execute(
                "SELECT parent_node_id, tombstoned FROM graph_nodes WHERE session_id = ? AND node_id = ?",
                (sid, nid),
            ).fetchone()
            return None if r is None else (r[0], bool(r[1]))

        leaf = graph_rules.repair_leaf(row[0], get, total, just_hidden)
        # The visible session changed, so the revision moves: a runtime holding the old head
        # must reload before it commits over the edit.
        c.execute(
            "UPDATE session_head SET leaf_node_id = ?, node_count = ?, head_revision = head_revision + 1, "
            "updated_at_ms = ? WHERE session_id = ?",
            (leaf, live, self._clock.now_ms(), sid),
        )

    def vacuum(self) -> VacuumReport:
        with self._db.write("vacuum") as c:
            sid = self._bound(c)
            if sid is None:
                return VacuumReport(removed_node_count=0)
            n = c.execute("DELETE FROM graph_nodes WHERE session_id = ? AND tombstoned = 1", (sid,)).rowcount
        return VacuumReport(removed_node_count=n)

    # -- garbage collection --------------------------------------------------------------------
    def gc_unreachable(self, *, grace_ms: int = 0, dry_run: bool = False) -> GcReport:
        """Delete every blob not reachable from a head checkpoint, a named artifact or an attachment
        manifest row, except blobs written less than `grace_ms` ago (a runtime may have put them
        for its next commit; the automatic collection after commits uses options.gc_grace_ms).

        Roots are the heads of every session in the file. A head or manifest that cannot be
        decoded raises CorruptRecord and nothing is deleted. `dry_run` reports without deleting.
        """
        v.check_nonneg_int(grace_ms, "grace_ms")
        with (self._db.read if dry_run else self._db.write)("gc") as c:
            heads = c.execute(f"SELECT {_HEAD_COLS} FROM session_head").fetchall()
            checkpoint_roots = []
            for row in heads:
                head = self._head_meta(row)
                if head.checkpoint_ref is not None:
                    checkpoint_roots.append(head.checkpoint_ref)
            other_roots = [r for (r,) in c.execute("SELECT blob_ref FROM artifact_refs")]
            # Attachment bytes are held by every manifest row naming them, committed or not;
            # dropping an intent (forget) is what releases them.
            other_roots += [r for (r,) in c.execute("SELECT DISTINCT attachment_id FROM attachment_manifest")]

            def load_manifest(ref: str):
                data = _load_blob(c, ref)
                return None if data is None else decode_manifest(ref, data)

            retained = mark_reachable(checkpoint_roots, other_roots, load_manifest)
            cutoff = self._clock.now_ms() - grace_ms
            doomed = [
                (h, size)
                for h, size, created in c.execute("SELECT hash, length(content), created_at_ms FROM blobs")
                if h not in retained and created <= cutoff
            ]
            if not dry_run:
                c.executemany("DELETE FROM blobs WHERE hash = ?", [(h,) for h, _ in doomed])
            present = c.execute("SELECT count(*) FROM blobs").fetchone()[0]
        return GcReport(
            root_count=len(set(checkpoint_roots)) + len(set(other_roots)),
            retained_blob_count=present - (len(doomed) if dry_run else 0),
            deleted_blob_count=len(doomed),
            deleted_bytes=sum(s for _, s in doomed),
        )
