"""The backend-neutral row format `lashstore copy` moves between deployments.

Both durable backends keep the same table shapes, so a copy is rows in a canonical column order
per table (below), read by one backend's transfer module and written by another's. Numbers that
only order rows (graph `seq`, queue `enqueue_seq`, effect `seq`) are not carried: rows are read
and written in that order, and the destination numbers them again. Host-event sequence numbers
are carried (a handle `trigger:{n}` names its number).

`digest` fingerprints rows so the copy can be verified table by table after it is written.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import msgspec

__all__ = [
    "SESSION_TABLES",
    "DEPLOYMENT_TABLES",
    "BLOB_COLUMNS",
    "BOOL_COLUMNS",
    "normalise",
    "digest",
    "session_blob_roots",
]

#: Session tables: columns after `session_id`, and the order rows are read in.
SESSION_TABLES: dict[str, tuple[tuple[str, ...], str]] = {
    "session_meta": (("session_name", "created_at", "model", "cwd", "relation"), "session_id"),
    "session_head": (
        ("head_revision", "checkpoint_ref", "leaf_node_id", "node_count", "updated_at_ms", "body"),
        "session_id",
    ),
    "graph_nodes": (("node_id", "parent_node_id", "tombstoned", "body"), "seq"),
    "usage_deltas": (
        ("head_revision", "idx", "source", "model", "input_tokens", "output_tokens", "cached_input_tokens",
         "reasoning_tokens", "created_at_ms"),
        "head_revision, idx",
    ),
    "turn_commits": (("turn_id", "turn_commit_hash", "result", "committed_at_ms"), "turn_id"),
    "artifact_refs": (("namespace", "name", "blob_ref", "created_at_ms"), "namespace, name"),
    "queued_work_batches": (
        ("batch_id", "source_key", "state", "delivery_policy", "slot_policy", "merge_key", "available_at_ms",
         "enqueued_at_ms", "claim_id", "claim_owner_id", "claim_token", "claim_fencing_token",
         "claim_claimed_at_ms", "claim_expires_at_ms", "finished_at_ms"),
        "enqueue_seq",
    ),
    "attachment_manifest": (
        ("attachment_id", "canonical_uri", "intent_at_ms", "committed_at_ms", "media_type", "byte_len", "width",
         "height", "label"),
        "attachment_id",
    ),
}

#: Items of a session's queued batches: (batch_id, item_index, item_id, payload), in queue order.
ITEM_COLUMNS = ("batch_id", "item_index", "item_id", "payload")

BLOB_COLUMNS = ("hash", "kind", "compression", "raw_size", "created_at_ms", "content")

#: Deployment tables: columns, and the order rows are read in.
DEPLOYMENT_TABLES: dict[str, tuple[tuple[str, ...], str]] = {
    "processes": (
        ("process_id", "registration_hash", "owner_session_id", "owner_scope_id", "host_profile_id", "status",
         "created_at_ms", "updated_at_ms", "terminal_at_ms", "registration", "external_ref", "await_output"),
        "process_id",
    ),
    "process_events": (
        ("process_id", "sequence", "event_type", "payload_hash", "replay_key", "occurred_at_ms", "terminal_state",
         "wake_id", "wake_target_session_id", "wake_target_scope_id", "wake_acked_at_ms", "payload", "invocation",
         "semantics"),
        "process_id, sequence",
    ),
    "process_handle_grants": (
        ("scope_id", "process_id", "session_id", "kind", "label", "granted_at_ms"),
        "scope_id, process_id",
    ),
    "process_leases": (
        ("process_id", "owner_id", "lease_token", "fencing_token", "claimed_at_ms", "expires_at_ms"),
        "process_id",
    ),
    "host_event_subscriptions": (
        ("seq", "subscription_id", "handle", "session_id", "name", "source_type", "source_key", "target_identity",
         "enabled", "created_at_ms", "updated_at_ms", "body"),
        "seq",
    ),
    "host_event_occurrences": (
        ("seq", "occurrence_id", "source_type", "source_key", "idempotency_key", "request_hash", "occurred_at_ms",
         "body"),
        "seq",
    ),
    "host_event_deliveries": (
        ("seq", "occurrence_id", "subscription_id", "process_id", "created_at_ms"),
        "seq",
    ),
    "effect_replay": (
        ("scope_kind", "session_id", "scope_id", "replay_key", "envelope_hash", "status", "outcome", "error",
         "lease_owner_id", "lease_token", "lease_expires_at_ms", "due_at_ms", "attempts", "created_at_ms",
         "updated_at_ms"),
        "seq",
    ),
}

#: Which component (store kind) holds each deployment table.
TABLE_COMPONENT = {
    "processes": "processes",
    "process_events": "processes",
    "process_handle_grants": "processes",
    "process_leases": "processes",
    "host_event_subscriptions": "host_events",
    "host_event_occurrences": "host_events",
    "host_event_deliveries": "host_events",
    "effect_replay": "effects",
}

#: Counters carried with the deployment tables: (name, what it numbers).
COUNTERS = ("fencing", "subscription", "occurrence", "delivery")

#: Columns SQLite keeps as 0/1 integers and PostgreSQL as booleans.
BOOL_COLUMNS = frozenset({"tombstoned", "enabled"})


def normalise(columns: tuple[str, ...], row: Iterable[Any]) -> tuple:
    """One row in the neutral form: booleans as bool, binary as bytes."""
    out = []
    for name, value in zip(columns, row):
        if name in BOOL_COLUMNS and value is not None:
            value = bool(value)
        elif isinstance(value, (memoryview, bytearray)):
            value = bytes(value)
        out.append(value)
    return tuple(out)


def digest(rows: Iterable[tuple]) -> str:
    """A fingerprint of rows in their order."""
    h = hashlib.sha256()
    for r in rows:
        h.update(msgspec.msgpack.encode(list(r)))
    return h.hexdigest()


def session_blob_roots(tables: dict[str, list[tuple]]) -> tuple[list[str], list[str]]:
    """(checkpoint roots, other roots) of one session's rows: its head checkpoint, its named
    artifacts and its attachment-manifest entries."""
    cols = SESSION_TABLES["session_head"][0]
    ref_at = cols.index("checkpoint_ref")
    checkpoints = [r[ref_at] for r in tables.get("session_head", []) if r[ref_at] is not None]
    art_at = SESSION_TABLES["artifact_refs"][0].index("blob_ref")
    others = [r[art_at] for r in tables.get("artifact_refs", [])]
    att_at = SESSION_TABLES["attachment_manifest"][0].index("attachment_id")
    others += [r[att_at] for r in tables.get("attachment_manifest", [])]
    return checkpoints, others
