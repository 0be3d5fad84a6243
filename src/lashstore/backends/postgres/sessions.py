"""The session store and its factory on PostgreSQL: every session of a deployment in one schema.

A store holds one session (fixed at open by the factory; a store opened without a session id
binds itself, as on SQLite, to the one session its schema holds or to its first commit). The turn
commit locks the session's head row (`FOR UPDATE`), or, for a session's first commit, takes a
transaction advisory lock on the session id (a row that does not exist yet cannot be locked),
then applies the same checks in the same order as every backend (`rules.commit`): binding, turn
stamp, head compare-and-swap, queue completions, graph plan; a stale revision is a
`HeadRevisionConflict`, never a raw serialization error.
"""

from __future__ import annotations

import datetime
import logging
import threading
import weakref
from typing import Any

from ...codec import check_json, pack, pack_canonical
from ...errors import (
    CorruptRecord,
    HeadRevisionConflict,
    LashStoreError,
    SessionBindingMismatch,
    SessionDeleted,
    SessionNotFound,
    StoreBusy,
    StoreClosed,
    ValidationError,
)
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
    SessionRelation,
    SessionSummary,
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
    new_session_meta,
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
from .attachments import PostgresAttachmentMixin
from .connection import NOW_MS, PostgresDatabase, Tx, open_database, uses_database_clock
from .maintenance import PostgresMaintenanceMixin
from .queue import PostgresQueueMixin
from .schema import SESSION_TABLES

__all__ = ["PostgresSessionStore", "PostgresSessionStoreFactory", "COMPONENT"]

log = logging.getLogger("lashstore")

COMPONENT = "session"

# A re-put refreshes created_at_ms (as on SQLite): bytes that were garbage and are put again are
# young again, so the GC grace period protects them until the commit that references them.
_INSERT_BLOB = (
    "INSERT INTO blobs (hash, kind, compression, raw_size, created_at_ms, content) "
    "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (hash) DO UPDATE SET created_at_ms = excluded.created_at_ms"
)
_HEAD_COLS = HEAD_COLUMNS


class _ReusedNodeId(Exception):
    """Internal: an appended node id hit the primary key; the transaction rolled back."""


def _insert_blobs(t: Tx, blobs: list[PreparedBlob], now: int) -> None:
    t.many(_INSERT_BLOB, [(b.ref, b.kind, b.compression, b.raw_size, now, b.stored) for b in blobs])


def _load_blob(t: Tx, ref: str) -> bytes | None:
    row = t.one("SELECT kind, compression, raw_size, content FROM blobs WHERE hash = %s", (ref,))
    if row is None:
        return None
    return check_stored_blob(ref, row[0], row[1], row[2], row[3])


def _require_refs(t: Tx, refs: list[str], decoded: list[str]) -> None:
    """Passed-through refs exist (and snapshots decode: `common.check_passthrough`).

    FOR KEY SHARE conflicts with the collector's EXCLUSIVE table lock: a blob checked here cannot
    be swept before this transaction commits the reference to it. Only the bytes of the refs
    that must decode are fetched."""
    if not refs:
        return
    rows = t.all(
        "SELECT hash, kind, compression, raw_size, CASE WHEN hash = ANY(%s) THEN content END "
        "FROM blobs WHERE hash = ANY(%s) FOR KEY SHARE",
        (list(decoded), list(refs)),
    )
    found = {r[0]: r for r in rows}

    def load(ref: str) -> bytes | None:
        r = found.get(ref)
        if r is None:
            return None
        if r[4] is None:
            return b""  # exists; its bytes are not needed
        return check_stored_blob(ref, r[1], r[2], r[3], r[4])

    check_passthrough(refs, decoded, load)


def _now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


class PostgresSessionStore(PostgresQueueMixin, PostgresAttachmentMixin, PostgresMaintenanceMixin):
    """A session store on PostgreSQL.

    database: a `PostgresDatabase` shared with other stores, or a URL (the store then opens and
        owns its own pool; `schema` chooses the schema, default "lashstore").
    session_id: the session this store holds; without it the first commit binds the store.
    Thread-safe: every operation checks a connection out of the pool for one transaction.
    """

    def __init__(
        self,
        database: PostgresDatabase | str,
        *,
        session_id: str | None = None,
        options: StoreOptions | None = None,
        summariser: Summariser = summarise,
        schema: str | None = None,
    ) -> None:
        if session_id is not None:
            v.check_id(session_id, "session_id")
        self._opts = options or StoreOptions()
        self._db, self._owns_db = open_database(database, schema)
        try:
            self._db.ensure(COMPONENT)
        except BaseException:
            if self._owns_db:
                self._db.close()
            raise
        self._fixed = session_id
        self._bound_cache = session_id
        self._bind_lock = threading.Lock()
        self._clock = self._opts.clock
        self._tx_clock = None if uses_database_clock(self._opts) else self._clock
        self._profile = self._opts.blob_profile
        self._level = self._opts.compression_level
        self._summarise = summariser
        self._commits = 0
        self._closed = False
        self.last_gc_error: BaseException | None = None
        # Artifacts belong to the session the store was opened for ("" without one).
        self._artifact_owner = session_id or ""
        # Set by the factory, which opens only sessions that have a meta row: once that row is
        # gone, the session was deleted (by any handle, any process) and this handle refuses.
        self._expects_meta = False

    # -- plumbing ------------------------------------------------------------------------------
    def __enter__(self) -> "PostgresSessionStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closed = True
        if self._owns_db:
            self._db.close()

    @property
    def closed(self) -> bool:
        return self._closed or self._db.closed

    @property
    def database(self) -> PostgresDatabase:
        return self._db

    @property
    def schema(self) -> str:
        return self._db.schema

    def durability_tier(self) -> DurabilityTier:
        return DurabilityTier.DURABLE

    @property
    def options(self) -> StoreOptions:
        return self._opts

    def _write(self, fn: Any, where: str) -> Any:
        if self._closed:
            raise StoreClosed(f"postgres session store ({self.schema}) is closed")
        return self._db.write(fn, where, clock=self._tx_clock)

    def _read(self, fn: Any, where: str) -> Any:
        if self._closed:
            raise StoreClosed(f"postgres session store ({self.schema}) is closed")
        return self._db.read(fn, where, clock=self._tx_clock)

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
        ids = [r[0] for r in t.all("SELECT session_id FROM session_head LIMIT 2")]
        if not ids:
            ids = [r[0] for r in t.all("SELECT session_id FROM session_meta LIMIT 2")]
        if len(ids) > 1:
            raise ValidationError(
                f"postgres schema {self.schema!r} holds several sessions; open the store with session_id=... "
                "(or through the factory) to choose one"
            )
        return ids[0] if ids else None

    def _bind_check(self, t: Tx, session_id: str) -> None:
        bound = self._bound(t)
        if bound is not None and bound != session_id:
            raise SessionBindingMismatch(bound, session_id)

    # -- blobs ---------------------------------------------------------------------------------
    def put_blob(self, content: bytes, descriptor: BlobDescriptor | None = None) -> str:
        if not isinstance(content, (bytes, bytearray, memoryview)):
            raise ValidationError(f"blob content must be bytes, got {type(content).__name__}")
        b = prepare_blob(bytes(content), descriptor or BlobDescriptor(), self._profile, self._level)
        self._write(lambda t: _insert_blobs(t, [b], t.now()), "put blob")
        return b.ref

    def put_artifact_blob(self, descriptor: BlobDescriptor, content: bytes) -> str:
        return self.put_blob(content, descriptor)

    def get_blob(self, ref: str) -> bytes | None:
        v.check_ref(ref, "ref")
        return self._read(lambda t: _load_blob(t, ref), "get blob")

    def blob_info(self, ref: str) -> BlobInfo | None:
        v.check_ref(ref, "ref")
        row = self._read(
            lambda t: t.one(
                "SELECT kind, compression, raw_size, octet_length(content) FROM blobs WHERE hash = %s", (ref,)
            ),
            "blob info",
        )
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
        """Count, logical bytes and stored bytes of every blob in the deployment (blobs are shared)."""
        n, raw, stored = self._read(
            lambda t: t.one(
                "SELECT count(*), coalesce(sum(raw_size), 0), coalesce(sum(octet_length(content)), 0) FROM blobs"
            ),
            "blob stats",
        )
        return {"count": int(n), "raw_bytes": int(raw), "stored_bytes": int(stored)}

    # -- checkpoints ---------------------------------------------------------------------------
    def put_checkpoint(self, checkpoint: HydratedSessionCheckpoint) -> StoredSessionCheckpoint:
        v.check_checkpoint(checkpoint)
        p = prepare_checkpoint(checkpoint, self._profile, self._level)

        def tx(t: Tx) -> None:
            _require_refs(t, p.passthrough_refs, p.decoded_refs)
            _insert_blobs(t, p.blobs, t.now())

        self._write(tx, "put checkpoint")
        return StoredSessionCheckpoint(p.checkpoint_ref, p.manifest)

    def get_checkpoint(self, ref: str) -> HydratedSessionCheckpoint | None:
        v.check_ref(ref, "ref")
        return self._read(lambda t: self._get_checkpoint(t, ref), "get checkpoint")

    @staticmethod
    def _get_checkpoint(t: Tx, ref: str) -> HydratedSessionCheckpoint | None:
        data = _load_blob(t, ref)
        if data is None:
            return None
        return hydrate(ref, decode_manifest(ref, data), lambda r: _load_blob(t, r))

    # -- named artifacts -----------------------------------------------------------------------
    def put_artifact(self, name: str, content: bytes, *, namespace: str = "default") -> str:
        v.check_id(name, "name")
        v.check_id(namespace, "namespace")
        if not isinstance(content, (bytes, bytearray, memoryview)):
            raise ValidationError(f"artifact content must be bytes, got {type(content).__name__}")
        b = prepare_blob(bytes(content), BlobDescriptor.artifact(), self._profile, self._level)
        owner = self._artifact_owner

        def tx(t: Tx) -> None:
            now = t.now()
            _insert_blobs(t, [b], now)
            t.execute(
                "INSERT INTO artifact_refs (session_id, namespace, name, blob_ref, created_at_ms) "
                "VALUES (%s, %s, %s, %s, %s) "
                "ON CONFLICT (session_id, namespace, name) DO UPDATE SET blob_ref = excluded.blob_ref",
                (owner, namespace, name, b.ref, now),
            )

        self._write(tx, "put artifact")
        return b.ref

    def get_artifact(self, name: str, *, namespace: str = "default") -> bytes | None:
        v.check_id(name, "name")
        owner = self._artifact_owner

        def tx(t: Tx) -> tuple[str, bytes | None] | None:
            row = t.one(
                "SELECT blob_ref FROM artifact_refs WHERE session_id = %s AND namespace = %s AND name = %s",
                (owner, namespace, name),
            )
            return None if row is None else (row[0], _load_blob(t, row[0]))

        found = self._read(tx, "get artifact")
        if found is None:
            return None
        ref, data = found
        if data is None:
            raise CorruptRecord("artifact", f"{namespace}/{name}", f"its blob {ref} is missing")
        return data

    def delete_artifact(self, name: str, *, namespace: str = "default") -> bool:
        owner = self._artifact_owner
        return self._write(
            lambda t: t.rowcount(
                "DELETE FROM artifact_refs WHERE session_id = %s AND namespace = %s AND name = %s",
                (owner, namespace, name),
            )
            > 0,
            "delete artifact",
        )

    def list_artifacts(self, *, namespace: str | None = None) -> list[tuple[str, str, str]]:
        owner = self._artifact_owner
        if namespace is None:
            q, p = (
                "SELECT namespace, name, blob_ref FROM artifact_refs WHERE session_id = %s ORDER BY namespace, name",
                (owner,),
            )
        else:
            q, p = (
                "SELECT namespace, name, blob_ref FROM artifact_refs WHERE session_id = %s AND namespace = %s "
                "ORDER BY name",
                (owner, namespace),
            )
        return [tuple(r) for r in self._read(lambda t: t.all(q, p), "list artifacts")]  # type: ignore[misc]

    # -- meta ----------------------------------------------------------------------------------
    _META_INSERT = (
        "INSERT INTO session_meta (session_id, session_name, created_at, model, cwd, relation) "
        "VALUES (%s, %s, %s, %s, %s, %s)"
    )

    def save_session_meta(self, meta: SessionMeta) -> None:
        v.check_meta(meta)
        relation = pack(meta.relation)

        def tx(t: Tx) -> None:
            self._bind_check(t, meta.session_id)
            t.execute(
                self._META_INSERT + " ON CONFLICT (session_id) DO UPDATE SET session_name = excluded.session_name, "
                "created_at = excluded.created_at, model = excluded.model, cwd = excluded.cwd, "
                "relation = excluded.relation",
                (meta.session_id, meta.session_name, meta.created_at, meta.model, meta.cwd, relation),
            )

        self._write(tx, "save session meta")
        self._remember(meta.session_id)

    def _create_meta_once(self, meta: SessionMeta) -> None:
        """The factory's create: atomic, so concurrent creators never overwrite each other."""
        v.check_meta(meta)
        relation = pack(meta.relation)
        self._write(
            lambda t: t.execute(
                self._META_INSERT + " ON CONFLICT (session_id) DO NOTHING",
                (meta.session_id, meta.session_name, meta.created_at, meta.model, meta.cwd, relation),
            ),
            "create session meta",
        )

    def _load_meta(self, t: Tx) -> SessionMeta | None:
        sid = self._bound(t)
        if sid is None:
            return None
        row = t.one(
            f"SELECT {META_COLUMNS} FROM session_meta WHERE session_id = %s",
            (sid,),
        )
        if row is None:
            return None
        return meta_from_row(row)

    def load_session_meta(self) -> SessionMeta | None:
        return self._read(self._load_meta, "load session meta")

    def load_picker_info(self) -> SessionPickerInfo | None:
        def tx(t: Tx) -> tuple[SessionMeta, list[GraphNode]] | None:
            meta = self._load_meta(t)
            if meta is None:
                return None
            return meta, self._live_nodes(t, meta.session_id)

        found = self._read(tx, "load picker info")
        if found is None:
            return None
        meta, nodes = found
        first, count = self._summarise(nodes)
        return SessionPickerInfo(
            session_id=meta.session_id,
            cwd=meta.cwd,
            relation=meta.relation,
            first_user_message=first,
            user_message_count=count,
        )

    # -- reads ---------------------------------------------------------------------------------
    @staticmethod
    def _head_row(t: Tx, sid: str) -> tuple | None:
        return t.one(f"SELECT {_HEAD_COLS} FROM session_head WHERE session_id = %s", (sid,))

    _head_meta = staticmethod(head_meta)

    def _check_not_deleted(self, t: Tx, sid: str) -> None:
        """On the path where the session's head is missing: a deleted session, or a new one."""
        if self._expects_meta and t.one("SELECT 1 FROM session_meta WHERE session_id = %s", (sid,)) is None:
            raise SessionDeleted(sid)

    def load_head(self) -> SessionHeadMeta | None:
        def tx(t: Tx) -> tuple | None:
            sid = self._bound(t)
            row = None if sid is None else self._head_row(t, sid)
            if row is None and sid is not None:
                self._check_not_deleted(t, sid)
            return row

        row = self._read(tx, "load head")
        return None if row is None else self._head_meta(row)

    @staticmethod
    def _live_nodes(t: Tx, sid: str) -> list[GraphNode]:
        rows = t.all(
            "SELECT node_id, body FROM graph_nodes WHERE session_id = %s AND NOT tombstoned ORDER BY seq", (sid,)
        )
        return [decode_node(nid, body) for nid, body in rows]

    @staticmethod
    def _path_nodes(t: Tx, sid: str, leaf: str, limit: int) -> list[GraphNode]:
        rows = t.all(
            """
            WITH RECURSIVE path (node_id, parent_node_id, body, depth) AS (
                SELECT node_id, parent_node_id, body, 0 FROM graph_nodes
                 WHERE session_id = %(sid)s AND node_id = %(leaf)s AND NOT tombstoned
                UNION ALL
                SELECT g.node_id, g.parent_node_id, g.body, p.depth + 1
                  FROM path p JOIN graph_nodes g ON g.session_id = %(sid)s AND g.node_id = p.parent_node_id
                 WHERE NOT g.tombstoned AND p.depth < %(limit)s
            )
            SELECT node_id, body FROM path ORDER BY depth DESC
            """,
            {"sid": sid, "leaf": leaf, "limit": limit},
        )
        return [decode_node(nid, body) for nid, body in rows]

    @staticmethod
    def _usage(t: Tx, sid: str) -> list[TokenLedgerEntry]:
        # The merge rule of rules.usage.merge_ledger, done by the database: drop empty entries,
        # add by (source, model), order by first appearance.
        rows = t.all(
            """
            SELECT source, model, sum(input_tokens), sum(output_tokens), sum(cached_input_tokens),
                   sum(reasoning_tokens), min(head_revision * 4294967296 + idx) AS first
              FROM usage_deltas
             WHERE session_id = %s
               AND input_tokens + output_tokens + cached_input_tokens + reasoning_tokens > 0
             GROUP BY source, model
             ORDER BY first
            """,
            (sid,),
        )
        return [
            TokenLedgerEntry(
                s,
                m,
                TokenUsage(input_tokens=int(i), output_tokens=int(o), cached_input_tokens=int(ca), reasoning_tokens=int(r)),
            )
            for s, m, i, o, ca, r, _ in rows
        ]

    def load_usage(self) -> list[TokenLedgerEntry]:
        def tx(t: Tx) -> list[TokenLedgerEntry]:
            sid = self._bound(t)
            return [] if sid is None else self._usage(t, sid)

        return self._read(tx, "load usage")

    def load_session(self, scope: SessionReadScope | None = None) -> PersistedSessionRead | None:
        scope = check_scope(scope)

        def tx(t: Tx) -> PersistedSessionRead | None:
            sid = self._bound(t)
            row = None if sid is None else self._head_row(t, sid)
            if row is None:
                if sid is not None:
                    self._check_not_deleted(t, sid)
                return None
            return assemble_session_read(
                scope,
                self._head_meta(row),
                lambda leaf, limit: self._path_nodes(t, sid, leaf, limit),
                lambda: self._live_nodes(t, sid),
                lambda ref: self._get_checkpoint(t, ref),
                lambda: self._usage(t, sid),
            )

        return self._read(tx, "load session")

    def load_node(self, node_id: str) -> GraphNode | None:
        v.check_id(node_id, "node_id")

        def tx(t: Tx) -> bytes | None:
            sid = self._bound(t)
            if sid is None:
                return None
            row = t.one(
                "SELECT body FROM graph_nodes WHERE session_id = %s AND node_id = %s AND NOT tombstoned",
                (sid, node_id),
            )
            return None if row is None else row[0]

        body = self._read(tx, "load node")
        return None if body is None else decode_node(node_id, body)

    @staticmethod
    def _node_states(t: Tx, sid: str, ids: set[str]) -> dict[str, bool]:
        """node id -> tombstoned, for those of `ids` that exist."""
        if not ids:
            return {}
        return {
            nid: bool(tomb)
            for nid, tomb in t.all(
                "SELECT node_id, tombstoned FROM graph_nodes WHERE session_id = %s AND node_id = ANY(%s)",
                (sid, list(ids)),
            )
        }

    def _explain_reused_node(self, commit: RuntimeCommit) -> None:
        """Raise the graph rules' error for a commit whose insert hit an existing node id."""

        def tx(t: Tx) -> tuple[dict[str, bool], int]:
            sid = commit.session_id
            stored = self._node_states(t, sid, graph_rules.ids_to_look_up(commit.graph))
            head = t.one("SELECT node_count FROM session_head WHERE session_id = %s", (sid,))
            return stored, head[0] if head else 0

        stored, count = self._read(tx, "commit runtime state")
        graph_rules.plan_graph_delta(commit.graph, stored, count)
        raise ValidationError("graph: an appended node id already exists; node ids are never reused")

    # -- the turn commit -----------------------------------------------------------------------
    def _lock_head(self, t: Tx, sid: str) -> tuple | None:
        """Lock the session's head row; the first commit of a session locks the session id."""
        row = t.one(
            f"SELECT head_revision, node_count, leaf_node_id, {NOW_MS} FROM session_head "
            "WHERE session_id = %s FOR UPDATE",
            (sid,),
        )
        if row is None:
            t.lock("session", sid)
            self._check_not_deleted(t, sid)
            row = t.one(
                f"SELECT head_revision, node_count, leaf_node_id, {NOW_MS} FROM session_head "
                "WHERE session_id = %s FOR UPDATE",
                (sid,),
            )
            if row is None:
                t.set_now(t.one(f"SELECT {NOW_MS}")[0])  # type: ignore[index]
                return None
        t.set_now(row[3])
        return row[:3]

    def commit_runtime_state(self, commit: RuntimeCommit) -> RuntimeCommitResult:
        v.check_commit(commit)
        # Encode everything before the transaction.
        prepared = prepare_checkpoint(commit.checkpoint, self._profile, self._level)
        node_bodies = [pack(n) for n in getattr(commit.graph, "nodes", ())]
        head_body = pack(HeadBody(commit.config, commit.agent_frames, commit.current_agent_frame_id))
        sid = commit.session_id

        def tx(t: Tx) -> tuple[RuntimeCommitResult, bool]:
            self._bind_check(t, sid)
            head = self._lock_head(t, sid)
            stamp = commit.turn_commit
            row = None
            if stamp is not None and stamp.session_id == sid:
                row = t.one(
                    "SELECT turn_commit_hash, result FROM turn_commits WHERE session_id = %s AND turn_id = %s",
                    (stamp.session_id, stamp.turn_id),
                )
            if commit_rules.check_turn_stamp(commit, row[0] if row else None):
                return decode_result(f"{sid}/{stamp.turn_id}", row[1]), True  # type: ignore[union-attr,index]
            return self._write_commit(t, commit, head, prepared, node_bodies, head_body), False

        try:
            result, replayed = self._write(tx, "commit runtime state")
        except _ReusedNodeId:
            self._explain_reused_node(commit)
            raise AssertionError("unreachable")  # pragma: no cover
        except StoreBusy:
            # Bug 19: contention on the head surfaces as the typed conflict when the caller named
            # a revision the head has since left.
            expected = commit.expected_head_revision
            if expected is not None:
                actual = self._read(
                    lambda t: (t.one("SELECT head_revision FROM session_head WHERE session_id = %s", (sid,)) or (0,))[0],
                    "commit runtime state: read the head",
                )
                if actual != expected:
                    raise HeadRevisionConflict(expected, actual) from None
            raise
        self._remember(sid)
        if not replayed:
            self._after_commit()
        return result

    def _write_commit(
        self,
        t: Tx,
        commit: RuntimeCommit,
        head: tuple | None,
        prepared: Any,
        node_bodies: list[bytes],
        head_body: bytes,
    ) -> RuntimeCommitResult:
        sid = commit.session_id
        actual, live_count, head_leaf = head if head else (0, 0, None)
        next_rev = commit_rules.check_cas(commit, actual)
        now = t.now()
        self._check_completions(t, commit, now)
        _require_refs(t, prepared.passthrough_refs, prepared.decoded_refs)
        # The head's leaf is live (every write keeps that true), and an appended id that exists is
        # refused by the primary key, so the usual append needs no lookup at all.
        stored: dict[str, bool] = {} if head_leaf is None else {head_leaf: False}
        skipped = graph_rules.unique_new_ids(commit.graph)
        unknown = graph_rules.ids_to_look_up(commit.graph) - stored.keys() - skipped
        if unknown:
            stored.update(self._node_states(t, sid, unknown))
        try:
            plan = graph_rules.plan_graph_delta(commit.graph, stored, live_count)
        except ValidationError:
            if skipped:  # report the error a full lookup gives
                stored.update(self._node_states(t, sid, skipped))
                graph_rules.plan_graph_delta(commit.graph, stored, live_count)
            raise

        # The writes travel in one pipeline with COMMIT (their results are not needed).
        t.defer_many(_INSERT_BLOB, [(b.ref, b.kind, b.compression, b.raw_size, now, b.stored) for b in prepared.blobs])
        if commit.usage_deltas:
            t.defer_many(
                "INSERT INTO usage_deltas (session_id, head_revision, idx, source, model, input_tokens, "
                "output_tokens, cached_input_tokens, reasoning_tokens, created_at_ms) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
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
            t.defer("DELETE FROM graph_nodes WHERE session_id = %s", (sid,))
        if plan.insert:
            # An appended id that exists hits the primary key; the rules then explain why.
            t.unique_errors["graph_nodes"] = _ReusedNodeId
            t.defer_many(
                "INSERT INTO graph_nodes (session_id, node_id, parent_node_id, body) VALUES (%s, %s, %s, %s)",
                [(sid, n.node_id, n.parent_node_id, body) for n, body in zip(plan.insert, node_bodies)],
            )
        if head is None:
            t.defer(
                f"INSERT INTO session_head ({_HEAD_COLS}) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (sid, next_rev, prepared.checkpoint_ref, plan.leaf_node_id, plan.node_count, now, head_body),
            )
        else:
            t.defer(
                "UPDATE session_head SET head_revision = %s, checkpoint_ref = %s, leaf_node_id = %s, "
                "node_count = %s, updated_at_ms = %s, body = %s WHERE session_id = %s",
                (next_rev, prepared.checkpoint_ref, plan.leaf_node_id, plan.node_count, now, head_body, sid),
            )
        result = RuntimeCommitResult(next_rev, prepared.checkpoint_ref, prepared.manifest)
        self._consume_completions(t, commit, now)
        self._stamp_attachments(t, commit, now)
        stamp = commit.turn_commit
        if stamp is not None:
            t.defer(
                "INSERT INTO turn_commits (session_id, turn_id, turn_commit_hash, result, committed_at_ms) "
                "VALUES (%s, %s, %s, %s, %s)",
                (stamp.session_id, stamp.turn_id, stamp.turn_commit_hash, pack(result), now),
            )
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

        def tx(t: Tx) -> int:
            sid = self._bound(t)
            if sid is None:
                return 0
            head = self._lock_head(t, sid)
            hidden = t.rowcount(
                "UPDATE graph_nodes SET tombstoned = true WHERE session_id = %s AND node_id = ANY(%s) AND NOT tombstoned",
                (sid, ids),
            )
            if hidden and head is not None:
                self._after_tombstone(t, sid, head[2], set(ids))
            return hidden

        return self._write(tx, "tombstone nodes")

    def _after_tombstone(self, t: Tx, sid: str, leaf: str | None, just_hidden: set[str]) -> None:
        total, live = t.one(
            "SELECT count(*), count(*) FILTER (WHERE NOT tombstoned) FROM graph_nodes WHERE session_id = %s", (sid,)
        )  # type: ignore[misc]

        def get(nid: str) -> tuple[str | None, bool] | None:
            r = t.one(
                "SELECT parent_node_id, tombstoned FROM graph_nodes WHERE session_id = %s AND node_id = %s",
                (sid, nid),
            )
            return None if r is None else (r[0], bool(r[1]))

        new_leaf = graph_rules.repair_leaf(leaf, get, total, just_hidden)
        # The visible session changed, so the revision moves: a runtime holding the old head
        # must reload before it commits over the edit.
        t.execute(
            "UPDATE session_head SET leaf_node_id = %s, node_count = %s, head_revision = head_revision + 1, "
            "updated_at_ms = %s WHERE session_id = %s",
            (new_leaf, live, t.now(), sid),
        )

    def vacuum(self) -> VacuumReport:
        def tx(t: Tx) -> int:
            sid = self._bound(t)
            if sid is None:
                return 0
            return t.rowcount("DELETE FROM graph_nodes WHERE session_id = %s AND tombstoned", (sid,))

        return VacuumReport(removed_node_count=self._write(tx, "vacuum"))

    # -- garbage collection --------------------------------------------------------------------
    def gc_unreachable(self, *, grace_ms: int = 0, dry_run: bool = False) -> GcReport:
        """Delete every blob of the deployment not reachable from a head checkpoint, a named
        artifact or an attachment-manifest row of any session, except blobs written less than
        `grace_ms` ago (a runtime may have put them for its next commit; the automatic collection
        after commits uses options.gc_grace_ms). `dry_run` reports without deleting.

        Blobs are shared by the deployment, so the roots are too. The blob table is locked in
        EXCLUSIVE mode for the sweep (commits that write or reference blobs wait for it). A head
        or manifest that cannot be decoded raises CorruptRecord and nothing is deleted.
        """
        v.check_nonneg_int(grace_ms, "grace_ms")

        def tx(t: Tx) -> GcReport:
            if not dry_run:
                t.execute("LOCK TABLE blobs IN EXCLUSIVE MODE")
            checkpoint_roots = []
            for row in t.all(f"SELECT {_HEAD_COLS} FROM session_head"):
                head = self._head_meta(row)
                if head.checkpoint_ref is not None:
                    checkpoint_roots.append(head.checkpoint_ref)
            other_roots = [r[0] for r in t.all("SELECT DISTINCT blob_ref FROM artifact_refs")]
            # Attachment bytes are held by every manifest row naming them, committed or not.
            other_roots += [r[0] for r in t.all("SELECT DISTINCT attachment_id FROM attachment_manifest")]

            def load_manifest(ref: str) -> Any:
                data = _load_blob(t, ref)
                return None if data is None else decode_manifest(ref, data)

            retained = mark_reachable(checkpoint_roots, other_roots, load_manifest)
            cutoff = t.now() - grace_ms
            verb = "SELECT octet_length(content) FROM blobs" if dry_run else "DELETE FROM blobs"
            tail = "" if dry_run else " RETURNING octet_length(content)"
            doomed = t.all(
                f"{verb} WHERE NOT (hash = ANY(%s)) AND created_at_ms <= %s{tail}", (list(retained), cutoff)
            )
            present = int(t.one("SELECT count(*) FROM blobs")[0])  # type: ignore[index]
            return GcReport(
                root_count=len(set(checkpoint_roots)) + len(set(other_roots)),
                retained_blob_count=present - (len(doomed) if dry_run else 0),
                deleted_blob_count=len(doomed),
                deleted_bytes=sum(int(r[0]) for r in doomed),
            )

        return (self._read if dry_run else self._write)(tx, "gc")


class PostgresSessionStoreFactory:
    """Every session of a deployment in one PostgreSQL schema.

    database: a `PostgresDatabase` (shared with the deployment's other stores) or a URL.
    own_database: close a given `PostgresDatabase` with the factory (what `lashstore.open` does:
        the deployment closes its other components first, then the factory).
    """

    def __init__(
        self,
        database: PostgresDatabase | str,
        options: StoreOptions | None = None,
        *,
        schema: str | None = None,
        own_database: bool = False,
    ) -> None:
        self.options = options or StoreOptions()
        self._db, self._owns_db = open_database(database, schema)
        # A deployment hands its shared database to the factory, which closes it last.
        self._owns_db = self._owns_db or own_database
        try:
            self._db.ensure(COMPONENT)
        except BaseException:
            if self._owns_db:
                self._db.close()
            raise
        self._open: "weakref.WeakSet[PostgresSessionStore]" = weakref.WeakSet()
        self._lock = threading.Lock()
        self._tx_clock = None if uses_database_clock(self.options) else self.options.clock

    @property
    def database(self) -> PostgresDatabase:
        return self._db

    def durability_tier(self) -> DurabilityTier:
        return DurabilityTier.DURABLE

    def _open_store(self, session_id: str) -> PostgresSessionStore:
        store = PostgresSessionStore(self._db, session_id=session_id, options=self.options)
        store._expects_meta = True
        with self._lock:
            self._open.add(store)
        return store

    def create_store(
        self,
        session_id: str,
        *,
        model: str = "",
        relation: SessionRelation | None = None,
        cwd: str | None = None,
        session_name: str | None = None,
    ) -> PostgresSessionStore:
        v.check_id(session_id, "session_id")
        meta = new_session_meta(session_id, model=model, relation=relation, cwd=cwd, session_name=session_name)
        store = self._open_store(session_id)
        try:
            # Created once (atomically); a reopen never overwrites what is stored.
            store._create_meta_once(meta)
        except BaseException:
            store.close()
            raise
        return store

    def has_session(self, session_id: str) -> bool:
        v.check_id(session_id, "session_id")
        return self._db.read(
            lambda t: t.one(
                "SELECT EXISTS (SELECT 1 FROM session_meta WHERE session_id = %s) "
                "OR EXISTS (SELECT 1 FROM session_head WHERE session_id = %s)",
                (session_id, session_id),
            )[0],  # type: ignore[index]
            "has session",
        )

    def open_store(self, session_id: str) -> PostgresSessionStore:
        if not self.has_session(session_id):
            raise SessionNotFound(session_id)
        return self._open_store(session_id)

    def delete_session(self, session_id: str) -> bool:
        """Delete every session-keyed row of the session in one transaction (blobs it alone
        referenced go with the next gc_unreachable), and close this factory's handles on it."""
        v.check_id(session_id, "session_id")
        with self._lock:
            for store in list(self._open):
                if store._fixed == session_id:
                    store.close()

        def tx(t: Tx) -> int:
            t.lock("session", session_id)
            t.execute("SELECT 1 FROM session_head WHERE session_id = %s FOR UPDATE", (session_id,))
            return sum(t.rowcount(f"DELETE FROM {table} WHERE session_id = %s", (session_id,)) for table in SESSION_TABLES)

        return self._db.write(tx, "delete session", clock=self._tx_clock) > 0

    def list_sessions(self) -> list[SessionSummary]:
        def tx(t: Tx) -> list[tuple]:
            return t.all(
                "SELECT coalesce(m.session_id, h.session_id), m.session_name, m.created_at, m.model, m.cwd, "
                "m.relation, h.head_revision, h.node_count, h.updated_at_ms, (m.session_id IS NOT NULL) "
                "FROM session_meta m FULL OUTER JOIN session_head h ON h.session_id = m.session_id"
            )

        out: list[SessionSummary] = []
        for r in self._db.read(tx, "list sessions"):
            sid = r[0]
            try:
                meta = None
                if r[9]:
                    meta = meta_from_row(r[:6])
                out.append(
                    SessionSummary(
                        session_id=sid,
                        meta=meta,
                        head_revision=r[6],
                        node_count=r[7] if r[7] is not None else 0,
                        updated_at_ms=r[8],
                    )
                )
            except LashStoreError as e:
                # One unreadable session must not hide the others.
                out.append(SessionSummary(session_id=sid, error=str(e)))
        out.sort(key=lambda s: (s.updated_at_ms is None, -(s.updated_at_ms or 0), s.session_id))
        return out

    def close(self) -> None:
        with self._lock:
            stores = list(self._open)
            self._open.clear()
        for s in stores:
            s.close()
        if self._owns_db:
            self._db.close()

    def __enter__(self) -> "PostgresSessionStoreFactory":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
