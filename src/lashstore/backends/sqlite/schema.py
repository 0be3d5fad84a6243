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
    # seq orders nodes by insertion; it is never exposed, so a vacuumed top row giving its number
    # to the next node keeps the order right (and spares AUTOINCREMENT's extra write per insert).
    """CREATE TABLE graph_nodes (
        seq INTEGER PRIMARY KEY,
        session_id TEXT NOT NULL,
        node_id TEXT NOT NULL,
        parent_node_id TEXT,
        tombstoned INTEGER NOT NULL DEFAULT 0,
        body BLOB NOT NULL,
        UNIQUE (session_id, node_id)
    )""",
    "CREATE INDEX graph_nodes_parent ON graph_nodes (session_id, parent_node_id)",
    # One row per ledger entry of a commit, keyed by the revision that wrote it (WITHOUT ROWID: a
    # single b-tree, the session's rows together).
    """CREATE TABLE usage_deltas (
        session_id TEXT NOT NULL,
        head_revision INTEGER NOT NULL,
        idx INTEGER NOT NULL,
        source TEXT NOT NULL,
        model TEXT NOT NULL,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        cached_input_tokens INTEGER NOT NULL,
        reasoning_tokens INTEGER NOT NULL,
        created_at_ms INTEGER NOT NULL,
        PRIMARY KEY (session_id, head_revision, idx)
    ) WITHOUT ROWID""",
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

# Version 2: queued work and attachments.
V2 = (
    # Finished batches stay as rows (state completed/cancelled) so a source key stays idempotent
    # after its batch is consumed; retention removes them. enqueue_seq never repeats.
    """CREATE TABLE queued_work_batches (
        enqueue_seq INTEGER PRIMARY KEY AUTOINCREMENT,
        batch_id TEXT NOT NULL UNIQUE,
        session_id TEXT NOT NULL,
        source_key TEXT,
        state TEXT NOT NULL DEFAULT 'queued',
        delivery_policy TEXT NOT NULL,
        slot_policy TEXT NOT NULL,
        merge_key TEXT,
        available_at_ms INTEGER NOT NULL,
        enqueued_at_ms INTEGER NOT NULL,
        claim_id TEXT,
        claim_owner_id TEXT,
        claim_token TEXT,
        claim_fencing_token INTEGER NOT NULL DEFAULT 0,
        claim_claimed_at_ms INTEGER NOT NULL DEFAULT 0,
        claim_expires_at_ms INTEGER NOT NULL DEFAULT 0,
        finished_at_ms INTEGER
    )""",
    "CREATE UNIQUE INDEX queued_work_source_key ON queued_work_batches (session_id, source_key) "
    "WHERE source_key IS NOT NULL",
    "CREATE INDEX queued_work_ready ON queued_work_batches (session_id, state, enqueue_seq)",
    "CREATE INDEX queued_work_claim ON queued_work_batches (claim_id) WHERE claim_id IS NOT NULL",
    """CREATE TABLE queued_work_items (
        batch_id TEXT NOT NULL REFERENCES queued_work_batches (batch_id) ON DELETE CASCADE,
        item_index INTEGER NOT NULL,
        item_id TEXT NOT NULL,
        payload BLOB NOT NULL,
        PRIMARY KEY (batch_id, item_index)
    ) WITHOUT ROWID""",
    # Keyed by (session, attachment): each session keeps its own reference to shared bytes.
    # The media columns are set when the bytes live in this store (put_attachment).
    """CREATE TABLE attachment_manifest (
        session_id TEXT NOT NULL,
        attachment_id TEXT NOT NULL,
        canonical_uri TEXT NOT NULL,
        intent_at_ms INTEGER NOT NULL,
        committed_at_ms INTEGER,
        media_type TEXT,
        byte_len INTEGER,
        width INTEGER,
        height INTEGER,
        label TEXT,
        PRIMARY KEY (session_id, attachment_id)
    ) WITHOUT ROWID""",
    "CREATE INDEX attachment_manifest_uncommitted ON attachment_manifest (intent_at_ms) "
    "WHERE committed_at_ms IS NULL",
    "CREATE INDEX attachment_manifest_by_id ON attachment_manifest (attachment_id)",
)

# Version 3: one shape with PostgreSQL. Named artifacts belong to a session (`session_id`, "" for
# a store opened without one), as they always have there; a file's existing artifacts go to its
# session when it holds exactly one.
V3 = (
    """CREATE TABLE artifact_refs_v3 (
        session_id TEXT NOT NULL,
        namespace TEXT NOT NULL,
        name TEXT NOT NULL,
        blob_ref TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL,
        PRIMARY KEY (session_id, namespace, name)
    ) WITHOUT ROWID""",
    """INSERT INTO artifact_refs_v3 (session_id, namespace, name, blob_ref, created_at_ms)
        SELECT coalesce((SELECT CASE WHEN count(*) = 1 THEN max(session_id) END
                           FROM (SELECT session_id FROM session_meta UNION SELECT session_id FROM session_head)), ''),
               namespace, name, blob_ref, created_at_ms
          FROM artifact_refs""",
    "DROP TABLE artifact_refs",
    "ALTER TABLE artifact_refs_v3 RENAME TO artifact_refs",
)

MIGRATIONS: list[Migration] = [(1, V1), (2, V2), (3, V3)]
LATEST = MIGRATIONS[-1][0]
