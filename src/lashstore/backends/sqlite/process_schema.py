"""Process-registry database schema (its own file, kind "process registry"), as numbered migrations.

Compared with the reference (§3.2): what queries filter on lives in real columns (owner session,
status, terminal time, the wake target and its acknowledgement), the immutable registration is
stored once and never rewritten, acks are a column of the event they acknowledge (so only wake
events can be acknowledged), and lease fencing tokens come from one registry-wide counter so
they keep rising across release, prune and re-registration.
"""

from __future__ import annotations

from .connection import Migration

KIND = "process registry"

V1 = (
    "CREATE TABLE lashstore_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    # registration: msgpack of the canonical ProcessRegistration (input, event types,
    # provenance); external_ref and await_output: msgpack, NULL until set.
    """CREATE TABLE processes (
        process_id TEXT PRIMARY KEY,
        registration_hash TEXT NOT NULL,
        owner_session_id TEXT NOT NULL,
        owner_scope_id TEXT NOT NULL,
        host_profile_id TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('running', 'completed', 'failed', 'cancelled')),
        created_at_ms INTEGER NOT NULL,
        updated_at_ms INTEGER NOT NULL,
        terminal_at_ms INTEGER,
        registration BLOB NOT NULL,
        external_ref BLOB,
        await_output BLOB,
        CHECK ((status = 'running') = (terminal_at_ms IS NULL))
    )""",
    "CREATE INDEX processes_status ON processes (status, process_id)",
    "CREATE INDEX processes_terminal_at ON processes (terminal_at_ms) WHERE terminal_at_ms IS NOT NULL",
    "CREATE INDEX processes_owner ON processes (owner_session_id)",
    # A rowid table: payloads may be large, which WITHOUT ROWID handles badly.
    """CREATE TABLE process_events (
        process_id TEXT NOT NULL REFERENCES processes (process_id) ON DELETE CASCADE,
        sequence INTEGER NOT NULL CHECK (sequence >= 1),
        event_type TEXT NOT NULL,
        payload_hash TEXT NOT NULL,
        replay_key TEXT,
        occurred_at_ms INTEGER NOT NULL,
        terminal_state TEXT,
        wake_id TEXT,
        wake_target_session_id TEXT,
        wake_target_scope_id TEXT,
        wake_acked_at_ms INTEGER,
        payload BLOB NOT NULL,
        invocation BLOB NOT NULL,
        semantics BLOB NOT NULL,
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
        granted_at_ms INTEGER NOT NULL,
        PRIMARY KEY (scope_id, process_id)
    ) WITHOUT ROWID""",
    "CREATE INDEX process_handle_grants_session ON process_handle_grants (session_id)",
    "CREATE INDEX process_handle_grants_process ON process_handle_grants (process_id, session_id, scope_id)",
    """CREATE TABLE process_leases (
        process_id TEXT PRIMARY KEY REFERENCES processes (process_id) ON DELETE CASCADE,
        owner_id TEXT,
        lease_token TEXT,
        fencing_token INTEGER NOT NULL DEFAULT 0,
        claimed_at_ms INTEGER NOT NULL DEFAULT 0,
        expires_at_ms INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID""",
    # The last fencing token handed out by this registry.
    """CREATE TABLE process_lease_fencing (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        last_fencing_token INTEGER NOT NULL
    )""",
    "INSERT INTO process_lease_fencing (id, last_fencing_token) VALUES (1, 0)",
)

MIGRATIONS: list[Migration] = [(1, V1)]
LATEST = MIGRATIONS[-1][0]
