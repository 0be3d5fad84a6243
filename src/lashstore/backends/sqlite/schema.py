"""Session database schema, as numbered forward migrations.

`PRAGMA user_version` holds the version; `lashstore_meta.kind` says which kind of lashstore
database a file is, so a process-registry file is never mistaken for a session file. Each
migration is applied once, in order, under the write lock. A file newer than `LATEST` is refused.
"""

from __future__ import annotations

from .connection import Migration

KIND = "session"

V1 = (
    "CREATE TABLE lashstore_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    # Content-addressed blobs: hash is sha256 of the logical (uncompressed) bytes. How they are
    # stored lives in columns, never guessed from the bytes.
    """CREATE TABLE blobs (
        hash TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        compression TEXT NOT NULL,
        raw_size INTEGER NOT NULL,
        created_at_ms INTEGER NOT NULL,
        content BLOB NOT NULL
    )""",
    """CREATE TABLE session_head (
        session_id TEXT PRIMARY KEY,
        head_revision INTEGER NOT NULL,
        checkpoint_ref TEXT,
        leaf_node_id TEXT,
        node_count INTEGER NOT NULL,
        updated_at_ms INTEGER NOT NULL,
        body BLOB NOT NULL
    )""",
    # seq is AUTOINCREMENT so a vacuumed top row never gives its number to a new node.
    """CREATE TABLE graph_nodes (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        session_id TEXT NOT NULL,
        node_id TEXT NOT NULL,
        parent_node_id TEXT,
        tombstoned INTEGER NOT NULL DEFAULT 0,
        body BLOB NOT NULL,
        UNIQUE (session_id, node_id)
    )""",
    "CREATE INDEX graph_nodes_parent ON graph_nodes (session_id, parent_node_id)",
    """CREATE TABLE usage_deltas (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        session_id TEXT NOT NULL,
        source TEXT NOT NULL,
        model TEXT NOT NULL,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        cached_input_tokens INTEGER NOT NULL,
        reasoning_tokens INTEGER NOT NULL,
        created_at_ms INTEGER NOT NULL
    )""",
    "CREATE INDEX usage_deltas_session ON usage_deltas (session_id, seq)",
    """CREATE TABLE turn_commits (
        session_id TEXT NOT NULL,
        turn_id TEXT NOT NULL,
        turn_commit_hash TEXT NOT NULL,
        result BLOB NOT NULL,
        committed_at_ms INTEGER NOT NULL,
        PRIMARY KEY (session_id, turn_id)
    ) WITHOUT ROWID""",
    """CREATE TABLE session_meta (
        session_id TEXT PRIMARY KEY,
        session_name TEXT NOT NULL,
        created_at TEXT NOT NULL,
        model TEXT NOT NULL,
        cwd TEXT,
        relation BLOB NOT NULL
    )""",
    # Named artifacts are GC roots; the namespace keeps unrelated key spaces apart.
    """CREATE TABLE artifact_refs (
        namespace TEXT NOT NULL,
        name TEXT NOT NULL,
        blob_ref TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL,
        PRIMARY KEY (namespace, name)
    ) WITHOUT ROWID""",
)

MIGRATIONS: list[Migration] = [(1, V1)]
LATEST = MIGRATIONS[-1][0]
