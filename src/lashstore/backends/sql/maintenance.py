"""The statements of session maintenance (retention, compaction, verification, dump and load),
written once for SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from ...codec import pack
from ...engine.tx import Tx, any_of
from ...model.maintenance import DumpArtifact, DumpAttachment, DumpBatch, DumpBlob, DumpTurn, DumpUsage
from ...model.session import GraphNode, TokenUsage
from ..common import HEAD_COLUMNS, check_stored_blob, decode_node, decode_payload, decode_result

#: Every table keyed by session (queued-work items go with their batches).
SESSION_TABLES = ("session_head", "graph_nodes", "usage_deltas", "turn_commits", "session_meta",
                  "queued_work_batches", "attachment_manifest", "artifact_refs")


def session_ids(t: Tx) -> list[str]:
    return [r[0] for r in t.all("SELECT session_id FROM session_head UNION SELECT session_id FROM session_meta ORDER BY 1")]


def graph_nodes(t: Tx, sid: str, *, tombstoned_only: bool = False) -> list[tuple[GraphNode, bool]]:
    where = " AND tombstoned" if tombstoned_only else ""
    return [(decode_node(nid, body), bool(tomb)) for nid, tomb, body in t.all(
        f"SELECT node_id, tombstoned, body FROM graph_nodes WHERE session_id = ?{where} ORDER BY seq", (sid,))]


def graph_shape(t: Tx, sid: str) -> dict[str, tuple[str | None, bool, int]]:
    """node id -> (parent, tombstoned, stored body bytes)."""
    return {nid: (parent, bool(tomb), int(size)) for nid, parent, tomb, size in t.all(
        "SELECT node_id, parent_node_id, tombstoned, length(body) FROM graph_nodes WHERE session_id = ?", (sid,))}


def node_body(t: Tx, sid: str, nid: str) -> bytes:
    return t.one("SELECT body FROM graph_nodes WHERE session_id = ? AND node_id = ?", (sid, nid))[0]  # type: ignore[index]


def head_for_prune(t: Tx, sid: str, *, lock: bool) -> tuple[str | None, int] | None:
    return t.one(f"SELECT leaf_node_id, head_revision FROM session_head WHERE session_id = ?"
                 f"{t.dialect.for_update if lock else ''}", (sid,))  # type: ignore[return-value]


def cut_graph(t: Tx, sid: str, doomed: list[str], cut: str, cut_body: bytes) -> int:
    """Delete `doomed`, make `cut` a root, move the head's revision; returns the live count."""
    cond, params = any_of(t, "node_id", doomed)
    t.execute(f"DELETE FROM graph_nodes WHERE session_id = ? AND {cond}", (sid, *params))
    t.execute("UPDATE graph_nodes SET parent_node_id = NULL, body = ? WHERE session_id = ? AND node_id = ?",
              (cut_body, sid, cut))
    live = int(t.one("SELECT count(*) FROM graph_nodes WHERE session_id = ? AND NOT tombstoned", (sid,))[0])  # type: ignore[index]
    t.execute("UPDATE session_head SET node_count = ?, head_revision = head_revision + 1 WHERE session_id = ?",
              (live, sid))
    return live


_FINISHED = "session_id = ? AND state IN ('completed', 'cancelled') AND finished_at_ms IS NOT NULL AND finished_at_ms <= ?"


def finished_batches(t: Tx, sid: str, cutoff: int, *, delete: bool) -> int:
    if not delete:
        return int(t.one(f"SELECT count(*) FROM queued_work_batches WHERE {_FINISHED}", (sid, cutoff))[0])  # type: ignore[index]
    return t.rowcount(f"DELETE FROM queued_work_batches WHERE {_FINISHED}", (sid, cutoff))


def turn_times(t: Tx, sid: str) -> list[tuple[str, int]]:
    return t.all("SELECT turn_id, committed_at_ms FROM turn_commits WHERE session_id = ? "
                 "ORDER BY committed_at_ms DESC, turn_id", (sid,))


def delete_turns(t: Tx, sid: str, turn_ids: list[str]) -> None:
    t.many("DELETE FROM turn_commits WHERE session_id = ? AND turn_id = ?", [(sid, tid) for tid in turn_ids])


def usage_rows(t: Tx, sid: str) -> list[tuple]:
    return t.all("SELECT head_revision, idx, source, model, input_tokens, output_tokens, cached_input_tokens, "
                 "reasoning_tokens, created_at_ms FROM usage_deltas WHERE session_id = ? ORDER BY head_revision, idx",
                 (sid,))


def fold_usage(t: Tx, sid: str, doomed: list[tuple[int, int]], updates: dict[tuple[int, int], tuple]) -> None:
    t.many("DELETE FROM usage_deltas WHERE session_id = ? AND head_revision = ? AND idx = ?",
           [(sid, rev, idx) for rev, idx in doomed])
    t.many("UPDATE usage_deltas SET input_tokens = ?, output_tokens = ?, cached_input_tokens = ?, reasoning_tokens = ? "
           "WHERE session_id = ? AND head_revision = ? AND idx = ?",
           [(*counts, sid, rev, idx) for (rev, idx), counts in updates.items()])


# -- dump -----------------------------------------------------------------------------------------


def dump_usage(t: Tx, sid: str) -> list[DumpUsage]:
    return [DumpUsage(source=s, model=m, usage=TokenUsage(input_tokens=int(i), output_tokens=int(o),
                                                           cached_input_tokens=int(ca), reasoning_tokens=int(r)),
                      revision=int(rev), idx=int(idx), created_at_ms=int(at))
            for rev, idx, s, m, i, o, ca, r, at in usage_rows(t, sid)]


def dump_turns(t: Tx, sid: str) -> list[DumpTurn]:
    return [DumpTurn(turn_id=tid, turn_commit_hash=h, result=decode_result(f"{sid}/{tid}", body), committed_at_ms=at)
            for tid, h, body, at in t.all(
                "SELECT turn_id, turn_commit_hash, result, committed_at_ms FROM turn_commits WHERE session_id = ? "
                "ORDER BY committed_at_ms, turn_id", (sid,))]


_BATCH_COLS = (
    "batch_id, session_id, source_key, state, delivery_policy, slot_policy, merge_key, available_at_ms, "
    "enqueued_at_ms, claim_id, claim_owner_id, claim_token, claim_fencing_token, claim_claimed_at_ms, "
    "claim_expires_at_ms, finished_at_ms"
)


def dump_batches(t: Tx, sid: str) -> list[DumpBatch]:
    items: dict[str, list[tuple[str, Any]]] = {}
    for bid, item_id, payload in t.all(
        "SELECT i.batch_id, i.item_id, i.payload FROM queued_work_items i JOIN queued_work_batches b "
        "ON b.batch_id = i.batch_id WHERE b.session_id = ? ORDER BY i.batch_id, i.item_index", (sid,)
    ):
        items.setdefault(bid, []).append((item_id, decode_payload(item_id, bytes(payload))))
    return [
        DumpBatch(batch_id=r[0], enqueue_seq=r[1], source_key=r[2], state=r[3], delivery_policy=r[4],
                  slot_policy=r[5], merge_key=r[6], available_at_ms=r[7], enqueued_at_ms=r[8],
                  items=items.get(r[0], []), claim_id=r[9], claim_owner_id=r[10], claim_token=r[11],
                  claim_fencing_token=r[12], claim_claimed_at_ms=r[13], claim_expires_at_ms=r[14], finished_at_ms=r[15])
        for r in t.all(
            "SELECT batch_id, enqueue_seq, source_key, state, delivery_policy, slot_policy, merge_key, available_at_ms, "
            "enqueued_at_ms, claim_id, claim_owner_id, claim_token, claim_fencing_token, claim_claimed_at_ms, "
            "claim_expires_at_ms, finished_at_ms FROM queued_work_batches WHERE session_id = ? ORDER BY enqueue_seq",
            (sid,))
    ]


def dump_attachments(t: Tx, sid: str) -> list[DumpAttachment]:
    return [DumpAttachment(attachment_id=r[0], canonical_uri=r[1], intent_at_ms=r[2], committed_at_ms=r[3],
                           media_type=r[4], byte_len=r[5], width=r[6], height=r[7], label=r[8])
            for r in t.all(
                "SELECT attachment_id, canonical_uri, intent_at_ms, committed_at_ms, media_type, byte_len, width, "
                "height, label FROM attachment_manifest WHERE session_id = ? ORDER BY intent_at_ms, attachment_id",
                (sid,))]


def dump_artifacts(t: Tx, owner: str) -> list[DumpArtifact]:
    return [DumpArtifact(namespace=ns, name=name, blob_ref=ref, created_at_ms=at) for ns, name, ref, at in t.all(
        "SELECT namespace, name, blob_ref, created_at_ms FROM artifact_refs WHERE session_id = ? ORDER BY namespace, name",
        (owner,))]


def dump_blob(t: Tx, ref: str) -> DumpBlob | None:
    row = t.one("SELECT kind, compression, raw_size, created_at_ms, content FROM blobs WHERE hash = ?", (ref,))
    if row is None:
        return None
    check_stored_blob(ref, row[0], row[1], row[2], row[4])
    return DumpBlob(ref=ref, kind=row[0], compression=row[1], raw_size=int(row[2]), data=bytes(row[4]),
                    created_at_ms=int(row[3]))


# -- load ---------------------------------------------------------------------------------------


def clear_session(t: Tx, sid: str) -> None:
    """Every row of the session but its artifacts (queued-work items go with their batches)."""
    t.execute("DELETE FROM queued_work_items WHERE batch_id IN (SELECT batch_id FROM queued_work_batches "
              "WHERE session_id = ?)", (sid,))
    for table in SESSION_TABLES:
        if table != "artifact_refs":
            t.execute(f"DELETE FROM {table} WHERE session_id = ?", (sid,))


def load_rows(t: Tx, sid: str, dump: Any, revision: int | None, head_body: bytes | None,
              batch_rows: list[tuple], now: int) -> None:
    """Insert a dump's rows for `sid` (after `clear_session`)."""
    h = dump.head
    t.many("INSERT INTO blobs (hash, kind, compression, raw_size, created_at_ms, content) VALUES (?, ?, ?, ?, ?, ?) "
           "ON CONFLICT (hash) DO NOTHING",
           [(b.ref, b.kind, b.compression, b.raw_size, b.created_at_ms if b.created_at_ms is not None else now,
             bytes(b.data)) for b in dump.blobs])
    if dump.blobs and t.dialect.for_key_share:
        # Held until commit: a concurrent collection cannot sweep a blob the new head names.
        cond, params = any_of(t, "hash", [b.ref for b in dump.blobs])
        t.execute(f"SELECT 1 FROM blobs WHERE {cond}{t.dialect.for_key_share}", params)
    if dump.meta is not None:
        m = dump.meta
        t.execute("INSERT INTO session_meta (session_id, session_name, created_at, model, cwd, relation) "
                  "VALUES (?, ?, ?, ?, ?, ?)", (sid, m.session_name, m.created_at, m.model, m.cwd, pack(m.relation)))
    t.many("INSERT INTO graph_nodes (session_id, node_id, parent_node_id, tombstoned, body) VALUES (?, ?, ?, ?, ?)",
           [(sid, d.node.node_id, d.node.parent_node_id, d.tombstoned, pack(d.node)) for d in dump.nodes])
    if h is not None:
        t.execute(f"INSERT INTO session_head ({HEAD_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                  (sid, revision, h.checkpoint_ref, h.leaf_node_id, h.node_count, h.updated_at_ms, head_body))
    t.many("INSERT INTO usage_deltas (session_id, head_revision, idx, source, model, input_tokens, output_tokens, "
           "cached_input_tokens, reasoning_tokens, created_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
           [(sid, u.revision if u.revision is not None else 0, u.idx if u.idx is not None else n, u.source, u.model,
             u.usage.input_tokens, u.usage.output_tokens, u.usage.cached_input_tokens, u.usage.reasoning_tokens,
             u.created_at_ms if u.created_at_ms is not None else now) for n, u in enumerate(dump.usage)])
    t.many("INSERT INTO turn_commits (session_id, turn_id, turn_commit_hash, result, committed_at_ms) "
           "VALUES (?, ?, ?, ?, ?)",
           [(sid, tt.turn_id, tt.turn_commit_hash, pack(tt.result),
             tt.committed_at_ms if tt.committed_at_ms is not None else now) for tt in dump.turns])
    _insert_batches(t, batch_rows)
    t.many("INSERT INTO queued_work_items (batch_id, item_index, item_id, payload) VALUES (?, ?, ?, ?)",
           [(b.batch_id, i, item_id, pack(payload)) for b in dump.batches for i, (item_id, payload) in enumerate(b.items)])
    t.many("INSERT INTO attachment_manifest (session_id, attachment_id, canonical_uri, intent_at_ms, committed_at_ms, "
           "media_type, byte_len, width, height, label) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
           [(sid, a.attachment_id, a.canonical_uri, a.intent_at_ms, a.committed_at_ms, a.media_type, a.byte_len,
             a.width, a.height, a.label) for a in dump.attachments])
    t.many("INSERT INTO artifact_refs (session_id, namespace, name, blob_ref, created_at_ms) VALUES (?, ?, ?, ?, ?) "
           "ON CONFLICT (session_id, namespace, name) DO UPDATE SET blob_ref = excluded.blob_ref",
           [(sid, a.namespace, a.name, a.blob_ref, a.created_at_ms if a.created_at_ms is not None else now)
            for a in dump.artifacts])


def _insert_batches(t: Tx, rows: list[tuple]) -> None:
    """Insert batches (enqueue_seq first, then _BATCH_COLS) in queue order. The dump's numbers are
    kept when no stored batch holds one of them; otherwise the database numbers them, same order."""
    if not rows:
        return
    seqs = [r[0] for r in rows]
    cond, params = any_of(t, "enqueue_seq", seqs)
    marks = ", ".join("?" * 16)
    if t.one(f"SELECT count(*) FROM queued_work_batches WHERE {cond}", params)[0]:  # type: ignore[index]
        t.many(f"INSERT INTO queued_work_batches ({_BATCH_COLS}) VALUES ({marks})", [r[1:] for r in rows])
        return
    override = t.dialect.explicit_ids(t, "queued_work_batches", "enqueue_seq", max(seqs))
    t.many(f"INSERT INTO queued_work_batches (enqueue_seq, {_BATCH_COLS}){override} VALUES (?, {marks})", rows)


# -- verify ---------------------------------------------------------------------------------------


def blob_rows(t: Tx, refs: list[str] | None) -> list[tuple]:
    """(hash, kind, compression, raw_size, content) of `refs` (every blob when None)."""
    if refs is None:
        return t.all("SELECT hash, kind, compression, raw_size, content FROM blobs ORDER BY hash")
    cond, params = any_of(t, "hash", refs)
    return t.all(f"SELECT hash, kind, compression, raw_size, content FROM blobs WHERE {cond} ORDER BY hash", params)


def blob_hashes(t: Tx) -> list[str]:
    return [r[0] for r in t.all("SELECT hash FROM blobs ORDER BY hash")]


def node_rows(t: Tx, sid: str) -> list[tuple]:
    return t.all("SELECT node_id, parent_node_id, tombstoned, body FROM graph_nodes WHERE session_id = ? ORDER BY seq",
                 (sid,))


def turn_rows(t: Tx, sid: str) -> list[tuple]:
    return t.all("SELECT turn_id, result FROM turn_commits WHERE session_id = ? ORDER BY turn_id", (sid,))


def meta_relations(t: Tx, sid: str) -> list[tuple]:
    return t.all("SELECT relation FROM session_meta WHERE session_id = ?", (sid,))


def batch_rows(t: Tx, sid: str) -> list[tuple]:
    return t.all("SELECT batch_id, state, delivery_policy, slot_policy FROM queued_work_batches WHERE session_id = ? "
                 "ORDER BY enqueue_seq", (sid,))


def item_rows(t: Tx, sid: str) -> list[tuple]:
    return t.all("SELECT i.item_id, i.payload FROM queued_work_items i JOIN queued_work_batches b "
                 "ON b.batch_id = i.batch_id WHERE b.session_id = ? ORDER BY b.enqueue_seq, i.item_index", (sid,))


def artifact_rows(t: Tx, owner: str) -> list[tuple]:
    return t.all("SELECT namespace, name, blob_ref FROM artifact_refs WHERE session_id = ? ORDER BY namespace, name",
                 (owner,))


def attachment_ids(t: Tx, sid: str) -> list[str]:
    return [r[0] for r in t.all("SELECT attachment_id FROM attachment_manifest WHERE session_id = ? "
                                "AND media_type IS NOT NULL ORDER BY attachment_id", (sid,))]
