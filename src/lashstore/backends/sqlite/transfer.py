"""Raw-row reads and writes of a SQLite deployment directory, for `lashstore copy`.

A SQLite deployment is a directory: one file per session (`<safe name>-<hash>.db`) plus
`processes.db`, `host_events.db` and `effects.db`. Reading opens files read-only (nothing is
created or migrated); writing creates each file through its store class (so schemas are the
current ones) and inserts the rows in one transaction per file. Rows are in the neutral format of
`lashstore.backends.transfer`.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import msgspec

from ...errors import BackendError, ValidationError
from ..transfer import BLOB_COLUMNS, DEPLOYMENT_TABLES, ITEM_COLUMNS, SESSION_TABLES, TABLE_COMPONENT, normalise
from .factory import SqliteSessionStoreFactory, safe_file_name

__all__ = ["SqliteTransferEndpoint", "COMPONENT_FILES", "COPY_MARK", "read_copy_mark"]

#: The deployment's component files, as `lashstore.open` names them.
COMPONENT_FILES = {"processes": "processes.db", "host_events": "host_events.db", "effects": "effects.db"}

# Tables of a session file that carry their own session_id column (artifact_refs does not: a
# file's artifacts belong to the file's session).
_KEYED = [t for t in SESSION_TABLES if t != "artifact_refs"]


#: A file in the destination directory while `lashstore copy` into it has not finished.
COPY_MARK = "lashstore-copy-in-progress.json"


def read_copy_mark(root: str | Path) -> dict[str, Any] | None:
    """The mark of an unfinished copy into the SQLite deployment at `root`, or None."""
    try:
        data = (Path(root) / COPY_MARK).read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        mark = msgspec.json.decode(data)
    except msgspec.DecodeError:
        mark = None
    return mark if isinstance(mark, dict) else {"source": "unknown (the mark is unreadable)"}


def _ro(path: Path) -> sqlite3.Connection:
    try:
        conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
    except sqlite3.Error as e:
        raise BackendError(f"open {path} read-only: {e}") from e
    return conn


class SqliteTransferEndpoint:
    """A SQLite deployment directory as a copy source or destination."""

    kind = "sqlite"

    def __init__(self, root: str | Path, *, create: bool = False) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            if not create:
                raise ValidationError(f"{self.root} is not a directory holding a lashstore deployment")
            self.root.mkdir(parents=True, exist_ok=True)
        self._factory = SqliteSessionStoreFactory(self.root)
        self._index: dict[str, list[Path]] | None = None
        self._primary: dict[Path, str] = {}

    def close(self) -> None:
        self._factory.close()

    def describe(self) -> str:
        return f"sqlite directory {self.root}"

    # -- sessions --------------------------------------------------------------------------------
    def _build_index(self) -> dict[str, list[Path]]:
        if self._index is not None:
            return self._index
        index: dict[str, list[Path]] = {}
        for path in self._factory.session_files():
            with _ro(path) as conn:
                ids: set[str] = set()
                for table in _KEYED:
                    ids.update(r[0] for r in conn.execute(f"SELECT DISTINCT session_id FROM {table}"))
                heads = [r[0] for r in conn.execute("SELECT session_id FROM session_head")]
                metas = [r[0] for r in conn.execute("SELECT session_id FROM session_meta")]
            conn.close()
            owners = [s for s in heads + metas if safe_file_name(s) == path.name] or heads + metas
            if owners:
                self._primary[path] = owners[0]
                ids.add(owners[0])
            for sid in ids:
                index.setdefault(sid, []).append(path)
        self._index = index
        return index

    def session_ids(self) -> list[str]:
        return sorted(self._build_index())

    def has_session(self, session_id: str) -> bool:
        return session_id in self._build_index()

    def read_session(self, session_id: str) -> dict[str, list[tuple]]:
        out: dict[str, list[tuple]] = {t: [] for t in SESSION_TABLES}
        out["queued_work_items"] = []
        for path in self._build_index().get(session_id, []):
            conn = _ro(path)
            try:
                for table, (cols, order) in SESSION_TABLES.items():
                    if table == "artifact_refs":
                        if self._primary.get(path) != session_id:
                            continue
                        rows = conn.execute(f"SELECT {', '.join(cols)} FROM artifact_refs ORDER BY {order}")
                    else:
                        rows = conn.execute(
                            f"SELECT {', '.join(cols)} FROM {table} WHERE session_id = ? ORDER BY {order}", (session_id,)
                        )
                    out[table] += [normalise(cols, r) for r in rows]
                out["queued_work_items"] += [
                    normalise(ITEM_COLUMNS, r)
                    for r in conn.execute(
                        "SELECT i.batch_id, i.item_index, i.item_id, i.payload FROM queued_work_items i "
                        "JOIN queued_work_batches b ON b.batch_id = i.batch_id WHERE b.session_id = ? "
                        "ORDER BY b.enqueue_seq, i.item_index",
                        (session_id,),
                    )
                ]
            except sqlite3.Error as e:
                raise BackendError(f"read session {session_id!r} from {path}: {e}") from e
            finally:
                conn.close()
        return out

    def session_blob_refs(self, session_id: str, tables: dict[str, list[tuple]]) -> list[str]:
        """Every blob of the session's own file (a file's blobs are its session's)."""
        refs: list[str] = []
        for path in self._build_index().get(session_id, []):
            if self._primary.get(path) != session_id:
                continue
            conn = _ro(path)
            try:
                refs += [r[0] for r in conn.execute("SELECT hash FROM blobs ORDER BY hash")]
            finally:
                conn.close()
        return refs

    def read_blobs(self, session_id: str, refs: list[str]) -> list[tuple]:
        want = set(refs)
        out: dict[str, tuple] = {}
        for path in self._build_index().get(session_id, []):
            conn = _ro(path)
            try:
                for r in conn.execute(f"SELECT {', '.join(BLOB_COLUMNS)} FROM blobs"):
                    if r[0] in want and r[0] not in out:
                        out[r[0]] = normalise(BLOB_COLUMNS, r)
            finally:
                conn.close()
        return [out[r] for r in refs if r in out]

    def write_session(self, session_id: str, tables: dict[str, list[tuple]], blobs: list[tuple]) -> None:
        """Write one session's file whole (under a temporary name, then linked into place): a
        killed copy leaves either the whole session or none of it."""

        def fill(store: Any) -> None:
            with store._db.write("copy session") as c:
                for table, (cols, _) in SESSION_TABLES.items():
                    rows = tables.get(table, [])
                    if not rows:
                        continue
                    if table == "artifact_refs":
                        c.executemany(
                            f"INSERT INTO artifact_refs ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", rows
                        )
                        continue
                    rows = [tuple(int(v) if n in ("tombstoned",) and v is not None else v for n, v in zip(cols, r)) for r in rows]
                    c.executemany(
                        f"INSERT INTO {table} (session_id, {', '.join(cols)}) VALUES ({', '.join('?' * (len(cols) + 1))})",
                        [(session_id, *r) for r in rows],
                    )
                c.executemany(
                    f"INSERT INTO queued_work_items ({', '.join(ITEM_COLUMNS)}) VALUES (?, ?, ?, ?)",
                    tables.get("queued_work_items", []),
                )
                c.executemany(
                    f"INSERT OR IGNORE INTO blobs ({', '.join(BLOB_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?)", blobs
                )

        path = self._factory.path_for_session(session_id)
        if not self._factory.build_session_file(path, session_id, fill):
            raise ValidationError(f"the destination already holds session {session_id!r}; nothing was copied")
        self._index = None

    def delete_session(self, session_id: str) -> None:
        self._factory.delete_session(session_id)
        self._index = None

    def clear_table(self, table: str) -> None:
        store = self._open_component(TABLE_COMPONENT[table])
        try:
            with store._db.write(f"clear {table}") as c:
                c.execute(f"DELETE FROM {table}")
        finally:
            store.close()

    # -- the mark of a copy in progress ----------------------------------------------------------
    def read_copy_mark(self) -> dict[str, Any] | None:
        return read_copy_mark(self.root)

    def write_copy_mark(self, mark: dict[str, Any]) -> None:
        path = self.root / COPY_MARK
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(msgspec.json.encode(mark))
        os.replace(tmp, path)

    def clear_copy_mark(self) -> None:
        try:
            (self.root / COPY_MARK).unlink()
        except FileNotFoundError:
            pass

    # -- deployment tables -----------------------------------------------------------------------
    def _component_path(self, table: str) -> Path:
        return self.root / COMPONENT_FILES[TABLE_COMPONENT[table]]

    def read_table(self, table: str) -> list[tuple]:
        cols, order = DEPLOYMENT_TABLES[table]
        path = self._component_path(table)
        if not path.exists():
            return []
        conn = _ro(path)
        try:
            return [normalise(cols, r) for r in conn.execute(f"SELECT {', '.join(cols)} FROM {table} ORDER BY {order}")]
        except sqlite3.Error as e:
            raise BackendError(f"read {table} from {path}: {e}") from e
        finally:
            conn.close()

    def _open_component(self, component: str) -> Any:
        path = self.root / COMPONENT_FILES[component]
        if component == "processes":
            from .processes import SqliteProcessRegistry

            return SqliteProcessRegistry(path)
        if component == "host_events":
            from .host_events import SqliteHostEventStore

            return SqliteHostEventStore(path)
        from .effects import SqliteEffectStore

        return SqliteEffectStore(path, heartbeat=False)

    def table_is_empty(self, table: str) -> bool:
        return not self.read_table(table)

    def write_table(self, table: str, rows: list[tuple]) -> None:
        if not rows:
            return
        cols, _ = DEPLOYMENT_TABLES[table]
        rows = [tuple(int(v) if n == "enabled" and v is not None else v for n, v in zip(cols, r)) for r in rows]
        store = self._open_component(TABLE_COMPONENT[table])
        try:
            with store._db.write(f"copy {table}") as c:
                c.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", rows)
        finally:
            store.close()

    def read_counters(self) -> dict[str, int]:
        out = {"fencing": 0, "subscription": 0, "occurrence": 0, "delivery": 0}
        path = self.root / COMPONENT_FILES["processes"]
        if path.exists():
            with _ro(path) as conn:
                out["fencing"] = conn.execute("SELECT last_fencing_token FROM process_lease_fencing WHERE id = 1").fetchone()[0]
            conn.close()
        path = self.root / COMPONENT_FILES["host_events"]
        if path.exists():
            with _ro(path) as conn:
                seqs = dict(conn.execute("SELECT name, seq FROM sqlite_sequence").fetchall())
            conn.close()
            out["subscription"] = int(seqs.get("host_event_subscription_seq", 0))
            out["occurrence"] = int(seqs.get("host_event_occurrences", 0))
            out["delivery"] = int(seqs.get("host_event_deliveries", 0))
        return out

    def write_counters(self, counters: dict[str, int]) -> None:
        if counters.get("fencing"):
            store = self._open_component("processes")
            try:
                with store._db.write("copy fencing counter") as c:
                    c.execute(
                        "UPDATE process_lease_fencing SET last_fencing_token = max(last_fencing_token, ?) WHERE id = 1",
                        (counters["fencing"],),
                    )
            finally:
                store.close()
        if any(counters.get(k) for k in ("subscription", "occurrence", "delivery")):
            store = self._open_component("host_events")
            try:
                with store._db.write("copy host-event counters") as c:
                    # AUTOINCREMENT keeps its high-water mark in sqlite_sequence: raise it there.
                    n = counters.get("subscription", 0)
                    if n:
                        c.execute("INSERT INTO host_event_subscription_seq (n) VALUES (?)", (n,))
                        c.execute("DELETE FROM host_event_subscription_seq WHERE n <= ?", (n,))
                    for table, key in (("host_event_occurrences", "occurrence"), ("host_event_deliveries", "delivery")):
                        value = counters.get(key, 0)
                        if not value:
                            continue
                        updated = c.execute(
                            "UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = ?", (value, table)
                        ).rowcount
                        if not updated:
                            c.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (table, value))
            finally:
                store.close()
