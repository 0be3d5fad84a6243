"""The deployment's tables on PostgreSQL, per component, as numbered forward migrations.

Topology: one database schema holds the whole deployment (every session, the process registry,
host events, effects). Tables keep the SQLite shapes and names, with `session_id` in every
session table. `lashstore_schema_versions(component, version)` stamps each component;
creation and migration run on first connect in one transaction under a transaction advisory
lock on the schema, so concurrent first connects serialise and none sees a half-made schema
(DDL is transactional in PostgreSQL). A component newer than this lashstore knows is refused
with `UnsupportedSchema`.

Blobs are shared by the deployment, keyed by content hash alone (dedup across sessions). GC
roots are therefore deployment-wide: every session's head checkpoint, every named artifact and
every attachment-manifest row, collected under `LOCK TABLE blobs IN EXCLUSIVE MODE` so no
concurrent commit can reference a blob while the sweep decides. `delete_session` removes every
session-keyed row; blobs only that session referenced go with the next collection.

Named artifacts are keyed by (session_id, namespace, name): a factory store's artifacts belong to
its session ("" for a store opened without a session id), so two sessions never overwrite each
other's names (upstream bug 10) and deleting a session removes its artifacts (bug 18).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
import psycopg.errors
from psycopg import sql

from ...errors import BackendError, UnsupportedSchema

__all__ = ["COMPONENTS", "latest", "ensure_component", "SESSION_TABLES", "VERSIONS_TABLE"]

VERSIONS_TABLE = "lashstore_schema_versions"

Migration = tuple[int, Sequence[str]]

SESSION_V1 = (
    """CREATE TABLE blobs (
        hash TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        compression TEXT NOT NULL,
        raw_size BIGINT NOT NULL,
        created_at_ms BIGINT NOT NULL,
        content BYTEA NOT NULL
    )""",
    """CREATE TABLE session_head (
        session_id TEXT PRIMARY KEY,
        head_revision BIGINT NOT NULL,
        checkpoint_ref TEXT,
        leaf_node_id TEXT,
        node_count BIGINT NOT NULL,
        updated_at_ms BIGINT NOT NULL,
        body BYTEA NOT NULL
    )""",
    # seq orders a session's nodes by insertion. Nodes of one session are written under its head
    # lock, so within a session seq order is commit order; it is never exposed as a cursor.
    """CREATE TABLE graph_nodes (
        seq BIGINT GENERATED ALWAYS AS IDENTITY,
        session_id TEXT NOT NULL,
        node_id TEXT NOT NULL,
        parent_node_id TEXT,
        tombstoned BOOLEAN NOT NULL DEFAULT false,
        body BYTEA NOT NULL,
        PRIMARY KEY (session_id, node_id)
    )""",
    "CREATE INDEX graph_nodes_order ON graph_nodes (session_id, seq)",
    "CREATE INDEX graph_nodes_parent ON graph_nodes (session_id, parent_node_id)",
    """CREATE TABLE usage_deltas (
        session_id TEXT NOT NULL,
        head_revision BIGINT NOT NULL,
        idx INTEGER NOT NULL,
        source TEXT NOT NULL,
        model TEXT NOT NULL,
        input_tokens BIGINT NOT NULL,
        output_tokens BIGINT NOT NULL,
        cached_input_tokens BIGINT NOT NULL,
        reasoning_tokens BIGINT NOT NULL,
        created_at_ms BIGINT NOT NULL,
        PRIMARY KEY (session_id, head_revision, idx)
    )""",
    """CREATE TABLE turn_commits (
        session_id TEXT NOT NULL,
        turn_id TEXT NOT NULL,
        turn_commit_hash TEXT NOT NULL,
        result BYTEA NOT NULL,
        committed_at_ms BIGINT NOT NULL,
        PRIMARY KEY (session_id, turn_id)
    )""",
    """CREATE TABLE session_meta (
        session_id TEXT PRIMARY KEY,
        session_name TEXT NOT NULL,
        created_at TEXT NOT NULL,
        model TEXT NOT NULL,
        cwd TEXT,
        relation BYTEA NOT NULL
    )""",
    """CREATE TABLE artifact_refs (
        session_id TEXT NOT NULL,
        namespace TEXT NOT NULL,
        name TEXT NOT NULL,
        blob_ref TEXT NOT NULL,
        created_at_ms BIGINT NOT NULL,
        PRIMARY KEY (session_id, namespace, name)
    )""",
    # enqueue_seq orders a session's queue. Enqueues of one session serialise on a transaction
    # advisory lock, so within a session seq order is commit order (upstream bug 8).
    """CREATE TABLE queued_work_batches (
        enqueue_seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        batch_id TEXT NOT NULL UNIQUE,
        session_id TEXT NOT NULL,
        source_key TEXT,
        state TEXT NOT NULL DEFAULT 'queued',
        delivery_policy TEXT NOT NULL,
        slot_policy TEXT NOT NULL,
        merge_key TEXT,
        available_at_ms BIGINT NOT NULL,
        enqueued_at_ms BIGINT NOT NULL,
        claim_id TEXT,
        claim_owner_id TEXT,
        claim_token TEXT,
        claim_fencing_token BIGINT NOT NULL DEFAULT 0,
        claim_claimed_at_ms BIGINT NOT NULL DEFAULT 0,
        claim_expires_at_ms BIGINT NOT NULL DEFAULT 0,
        finished_at_ms BIGINT
    )""",
    "CREATE UNIQUE INDEX queued_work_source_key ON queued_work_batches (session_id, source_key) "
    "WHERE source_key IS NOT NULL",
    "CREATE INDEX queued_work_ready ON queued_work_batches (session_id, state, enqueue_seq)",
    "CREATE INDEX queued_work_claim ON queued_work_batches (claim_id) WHERE claim_id IS NOT NULL",
    """CREATE TABLE queued_work_items (
        batch_id TEXT NOT NULL REFERENCES queued_work_batches (batch_id) ON DELETE CASCADE,
        item_index INTEGER NOT NULL,
        item_id TEXT NOT NULL,
        payload BYTEA NOT NULL,
        PRIMARY KEY (batch_id, item_index)
    )""",
    """CREATE TABLE attachment_manifest (
        session_id TEXT NOT NULL,
        attachment_id TEXT NOT NULL,
        canonical_uri TEXT NOT NULL,
        intent_at_ms BIGINT NOT NULL,
        committed_at_ms BIGINT,
        media_type TEXT,
        byte_len BIGINT,
        width BIGINT,
        height BIGINT,
        label TEXT,
        PRIMARY KEY (session_id, attachment_id)
    )""",
    "CREATE INDEX attachment_manifest_uncommitted ON attachment_manifest (intent_at_ms) "
    "WHERE committed_at_ms IS NULL",
    "CREATE INDEX attachment_manifest_by_id ON attachment_manifest (attachment_id)",
)

#: Every table with a session_id column of the session component: delete_session empties all of
#: them (upstream bug 18 left rows behind that leaked into a recreated session).
SESSION_TABLES = (
    "attachment_manifest",
    "queued_work_batches",  # its items go by ON DELETE CASCADE
    "artifact_refs",
    "usage_deltas",
    "graph_nodes",
    "turn_commits",
    "session_meta",
    "session_head",
)

PROCESS_V1 = (
    """CREATE TABLE processes (
        process_id TEXT PRIMARY KEY,
        registration_hash TEXT NOT NULL,
        owner_session_id TEXT NOT NULL,
        owner_scope_id TEXT NOT NULL,
        host_profile_id TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('running', 'completed', 'failed', 'cancelled')),
        created_at_ms BIGINT NOT NULL,
        updated_at_ms BIGINT NOT NULL,
        terminal_at_ms BIGINT,
        registration BYTEA NOT NULL,
        external_ref BYTEA,
        await_output BYTEA,
        CHECK ((status = 'running') = (terminal_at_ms IS NULL))
    )""",
    "CREATE INDEX processes_status ON processes (status, process_id)",
    "CREATE INDEX processes_terminal_at ON processes (terminal_at_ms) WHERE terminal_at_ms IS NOT NULL",
    "CREATE INDEX processes_owner ON processes (owner_session_id)",
    """CREATE TABLE process_events (
        process_id TEXT NOT NULL REFERENCES processes (process_id) ON DELETE CASCADE,
        sequence BIGINT NOT NULL CHECK (sequence >= 1),
        event_type TEXT NOT NULL,
        payload_hash TEXT NOT NULL,
        replay_key TEXT,
        occurred_at_ms BIGINT NOT NULL,
        terminal_state TEXT,
        wake_id TEXT,
        wake_target_session_id TEXT,
        wake_target_scope_id TEXT,
        wake_acked_at_ms BIGINT,
        payload BYTEA NOT NULL,
        invocation BYTEA NOT NULL,
        semantics BYTEA NOT NULL,
        PRIMARY KEY (process_id, sequence),
        CHECK ((wake_id IS NULL) = (wake_target_scope_id IS NULL)),
        CHECK (wake_acked_at_ms IS NULL OR wake_id IS NOT NULL)
    )""",
    "CREATE UNIQUE INDEX process_events_replay ON process_events (process_id, replay_key) "
    "WHERE replay_key IS NOT NULL",
    "CREATE INDEX process_events_type ON process_events (process_id, event_type, sequence)",
    "CREATE INDEX process_events_pending_wakes ON process_events (wake_target_session_id) "
    "WHERE wake_id IS NOT NULL AND wake_acked_at_ms IS NULL",
    """CREATE TABLE process_handle_grants (
        scope_id TEXT NOT NULL,
        process_id TEXT NOT NULL REFERENCES processes (process_id) ON DELETE CASCADE,
        session_id TEXT NOT NULL,
        kind TEXT,
        label TEXT,
        granted_at_ms BIGINT NOT NULL,
        PRIMARY KEY (scope_id, process_id)
    )""",
    "CREATE INDEX process_handle_grants_session ON process_handle_grants (session_id)",
    "CREATE INDEX process_handle_grants_process ON process_handle_grants (process_id, session_id, scope_id)",
    """CREATE TABLE process_leases (
        process_id TEXT PRIMARY KEY REFERENCES processes (process_id) ON DELETE CASCADE,
        owner_id TEXT,
        lease_token TEXT,
        fencing_token BIGINT NOT NULL DEFAULT 0,
        claimed_at_ms BIGINT NOT NULL DEFAULT 0,
        expires_at_ms BIGINT NOT NULL DEFAULT 0
    )""",
    # The last fencing token handed out: a transactional counter row, never a SEQUENCE, so tokens
    # rise in commit order.
    """CREATE TABLE process_lease_fencing (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        last_fencing_token BIGINT NOT NULL
    )""",
    "INSERT INTO process_lease_fencing (id, last_fencing_token) VALUES (1, 0)",
)

HOST_EVENTS_V1 = (
    # Transactional counters (not SEQUENCEs): `trigger:{n}` never repeats and listing order is
    # commit order (upstream bug 8).
    """CREATE TABLE host_event_counters (
        name TEXT PRIMARY KEY,
        value BIGINT NOT NULL
    )""",
    "INSERT INTO host_event_counters (name, value) VALUES ('subscription', 0), ('occurrence', 0), ('delivery', 0)",
    """CREATE TABLE host_event_subscriptions (
        subscription_id TEXT PRIMARY KEY,
        seq BIGINT NOT NULL UNIQUE,
        session_id TEXT NOT NULL,
        handle TEXT NOT NULL UNIQUE,
        name TEXT,
        source_type TEXT NOT NULL,
        source_key TEXT NOT NULL,
        target_identity TEXT,
        enabled BOOLEAN NOT NULL,
        created_at_ms BIGINT NOT NULL,
        updated_at_ms BIGINT NOT NULL,
        body BYTEA NOT NULL
    )""",
    "CREATE INDEX host_event_subscriptions_session ON host_event_subscriptions (session_id, seq)",
    "CREATE INDEX host_event_subscriptions_source ON host_event_subscriptions (source_type, source_key, enabled, seq)",
    """CREATE TABLE host_event_occurrences (
        seq BIGINT NOT NULL UNIQUE,
        occurrence_id TEXT PRIMARY KEY,
        source_type TEXT NOT NULL,
        source_key TEXT NOT NULL,
        idempotency_key TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        occurred_at_ms BIGINT NOT NULL,
        body BYTEA NOT NULL
    )""",
    "CREATE INDEX host_event_occurrences_source ON host_event_occurrences (source_type, source_key, seq)",
    """CREATE TABLE host_event_deliveries (
        seq BIGINT NOT NULL UNIQUE,
        occurrence_id TEXT NOT NULL REFERENCES host_event_occurrences (occurrence_id) ON DELETE CASCADE,
        subscription_id TEXT NOT NULL REFERENCES host_event_subscriptions (subscription_id) ON DELETE CASCADE,
        process_id TEXT NOT NULL,
        created_at_ms BIGINT NOT NULL,
        PRIMARY KEY (occurrence_id, subscription_id)
    )""",
    "CREATE INDEX host_event_deliveries_subscription ON host_event_deliveries (subscription_id)",
    "CREATE INDEX host_event_deliveries_process ON host_event_deliveries (process_id)",
)

EFFECTS_V1 = (
    # seq only orders listings by first claim; it is not a cursor, so an identity is enough.
    """CREATE TABLE effect_replay (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        scope_kind TEXT NOT NULL,
        session_id TEXT NOT NULL,
        scope_id TEXT NOT NULL,
        replay_key TEXT NOT NULL,
        envelope_hash TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('in_progress', 'completed', 'failed')),
        outcome BYTEA,
        error BYTEA,
        lease_owner_id TEXT,
        lease_token TEXT,
        lease_expires_at_ms BIGINT NOT NULL DEFAULT 0,
        due_at_ms BIGINT,
        attempts INTEGER NOT NULL DEFAULT 0,
        created_at_ms BIGINT NOT NULL,
        updated_at_ms BIGINT NOT NULL,
        UNIQUE (scope_kind, session_id, scope_id, replay_key)
    )""",
    "CREATE INDEX effect_replay_leases ON effect_replay (status, lease_expires_at_ms)",
    "CREATE INDEX effect_replay_session ON effect_replay (session_id, seq)",
)

#: component -> its migrations, oldest first: (the version it produces, statements).
COMPONENTS: dict[str, list[Migration]] = {
    "session": [(1, SESSION_V1)],
    "process registry": [(1, PROCESS_V1)],
    "host events": [(1, HOST_EVENTS_V1)],
    "effects": [(1, EFFECTS_V1)],
}

#: Tables each component creates (to refuse a schema holding foreign tables of the same names).
_TABLES = {
    "session": ("blobs", "session_head", "graph_nodes", "usage_deltas", "turn_commits", "session_meta",
                "artifact_refs", "queued_work_batches", "queued_work_items", "attachment_manifest"),
    "process registry": ("processes", "process_events", "process_handle_grants", "process_leases",
                         "process_lease_fencing"),
    "host events": ("host_event_counters", "host_event_subscriptions", "host_event_occurrences",
                    "host_event_deliveries"),
    "effects": ("effect_replay",),
}


def latest(component: str) -> int:
    return COMPONENTS[component][-1][0]


def _stamped_version(conn: psycopg.Connection, schema: str, component: str) -> int | None:
    """The stamped version, or None when the schema or the version table does not exist yet."""
    try:
        row = conn.execute(
            sql.SQL("SELECT version FROM {}.{} WHERE component = %s").format(
                sql.Identifier(schema), sql.Identifier(VERSIONS_TABLE)
            ),
            (component,),
        ).fetchone()
    except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
        return None
    return 0 if row is None else int(row[0])


def ensure_component(conn: psycopg.Connection, schema: str, component: str) -> None:
    """Create or migrate one component in `schema`; `conn` is an autocommit connection."""
    if component not in COMPONENTS:
        raise ValueError(f"unknown component {component!r}")
    target = latest(component)
    try:
        found = _stamped_version(conn, schema, component)
        if found == target:
            return
        if found is not None and found > target:
            raise UnsupportedSchema(component, target, found)
        with conn.transaction():
            # One lock per schema: components share the version table and the schema itself.
            conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"lashstore\x1fschema\x1f{schema}",)
            )
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
            conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {}.{} (component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
                ).format(sql.Identifier(schema), sql.Identifier(VERSIONS_TABLE))
            )
            found = _stamped_version(conn, schema, component) or 0
            if found > target:
                raise UnsupportedSchema(component, target, found)
            if found == target:
                return
            if found == 0:
                existing = [
                    r[0]
                    for r in conn.execute(
                        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
                        "AND table_name = ANY(%s)",
                        (schema, list(_TABLES[component])),
                    )
                ]
                if existing:
                    raise UnsupportedSchema(
                        component,
                        target,
                        0,
                        f"schema {schema!r} already holds tables lashstore did not stamp ({', '.join(sorted(existing))}); "
                        "use another schema (?schema=...)",
                    )
            conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema)))
            for version, statements in COMPONENTS[component]:
                if version <= found:
                    continue
                for stmt in statements:
                    conn.execute(stmt)
            conn.execute(
                sql.SQL(
                    "INSERT INTO {}.{} (component, version) VALUES (%s, %s) "
                    "ON CONFLICT (component) DO UPDATE SET version = excluded.version"
                ).format(sql.Identifier(schema), sql.Identifier(VERSIONS_TABLE)),
                (component, target),
            )
    except UnsupportedSchema:
        raise
    except psycopg.Error as e:
        raise BackendError(f"create or migrate the postgres {component} schema in {schema!r}: {e}") from e


def component_version(db: Any, component: str) -> int | None:
    """The stamped version of `component` in the database's schema (None: not created yet)."""
    with db.connection() as conn:
        return _stamped_version(conn, db.schema, component)
