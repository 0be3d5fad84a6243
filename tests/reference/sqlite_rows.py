"""Raw rows of a SQLite deployment directory, read with `sqlite3` alone: an oracle for
`lashstore copy` that shares no code with the stores (the copy moves dumps; this reads tables).

Rows are in a neutral form (booleans as bool, binary as bytes), in a fixed column and row order.
Numbers that only order rows (graph `seq`, queue `enqueue_seq`, effect `seq`) are left out.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

#: Session tables: columns after `session_id`, and their order.
SESSION_TABLES: dict[str, tuple[tuple[str, ...], str]] = {
    "session_meta": (("session_name", "created_at", "model", "cwd", "relation"), "session_id"),
    "session_head": (("head_revision", "checkpoint_ref", "leaf_node_id", "node_count", "updated_at_ms", "body"),
                     "session_id"),
    "graph_nodes": (("node_id", "parent_node_id", "tombstoned", "body"), "seq"),
    "usage_deltas": (("head_revision", "idx", "source", "model", "input_tokens", "output_tokens",
                      "cached_input_tokens", "reasoning_tokens", "created_at_ms"), "head_revision, idx"),
    "turn_commits": (("turn_id", "turn_commit_hash", "result", "committed_at_ms"), "turn_id"),
    "artifact_refs": (("namespace", "name", "blob_ref", "created_at_ms"), "namespace, name"),
    "queued_work_batches": (("batch_id", "source_key", "state", "delivery_policy", "slot_policy", "merge_key",
                             "available_at_ms", "enqueued_at_ms", "claim_id", "claim_owner_id", "claim_token",
                             "claim_fencing_token", "claim_claimed_at_ms", "claim_expires_at_ms", "finished_at_ms"),
                            "enqueue_seq"),
    "attachment_manifest": (("attachment_id", "canonical_uri", "intent_at_ms", "committed_at_ms", "media_type",
                             "byte_len", "width", "height", "label"), "attachment_id"),
}

#: Registry tables: (file, columns, order).
REGISTRY_TABLES: dict[str, tuple[str, tuple[str, ...], str]] = {
    "processes": ("processes.db", ("process_id", "registration_hash", "owner_session_id", "owner_scope_id",
                                   "host_profile_id", "status", "created_at_ms", "updated_at_ms", "terminal_at_ms",
                                   "registration", "external_ref", "await_output"), "process_id"),
    "process_events": ("processes.db", ("process_id", "sequence", "event_type", "payload_hash", "replay_key",
                                        "occurred_at_ms", "terminal_state", "wake_id", "wake_target_session_id",
                                        "wake_target_scope_id", "wake_acked_at_ms", "payload", "invocation",
                                        "semantics"), "process_id, sequence"),
    "process_handle_grants": ("processes.db", ("scope_id", "process_id", "session_id", "kind", "label",
                                               "granted_at_ms"), "scope_id, process_id"),
    "process_leases": ("processes.db", ("process_id", "owner_id", "lease_token", "fencing_token", "claimed_at_ms",
                                        "expires_at_ms"), "process_id"),
    "host_event_subscriptions": ("host_events.db", ("seq", "subscription_id", "handle", "session_id", "name",
                                                    "source_type", "source_key", "target_identity", "enabled",
                                                    "created_at_ms", "updated_at_ms", "body"), "seq"),
    "host_event_occurrences": ("host_events.db", ("seq", "occurrence_id", "source_type", "source_key",
                                                  "idempotency_key", "request_hash", "occurred_at_ms", "body"), "seq"),
    "host_event_deliveries": ("host_events.db", ("seq", "occurrence_id", "subscription_id", "process_id",
                                                 "created_at_ms"), "seq"),
    "effect_replay": ("effects.db", ("scope_kind", "session_id", "scope_id", "replay_key", "envelope_hash", "status",
                                     "outcome", "error", "lease_owner_id", "lease_token", "lease_expires_at_ms",
                                     "due_at_ms", "attempts", "created_at_ms", "updated_at_ms"), "seq"),
}

BLOB_COLUMNS = ("hash", "kind", "compression", "raw_size", "created_at_ms", "content")


def _norm(columns: tuple[str, ...], row: Any) -> tuple:
    out = []
    for name, value in zip(columns, row):
        if name in ("tombstoned", "enabled") and value is not None:
            value = bool(value)
        out.append(value)
    return tuple(out)


def _ro(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)


def session_rows(path: str | Path, session_id: str) -> dict[str, list[tuple]]:
    """Every row of one session's file, by table (with `queued_work_items` and `blobs`)."""
    conn = _ro(Path(path))
    try:
        out = {
            table: [_norm(cols, r) for r in conn.execute(
                f"SELECT {', '.join(cols)} FROM {table} WHERE session_id = ? ORDER BY {order}", (session_id,))]
            for table, (cols, order) in SESSION_TABLES.items()
        }
        out["queued_work_items"] = [tuple(r) for r in conn.execute(
            "SELECT i.batch_id, i.item_index, i.item_id, i.payload FROM queued_work_items i JOIN queued_work_batches b "
            "ON b.batch_id = i.batch_id WHERE b.session_id = ? ORDER BY b.enqueue_seq, i.item_index", (session_id,))]
        out["blobs"] = [tuple(r) for r in conn.execute(f"SELECT {', '.join(BLOB_COLUMNS)} FROM blobs ORDER BY hash")]
        return out
    finally:
        conn.close()


def registry_rows(root: str | Path) -> dict[str, list[tuple]]:
    out = {}
    for table, (file, cols, order) in REGISTRY_TABLES.items():
        conn = _ro(Path(root) / file)
        try:
            out[table] = [_norm(cols, r) for r in conn.execute(f"SELECT {', '.join(cols)} FROM {table} ORDER BY {order}")]
        finally:
            conn.close()
    return out


def counters(root: str | Path) -> dict[str, int]:
    conn = _ro(Path(root) / "processes.db")
    out = {"fencing": conn.execute("SELECT last_fencing_token FROM process_lease_fencing").fetchone()[0]}
    conn.close()
    conn = _ro(Path(root) / "host_events.db")
    out.update(dict(conn.execute("SELECT name, value FROM host_event_counters")))
    conn.close()
    return out


def reachable(rows: dict[str, list[tuple]]) -> set[str]:
    """The blobs a session reaches: its head checkpoint (and what its manifest names), its named
    artifacts and its attachments."""
    from lashstore.backends.common import check_stored_blob, decode_manifest
    from lashstore.rules.gc import mark_reachable

    blobs = {b[0]: b for b in rows["blobs"]}
    head_cols = SESSION_TABLES["session_head"][0]
    roots = [r[head_cols.index("checkpoint_ref")] for r in rows["session_head"] if r[head_cols.index("checkpoint_ref")]]
    others = [r[2] for r in rows["artifact_refs"]] + [r[0] for r in rows["attachment_manifest"]]

    def load(ref: str) -> Any:
        b = blobs.get(ref)
        return None if b is None else decode_manifest(ref, check_stored_blob(ref, b[1], b[2], b[3], b[5]))

    return mark_reachable(roots, others, load) & set(blobs)
