"""Raw-row reads and writes of a PostgreSQL deployment schema, for `lashstore copy`.

Rows are in the neutral format of `lashstore.backends.transfer`. A session's blobs are the ones
its roots reach (head checkpoint and its snapshots, named artifacts, attachment-manifest entries):
blobs are shared by the deployment here, so no other set belongs to one session. Each session is
written in one transaction.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ...rules.gc import mark_reachable
from ..common import check_stored_blob, decode_manifest
from ..transfer import (
    BLOB_COLUMNS,
    DEPLOYMENT_TABLES,
    ITEM_COLUMNS,
    SESSION_TABLES,
    TABLE_COMPONENT,
    normalise,
    session_blob_roots,
)
from .connection import PostgresDatabase, Tx, split_url
from .schema import COMPONENTS

__all__ = ["PostgresTransferEndpoint", "read_copy_mark", "COPY_MARK_TABLE"]

#: A one-row table in the destination schema while `lashstore copy` into it has not finished.
COPY_MARK_TABLE = "lashstore_copy_in_progress"


def read_copy_mark(db: PostgresDatabase) -> dict[str, Any] | None:
    """The mark of an unfinished copy into this schema, or None."""

    def tx(t: Tx) -> Any:
        if t.one("SELECT to_regclass(%s)", (f"{db.schema}.{COPY_MARK_TABLE}",))[0] is None:  # type: ignore[index]
            return None
        row = t.one(f"SELECT mark FROM {COPY_MARK_TABLE} LIMIT 1")
        return None if row is None else row[0]

    data = db.read(tx, "read the copy mark")
    if data is None:
        return None
    try:
        mark = msgspec.json.decode(data)
    except msgspec.DecodeError:
        mark = None
    return mark if isinstance(mark, dict) else {"source": "unknown (the mark is unreadable)"}

_COMPONENT = {"processes": "process registry", "host_events": "host events", "effects": "effects"}


class PostgresTransferEndpoint:
    """A PostgreSQL deployment (one schema) as a copy source or destination."""

    kind = "postgres"

    def __init__(self, url: str) -> None:
        db_url, kw = split_url(url)
        self.db = PostgresDatabase(db_url, **kw)
        for component in COMPONENTS:
            self.db.ensure(component)

    def close(self) -> None:
        self.db.close()

    def describe(self) -> str:
        return f"postgres schema {self.db.schema!r}"

    # -- sessions --------------------------------------------------------------------------------
    def session_ids(self) -> list[str]:
        union = " UNION ".join(f"SELECT session_id FROM {t}" for t in SESSION_TABLES)
        return [r[0] for r in self.db.read(lambda t: t.all(f"SELECT session_id FROM ({union}) s WHERE session_id <> '' ORDER BY 1"), "copy: sessions")]

    def unowned_artifacts(self) -> int:
        """Artifacts of stores opened without a session id (they belong to no session)."""
        return self.db.read(lambda t: t.one("SELECT count(*) FROM artifact_refs WHERE session_id = ''")[0], "copy")  # type: ignore[index]

    def has_session(self, session_id: str) -> bool:
        q = " OR ".join(f"EXISTS (SELECT 1 FROM {t} WHERE session_id = %(s)s)" for t in SESSION_TABLES)
        return bool(self.db.read(lambda t: t.one(f"SELECT {q}", {"s": session_id})[0], "copy: has session"))  # type: ignore[index]

    def read_session(self, session_id: str) -> dict[str, list[tuple]]:
        def tx(t: Tx) -> dict[str, list[tuple]]:
            out: dict[str, list[tuple]] = {}
            for table, (cols, order) in SESSION_TABLES.items():
                out[table] = [
                    normalise(cols, r)
                    for r in t.all(f"SELECT {', '.join(cols)} FROM {table} WHERE session_id = %s ORDER BY {order}", (session_id,))
                ]
            out["queued_work_items"] = [
                normalise(ITEM_COLUMNS, r)
                for r in t.all(
                    "SELECT i.batch_id, i.item_index, i.item_id, i.payload FROM queued_work_items i "
                    "JOIN queued_work_batches b ON b.batch_id = i.batch_id WHERE b.session_id = %s "
                    "ORDER BY b.enqueue_seq, i.item_index",
                    (session_id,),
                )
            ]
            return out

        return self.db.read(tx, f"copy: read session {session_id!r}")

    def session_blob_refs(self, session_id: str, tables: dict[str, list[tuple]]) -> list[str]:
        checkpoints, others = session_blob_roots(tables)

        def tx(t: Tx) -> list[str]:
            def load_manifest(ref: str) -> Any:
                row = t.one("SELECT kind, compression, raw_size, content FROM blobs WHERE hash = %s", (ref,))
                if row is None:
                    return None
                return decode_manifest(ref, check_stored_blob(ref, row[0], row[1], row[2], row[3]))

            refs = mark_reachable(checkpoints, others, load_manifest)
            present = {r[0] for r in t.all("SELECT hash FROM blobs WHERE hash = ANY(%s)", (sorted(refs),))}
            return sorted(present)

        return self.db.read(tx, f"copy: blobs of {session_id!r}")

    def read_blobs(self, session_id: str, refs: list[str]) -> list[tuple]:
        rows = self.db.read(
            lambda t: t.all(f"SELECT {', '.join(BLOB_COLUMNS)} FROM blobs WHERE hash = ANY(%s)", (list(refs),)),
            "copy: read blobs",
        )
        by = {r[0]: normalise(BLOB_COLUMNS, r) for r in rows}
        return [by[r] for r in refs if r in by]

    def write_session(self, session_id: str, tables: dict[str, list[tuple]], blobs: list[tuple]) -> None:
        def tx(t: Tx) -> None:
            t.lock("session", session_id)
            t.many(
                f"INSERT INTO blobs ({', '.join(BLOB_COLUMNS)}) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (hash) DO NOTHING",
                blobs,
            )
            for table, (cols, _) in SESSION_TABLES.items():
                rows = tables.get(table, [])
                t.many(
                    f"INSERT INTO {table} (session_id, {', '.join(cols)}) VALUES ({', '.join(['%s'] * (len(cols) + 1))})",
                    [(session_id, *r) for r in rows],
                )
            t.many(
                f"INSERT INTO queued_work_items ({', '.join(ITEM_COLUMNS)}) VALUES (%s, %s, %s, %s)",
                tables.get("queued_work_items", []),
            )

        self.db.write(tx, f"copy: write session {session_id!r}")

    def delete_session(self, session_id: str) -> None:
        from .schema import SESSION_TABLES as KEYED

        def tx(t: Tx) -> None:
            t.lock("session", session_id)
            for table in KEYED:  # queued-work items go with their batches (ON DELETE CASCADE)
                t.execute(f"DELETE FROM {table} WHERE session_id = %s", (session_id,))

        self.db.write(tx, f"copy: remove session {session_id!r}")

    def clear_table(self, table: str) -> None:
        self.db.write(lambda t: t.execute(f"DELETE FROM {table}"), f"copy: clear {table}")

    # -- the mark of a copy in progress ----------------------------------------------------------
    def read_copy_mark(self) -> dict[str, Any] | None:
        return read_copy_mark(self.db)

    def write_copy_mark(self, mark: dict[str, Any]) -> None:
        def tx(t: Tx) -> None:
            t.execute(f"CREATE TABLE IF NOT EXISTS {COPY_MARK_TABLE} (mark TEXT NOT NULL)")
            t.execute(f"DELETE FROM {COPY_MARK_TABLE}")
            t.execute(f"INSERT INTO {COPY_MARK_TABLE} (mark) VALUES (%s)", (msgspec.json.encode(mark).decode(),))

        self.db.write(tx, "copy: mark the destination")

    def clear_copy_mark(self) -> None:
        self.db.write(lambda t: t.execute(f"DROP TABLE IF EXISTS {COPY_MARK_TABLE}"), "copy: unmark the destination")

    # -- deployment tables -----------------------------------------------------------------------
    def read_table(self, table: str) -> list[tuple]:
        cols, order = DEPLOYMENT_TABLES[table]
        return [
            normalise(cols, r)
            for r in self.db.read(lambda t: t.all(f"SELECT {', '.join(cols)} FROM {table} ORDER BY {order}"), f"copy: {table}")
        ]

    def table_is_empty(self, table: str) -> bool:
        return self.db.read(lambda t: t.one(f"SELECT NOT EXISTS (SELECT 1 FROM {table})")[0], f"copy: {table}")  # type: ignore[index]

    def write_table(self, table: str, rows: list[tuple]) -> None:
        if not rows:
            return
        cols, _ = DEPLOYMENT_TABLES[table]
        assert TABLE_COMPONENT[table] in _COMPONENT
        self.db.write(
            lambda t: t.many(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))})", rows),
            f"copy: {table}",
        )

    def read_counters(self) -> dict[str, int]:
        def tx(t: Tx) -> dict[str, int]:
            out = {k: int(v) for k, v in t.all("SELECT name, value FROM host_event_counters")}
            out["fencing"] = int(t.one("SELECT last_fencing_token FROM process_lease_fencing WHERE id = 1")[0])  # type: ignore[index]
            return out

        return self.db.read(tx, "copy: counters")

    def write_counters(self, counters: dict[str, int]) -> None:
        def tx(t: Tx) -> None:
            t.execute(
                "UPDATE process_lease_fencing SET last_fencing_token = greatest(last_fencing_token, %s) WHERE id = 1",
                (counters.get("fencing", 0),),
            )
            for name in ("subscription", "occurrence", "delivery"):
                t.execute(
                    "UPDATE host_event_counters SET value = greatest(value, %s) WHERE name = %s",
                    (counters.get(name, 0), name),
                )

        self.db.write(tx, "copy: counters")
