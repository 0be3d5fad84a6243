"""Maintenance of PostgreSQL session stores: retention primitives, GC with a grace period,
table vacuuming, verification, and a session's dump and load.

The same functions, signatures and decisions (`rules.maintenance`) as the SQLite and memory
modules. Every function takes the store as its first argument and runs in one transaction of
the store's `PostgresDatabase` (`store._write` / `store._read`): a dry run reads, in one
REPEATABLE READ snapshot, exactly what the real run would delete, and a failure rolls everything
back. `PostgresMaintenanceMixin` offers the same as methods of `PostgresSessionStore`, which is
how `lashstore.ops` finds them (`ops._common.maintenance` falls back to store methods).

Differences that come from the topology (one schema holds the whole deployment):

* Blobs are shared by every session of the schema. `collect_garbage` is the deployment-wide
  `gc_unreachable` (roots of every session); `verify_session_store` checks the blobs the session
  reaches (its head checkpoint and snapshots, its named artifacts, its attachments), so a blob is
  reported by the session that needs it and a run over N sessions does not report one damaged
  blob N times. `verify_session_store(store, all_blobs=True)` checks every blob of the schema.
* Named artifacts belong to a session (`artifact_refs.session_id`): a dump carries the
  session's own artifacts and a load upserts them for that session.
* `enqueue_seq` is an identity column: a load keeps the dump's numbers when none is taken (as
  on SQLite) and moves the identity sequence past them; otherwise fresh numbers, same order.
* `shrink` runs a plain `VACUUM` (not FULL: that takes an ACCESS EXCLUSIVE lock) of the schema's
  session tables. Space is then reusable by PostgreSQL, though rarely returned to the file
  system; the sizes reported are `pg_total_relation_size` before and after.
"""

from __future__ import annotations

from typing import Any

import msgspec
import psycopg
from psycopg import sql

from ...codec import pack
from ...errors import CorruptRecord, LashStoreError, ValidationError
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
from ...model.session import GcReport, GraphNode, SessionMeta, TokenUsage
from ...rules import maintenance as rules
from ...rules import validate as v
from ...rules.usage import plan_usage_fold
from ..common import (
    META_COLUMNS,
    meta_from_row,
    HeadBody,
    check_stored_blob,
    decode_manifest,
    decode_node,
    decode_payload,
    decode_relation,
    decode_result,
    hydrate,
)
from .connection import Tx, translate
from .schema import SESSION_TABLES

__all__ = [
    "PostgresMaintenanceMixin",
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

_HEAD_COLS = "session_id, head_revision, checkpoint_ref, leaf_node_id, node_count, updated_at_ms, body"

#: Tables `shrink` vacuums: every session table, the queue's items and the shared blobs.
_VACUUM_TABLES = (*SESSION_TABLES, "queued_work_items", "blobs")


def _sid(store: Any, t: Tx, session_id: str | None) -> str | None:
    return session_id if session_id is not None else store._bound(t)


def _run(store: Any, dry_run: bool, fn: Any, where: str) -> Any:
    return (store._read if dry_run else store._write)(fn, where)


def session_ids(store: Any) -> list[str]:
    """Every session with a head or meta in the store's schema."""
    return [
        r[0]
        for r in store._read(
            lambda t: t.all("SELECT session_id FROM session_head UNION SELECT session_id FROM session_meta ORDER BY 1"),
            "list sessions in schema",
        )
    ]


# -- graph --------------------------------------------------------------------------------------


def list_graph_nodes(store: Any, session_id: str | None = None) -> list[tuple[GraphNode, bool]]:
    """(node, tombstoned) of every stored node of the session, tombstoned ones included, in
    insertion order."""

    def tx(t: Tx) -> list[tuple]:
        sid = _sid(store, t, session_id)
        if sid is None:
            return []
        return t.all("SELECT node_id, tombstoned, body FROM graph_nodes WHERE session_id = %s ORDER BY seq", (sid,))

    return [(decode_node(nid, body), bool(tomb)) for nid, tomb, body in store._read(tx, "list graph nodes")]


def list_tombstoned_nodes(store: Any, session_id: str | None = None) -> list[GraphNode]:
    """The tombstoned nodes of the session (hidden from reads until vacuum), in insertion order."""

    def tx(t: Tx) -> list[tuple]:
        sid = _sid(store, t, session_id)
        if sid is None:
            return []
        return t.all(
            "SELECT node_id, body FROM graph_nodes WHERE session_id = %s AND tombstoned ORDER BY seq", (sid,)
        )

    return [decode_node(nid, body) for nid, body in store._read(tx, "list tombstoned nodes")]


def prune_graph(store: Any, keep_turns: int, *, dry_run: bool = False, session_id: str | None = None) -> GraphPruneResult:
    """Keep the last `keep_turns` turns of the active path (see `rules.maintenance`) and delete
    every other node. The head revision moves once when anything is removed, as after a
    tombstone, so a runtime holding the old head reloads; `updated_at_ms` does not move
    (maintenance is not activity). The real run locks the head row first, so it serialises with
    the session's commits."""
    if type(keep_turns) is not int or keep_turns < 1:
        raise ValidationError(f"keep_turns must be a positive integer, got {keep_turns!r}")

    def tx(t: Tx) -> GraphPruneResult:
        sid = _sid(store, t, session_id)
        if sid is None:
            return GraphPruneResult(session_id="")
        lock = "" if dry_run else " FOR UPDATE"
        head = t.one(f"SELECT leaf_node_id, head_revision FROM session_head WHERE session_id = %s{lock}", (sid,))
        if head is None:
            return GraphPruneResult(session_id=sid)
        rows = t.all(
            "SELECT node_id, parent_node_id, tombstoned, octet_length(body) FROM graph_nodes WHERE session_id = %s",
            (sid,),
        )
        info = {nid: (parent, bool(tomb), int(size)) for nid, parent, tomb, size in rows}

        def get(nid: str) -> tuple[str | None, bool] | None:
            r = info.get(nid)
            return None if r is None else (r[0], r[1])

        path = rules.ancestry(head[0], get, len(info))

        def node(nid: str) -> tuple[GraphNode, bool]:
            body = t.one("SELECT body FROM graph_nodes WHERE session_id = %s AND node_id = %s", (sid, nid))[0]  # type: ignore[index]
            return decode_node(nid, body), info[nid][1]

        turns, cut = rules.choose_cut(path, node, keep_turns)
        result = GraphPruneResult(session_id=sid, turns_on_active_path=turns, kept_turns=min(turns, keep_turns),
                                  head_revision=head[1])
        if cut is None:
            return result
        children: dict[str | None, list[str]] = {}
        for nid, (parent, _, _) in info.items():
            children.setdefault(parent, []).append(nid)
        keep = rules.subtree(cut, children)
        doomed = [nid for nid in info if nid not in keep]
        result.cut_node_id = cut
        result.removed_node_count = len(doomed)
        result.removed_bytes = sum(info[n][2] for n in doomed)
        if dry_run or not doomed:
            return result
        t.execute("DELETE FROM graph_nodes WHERE session_id = %s AND node_id = ANY(%s)", (sid, doomed))
        cut_node, _ = node(cut)
        rooted = msgspec.structs.replace(cut_node, parent_node_id=None)
        t.execute(
            "UPDATE graph_nodes SET parent_node_id = NULL, body = %s WHERE session_id = %s AND node_id = %s",
            (pack(rooted), sid, cut),
        )
        live = t.one("SELECT count(*) FROM graph_nodes WHERE session_id = %s AND NOT tombstoned", (sid,))[0]  # type: ignore[index]
        t.execute(
            "UPDATE session_head SET node_count = %s, head_revision = head_revision + 1 WHERE session_id = %s",
            (live, sid),
        )
        result.head_revision = head[1] + 1
        return result

    return _run(store, dry_run, tx, "prune graph")


# -- rows that only grow ------------------------------------------------------------------------


def prune_finished_queue(
    store: Any, older_than_ms: int, *, dry_run: bool = False, session_id: str | None = None
) -> int:
    """Delete completed and cancelled queued-work batches (with their items) that finished at
    least `older_than_ms` ago. A pruned batch's source key can be enqueued again."""
    v.check_nonneg_int(older_than_ms, "older_than_ms")

    def tx(t: Tx) -> int:
        sid = _sid(store, t, session_id)
        if sid is None:
            return 0
        cutoff = t.now() - older_than_ms
        where = (
            "session_id = %s AND state IN ('completed', 'cancelled') AND finished_at_ms IS NOT NULL "
            "AND finished_at_ms <= %s"
        )
        if dry_run:
            return int(t.one(f"SELECT count(*) FROM queued_work_batches WHERE {where}", (sid, cutoff))[0])  # type: ignore[index]
        # The queue lock: no enqueue of this session interleaves (as an enqueue that dedups on a
        # source key would otherwise find a batch about to go). Items go by ON DELETE CASCADE.
        t.lock("queue", sid)
        return t.rowcount(f"DELETE FROM queued_work_batches WHERE {where}", (sid, cutoff))

    return _run(store, dry_run, tx, "prune finished queued work")


def prune_turn_stamps(
    store: Any,
    *,
    older_than_ms: int | None = None,
    keep_last: int | None = None,
    dry_run: bool = False,
    session_id: str | None = None,
) -> int:
    """Delete turn stamps committed at least `older_than_ms` ago and/or beyond the newest
    `keep_last`. A retry of a pruned turn is then a new commit (and meets the head CAS)."""
    if older_than_ms is None and keep_last is None:
        return 0
    v.check_nonneg_int(older_than_ms, "older_than_ms", optional=True)
    v.check_nonneg_int(keep_last, "keep_last", optional=True)

    def tx(t: Tx) -> int:
        sid = _sid(store, t, session_id)
        if sid is None:
            return 0
        rows = t.all(
            "SELECT turn_id, committed_at_ms FROM turn_commits WHERE session_id = %s "
            "ORDER BY committed_at_ms DESC, turn_id",
            (sid,),
        )
        cutoff = None if older_than_ms is None else t.now() - older_than_ms
        doomed = [
            tid
            for i, (tid, at) in enumerate(rows)
            if (cutoff is not None and at <= cutoff) or (keep_last is not None and i >= keep_last)
        ]
        if not dry_run and doomed:
            t.execute("DELETE FROM turn_commits WHERE session_id = %s AND turn_id = ANY(%s)", (sid, doomed))
        return len(doomed)

    return _run(store, dry_run, tx, "prune turn stamps")


def compact_usage(store: Any, *, dry_run: bool = False, session_id: str | None = None) -> int:
    """Fold the usage rows of each (source, model) into one, at the place of its first non-empty
    row, and drop empty rows. `load_usage` answers exactly as before. Returns rows removed."""

    def tx(t: Tx) -> int:
        sid = _sid(store, t, session_id)
        if sid is None:
            return 0
        if not dry_run:
            # Commits append usage rows under the head lock: hold it so none lands mid-fold.
            t.execute("SELECT 1 FROM session_head WHERE session_id = %s FOR UPDATE", (sid,))
        rows = t.all(
            "SELECT head_revision, idx, source, model, input_tokens, output_tokens, cached_input_tokens, "
            "reasoning_tokens FROM usage_deltas WHERE session_id = %s ORDER BY head_revision, idx",
            (sid,),
        )
        doomed, updates = plan_usage_fold(((rev, idx), *rest) for rev, idx, *rest in rows)
        if dry_run or not doomed:
            return len(doomed)
        t.many(
            "DELETE FROM usage_deltas WHERE session_id = %s AND head_revision = %s AND idx = %s",
            [(sid, rev, idx) for rev, idx in doomed],
        )
        t.many(
            "UPDATE usage_deltas SET input_tokens = %s, output_tokens = %s, cached_input_tokens = %s, "
            "reasoning_tokens = %s WHERE session_id = %s AND head_revision = %s AND idx = %s",
            [(*counts, sid, rev, idx) for (rev, idx), counts in updates.items()],
        )
        return len(doomed)

    return _run(store, dry_run, tx, "compact usage")


# -- garbage collection and the tables ------------------------------------------------------------


def collect_garbage(store: Any, *, grace_ms: int = rules.DEFAULT_GC_GRACE_MS, dry_run: bool = False) -> GcReport:
    """`gc_unreachable` with the operators' default grace period (deployment-wide: blobs are
    shared by every session of the schema)."""
    return store.gc_unreachable(grace_ms=grace_ms, dry_run=dry_run)


def _tables_bytes(conn: psycopg.Connection, schema: str) -> int:
    row = conn.execute(
        "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = ANY(%s) "
        "AND c.relkind = 'r'",
        (schema, list(_VACUUM_TABLES)),
    ).fetchone()
    return int(row[0]) if row else 0


def shrink(store: Any) -> tuple[int, int, bool]:
    """`VACUUM` the schema's session tables (the shared blobs included). Returns (bytes before,
    bytes after, True), the bytes being `pg_total_relation_size` of those tables.

    Plain VACUUM, not VACUUM FULL: it marks dead rows' space reusable without blocking readers
    or writers; PostgreSQL seldom hands that space back to the file system (autovacuum would do
    the same, later). VACUUM cannot run in a transaction: it runs on a pooled autocommit
    connection. The third value (SQLite's "WAL fully checkpointed") is always True."""
    db = store._db
    schema = db.schema
    try:
        with db.connection() as conn:
            before = _tables_bytes(conn, schema)
            for table in _VACUUM_TABLES:
                conn.execute(sql.SQL("VACUUM {}").format(sql.Identifier(schema, table)))
            after = _tables_bytes(conn, schema)
    except psycopg.Error as e:
        raise translate(e, f"vacuum schema {schema}") from e
    return before, after, True


# -- verify -------------------------------------------------------------------------------------


class _Checker:
    def __init__(self, location: str) -> None:
        self.location = location
        self.problems: list[Problem] = []
        self.records = 0

    def add(self, what: str, key: str, detail: str) -> None:
        self.problems.append(Problem(location=self.location, what=what, key=key, detail=detail))

    def run(self, what: str, key: str, fn: Any, *args: Any) -> Any:
        self.records += 1
        try:
            return fn(*args)
        except CorruptRecord as e:
            self.add(e.what, e.key, e.detail or str(e))
        except (LashStoreError, ValueError, TypeError, msgspec.MsgspecError) as e:
            self.add(what, key, str(e))
        return None


def _check_batch_enums(state: str, dp: str, sp: str) -> None:
    BatchState(state)
    DeliveryPolicy(dp)
    SlotPolicy(sp)


def verify_session_store(
    store: Any, session_id: str | None = None, *, all_blobs: bool = False, blob_cache: dict[str, bool] | None = None
) -> tuple[int, list[Problem]]:
    """(records checked, problems) of the session, read in one snapshot: every blob the session
    reaches checked against its sha256 after inflating (`all_blobs`: every blob of the schema),
    every head, graph node, turn result, meta, queued-work batch and item decoded, the head's
    checkpoint hydrated (its snapshots present and intact), every artifact's and attachment's
    bytes present and intact. Nothing is changed.

    `blob_cache` (ref -> intact), shared across the sessions of one verify run: blobs are shared
    by the deployment, so each is checked once (and a damaged one reported once)."""
    location = f"postgresql:{store.schema}"
    cache: dict[str, bool] = {} if blob_cache is None else blob_cache

    def tx(t: Tx) -> _Checker:
        sid = _sid(store, t, session_id)
        chk = _Checker(location if sid is None else f"{location}/{sid}")
        if sid is None:
            return chk
        owner = sid if session_id is not None else store._artifact_owner
        good: set[str] = set()
        checked: set[str] = set()

        def check_blobs(refs: list[str] | None) -> None:
            if refs is None:
                rows = t.all("SELECT hash, kind, compression, raw_size, content FROM blobs ORDER BY hash")
            else:
                refs = [r for r in dict.fromkeys(refs) if r not in checked]
                for r in [r for r in refs if r in cache]:
                    checked.add(r)
                    if cache[r]:
                        good.add(r)
                refs = [r for r in refs if r not in cache]
                if not refs:
                    return
                rows = t.all(
                    "SELECT hash, kind, compression, raw_size, content FROM blobs WHERE hash = ANY(%s) ORDER BY hash",
                    (refs,),
                )
            for ref, kind, comp, size, content in rows:
                checked.add(ref)
                ok = chk.run("blob", ref, check_stored_blob, ref, kind, comp, size, content) is not None
                cache[ref] = ok
                if ok:
                    good.add(ref)

        def load(ref: str) -> bytes | None:
            if ref not in good:
                return None
            row = t.one("SELECT kind, compression, raw_size, content FROM blobs WHERE hash = %s", (ref,))
            return None if row is None else check_stored_blob(ref, *row)

        head_row = t.one(f"SELECT {_HEAD_COLS} FROM session_head WHERE session_id = %s", (sid,))
        artifacts = t.all(
            "SELECT namespace, name, blob_ref FROM artifact_refs WHERE session_id = %s ORDER BY namespace, name",
            (owner,),
        )
        attachments = t.all(
            "SELECT attachment_id FROM attachment_manifest WHERE session_id = %s AND media_type IS NOT NULL "
            "ORDER BY attachment_id",
            (sid,),
        )
        if all_blobs:
            check_blobs(None)
        else:
            roots = [r[2] for r in artifacts] + [r[0] for r in attachments]
            ref = head_row[2] if head_row is not None else None
            check_blobs(roots + ([ref] if ref else []))
            if ref in good:
                # The snapshots the checkpoint names (hydrate below reports the missing ones).
                try:
                    m = decode_manifest(ref, load(ref))  # type: ignore[arg-type]
                    check_blobs([r for r in (m.tool_state_ref, m.plugin_snapshot_ref, m.execution_state_ref) if r])
                except CorruptRecord:
                    pass

        live: dict[str, bool] = {}
        for nid, parent, tomb, body in t.all(
            "SELECT node_id, parent_node_id, tombstoned, body FROM graph_nodes WHERE session_id = %s ORDER BY seq",
            (sid,),
        ):
            # Counted whatever its body holds: one bad body is one problem, not also a wrong count.
            live[nid] = bool(tomb)
            n = chk.run("graph node", nid, decode_node, nid, body)
            if n is not None and n.parent_node_id != parent:
                chk.add("graph node", nid, f"its body names parent {n.parent_node_id!r}, its row {parent!r}")

        if head_row is not None:
            head = chk.run("session head", sid, store._head_meta, head_row)
            if head is not None:
                if head.leaf_node_id is not None and live.get(head.leaf_node_id, True):
                    chk.add("session head", sid, f"its leaf {head.leaf_node_id!r} is not a live node")
                count = sum(1 for tomb in live.values() if not tomb)
                if head.graph_node_count != count:
                    chk.add("session head", sid, f"it counts {head.graph_node_count} live nodes, the graph holds {count}")
                if head.checkpoint_ref is not None:
                    _verify_checkpoint(chk, sid, head.checkpoint_ref, load)

        for tid, body in t.all("SELECT turn_id, result FROM turn_commits WHERE session_id = %s ORDER BY turn_id", (sid,)):
            chk.run("turn commit result", f"{sid}/{tid}", decode_result, f"{sid}/{tid}", body)
        for (rel,) in t.all("SELECT relation FROM session_meta WHERE session_id = %s", (sid,)):
            chk.run("session relation", sid, decode_relation, sid, rel)
        for bid, state, dp, sp in t.all(
            "SELECT batch_id, state, delivery_policy, slot_policy FROM queued_work_batches WHERE session_id = %s "
            "ORDER BY enqueue_seq",
            (sid,),
        ):
            chk.run("queued-work batch", bid, _check_batch_enums, state, dp, sp)
        for item_id, payload in t.all(
            "SELECT i.item_id, i.payload FROM queued_work_items i JOIN queued_work_batches b ON b.batch_id = i.batch_id "
            "WHERE b.session_id = %s ORDER BY b.enqueue_seq, i.item_index",
            (sid,),
        ):
            chk.run("queued-work item", item_id, decode_payload, item_id, payload)
        for ns, name, ref in artifacts:
            chk.records += 1
            if ref not in good:
                chk.add("artifact", f"{ns}/{name}", f"its blob {ref} is missing or damaged")
        for (aid,) in attachments:
            chk.records += 1
            if aid not in good:
                chk.add("attachment", f"{sid}/{aid}", "its bytes are missing or damaged")
        return chk

    try:
        chk = store._read(tx, "verify")
    except LashStoreError as e:
        return 0, [Problem(location=location, what="schema", key=store.schema, detail=str(e))]
    return chk.records, chk.problems


def verify_unreferenced_blobs(store: Any, blob_cache: dict[str, bool], batch: int = 64) -> tuple[int, list[Problem]]:
    """Check every blob of the deployment that no session's check reached (`blob_cache` holds
    those), a batch at a time so memory stays bounded: a damaged blob nothing references yet
    (put for a commit to come) is found too."""
    chk = _Checker(f"postgresql:{store.schema}")
    refs = [r for (r,) in store._read(lambda t: t.all("SELECT hash FROM blobs ORDER BY hash"), "verify blobs")
            if r not in blob_cache]
    for i in range(0, len(refs), batch):
        part = refs[i:i + batch]
        rows = store._read(lambda t: t.all(
            "SELECT hash, kind, compression, raw_size, content FROM blobs WHERE hash = ANY(%s) ORDER BY hash", (part,)
        ), "verify blobs")
        for ref, kind, comp, size, content in rows:
            blob_cache[ref] = chk.run("blob", ref, check_stored_blob, ref, kind, comp, size, content) is not None
    return chk.records, chk.problems


def _verify_checkpoint(chk: _Checker, sid: str, ref: str, load: Any) -> None:
    chk.records += 1
    try:
        data = load(ref)
        if data is None:
            chk.add("checkpoint", ref, f"session {sid!r}: its head names this checkpoint, which is missing or damaged")
            return
        hydrate(ref, decode_manifest(ref, data), load)
    except CorruptRecord as e:
        chk.add("checkpoint", ref, f"session {sid!r}: {e.detail or e}")


# -- dump and load ------------------------------------------------------------------------------


def _meta(t: Tx, sid: str) -> SessionMeta | None:
    row = t.one(
        f"SELECT {META_COLUMNS} FROM session_meta WHERE session_id = %s",
        (sid,),
    )
    if row is None:
        return None
    return meta_from_row(row)


def _blob(t: Tx, ref: str) -> bytes | None:
    row = t.one("SELECT kind, compression, raw_size, content FROM blobs WHERE hash = %s", (ref,))
    return None if row is None else check_stored_blob(ref, *row)


def dump_session(store: Any, session_id: str | None = None) -> SessionDump:
    """Everything the session holds, from one read snapshot. Blobs: the head's checkpoint and its
    snapshots, the session's named artifacts, its attachments (garbage stays behind).
    Raises CorruptRecord on the first record that does not decode."""

    def tx(t: Tx) -> SessionDump:
        sid = _sid(store, t, session_id)
        if sid is None:
            raise ValidationError(f"postgres schema {store.schema!r} holds no session to export")
        owner = sid if session_id is not None else store._artifact_owner
        dump = SessionDump(session_id=sid, meta=_meta(t, sid))
        row = t.one(f"SELECT {_HEAD_COLS} FROM session_head WHERE session_id = %s", (sid,))
        wanted: list[str] = []
        if row is not None:
            h = store._head_meta(row)
            dump.head = DumpHead(
                head_revision=h.head_revision, config=h.config, agent_frames=h.agent_frames,
                current_agent_frame_id=h.current_agent_frame_id, checkpoint_ref=h.checkpoint_ref,
                leaf_node_id=h.leaf_node_id, node_count=h.graph_node_count, updated_at_ms=h.updated_at_ms,
            )
            if h.checkpoint_ref is not None:
                wanted.append(h.checkpoint_ref)
                data = _blob(t, h.checkpoint_ref)
                if data is None:
                    raise CorruptRecord("session head", sid, f"its checkpoint {h.checkpoint_ref} is missing")
                m = decode_manifest(h.checkpoint_ref, data)
                wanted += [r for r in (m.tool_state_ref, m.plugin_snapshot_ref, m.execution_state_ref) if r]
        dump.nodes = [
            DumpNode(node=decode_node(nid, body), tombstoned=bool(tomb))
            for nid, tomb, body in t.all(
                "SELECT node_id, tombstoned, body FROM graph_nodes WHERE session_id = %s ORDER BY seq", (sid,)
            )
        ]
        dump.usage = [
            DumpUsage(source=s, model=m, usage=TokenUsage(input_tokens=int(i), output_tokens=int(o),
                                                           cached_input_tokens=int(ca), reasoning_tokens=int(r)),
                      revision=int(rev), idx=int(idx), created_at_ms=int(at))
            for rev, idx, s, m, i, o, ca, r, at in t.all(
                "SELECT head_revision, idx, source, model, input_tokens, output_tokens, cached_input_tokens, "
                "reasoning_tokens, created_at_ms FROM usage_deltas WHERE session_id = %s ORDER BY head_revision, idx",
                (sid,),
            )
        ]
        dump.turns = [
            DumpTurn(turn_id=tid, turn_commit_hash=h, result=decode_result(f"{sid}/{tid}", body), committed_at_ms=at)
            for tid, h, body, at in t.all(
                "SELECT turn_id, turn_commit_hash, result, committed_at_ms FROM turn_commits WHERE session_id = %s "
                "ORDER BY committed_at_ms, turn_id",
                (sid,),
            )
        ]
        items: dict[str, list[tuple[str, Any]]] = {}
        for bid, item_id, payload in t.all(
            "SELECT i.batch_id, i.item_id, i.payload FROM queued_work_items i JOIN queued_work_batches b "
            "ON b.batch_id = i.batch_id WHERE b.session_id = %s ORDER BY i.batch_id, i.item_index",
            (sid,),
        ):
            items.setdefault(bid, []).append((item_id, decode_payload(item_id, payload)))
        dump.batches = [
            DumpBatch(
                batch_id=r[0], enqueue_seq=r[1], source_key=r[2], state=r[3], delivery_policy=r[4],
                slot_policy=r[5], merge_key=r[6], available_at_ms=r[7], enqueued_at_ms=r[8],
                items=items.get(r[0], []), claim_id=r[9], claim_owner_id=r[10], claim_token=r[11],
                claim_fencing_token=r[12], claim_claimed_at_ms=r[13], claim_expires_at_ms=r[14],
                finished_at_ms=r[15],
            )
            for r in t.all(
                "SELECT batch_id, enqueue_seq, source_key, state, delivery_policy, slot_policy, merge_key, "
                "available_at_ms, enqueued_at_ms, claim_id, claim_owner_id, claim_token, claim_fencing_token, "
                "claim_claimed_at_ms, claim_expires_at_ms, finished_at_ms FROM queued_work_batches "
                "WHERE session_id = %s ORDER BY enqueue_seq",
                (sid,),
            )
        ]
        dump.attachments = [
            DumpAttachment(attachment_id=r[0], canonical_uri=r[1], intent_at_ms=r[2], committed_at_ms=r[3],
                           media_type=r[4], byte_len=r[5], width=r[6], height=r[7], label=r[8])
            for r in t.all(
                "SELECT attachment_id, canonical_uri, intent_at_ms, committed_at_ms, media_type, byte_len, width, "
                "height, label FROM attachment_manifest WHERE session_id = %s ORDER BY intent_at_ms, attachment_id",
                (sid,),
            )
        ]
        wanted += [a.attachment_id for a in dump.attachments if a.media_type is not None]
        dump.artifacts = [
            DumpArtifact(namespace=ns, name=name, blob_ref=ref, created_at_ms=at)
            for ns, name, ref, at in t.all(
                "SELECT namespace, name, blob_ref, created_at_ms FROM artifact_refs WHERE session_id = %s "
                "ORDER BY namespace, name",
                (owner,),
            )
        ]
        wanted += [a.blob_ref for a in dump.artifacts]
        for ref in dict.fromkeys(wanted):
            row = t.one("SELECT kind, compression, raw_size, created_at_ms, content FROM blobs WHERE hash = %s", (ref,))
            if row is None:
                raise CorruptRecord("blob", ref, f"session {sid!r} refers to it but it is missing")
            check_stored_blob(ref, row[0], row[1], row[2], row[4])
            dump.blobs.append(DumpBlob(ref=ref, kind=row[0], compression=row[1], raw_size=int(row[2]),
                                       data=bytes(row[4]), created_at_ms=int(row[3])))
        return dump

    return store._read(tx, "export session")


_BATCH_COLS = (
    "batch_id, session_id, source_key, state, delivery_policy, slot_policy, merge_key, available_at_ms, "
    "enqueued_at_ms, claim_id, claim_owner_id, claim_token, claim_fencing_token, claim_claimed_at_ms, "
    "claim_expires_at_ms, finished_at_ms"
)


def _insert_batches(t: Tx, sid: str, batches: list[tuple[DumpBatch, str, str, str]]) -> None:
    """Insert the dump's batches in its queue order. `enqueue_seq` is an identity column: the
    dump's numbers are kept when no stored batch holds one of them (as on SQLite), and the
    identity sequence is moved past them (setval: at once, outside the transaction, forward
    only); otherwise fresh numbers, in the same order."""
    if not batches:
        return
    ordered = sorted(batches, key=lambda x: x[0].enqueue_seq)
    seqs = [b.enqueue_seq for b, _, _, _ in ordered]
    keep = not t.one("SELECT count(*) FROM queued_work_batches WHERE enqueue_seq = ANY(%s)", (seqs,))[0]  # type: ignore[index]
    rows = [
        (b.batch_id, sid, b.source_key, state, dp, sp, b.merge_key, b.available_at_ms, b.enqueued_at_ms,
         b.claim_id, b.claim_owner_id, b.claim_token, b.claim_fencing_token, b.claim_claimed_at_ms,
         b.claim_expires_at_ms, b.finished_at_ms)
        for b, state, dp, sp in ordered
    ]
    marks = ", ".join(["%s"] * 16)
    if not keep:
        t.many(f"INSERT INTO queued_work_batches ({_BATCH_COLS}) VALUES ({marks})", rows)
        return
    seq_name = t.one("SELECT pg_get_serial_sequence('queued_work_batches', 'enqueue_seq')")[0]  # type: ignore[index]
    top = max(seqs)
    last, called = t.one(sql.SQL("SELECT last_value, is_called FROM {}").format(sql.SQL(seq_name)))  # type: ignore[misc]
    if last < top or (last == top and not called):
        t.execute("SELECT setval(%s, %s)", (seq_name, top))
    t.many(
        f"INSERT INTO queued_work_batches (enqueue_seq, {_BATCH_COLS}) OVERRIDING SYSTEM VALUE VALUES (%s, {marks})",
        [(seq, *row) for seq, row in zip(seqs, rows)],
    )


def load_session_dump(store: Any, dump: SessionDump) -> int | None:
    """Replace everything the session holds with the dump, in one transaction (a failure leaves
    the session as it was). Named artifacts of the dump are upserted for the session; other
    sessions of the schema and the session's other artifacts are untouched. Every blob is checked
    against its sha256 first.

    Returns the head revision written: the dump's, unless the session already had a head at that
    revision or later; then one past it, so a writer holding the old head meets a conflict."""
    rules.check_dump(dump)
    for b in dump.blobs:
        BlobKind(b.kind)
        check_stored_blob(b.ref, b.kind, b.compression, b.raw_size, b.data)
    batches = [
        (b, BatchState(b.state).value, DeliveryPolicy(b.delivery_policy).value, SlotPolicy(b.slot_policy).value)
        for b in dump.batches
    ]
    sid = dump.session_id
    h = dump.head
    meta_row = None
    if dump.meta is not None:
        m = dump.meta
        meta_row = (sid, m.session_name, m.created_at, m.model, m.cwd, pack(m.relation))
    node_rows = [(sid, d.node.node_id, d.node.parent_node_id, d.tombstoned, pack(d.node)) for d in dump.nodes]
    head_body = None if h is None else pack(HeadBody(h.config, h.agent_frames, h.current_agent_frame_id))
    turn_results = [pack(tt.result) for tt in dump.turns]
    item_rows = [
        (b.batch_id, i, item_id, pack(payload)) for b in dump.batches for i, (item_id, payload) in enumerate(b.items)
    ]

    def tx(t: Tx) -> int | None:
        store._bind_check(t, sid)
        # The session's commits (head row / first-commit lock) and enqueues wait for the load.
        t.lock("session", sid)
        t.lock("queue", sid)
        now = t.now()
        revision = None if h is None else h.head_revision
        row = t.one("SELECT head_revision FROM session_head WHERE session_id = %s FOR UPDATE", (sid,))
        if row is not None and revision is not None and revision <= row[0]:
            revision = row[0] + 1
        for table in ("session_head", "graph_nodes", "usage_deltas", "turn_commits", "session_meta",
                      "queued_work_batches", "attachment_manifest"):
            t.execute(sql.SQL("DELETE FROM {} WHERE session_id = %s").format(sql.Identifier(table)), (sid,))
        t.many(
            "INSERT INTO blobs (hash, kind, compression, raw_size, created_at_ms, content) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (hash) DO NOTHING",
            [(b.ref, b.kind, b.compression, b.raw_size, b.created_at_ms if b.created_at_ms is not None else now,
              bytes(b.data)) for b in dump.blobs],
        )
        if dump.blobs:
            # Held until commit: a concurrent collection cannot sweep a blob the new head names.
            t.execute("SELECT 1 FROM blobs WHERE hash = ANY(%s) FOR KEY SHARE", ([b.ref for b in dump.blobs],))
        if meta_row is not None:
            t.execute(
                "INSERT INTO session_meta (session_id, session_name, created_at, model, cwd, relation) "
                "VALUES (%s, %s, %s, %s, %s, %s)",
                meta_row,
            )
        t.many(
            "INSERT INTO graph_nodes (session_id, node_id, parent_node_id, tombstoned, body) "
            "VALUES (%s, %s, %s, %s, %s)",
            node_rows,
        )
        if h is not None:
            t.execute(
                f"INSERT INTO session_head ({_HEAD_COLS}) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (sid, revision, h.checkpoint_ref, h.leaf_node_id, h.node_count, h.updated_at_ms, head_body),
            )
        t.many(
            "INSERT INTO usage_deltas (session_id, head_revision, idx, source, model, input_tokens, output_tokens, "
            "cached_input_tokens, reasoning_tokens, created_at_ms) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [
                (sid, u.revision if u.revision is not None else 0, u.idx if u.idx is not None else n,
                 u.source, u.model, u.usage.input_tokens, u.usage.output_tokens, u.usage.cached_input_tokens,
                 u.usage.reasoning_tokens, u.created_at_ms if u.created_at_ms is not None else now)
                for n, u in enumerate(dump.usage)
            ],
        )
        t.many(
            "INSERT INTO turn_commits (session_id, turn_id, turn_commit_hash, result, committed_at_ms) "
            "VALUES (%s, %s, %s, %s, %s)",
            [(sid, tt.turn_id, tt.turn_commit_hash, body, tt.committed_at_ms if tt.committed_at_ms is not None else now)
             for tt, body in zip(dump.turns, turn_results)],
        )
        _insert_batches(t, sid, batches)
        t.many("INSERT INTO queued_work_items (batch_id, item_index, item_id, payload) VALUES (%s, %s, %s, %s)",
               item_rows)
        t.many(
            "INSERT INTO attachment_manifest (session_id, attachment_id, canonical_uri, intent_at_ms, committed_at_ms, "
            "media_type, byte_len, width, height, label) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [(sid, a.attachment_id, a.canonical_uri, a.intent_at_ms, a.committed_at_ms, a.media_type, a.byte_len,
              a.width, a.height, a.label) for a in dump.attachments],
        )
        t.many(
            "INSERT INTO artifact_refs (session_id, namespace, name, blob_ref, created_at_ms) "
            "VALUES (%s, %s, %s, %s, %s) "
            "ON CONFLICT (session_id, namespace, name) DO UPDATE SET blob_ref = excluded.blob_ref",
            [(sid, a.namespace, a.name, a.blob_ref, a.created_at_ms if a.created_at_ms is not None else now)
             for a in dump.artifacts],
        )
        if h is not None and h.checkpoint_ref is not None:
            # The whole checkpoint must hydrate from what is now stored, or nothing is kept.
            if store._get_checkpoint(t, h.checkpoint_ref) is None:
                raise ValidationError(f"export: the head's checkpoint {h.checkpoint_ref} is not stored")
        return revision

    revision = store._write(tx, "import session")
    store._remember(sid)
    return revision


# -- registries ---------------------------------------------------------------------------------
# For a host-event store and an effect store of the same schema (anything with `_db`, a
# `PostgresDatabase`). `lashstore.ops` reaches these only through store methods; the Postgres
# registries do not carry them as methods yet.


def _registry_write(store: Any, dry_run: bool, fn: Any, where: str) -> Any:
    db = store._db
    clock = getattr(store, "_tx_clock", None)
    return (db.read if dry_run else db.write)(fn, where, clock=clock)


def prune_occurrences(store: Any, older_than_ms: int, *, dry_run: bool = False) -> tuple[int, int]:
    """Delete host-event occurrences recorded at least `older_than_ms` ago, with their delivery
    reservations. Returns (occurrences, deliveries)."""
    v.check_nonneg_int(older_than_ms, "older_than_ms")

    def tx(t: Tx) -> tuple[int, int]:
        cutoff = t.now() - older_than_ms
        deliveries = int(t.one(
            "SELECT count(*) FROM host_event_deliveries WHERE occurrence_id IN "
            "(SELECT occurrence_id FROM host_event_occurrences WHERE occurred_at_ms <= %s)",
            (cutoff,),
        )[0])  # type: ignore[index]
        if dry_run:
            n = int(t.one("SELECT count(*) FROM host_event_occurrences WHERE occurred_at_ms <= %s", (cutoff,))[0])  # type: ignore[index]
        else:
            # Deliveries go by ON DELETE CASCADE.
            n = t.rowcount("DELETE FROM host_event_occurrences WHERE occurred_at_ms <= %s", (cutoff,))
        return n, deliveries

    return _registry_write(store, dry_run, tx, "prune host event occurrences")


def prune_effects(store: Any, older_than_ms: int, *, dry_run: bool = False) -> int:
    """Delete finished (completed or failed) effect records last updated at least
    `older_than_ms` ago. In-progress records are never touched."""
    v.check_nonneg_int(older_than_ms, "older_than_ms")

    def tx(t: Tx) -> int:
        cutoff = t.now() - older_than_ms
        where = "status IN ('completed', 'failed') AND updated_at_ms <= %s"
        if dry_run:
            return int(t.one(f"SELECT count(*) FROM effect_replay WHERE {where}", (cutoff,))[0])  # type: ignore[index]
        return t.rowcount(f"DELETE FROM effect_replay WHERE {where}", (cutoff,))

    return _registry_write(store, dry_run, tx, "prune effects")


# -- as methods ---------------------------------------------------------------------------------


class PostgresMaintenanceMixin:
    """The functions above as methods of `PostgresSessionStore`."""

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

    def verify(self, *, blob_cache: dict[str, bool] | None = None) -> tuple[int, list[Problem]]:
        return verify_session_store(self, blob_cache=blob_cache)

    def verify_unreferenced_blobs(self, blob_cache: dict[str, bool]) -> tuple[int, list[Problem]]:
        return verify_unreferenced_blobs(self, blob_cache)

    def dump_session(self) -> SessionDump:
        return dump_session(self)

    def load_session_dump(self, dump: SessionDump) -> int | None:
        return load_session_dump(self, dump)
