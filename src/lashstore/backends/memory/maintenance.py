"""Maintenance of memory stores, deciding exactly as the SQLite module does (through
`rules.maintenance`): retention primitives, GC with a grace period, verify, dump and load.

Functions take the store first and work on its `MemoryFile` under the file's lock;
`MemoryMaintenanceMixin` offers them as methods. There is no file to shrink.
"""

from __future__ import annotations

import itertools
from typing import Any

import msgspec

from ...codec import pack
from ...errors import CorruptRecord, LashStoreError, ValidationError
from ...model.attachments import AttachmentMeta
from ...model.blobs import BlobKind
from ...model.maintenance import (
    DumpArtifact,
    DumpAttachment,
    DumpBatch,
    DumpBlob,
    DumpHead,
    DumpNode,
    DumpTurn,
    DumpUsage,
    GraphPruneResult,
    Problem,
    SessionDump,
)
from ...model.queue import BatchState, DeliveryPolicy, SlotPolicy
from ...model.session import GcReport, GraphNode, SessionMeta, TokenLedgerEntry, TokenUsage
from ...rules.usage import plan_usage_fold
from ...rules import maintenance as rules
from ...rules import validate as v
from ..common import (
    HeadBody,
    PreparedBlob,
    check_stored_blob,
    decode_head_body,
    decode_manifest,
    decode_node,
    decode_payload,
    decode_relation,
    decode_result,
    hydrate,
)
from .attachments import ManifestRow
from .queue import BatchRow

__all__ = [
    "MemoryMaintenanceMixin",
    "list_graph_nodes",
    "list_tombstoned_nodes",
    "prune_graph",
    "prune_finished_queue",
    "prune_turn_stamps",
    "compact_usage",
    "collect_garbage",
    "shrink",
    "verify_session_store",
    "dump_session",
    "load_session_dump",
    "session_ids",
    "prune_occurrences",
    "prune_effects",
]


def _sid(store: Any, session_id: str | None) -> str | None:
    return session_id if session_id is not None else store._bound()


def session_ids(store: Any) -> list[str]:
    with store._lock():
        return sorted(set(store._f.heads) | set(store._f.meta))


# -- graph --------------------------------------------------------------------------------------


def list_graph_nodes(store: Any, session_id: str | None = None) -> list[tuple[GraphNode, bool]]:
    with store._lock():
        sid = _sid(store, session_id)
        nodes = dict(store._f.nodes.get(sid, {})) if sid is not None else {}
    ordered = sorted(nodes.items(), key=lambda kv: kv[1].seq)
    return [(decode_node(nid, n.body), n.tombstoned) for nid, n in ordered]


def list_tombstoned_nodes(store: Any, session_id: str | None = None) -> list[GraphNode]:
    return [n for n, t in list_graph_nodes(store, session_id) if t]


def prune_graph(store: Any, keep_turns: int, *, dry_run: bool = False, session_id: str | None = None) -> GraphPruneResult:
    if type(keep_turns) is not int or keep_turns < 1:
        raise ValidationError(f"keep_turns must be a positive integer, got {keep_turns!r}")
    with store._lock():
        f = store._f
        sid = _sid(store, session_id)
        if sid is None:
            return GraphPruneResult(session_id="")
        h = f.heads.get(sid)
        if h is None:
            return GraphPruneResult(session_id=sid)
        nodes: dict[str, Any] = f.nodes.get(sid, {})

        def get(nid: str) -> tuple[str | None, bool] | None:
            n = nodes.get(nid)
            return None if n is None else (n.parent, n.tombstoned)

        path = rules.ancestry(h.leaf, get, len(nodes))
        turns, cut = rules.choose_cut(path, lambda nid: (decode_node(nid, nodes[nid].body), nodes[nid].tombstoned),
                                      keep_turns)
        result = GraphPruneResult(session_id=sid, turns_on_active_path=turns, kept_turns=min(turns, keep_turns),
                                  head_revision=h.revision)
        if cut is None:
            return result
        children: dict[str | None, list[str]] = {}
        for nid, n in nodes.items():
            children.setdefault(n.parent, []).append(nid)
        keep = rules.subtree(cut, children)
        doomed = [nid for nid in nodes if nid not in keep]
        result.cut_node_id = cut
        result.removed_node_count = len(doomed)
        result.removed_bytes = sum(len(nodes[n].body) for n in doomed)
        if dry_run or not doomed:
            return result
        from .store import _Node  # the store module imports this one for its mixin

        kept = {nid: n for nid, n in nodes.items() if nid in keep}
        old = kept[cut]
        rooted = msgspec.structs.replace(decode_node(cut, old.body), parent_node_id=None)
        kept[cut] = _Node(old.seq, None, old.tombstoned, pack(rooted))
        f.nodes[sid] = kept
        h.node_count = sum(1 for n in kept.values() if not n.tombstoned)
        h.revision += 1
        result.head_revision = h.revision
        return result


# -- rows that only grow ------------------------------------------------------------------------


def prune_finished_queue(store: Any, older_than_ms: int, *, dry_run: bool = False, session_id: str | None = None) -> int:
    v.check_nonneg_int(older_than_ms, "older_than_ms")
    with store._lock():
        f = store._f
        sid = _sid(store, session_id)
        if sid is None:
            return 0
        cutoff = store._clock.now_ms() - older_than_ms
        doomed = [
            b for b in f.batches.values()
            if b.session_id == sid and b.state in ("completed", "cancelled")
            and b.finished_at_ms is not None and b.finished_at_ms <= cutoff
        ]
        if not dry_run:
            for b in doomed:
                del f.batches[b.batch_id]
                if b.source_key is not None and f.source_keys.get((sid, b.source_key)) == b.batch_id:
                    del f.source_keys[(sid, b.source_key)]
        return len(doomed)


def prune_turn_stamps(
    store: Any,
    *,
    older_than_ms: int | None = None,
    keep_last: int | None = None,
    dry_run: bool = False,
    session_id: str | None = None,
) -> int:
    """As on SQLite. A stamp recorded without a commit time (the memory store keeps none yet)
    is never old: only `keep_last` removes it."""
    if older_than_ms is None and keep_last is None:
        return 0
    v.check_nonneg_int(older_than_ms, "older_than_ms", optional=True)
    v.check_nonneg_int(keep_last, "keep_last", optional=True)
    with store._lock():
        f = store._f
        sid = _sid(store, session_id)
        if sid is None:
            return 0
        cutoff = None if older_than_ms is None else store._clock.now_ms() - older_than_ms
        # Newest first: dict order is commit order.
        mine = [k for k in reversed(list(f.turn_commits)) if k[0] == sid]
        doomed = []
        for i, k in enumerate(mine):
            at = _stamp_time(f.turn_commits[k])
            if (cutoff is not None and at is not None and at <= cutoff) or (keep_last is not None and i >= keep_last):
                doomed.append(k)
        if not dry_run:
            for k in doomed:
                del f.turn_commits[k]
        return len(doomed)


def _stamp_time(entry: tuple) -> int | None:
    return entry[2] if len(entry) > 2 else None


def compact_usage(store: Any, *, dry_run: bool = False, session_id: str | None = None) -> int:
    with store._lock():
        f = store._f
        sid = _sid(store, session_id)
        if sid is None:
            return 0
        mine = [(i, u[2]) for i, u in enumerate(f.usage) if u[1] == sid]
        doomed, updates = plan_usage_fold(
            (i, e.source, e.model, e.usage.input_tokens, e.usage.output_tokens, e.usage.cached_input_tokens,
             e.usage.reasoning_tokens)
            for i, e in mine
        )
        if not dry_run and doomed:
            gone = set(doomed)
            out: list[tuple[int, str, TokenLedgerEntry, int, int, int]] = []
            for i, row in enumerate(f.usage):
                if i in gone:
                    continue
                if i in updates:
                    e = row[2]
                    c_in, c_out, c_cached, c_reason = updates[i]
                    row = (row[0], row[1], TokenLedgerEntry(e.source, e.model, TokenUsage(
                        input_tokens=c_in, output_tokens=c_out, cached_input_tokens=c_cached,
                        reasoning_tokens=c_reason)), *row[3:])
                out.append(row)
            f.usage = out
        return len(doomed)


# -- garbage collection -------------------------------------------------------------------------


def collect_garbage(store: Any, *, grace_ms: int = rules.DEFAULT_GC_GRACE_MS, dry_run: bool = False) -> GcReport:
    """`gc_unreachable` with the operators' default grace period."""
    return store.gc_unreachable(grace_ms=grace_ms, dry_run=dry_run)


def shrink(store: Any) -> tuple[int, int, bool]:
    """Nothing to give back: a memory store has no file."""
    return 0, 0, True


# -- verify -------------------------------------------------------------------------------------


def verify_session_store(store: Any) -> tuple[int, list[Problem]]:
    problems: list[Problem] = []
    loc = f"memory:{store._bound() or '?'}"
    records = 0

    def run(what: str, key: str, fn: Any, *args: Any) -> Any:
        nonlocal records
        records += 1
        try:
            return fn(*args)
        except CorruptRecord as e:
            problems.append(Problem(location=loc, what=e.what, key=e.key, detail=e.detail or str(e)))
        except (LashStoreError, ValueError, msgspec.MsgspecError) as e:
            problems.append(Problem(location=loc, what=what, key=key, detail=str(e)))
        return None

    def add(what: str, key: str, detail: str) -> None:
        problems.append(Problem(location=loc, what=what, key=key, detail=detail))

    with store._lock():
        f = store._f
        good = set()
        for ref, (b, _) in f.blobs.items():
            if run("blob", ref, check_stored_blob, ref, b.kind, b.compression, b.raw_size, b.stored) is not None:
                good.add(ref)

        def load(ref: str) -> bytes | None:
            if ref not in good:
                return None
            b = f.blobs[ref][0]
            return check_stored_blob(ref, b.kind, b.compression, b.raw_size, b.stored)

        for sid, nodes in f.nodes.items():
            for nid, n in nodes.items():
                node = run("graph node", nid, decode_node, nid, n.body)
                if node is not None and node.parent_node_id != n.parent:
                    add("graph node", nid, f"its body names parent {node.parent_node_id!r}, its row {n.parent!r}")
        for sid, h in f.heads.items():
            head = run("session head", sid, decode_head_body, sid, h.body)
            if head is None:
                continue
            live = {nid: n.tombstoned for nid, n in f.nodes.get(sid, {}).items()}
            if h.leaf is not None and live.get(h.leaf, True):
                add("session head", sid, f"its leaf {h.leaf!r} is not a live node")
            count = sum(1 for t in live.values() if not t)
            if h.node_count != count:
                add("session head", sid, f"it counts {h.node_count} live nodes, the graph holds {count}")
            if h.checkpoint_ref is not None:
                records += 1
                data = load(h.checkpoint_ref)
                if data is None:
                    add("checkpoint", h.checkpoint_ref,
                        f"session {sid!r}: its head names this checkpoint, which is missing or damaged")
                else:
                    try:
                        hydrate(h.checkpoint_ref, decode_manifest(h.checkpoint_ref, data), load)
                    except CorruptRecord as e:
                        add("checkpoint", h.checkpoint_ref, f"session {sid!r}: {e.detail or e}")
        for (sid, tid), entry in f.turn_commits.items():
            run("turn commit result", f"{sid}/{tid}", decode_result, f"{sid}/{tid}", entry[1])
        for sid, (_, rel) in f.meta.items():
            run("session relation", sid, decode_relation, sid, rel)
        for b in f.batches.values():
            run("queued-work batch", b.batch_id, _check_batch_enums, b.state, b.delivery_policy, b.slot_policy)
            for item_id, payload in b.items:
                run("queued-work item", item_id, decode_payload, item_id, payload)
        for (ns, name), (ref, _) in f.artifacts.items():
            records += 1
            if ref not in good:
                add("artifact", f"{ns}/{name}", f"its blob {ref} is missing or damaged")
        for (sid, aid), row in f.manifest.items():
            if row.meta is not None:
                records += 1
                if aid not in good:
                    add("attachment", f"{sid}/{aid}", "its bytes are missing or damaged")
    return records, problems


def _check_batch_enums(state: str, dp: str, sp: str) -> None:
    BatchState(state)
    DeliveryPolicy(dp)
    SlotPolicy(sp)


# -- dump and load ------------------------------------------------------------------------------


def dump_session(store: Any, session_id: str | None = None) -> SessionDump:
    with store._lock():
        f = store._f
        sid = _sid(store, session_id)
        if sid is None:
            raise ValidationError("this memory store holds no session to export")
        meta = None
        if sid in f.meta:
            m, rel = f.meta[sid]
            meta = SessionMeta(session_id=sid, session_name=m.session_name, created_at=m.created_at, model=m.model,
                               cwd=m.cwd, relation=decode_relation(sid, rel))
        dump = SessionDump(session_id=sid, meta=meta)
        wanted: list[str] = []
        h = f.heads.get(sid)
        if h is not None:
            body = decode_head_body(sid, h.body)
            dump.head = DumpHead(
                head_revision=h.revision, config=body.config, agent_frames=body.agent_frames,
                current_agent_frame_id=body.current_agent_frame_id, checkpoint_ref=h.checkpoint_ref,
                leaf_node_id=h.leaf, node_count=h.node_count, updated_at_ms=h.updated_at_ms,
            )
            if h.checkpoint_ref is not None:
                wanted.append(h.checkpoint_ref)
                data = store._load_blob(h.checkpoint_ref)
                if data is None:
                    raise CorruptRecord("session head", sid, f"its checkpoint {h.checkpoint_ref} is missing")
                m = decode_manifest(h.checkpoint_ref, data)
                wanted += [r for r in (m.tool_state_ref, m.plugin_snapshot_ref, m.execution_state_ref) if r]
        nodes = sorted(f.nodes.get(sid, {}).items(), key=lambda kv: kv[1].seq)
        dump.nodes = [DumpNode(node=decode_node(nid, n.body), tombstoned=n.tombstoned) for nid, n in nodes]
        dump.usage = [
            DumpUsage(source=e.source, model=e.model, usage=TokenUsage(
                input_tokens=e.usage.input_tokens, output_tokens=e.usage.output_tokens,
                cached_input_tokens=e.usage.cached_input_tokens, reasoning_tokens=e.usage.reasoning_tokens),
                revision=rev, idx=idx, created_at_ms=at)
            for _, s, e, rev, idx, at in f.usage if s == sid
        ]
        dump.turns = sorted(
            (
                DumpTurn(turn_id=tid, turn_commit_hash=entry[0], result=decode_result(f"{sid}/{tid}", entry[1]),
                         committed_at_ms=_stamp_time(entry))
                for (s, tid), entry in f.turn_commits.items() if s == sid
            ),
            key=lambda t: (t.committed_at_ms or 0, t.turn_id),  # the SQL backends' order
        )
        dump.batches = [
            DumpBatch(
                batch_id=b.batch_id, enqueue_seq=b.seq, source_key=b.source_key, state=b.state,
                delivery_policy=b.delivery_policy, slot_policy=b.slot_policy, merge_key=b.merge_key,
                available_at_ms=b.available_at_ms, enqueued_at_ms=b.enqueued_at_ms,
                items=[(i, decode_payload(i, p)) for i, p in b.items], claim_id=b.claim_id,
                claim_owner_id=b.claim_owner_id, claim_token=b.claim_token,
                claim_fencing_token=b.claim_fencing_token, claim_claimed_at_ms=b.claim_claimed_at_ms,
                claim_expires_at_ms=b.claim_expires_at_ms, finished_at_ms=b.finished_at_ms,
            )
            for b in sorted(f.batches.values(), key=lambda b: b.seq) if b.session_id == sid
        ]
        rows = sorted(((r.intent_at_ms, a, r) for (s, a), r in f.manifest.items() if s == sid), key=lambda x: x[:2])
        dump.attachments = [
            DumpAttachment(
                attachment_id=a, canonical_uri=r.canonical_uri, intent_at_ms=r.intent_at_ms,
                committed_at_ms=r.committed_at_ms,
                media_type=r.meta.media_type if r.meta else None, byte_len=r.meta.byte_len if r.meta else None,
                width=r.meta.width if r.meta else None, height=r.meta.height if r.meta else None,
                label=r.meta.label if r.meta else None,
            )
            for _, a, r in rows
        ]
        wanted += [a.attachment_id for a in dump.attachments if a.media_type is not None]
        dump.artifacts = [DumpArtifact(namespace=ns, name=n, blob_ref=ref, created_at_ms=at)
                          for (ns, n), (ref, at) in sorted(f.artifacts.items())]
        wanted += [a.blob_ref for a in dump.artifacts]
        for ref in dict.fromkeys(wanted):
            entry = f.blobs.get(ref)
            if entry is None:
                raise CorruptRecord("blob", ref, f"session {sid!r} refers to it but it is missing")
            b, at = entry
            check_stored_blob(ref, b.kind, b.compression, b.raw_size, b.stored)
            dump.blobs.append(DumpBlob(ref=ref, kind=b.kind, compression=b.compression, raw_size=b.raw_size,
                                       data=bytes(b.stored), created_at_ms=at))
    return dump


def load_session_dump(store: Any, dump: SessionDump) -> int | None:
    """Replace the session's records with the dump. Everything is checked before the first
    change (there is no transaction to roll back). Returns the head revision written (as on
    SQLite: one past an existing head's when that is not below the dump's)."""
    rules.check_dump(dump)
    for b in dump.blobs:
        BlobKind(b.kind)
        check_stored_blob(b.ref, b.kind, b.compression, b.raw_size, b.data)
    batches = [
        (b, BatchState(b.state).value, DeliveryPolicy(b.delivery_policy).value, SlotPolicy(b.slot_policy).value)
        for b in dump.batches
    ]
    from .store import _Head, _Node  # the store module imports this one for its mixin

    sid = dump.session_id
    new_blobs = {b.ref: b for b in dump.blobs}
    now = store._clock.now_ms()
    with store._lock():
        f = store._f
        store._bind_check(sid)

        def load(ref: str) -> bytes | None:
            if ref in new_blobs:
                b = new_blobs[ref]
                return check_stored_blob(ref, b.kind, b.compression, b.raw_size, b.data)
            return store._load_blob(ref)

        h = dump.head
        if h is not None and h.checkpoint_ref is not None:
            data = load(h.checkpoint_ref)
            if data is None:
                raise ValidationError(f"export: the head's checkpoint {h.checkpoint_ref} is not in the file")
            try:
                hydrate(h.checkpoint_ref, decode_manifest(h.checkpoint_ref, data), load)
            except CorruptRecord as e:
                raise ValidationError(f"export: {e}") from None
        revision = None if h is None else h.head_revision
        old_head = f.heads.get(sid)
        if old_head is not None and revision is not None and revision <= old_head.revision:
            revision = old_head.revision + 1
        # Every check passed: apply (nothing below can fail).
        for b in dump.blobs:
            pb = PreparedBlob(b.ref, b.kind, b.compression, b.raw_size, bytes(b.data))
            f.blobs.setdefault(b.ref, (pb, b.created_at_ms if b.created_at_ms is not None else now))
        f.heads.pop(sid, None)
        f.meta.pop(sid, None)
        f.usage = [u for u in f.usage if u[1] != sid]
        for k in [k for k in f.turn_commits if k[0] == sid]:
            del f.turn_commits[k]
        for bid in [bid for bid, b in f.batches.items() if b.session_id == sid]:
            del f.batches[bid]
        for k in [k for k in f.source_keys if k[0] == sid]:
            del f.source_keys[k]
        for k in [k for k in f.manifest if k[0] == sid]:
            del f.manifest[k]
        if dump.meta is not None:
            m = dump.meta
            f.meta[sid] = (SessionMeta(session_id=sid, session_name=m.session_name, created_at=m.created_at,
                                       model=m.model, cwd=m.cwd, relation=m.relation), pack(m.relation))
        f.nodes[sid] = {
            d.node.node_id: _Node(next(f.seq), d.node.parent_node_id, d.tombstoned, pack(d.node)) for d in dump.nodes
        }
        if h is not None:
            f.heads[sid] = _Head(revision, h.checkpoint_ref, h.leaf_node_id, h.node_count, h.updated_at_ms,
                                 pack(HeadBody(h.config, h.agent_frames, h.current_agent_frame_id)))
        for i, u in enumerate(dump.usage):
            f.usage.append((next(f.seq), sid, TokenLedgerEntry(u.source, u.model, TokenUsage(
                input_tokens=u.usage.input_tokens, output_tokens=u.usage.output_tokens,
                cached_input_tokens=u.usage.cached_input_tokens, reasoning_tokens=u.usage.reasoning_tokens)),
                u.revision if u.revision is not None else 0, u.idx if u.idx is not None else i,
                u.created_at_ms if u.created_at_ms is not None else now))
        for t in dump.turns:
            entry: tuple = (t.turn_commit_hash, pack(t.result))
            f.turn_commits[(sid, t.turn_id)] = entry if t.committed_at_ms is None else (*entry, t.committed_at_ms)
        taken = {b.seq for b in f.batches.values()}
        keep_seq = not any(b.enqueue_seq in taken for b in dump.batches)
        for b, state, dp, sp in batches:
            seq = b.enqueue_seq if keep_seq else next(f.queue_seq)
            f.batches[b.batch_id] = BatchRow(
                seq=seq, batch_id=b.batch_id, session_id=sid, source_key=b.source_key, state=state,
                delivery_policy=dp, slot_policy=sp, merge_key=b.merge_key, available_at_ms=b.available_at_ms,
                enqueued_at_ms=b.enqueued_at_ms, items=[(i, pack(p)) for i, p in b.items], claim_id=b.claim_id,
                claim_owner_id=b.claim_owner_id, claim_token=b.claim_token, claim_fencing_token=b.claim_fencing_token,
                claim_claimed_at_ms=b.claim_claimed_at_ms, claim_expires_at_ms=b.claim_expires_at_ms,
                finished_at_ms=b.finished_at_ms,
            )
            if b.source_key is not None:
                f.source_keys[(sid, b.source_key)] = b.batch_id
        # Enqueue order is dict order: rebuild it, and move the counter past the imported seqs.
        f.batches = dict(sorted(f.batches.items(), key=lambda kv: kv[1].seq))
        top = max((b.seq for b in f.batches.values()), default=0)
        f.queue_seq = itertools.count(max(next(f.queue_seq), top + 1))
        for a in dump.attachments:
            meta = None
            if a.media_type is not None:
                meta = AttachmentMeta(id=a.attachment_id, media_type=a.media_type, byte_len=a.byte_len or 0,
                                      width=a.width, height=a.height, label=a.label)
            f.manifest[(sid, a.attachment_id)] = ManifestRow(a.canonical_uri, a.intent_at_ms, a.committed_at_ms, meta)
        for a in dump.artifacts:
            f.artifacts[(a.namespace, a.name)] = (a.blob_ref, a.created_at_ms if a.created_at_ms is not None else now)
        store._bound_cache = sid
    return revision


# -- registries ---------------------------------------------------------------------------------


def prune_occurrences(store: Any, older_than_ms: int, *, dry_run: bool = False) -> tuple[int, int]:
    v.check_nonneg_int(older_than_ms, "older_than_ms")
    s = store._s
    with s.lock:
        store._check_open()
        cutoff = store._clock.now_ms() - older_than_ms
        doomed = {oid for oid, o in s.occs.items() if o.occurred_at_ms <= cutoff}
        pairs = [k for k in s.deliveries if k[0] in doomed]
        if not dry_run:
            for k in pairs:
                del s.deliveries[k]
            for oid in doomed:
                del s.occs[oid]
    return len(doomed), len(pairs)


def prune_effects(store: Any, older_than_ms: int, *, dry_run: bool = False) -> int:
    v.check_nonneg_int(older_than_ms, "older_than_ms")
    with store._lock:
        store._check_open()
        cutoff = store._clock.now_ms() - older_than_ms
        doomed = [k for k, r in store._rows.items() if r.status in ("completed", "failed") and r.updated_at_ms <= cutoff]
        if not dry_run:
            for k in doomed:
                del store._rows[k]
    return len(doomed)


# -- as methods ---------------------------------------------------------------------------------


class MemoryMaintenanceMixin:
    """The functions above as methods of `MemorySessionStore`."""

    def list_graph_nodes(self) -> list[tuple[GraphNode, bool]]:
        return list_graph_nodes(self)

    def list_tombstoned_nodes(self) -> list[GraphNode]:
        return list_tombstoned_nodes(self)

    def prune_graph(self, keep_turns: int, *, dry_run: bool = False) -> GraphPruneResult:
        return prune_graph(self, keep_turns, dry_run=dry_run)

    def prune_finished_queue(self, older_than_ms: int, *, dry_run: bool = False) -> int:
        return prune_finished_queue(self, older_than_ms, dry_run=dry_run)

    def prune_turn_stamps(self, *, older_than_ms: int | None = None, keep_last: int | None = None,
                          dry_run: bool = False) -> int:
        return prune_turn_stamps(self, older_than_ms=older_than_ms, keep_last=keep_last, dry_run=dry_run)

    def compact_usage(self, *, dry_run: bool = False) -> int:
        return compact_usage(self, dry_run=dry_run)

    def collect_garbage(self, *, grace_ms: int = rules.DEFAULT_GC_GRACE_MS, dry_run: bool = False) -> GcReport:
        return collect_garbage(self, grace_ms=grace_ms, dry_run=dry_run)

    def shrink(self) -> tuple[int, int, bool]:
        return shrink(self)

    def verify(self) -> tuple[int, list[Problem]]:
        return verify_session_store(self)

    def dump_session(self) -> SessionDump:
        return dump_session(self)

    def load_session_dump(self, dump: SessionDump) -> int | None:
        return load_session_dump(self, dump)
