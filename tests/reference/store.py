"""The state machines' reference model of a session store, in plain dicts: lashstore 0.1.0's
hand-written memory backend, kept in tests/ as the oracle (not a product backend).

It asks `lashstore.rules` for every decision, as the engine does, but stores and reads nothing
through SQL, so a statement of the engine that loses or misreads a row shows as a difference.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
from dataclasses import dataclass, field
from collections.abc import Iterator
from typing import Any

from lashstore.codec import check_json, pack, pack_canonical
from lashstore.errors import CorruptRecord, SessionBindingMismatch, SessionDeleted, StoreClosed, ValidationError
from lashstore.model.blobs import BlobDescriptor, BlobInfo, BlobKind, Compression
from lashstore.model.session import (
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
from lashstore.options import StoreOptions
from lashstore.rules import commit as commit_rules
from lashstore.rules import graph as graph_rules
from lashstore.rules import validate as v
from lashstore.rules.gc import mark_reachable
from lashstore.rules.picker import Summariser, summarise
from lashstore.rules.usage import merge_ledger
from lashstore.backends.common import (
    assemble_session_read,
    check_scope,
    HeadBody,
    PreparedBlob,
    check_passthrough,
    check_stored_blob,
    decode_head_body,
    decode_manifest,
    decode_node,
    decode_relation,
    decode_result,
    decode_typed,
    hydrate,
    prepare_blob,
    prepare_checkpoint,
)

from reference.attachments import ManifestRow, MemoryAttachmentMixin
from reference.queue import BatchRow, MemoryQueueMixin

__all__ = ["ReferenceStore", "MemoryFile"]

log = logging.getLogger("lashstore")


@dataclass
class _Head:
    revision: int
    checkpoint_ref: str | None
    leaf: str | None
    node_count: int
    updated_at_ms: int
    body: bytes


@dataclass
class _Node:
    seq: int
    parent: str | None
    tombstoned: bool
    body: bytes


@dataclass
class MemoryFile:
    """What one SQLite file holds, as dicts. Several stores may share one (as with a file)."""

    lock: threading.RLock = field(default_factory=threading.RLock)
    blobs: dict[str, tuple[PreparedBlob, int]] = field(default_factory=dict)
    heads: dict[str, _Head] = field(default_factory=dict)
    nodes: dict[str, dict[str, _Node]] = field(default_factory=dict)  # session -> id -> node
    #: (seq, session, entry, head revision, index in the commit, created at ms)
    usage: list[tuple[int, str, TokenLedgerEntry, int, int, int]] = field(default_factory=list)
    turn_commits: dict[tuple[str, str], tuple[str, bytes, int]] = field(default_factory=dict)
    meta: dict[str, tuple[SessionMeta, bytes]] = field(default_factory=dict)
    artifacts: dict[tuple[str, str], tuple[str, int]] = field(default_factory=dict)  # -> (blob ref, created)
    seq: itertools.count = field(default_factory=lambda: itertools.count(1))
    batches: dict[str, BatchRow] = field(default_factory=dict)  # insertion order = enqueue order
    source_keys: dict[tuple[str, str], str] = field(default_factory=dict)
    queue_seq: itertools.count = field(default_factory=lambda: itertools.count(1))
    manifest: dict[tuple[str, str], ManifestRow] = field(default_factory=dict)
    #: set (under `lock`) when the factory deletes the session: every handle refuses from then on
    deleted: bool = False


class ReferenceStore(MemoryQueueMixin, MemoryAttachmentMixin):
    def __init__(
        self,
        *,
        session_id: str | None = None,
        options: StoreOptions | None = None,
        file: MemoryFile | None = None,
        summariser: Summariser = summarise,
    ) -> None:
        if session_id is not None:
            v.check_id(session_id, "session_id")
        self._opts = options or StoreOptions()
        self._f = file if file is not None else MemoryFile()
        self._fixed = session_id
        self._bound_cache = session_id
        self._clock = self._opts.clock
        self._profile = self._opts.blob_profile
        self._level = self._opts.compression_level
        self._summarise = summariser
        self._commits = 0
        self._closed = False
        self.last_gc_error: BaseException | None = None
        self.path = ":memory:"

    # -- plumbing ------------------------------------------------------------------------------
    def __enter__(self) -> "ReferenceStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        if self._closed:
            raise StoreClosed("memory session store is closed")
        with self._f.lock:
            if self._f.deleted:
                raise SessionDeleted(self._fixed or "?")
            yield

    def durability_tier(self) -> DurabilityTier:
        return DurabilityTier.INLINE

    @property
    def options(self) -> StoreOptions:
        return self._opts

    @property
    def session_id(self) -> str | None:
        with self._lock():
            return self._bound()

    def _bound(self) -> str | None:
        if self._bound_cache is not None:
            return self._bound_cache
        ids = list(self._f.heads) or list(self._f.meta)
        if len(ids) > 1:
            raise ValidationError("this memory file holds several sessions; open it with session_id=...")
        if ids:
            self._bound_cache = ids[0]
        return self._bound_cache

    def _bind_check(self, session_id: str) -> None:
        bound = self._bound()
        if bound is not None and bound != session_id:
            raise SessionBindingMismatch(bound, session_id)

    # -- blobs ---------------------------------------------------------------------------------
    def _insert_blobs(self, blobs: list[PreparedBlob], now: int) -> None:
        for b in blobs:
            # The first stored form wins; a re-put refreshes the age (see the SQLite store).
            self._f.blobs[b.ref] = (self._f.blobs.get(b.ref, (b, now))[0], now)

    def _load_blob(self, ref: str) -> bytes | None:
        entry = self._f.blobs.get(ref)
        if entry is None:
            return None
        b = entry[0]
        return check_stored_blob(ref, b.kind, b.compression, b.raw_size, b.stored)

    def put_blob(self, content: bytes, descriptor: BlobDescriptor | None = None) -> str:
        if not isinstance(content, (bytes, bytearray, memoryview)):
            raise ValidationError(f"blob content must be bytes, got {type(content).__name__}")
        b = prepare_blob(bytes(content), descriptor or BlobDescriptor(), self._profile, self._level)
        with self._lock():
            self._insert_blobs([b], self._clock.now_ms())
        return b.ref

    def put_artifact_blob(self, descriptor: BlobDescriptor, content: bytes) -> str:
        return self.put_blob(content, descriptor)

    def get_blob(self, ref: str) -> bytes | None:
        v.check_ref(ref, "ref")
        with self._lock():
            return self._load_blob(ref)

    def blob_info(self, ref: str) -> BlobInfo | None:
        v.check_ref(ref, "ref")
        with self._lock():
            entry = self._f.blobs.get(ref)
        if entry is None:
            return None
        b = entry[0]
        return BlobInfo(ref, BlobKind(b.kind), Compression(b.compression), b.raw_size, len(b.stored))

    def put_typed_blob(self, value: Any, descriptor: BlobDescriptor | None = None) -> str:
        check_json(value, "value")
        return self.put_blob(pack_canonical(value), descriptor)

    def get_typed_blob(self, ref: str, type: Any = Any) -> Any:
        data = self.get_blob(ref)
        return None if data is None else decode_typed(ref, data, type)

    def blob_stats(self) -> dict[str, int]:
        with self._lock():
            blobs = [b for b, _ in self._f.blobs.values()]
        return {
            "count": len(blobs),
            "raw_bytes": sum(b.raw_size for b in blobs),
            "stored_bytes": sum(len(b.stored) for b in blobs),
        }

    # -- checkpoints ---------------------------------------------------------------------------
    def _require_refs(self, refs: list[str], decoded: list[str]) -> None:
        if refs:
            check_passthrough(refs, decoded, self._load_blob)

    def put_checkpoint(self, checkpoint: HydratedSessionCheckpoint) -> StoredSessionCheckpoint:
        v.check_checkpoint(checkpoint)
        p = prepare_checkpoint(checkpoint, self._profile, self._level)
        with self._lock():
            self._require_refs(p.passthrough_refs, p.decoded_refs)
            self._insert_blobs(p.blobs, self._clock.now_ms())
        return StoredSessionCheckpoint(p.checkpoint_ref, p.manifest)

    def _get_checkpoint(self, ref: str) -> HydratedSessionCheckpoint | None:
        data = self._load_blob(ref)
        if data is None:
            return None
        return hydrate(ref, decode_manifest(ref, data), self._load_blob)

    def get_checkpoint(self, ref: str) -> HydratedSessionCheckpoint | None:
        v.check_ref(ref, "ref")
        with self._lock():
            return self._get_checkpoint(ref)

    # -- named artifacts -----------------------------------------------------------------------
    def put_artifact(self, name: str, content: bytes, *, namespace: str = "default") -> str:
        v.check_id(name, "name")
        v.check_id(namespace, "namespace")
        if not isinstance(content, (bytes, bytearray, memoryview)):
            raise ValidationError(f"artifact content must be bytes, got {type(content).__name__}")
        b = prepare_blob(bytes(content), BlobDescriptor.artifact(), self._profile, self._level)
        with self._lock():
            now = self._clock.now_ms()
            self._insert_blobs([b], now)
            old = self._f.artifacts.get((namespace, name))
            self._f.artifacts[(namespace, name)] = (b.ref, now if old is None else old[1])
        return b.ref

    def get_artifact(self, name: str, *, namespace: str = "default") -> bytes | None:
        v.check_id(name, "name")
        with self._lock():
            entry = self._f.artifacts.get((namespace, name))
            if entry is None:
                return None
            ref = entry[0]
            data = self._load_blob(ref)
        if data is None:
            raise CorruptRecord("artifact", f"{namespace}/{name}", f"its blob {ref} is missing")
        return data

    def delete_artifact(self, name: str, *, namespace: str = "default") -> bool:
        with self._lock():
            return self._f.artifacts.pop((namespace, name), None) is not None

    def list_artifacts(self, *, namespace: str | None = None) -> list[tuple[str, str, str]]:
        with self._lock():
            return sorted(
                (ns, name, ref)
                for (ns, name), (ref, _) in self._f.artifacts.items()
                if namespace is None or ns == namespace
            )

    # -- meta ----------------------------------------------------------------------------------
    def save_session_meta(self, meta: SessionMeta) -> None:
        v.check_meta(meta)
        rel = pack(meta.relation)
        stored = SessionMeta(
            session_id=meta.session_id,
            session_name=meta.session_name,
            created_at=meta.created_at,
            model=meta.model,
            cwd=meta.cwd,
            relation=decode_relation(meta.session_id, rel),
        )
        with self._lock():
            self._bind_check(meta.session_id)
            self._f.meta[meta.session_id] = (stored, rel)
            self._bound_cache = meta.session_id

    def _load_meta(self) -> SessionMeta | None:
        sid = self._bound()
        if sid is None or sid not in self._f.meta:
            return None
        m, rel = self._f.meta[sid]
        return SessionMeta(
            session_id=m.session_id,
            session_name=m.session_name,
            created_at=m.created_at,
            model=m.model,
            cwd=m.cwd,
            relation=decode_relation(sid, rel),
        )

    def load_session_meta(self) -> SessionMeta | None:
        with self._lock():
            return self._load_meta()

    def load_picker_info(self) -> SessionPickerInfo | None:
        with self._lock():
            meta = self._load_meta()
            if meta is None:
                return None
            nodes = self._live_nodes(meta.session_id)
        first, count = self._summarise(nodes)
        return SessionPickerInfo(
            session_id=meta.session_id,
            cwd=meta.cwd,
            relation=meta.relation,
            first_user_message=first,
            user_message_count=count,
        )

    # -- reads ---------------------------------------------------------------------------------
    def _head_meta(self, sid: str, h: _Head) -> SessionHeadMeta:
        body = decode_head_body(sid, h.body)
        return SessionHeadMeta(
            session_id=sid,
            head_revision=h.revision,
            config=body.config,
            agent_frames=body.agent_frames,
            current_agent_frame_id=body.current_agent_frame_id,
            checkpoint_ref=h.checkpoint_ref,
            leaf_node_id=h.leaf,
            graph_node_count=h.node_count,
            updated_at_ms=h.updated_at_ms,
        )

    def load_head(self) -> SessionHeadMeta | None:
        with self._lock():
            sid = self._bound()
            h = None if sid is None else self._f.heads.get(sid)
            return None if h is None else self._head_meta(sid, h)  # type: ignore[arg-type]

    def _live_nodes(self, sid: str) -> list[GraphNode]:
        nodes = self._f.nodes.get(sid, {})
        return [decode_node(nid, n.body) for nid, n in nodes.items() if not n.tombstoned]

    def _getter(self, sid: str):
        nodes = self._f.nodes.get(sid, {})

        def get(nid: str) -> tuple[str | None, bool] | None:
            n = nodes.get(nid)
            return None if n is None else (n.parent, n.tombstoned)

        return get

    def _usage(self, sid: str) -> list[TokenLedgerEntry]:
        return merge_ledger(u[2] for u in self._f.usage if u[1] == sid)

    def load_usage(self) -> list[TokenLedgerEntry]:
        with self._lock():
            sid = self._bound()
            return [] if sid is None else self._usage(sid)

    def load_session(self, scope: SessionReadScope | None = None) -> PersistedSessionRead | None:
        scope = check_scope(scope)
        with self._lock():
            sid = self._bound()
            if sid is None or sid not in self._f.heads:
                return None
            nodes_of = self._f.nodes.get(sid, {})

            def path_nodes(leaf: str, limit: int) -> list[GraphNode]:
                ids = graph_rules.active_path(leaf, self._getter(sid), limit)
                return [decode_node(i, nodes_of[i].body) for i in ids]

            return assemble_session_read(
                scope,
                self._head_meta(sid, self._f.heads[sid]),
                path_nodes,
                lambda: self._live_nodes(sid),
                self._get_checkpoint,
                lambda: self._usage(sid),
            )

    def load_node(self, node_id: str) -> GraphNode | None:
        v.check_id(node_id, "node_id")
        with self._lock():
            sid = self._bound()
            n = None if sid is None else self._f.nodes.get(sid, {}).get(node_id)
            if n is None or n.tombstoned:
                return None
            return decode_node(node_id, n.body)

    # -- the turn commit -----------------------------------------------------------------------
    def commit_runtime_state(self, commit: RuntimeCommit) -> RuntimeCommitResult:
        v.check_commit(commit)
        prepared = prepare_checkpoint(commit.checkpoint, self._profile, self._level)
        graph = commit.graph
        node_bodies = [pack(n) for n in getattr(graph, "nodes", ())]
        head_body = pack(HeadBody(commit.config, commit.agent_frames, commit.current_agent_frame_id))
        sid = commit.session_id
        with self._lock():
            self._bind_check(sid)
            stamp = commit.turn_commit
            stored = None
            if stamp is not None and stamp.session_id == sid:
                stored = self._f.turn_commits.get((stamp.session_id, stamp.turn_id))
            if commit_rules.check_turn_stamp(commit, stored[0] if stored else None):
                result = decode_result(f"{sid}/{stamp.turn_id}", stored[1])  # type: ignore[index,union-attr]
            else:
                result = self._write_commit(commit, prepared, node_bodies, head_body)
        self._after_commit()
        return result

    def _write_commit(self, commit: RuntimeCommit, prepared: Any, node_bodies: list[bytes], head_body: bytes):
        f = self._f
        sid = commit.session_id
        h = f.heads.get(sid)
        actual, live_count = (h.revision, h.node_count) if h else (0, 0)
        next_rev = commit_rules.check_cas(commit, actual)
        now = self._clock.now_ms()
        self._check_completions(commit, now)
        self._require_refs(prepared.passthrough_refs, prepared.decoded_refs)
        nodes = f.nodes.get(sid, {})
        stored = {i: nodes[i].tombstoned for i in graph_rules.ids_to_look_up(commit.graph) if i in nodes}
        plan = graph_rules.plan_graph_delta(commit.graph, stored, live_count)
        self._check_attachments(commit)
        # Every check passed: apply (nothing below can fail).
        self._insert_blobs(prepared.blobs, now)
        for i, e in enumerate(commit.usage_deltas):
            u = e.usage
            entry = TokenLedgerEntry(e.source, e.model, TokenUsage(
                input_tokens=u.input_tokens, output_tokens=u.output_tokens,
                cached_input_tokens=u.cached_input_tokens, reasoning_tokens=u.reasoning_tokens))
            f.usage.append((next(f.seq), sid, entry, next_rev, i, now))
        if plan.replace:
            nodes = {}
        else:
            nodes = dict(nodes)
        for n, body in zip(plan.insert, node_bodies):
            nodes[n.node_id] = _Node(next(f.seq), n.parent_node_id, False, body)
        f.nodes[sid] = nodes
        f.heads[sid] = _Head(next_rev, prepared.checkpoint_ref, plan.leaf_node_id, plan.node_count, now, head_body)
        result = RuntimeCommitResult(next_rev, prepared.checkpoint_ref, prepared.manifest)
        self._consume_completions(commit, now)
        self._stamp_attachments(commit, now)
        stamp = commit.turn_commit
        if stamp is not None:
            f.turn_commits[(stamp.session_id, stamp.turn_id)] = (stamp.turn_commit_hash, pack(result), now)
        self._bound_cache = sid
        return result

    def _after_commit(self) -> None:
        every = self._opts.auto_gc_every_commits
        if not every:
            return
        self._commits += 1
        if self._commits % every == 0:
            try:
                self.gc_unreachable(grace_ms=self._opts.gc_grace_ms)
                self.last_gc_error = None
            except Exception as e:  # noqa: BLE001
                self.last_gc_error = e
                log.error("automatic gc_unreachable after commit failed: %s", e)

    # -- graph maintenance ---------------------------------------------------------------------
    def tombstone_nodes(self, node_ids: list[str]) -> int:
        ids = graph_rules.tombstone_ids(node_ids)
        if not ids:
            return 0
        with self._lock():
            sid = self._bound()
            if sid is None:
                return 0
            nodes = self._f.nodes.get(sid, {})
            hidden = 0
            for nid in ids:
                n = nodes.get(nid)
                if n is not None and not n.tombstoned:
                    n.tombstoned = True
                    hidden += 1
            h = self._f.heads.get(sid)
            if hidden and h is not None:
                h.leaf = graph_rules.repair_leaf(h.leaf, self._getter(sid), len(nodes), set(ids))
                h.node_count = sum(1 for n in nodes.values() if not n.tombstoned)
                h.revision += 1
                h.updated_at_ms = self._clock.now_ms()
            return hidden

    def vacuum(self) -> VacuumReport:
        with self._lock():
            sid = self._bound()
            if sid is None:
                return VacuumReport(removed_node_count=0)
            nodes = self._f.nodes.get(sid, {})
            dead = [i for i, n in nodes.items() if n.tombstoned]
            for i in dead:
                del nodes[i]
        return VacuumReport(removed_node_count=len(dead))

    # -- garbage collection --------------------------------------------------------------------
    def gc_unreachable(self, *, grace_ms: int = 0, dry_run: bool = False) -> GcReport:
        v.check_nonneg_int(grace_ms, "grace_ms")
        with self._lock():
            f = self._f
            checkpoint_roots = []
            for sid, h in f.heads.items():
                decode_head_body(sid, h.body)
                if h.checkpoint_ref is not None:
                    checkpoint_roots.append(h.checkpoint_ref)
            other_roots = [ref for ref, _ in f.artifacts.values()]
            other_roots += list(dict.fromkeys(a for _, a in f.manifest))

            def load_manifest(ref: str):
                data = self._load_blob(ref)
                return None if data is None else decode_manifest(ref, data)

            retained = mark_reachable(checkpoint_roots, other_roots, load_manifest)
            cutoff = self._clock.now_ms() - grace_ms
            doomed = [(h, len(b.stored)) for h, (b, at) in f.blobs.items() if h not in retained and at <= cutoff]
            if not dry_run:
                for h, _ in doomed:
                    del f.blobs[h]
            present = len(f.blobs)
        return GcReport(
            root_count=len(set(checkpoint_roots)) + len(set(other_roots)),
            retained_blob_count=present - (len(doomed) if dry_run else 0),
            deleted_blob_count=len(doomed),
            deleted_bytes=sum(s for _, s in doomed),
        )
