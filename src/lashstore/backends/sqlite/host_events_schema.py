"""Host-event database schema, as numbered forward migrations (kind "host events").

Version 1 numbered subscriptions from an AUTOINCREMENT table of its own, and occurrences and
deliveries by their AUTOINCREMENT `seq`. Version 2 numbers all three from `host_event_counters`,
the table PostgreSQL uses, so the statements are the same on both: each counter starts where
version 1 left off (the higher of its `sqlite_sequence` mark and the rows' largest number), so
`trigger:{n}` never repeats across the migration, also after rows were removed. `seq` keeps its
AUTOINCREMENT declaration (rebuilding the tables would gain nothing); the store always gives it.
"""

from __future__ import annotations

from .connection import Migration

KIND = "host events"

V1 = (
    "CREATE TABLE lashstore_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    "CREATE TABLE host_event_subscription_seq (n INTEGER PRIMARY KEY AUTOINCREMENT)",
    # body: msgpack [source, target], the values the store only round-trips.
    """CREATE TABLE host_event_subscriptions (
        subscription_id TEXT PRIMARY KEY,
        seq INTEGER NOT NULL UNIQUE,
        session_id TEXT NOT NULL,
        handle TEXT NOT NULL UNIQUE,
        name TEXT,
        source_type TEXT NOT NULL,
        source_key TEXT NOT NULL,
        target_identity TEXT,
        enabled INTEGER NOT NULL,
        created_at_ms INTEGER NOT NULL,
        updated_at_ms INTEGER NOT NULL,
        body BLOB NOT NULL
    )""",
    "CREATE INDEX host_event_subscriptions_session ON host_event_subscriptions (session_id, seq)",
    "CREATE INDEX host_event_subscriptions_source ON host_event_subscriptions (source_type, source_key, enabled, seq)",
    # occurrence_id is derived from (source_type, source_key, idempotency_key): its uniqueness is
    # the idempotency rule. body: msgpack [payload, source].
    """CREATE TABLE host_event_occurrences (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        occurrence_id TEXT NOT NULL UNIQUE,
        source_type TEXT NOT NULL,
        source_key TEXT NOT NULL,
        idempotency_key TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        occurred_at_ms INTEGER NOT NULL,
        body BLOB NOT NULL
    )""",
    "CREATE INDEX host_event_occurrences_source ON host_event_occurrences (source_type, source_key, seq)",
    """CREATE TABLE host_event_deliveries (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        occurrence_id TEXT NOT NULL REFERENCES host_event_occurrences (occurrence_id) ON DELETE CASCADE,
        subscription_id TEXT NOT NULL REFERENCES host_event_subscriptions (subscription_id) ON DELETE CASCADE,
        process_id TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL,
        UNIQUE (occurrence_id, subscription_id)
    )""",
    "CREATE INDEX host_event_deliveries_subscription ON host_event_deliveries (subscription_id)",
    "CREATE INDEX host_event_deliveries_process ON host_event_deliveries (process_id)",
)


def _carried(counter: str, table: str, sequence: str) -> str:
    return (
        f"SELECT '{counter}', max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = '{sequence}'), 0), "
        f"coalesce((SELECT max(seq) FROM {table}), 0))"
    )


V2 = (
    "CREATE TABLE host_event_counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    "INSERT INTO host_event_counters (name, value) "
    + " UNION ALL ".join((
        _carried("subscription", "host_event_subscriptions", "host_event_subscription_seq"),
        _carried("occurrence", "host_event_occurrences", "host_event_occurrences"),
        _carried("delivery", "host_event_deliveries", "host_event_deliveries"),
    )),
    # Its sqlite_sequence row goes with it.
    "DROP TABLE host_event_subscription_seq",
)

MIGRATIONS: list[Migration] = [(1, V1), (2, V2)]
LATEST = MIGRATIONS[-1][0]
