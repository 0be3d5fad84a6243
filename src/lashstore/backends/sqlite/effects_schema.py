"""Effect-replay database schema, as numbered forward migrations (kind "effects").

One row per recorded effect, keyed by (scope kind, session id or "", scope id, replay key):
kinds and sessions are separate namespaces (spec W-22a). `seq` orders listings by first claim.
Outcomes and errors are msgpack; the envelope itself is not stored, only its stable hash.
"""

from __future__ import annotations

from .connection import Migration

KIND = "effects"

V1 = (
    "CREATE TABLE lashstore_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    """CREATE TABLE effect_replay (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        scope_kind TEXT NOT NULL,
        session_id TEXT NOT NULL,
        scope_id TEXT NOT NULL,
        replay_key TEXT NOT NULL,
        envelope_hash TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('in_progress', 'completed', 'failed')),
        outcome BLOB,
        error BLOB,
        lease_owner_id TEXT,
        lease_token TEXT,
        lease_expires_at_ms INTEGER NOT NULL DEFAULT 0,
        due_at_ms INTEGER,
        attempts INTEGER NOT NULL DEFAULT 0,
        created_at_ms INTEGER NOT NULL,
        updated_at_ms INTEGER NOT NULL,
        UNIQUE (scope_kind, session_id, scope_id, replay_key)
    )""",
    "CREATE INDEX effect_replay_leases ON effect_replay (status, lease_expires_at_ms)",
    "CREATE INDEX effect_replay_session ON effect_replay (session_id, seq)",
)

MIGRATIONS: list[Migration] = [(1, V1)]
LATEST = MIGRATIONS[-1][0]
