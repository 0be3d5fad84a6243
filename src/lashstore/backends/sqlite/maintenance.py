"""Maintenance of SQLite stores: retention primitives, GC with a grace period, file shrinking,
verification, and a session's dump and load.

Every function takes the store as its first argument and works through its connection
(`store._db`), so `lashstore.ops` runs them on any store object; `SqliteMaintenanceMixin` offers
the same as methods. Each runs in one transaction: a dry run reads exactly what the real run
would delete, and a failure rolls everything back.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import msgspec

from ...codec import pack
from ...errors import BackendError, CorruptRecord, LashStoreError, ValidationError
from ...model.blobs import BlobKind
from ...model.maintenance import (
    DumpArtifact,
    DumpAttachment,
    DumpBatch,
    DumpBlob,
    DumpHead,
    DumpNode,
    DumpTurn,
    DumpUsage,
    GraphPruneResult,
    Problem,
    SessionDump,
)
from ...model.queue import BatchState, DeliveryPolicy, SlotPolicy
from ...model.session import GcReport, GraphNode, SessionMeta, TokenUsage
from ...rules import maintenance as rules
from ...rules import validate as v
from ...rules.usage import plan_usage_fold
from ..common import (
    META_COLUMNS,
    meta_from_row,
    HeadBody,
    check_stored_blob,
    decode_manifest,
    decode_node,
    decode_payload,
    decode_relation,
    decode_result,
    hydrate,
)
from .connection import Database, translate

__all__ = [
    "SqliteMaintenanceMixin",
    "list_graph_nodes",
    "list_tombstoned_nodes",
    "prune_graph",
    "prune_finished_queue",
    "prune_turn_stamps",
    "compact_usage",
    "collect_garbage",
    "shrink",
    "file_bytes",
    "verify_session_store",
    "verify_registry_file",
    "dump_session",
    "load_session_dump",
    "session_ids",
    "prune_occurrences",
    "prune_effects",
    "schema_version",
]

_HEAD_COLS = "session_id, head_revision, checkpoint_ref, leaf_node_id, node_count, updated_at_ms, body"


def _sid(store: Any, c: sqlite3.Connection, session_id: str | None) -> str | None:
    return session_id if session_id is not None else store._bound(c)


def session_ids(store: Any) -> list[str]:
    """Every session with a head or meta in the store's file."""
    with store._db.read("list sessions in file") as c:
        return [
            r[0]
            for r in c.execute("SELECT session_id FROM session_head UNION SELECT session_id FROM session_meta ORDER BY 1")
        ]


# -- graph --------------------------------------------------------------------------------------


def list_graph_nodes(store: Any, session_id: str | None = None) -> list[tuple[GraphNode, bool]]:
    """(node, tombstoned) of every stored node of the session, tombstoned ones included, in
    insertion order."""
    with store._db.read("list graph nodes") as c:
        sid = _sid(store, c, session_id)
        if sid is None:
            return []
        rows = c.execute(
            "SELECT node_id, tombstoned, body FROM graph_nodes WHERE session_id = ? ORDER BY seq", (sid,)
        ).fetchall()
    return [(decode_node(nid, body), bool(t)) for nid, t, body in rows]


def list_tombstoned_nodes(store: Any, session_id: str | None = None) -> list[GraphNode]:
    """The tombstoned nodes of the session (hidden from reads until vacuum), in insertion order."""
    with store._db.read("list tombstoned nodes") as c:
        sid = _sid(store, c, session_id)
        if sid is None:
            return []
        rows = c.execute(
            "SELECT node_id, body FROM graph_nodes WHERE session_id = ? AND tombstoned = 1 ORDER BY seq", (sid,)
        ).fetchall()
    return [decode_node(nid, body) for nid, body in rows]


def prune_graph(store: Any, keep_turns: int, *, dry_run: bool = False, session_id: str | None = None) -> GraphPruneResult:
    """Keep the last `keep_turns` turns of the active path (see `rules.maintenance`) and delete
    every other node. The head revision moves once when anything is removed, as after a
    tombstone, so a runtime holding the old head reloads; `updated_at_ms` does not move
    (maintenance is not activity)."""
    if type(keep_turns) is not int or keep_turns < 1:
        raise ValidationError(f"keep_turns must be a positive integer, got {keep_turns!r}")
    with (store._db.read if dry_run else store._db.write)("prune graph") as c:
        sid = _sid(store, c, session_id)
        if sid is None:
            return GraphPruneResult(session_id="")
        head = c.execute("SELECT leaf_node_id, head_revision FROM session_head WHERE session_id = ?", (sid,)).fetchone()
        if head is None:
            return GraphPruneResult(session_id=sid)
        rows = c.execute(
            "SELECT node_id, parent_node_id, tombstoned, length(body) FROM graph_nodes WHERE session_id = ?", (sid,)
        ).fetchall()
        info = {nid: (parent, bool(t), size) for nid, parent, t, size in rows}

        def get(nid: str) -> tuple[str | None, bool] | None:
            r = info.get(nid)
            return None if r is None else (r[0], r[1])

        path = rules.ancestry(head[0], get, len(info))

        def node(nid: str) -> tuple[GraphNode, bool]:
            body = c.execute(
                "SELECT body FROM graph_nodes WHERE session_id = ? AND node_id = ?", (sid, nid)
            ).fetchone()[0]
            return decode_node(nid, body), info[nid][1]

        turns, cut = rules.choose_cut(path, node, keep_turns)
        result = GraphPruneResult(session_id=sid, turns_on_active_path=turns, kept_turns=min(turns, keep_turns),
                                  head_revision=head[1])
        if cut is None:
            return result
        children: dict[str | None, list[str]] = {}
        for nid, (parent, _, _) in info.items():
            children.setdefault(parent, []).append(nid)
        keep = rules.subtree(cut, children)
        doomed = [nid for nid in info if nid not in keep]
        result.cut_node_id = cut
        result.removed_node_count = len(doomed)
        result.removed_bytes = sum(info[n][2] for n in doomed)
        if dry_run or not doomed:
            return result
        c.executemany("DELETE FROM graph_nodes WHERE session_id = ? AND node_id = ?", [(sid, n) for n in doomed])
        cut_node, _ = node(cut)
        rooted = msgspec.structs.replace(cut_node, parent_node_id=None)
        c.execute(
            "UPDATE graph_nodes SET parent_node_id = NULL, body = ? WHERE session_id = ? AND node_id = ?",
            (pack(rooted), sid, cut),
        )
        live = c.execute(
            "SELECT count(*) FROM graph_nodes WHERE session_id = ? AND tombstoned = 0", (sid,)
        ).fetchone()[0]
        c.execute(
            "UPDATE session_head SET node_count = ?, head_revision = head_revision + 1 WHERE session_id = ?",
            (live, sid),
        )
        result.head_revision = head[1] + 1
        return result


# -- rows that only grow ------------------------------------------------------------------------


def prune_finished_queue(
    store: Any, older_than_ms: int, *, dry_run: bool = False, session_id: str | None = None
) -> int:
    """Delete completed and cancelled queued-work batches (with their items) that finished at
    least `older_than_ms` ago. A pruned batch's source key can be enqueued again."""
    v.check_nonneg_int(older_than_ms, "older_than_ms")
    with (store._db.read if dry_run else store._db.write)("prune finished queued work") as c:
        sid = _sid(store, c, session_id)
        if sid is None:
            return 0
        cutoff = store._clock.now_ms() - older_than_ms
        where = (
            "session_id = ? AND state IN ('completed', 'cancelled') AND finished_at_ms IS NOT NULL "
            "AND finished_at_ms <= ?"
        )
        if dry_run:
            return c.execute(f"SELECT count(*) FROM queued_work_batches WHERE {where}", (sid, cutoff)).fetchone()[0]
        # Items go by ON DELETE CASCADE (foreign keys are on).
        return c.execute(f"DELETE FROM queued_work_batches WHERE {where}", (sid, cutoff)).rowcount


def prune_turn_stamps(
    store: Any,
    *,
    older_than_ms: int | None = None,
    keep_last: int | None = None,
    dry_run: bool = False,
    session_id: str | None = None,
) -> int:
    """Delete turn stamps committed at least `older_than_ms` ago and/or beyond the newest
    `keep_last`. A retry of a pruned turn is then a new commit (and meets the head CAS)."""
    if older_than_ms is None and keep_last is None:
        return 0
    v.check_nonneg_int(older_than_ms, "older_than_ms", optional=True)
    v.check_nonneg_int(keep_last, "keep_last", optional=True)
    with (store._db.read if dry_run else store._db.write)("prune turn stamps") as c:
        sid = _sid(store, c, session_id)
        if sid is None:
            return 0
        rows = c.execute(
            "SELECT turn_id, committed_at_ms FROM turn_commits WHERE session_id = ? ORDER BY committed_at_ms DESC, turn_id",
            (sid,),
        ).fetchall()
        cutoff = None if older_than_ms is None else store._clock.now_ms() - older_than_ms
        doomed = [
            tid
            for i, (tid, at) in enumerate(rows)
            if (cutoff is not None and at <= cutoff) or (keep_last is not None and i >= keep_last)
        ]
        if not dry_run:
            c.executemany("DELETE FROM turn_commits WHERE session_id = ? AND turn_id = ?", [(sid, t) for t in doomed])
        return len(doomed)


def compact_usage(store: Any, *, dry_run: bool = False, session_id: str | None = None) -> int:
    """Fold the usage rows of each (source, model) into one, at the place of its first non-empty
    row, and drop empty rows. `load_usage` answers exactly as before. Returns rows removed."""
    with (store._db.read if dry_run else store._db.write)("compact usage") as c:
        sid = _sid(store, c, session_id)
        if sid is None:
            return 0
        rows = c.execute(
            "SELECT head_revision, idx, source, model, input_tokens, output_tokens, cached_input_tokens, "
            "reasoning_tokens FROM usage_deltas WHERE session_id = ? ORDER BY head_revision, idx",
            (sid,),
        ).fetchall()
        doomed, updates = plan_usage_fold(((rev, idx), *rest) for rev, idx, *rest in rows)
        if dry_run or not doomed:
            return len(doomed)
        c.executemany(
            "DELETE FROM usage_deltas WHERE session_id = ? AND head_revision = ? AND idx = ?",
            [(sid, rev, idx) for rev, idx in doomed],
        )
        c.executemany(
            "UPDATE usage_deltas SET input_tokens = ?, output_tokens = ?, cached_input_tokens = ?, "
            "reasoning_tokens = ? WHERE session_id = ? AND head_revision = ? AND idx = ?",
            [(*counts, sid, rev, idx) for (rev, idx), counts in updates.items()],
        )
        return len(doomed)


# -- garbage collection and the file ------------------------------------------------------------


def collect_garbage(store: Any, *, grace_ms: int = rules.DEFAULT_GC_GRACE_MS, dry_run: bool = False) -> GcReport:
    """`gc_unreachable` with the operators' default grace period."""
    return store.gc_unreachable(grace_ms=grace_ms, dry_run=dry_run)


def file_bytes(path: str | os.PathLike[str]) -> int:
    """The database file plus its WAL, as the file system counts them."""
    total = 0
    for p in (Path(path), Path(f"{os.fspath(path)}-wal")):
        try:
            total += p.stat().st_size
        except FileNotFoundError:
            pass
    return total


def shrink(db_or_store: Any) -> tuple[int, int, bool]:
    """Give the file's free pages back to the file system: checkpoint the WAL, `VACUUM`, and
    checkpoint again with TRUNCATE. Returns (bytes before, bytes after, fully checkpointed).

    VACUUM rather than incremental auto-vacuum: it also defragments, needs no schema change, and
    with one file per session each rewrite is small. It takes the write lock (writers wait for
    it, readers do not); a reader holding an old snapshot can keep the WAL from truncating, which
    the third value reports."""
    db: Database = getattr(db_or_store, "_db", db_or_store)
    if db.path == ":memory:":
        return 0, 0, True
    with db._lock:
        db._check_open()
        conn = db.conn
        before = file_bytes(db.path)
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            conn.execute("VACUUM")
            busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        except sqlite3.Error as e:
            raise translate(e, f"vacuum {db.path}") from e
        after = file_bytes(db.path)
    return before, after, busy == 0


def schema_version(path: str | os.PathLike[str]) -> tuple[int, str | None]:
    """(PRAGMA user_version, lashstore kind) of a file, read without changing anything."""
    uri = Path(path).resolve().as_uri() + "?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True)
    except sqlite3.Error as e:
        raise translate(e, f"open {path}") from e
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        try:
            row = conn.execute("SELECT value FROM lashstore_meta WHERE key = 'kind'").fetchone()
        except sqlite3.OperationalError:
            row = None
        return version, (row[0] if row else None)
    except sqlite3.Error as e:
        raise translate(e, f"read {path}") from e
    finally:
        conn.close()


# -- verify -------------------------------------------------------------------------------------


class _Checker:
    def __init__(self, location: str) -> None:
        self.location = location
        self.problems: list[Problem] = []
        self.records = 0

    def add(self, what: str, key: str, detail: str) -> None:
        self.problems.append(Problem(location=self.location, what=what, key=key, detail=detail))

    def run(self, what: str, key: str, fn: Any, *args: Any) -> Any:
        self.records += 1
        try:
            return fn(*args)
        except CorruptRecord as e:
            self.add(e.what, e.key, e.detail or str(e))
        except (LashStoreError, sqlite3.Error, ValueError, msgspec.MsgspecError) as e:
            self.add(what, key, str(e))
        return None

    def rows(self, c: sqlite3.Connection, what: str, sql: str, params: tuple = ()) -> list[tuple]:
        try:
            return c.execute(sql, params).fetchall()
        except sqlite3.Error as e:
            self.add("integrity", what, f"cannot read the {what} table: {e}")
            return []


def _integrity(chk: _Checker, c: sqlite3.Connection) -> None:
    try:
        rows = c.execute("PRAGMA integrity_check").fetchall()
    except sqlite3.Error as e:
        chk.add("integrity", "file", f"PRAGMA integrity_check failed: {e}")
        return
    for (msg,) in rows:
        if msg != "ok":
            chk.add("integrity", "page", str(msg))
    _declared_types(chk, c)


_TYPEOF = {"INTEGER": ("integer",), "TEXT": ("text",), "BLOB": ("blob",), "REAL": ("real", "integer")}


def _declared_types(chk: _Checker, c: sqlite3.Connection) -> None:
    """Every value has its column's declared type (SQLite itself keeps whatever it is given, so a
    tool writing into the file can leave text where an integer belongs)."""
    tables = [r[0] for r in c.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> 'lashstore_meta'"
    )]
    for table in tables:
        cols = c.execute(f'PRAGMA table_info("{table}")').fetchall()
        key_cols = [r[1] for r in sorted(cols, key=lambda r: r[5]) if r[5]] or [cols[0][1]]
        for _, name, decl, notnull, _, _ in cols:
            allowed = _TYPEOF.get((decl or "").upper())
            if allowed is None:
                continue
            kinds = ", ".join(f"'{k}'" for k in allowed + (() if notnull else ("null",)))
            keys = ", ".join(f'"{k}"' for k in key_cols)
            try:
                bad = c.execute(
                    f'SELECT {keys}, "{name}", typeof("{name}") FROM "{table}" WHERE typeof("{name}") NOT IN ({kinds}) '
                    "LIMIT 100"
                ).fetchall()
            except sqlite3.Error as e:
                chk.add("integrity", table, f"cannot read the {table} table: {e}")
                continue
            for row in bad:
                key = "/".join(str(k) for k in row[:-2])
                chk.add(table, key, f"column {name} holds {row[-2]!r} ({row[-1]}), its declared type is {decl}")


def verify_session_store(store: Any) -> tuple[int, list[Problem]]:
    """(records checked, problems) of a session file: `PRAGMA integrity_check`, every blob's
    sha256 (after inflating), every head, node, turn result, meta, queued-work batch and item,
    every checkpoint a head names (and its snapshots), every artifact's and attachment's bytes."""
    chk = _Checker(store.path)
    db: Database = store._db
    with db._lock:
        db._check_open()
        c = db.conn
        try:
            c.execute("BEGIN")
        except sqlite3.Error as e:
            chk.add("file", store.path, f"cannot read: {e}")
            return 0, chk.problems
        try:
            _verify_session_rows(chk, store, c)
        finally:
            try:
                c.execute("COMMIT")
            except sqlite3.Error:
                pass
    return chk.records, chk.problems


def _verify_session_rows(chk: _Checker, store: Any, c: sqlite3.Connection) -> None:
    _integrity(chk, c)
    good: set[str] = set()
    for ref, kind, comp, size, content in chk.rows(
        c, "blobs", "SELECT hash, kind, compression, raw_size, content FROM blobs"
    ):
        if chk.run("blob", ref, check_stored_blob, ref, kind, comp, size, content) is not None:
            good.add(ref)

    def load(ref: str) -> bytes | None:
        if ref not in good:
            return None
        row = c.execute("SELECT kind, compression, raw_size, content FROM blobs WHERE hash = ?", (ref,)).fetchone()
        return None if row is None else check_stored_blob(ref, *row)

    nodes: dict[str, dict[str, bool]] = {}
    for sid, nid, parent, tomb, body in chk.rows(
        c, "graph_nodes", "SELECT session_id, node_id, parent_node_id, tombstoned, body FROM graph_nodes"
    ):
        # Counted whatever its body holds: one bad body is one problem, not also a wrong count.
        nodes.setdefault(sid, {})[nid] = bool(tomb)
        n = chk.run("graph node", nid, decode_node, nid, body)
        if n is not None and n.parent_node_id != parent:
            chk.add("graph node", nid, f"its body names parent {n.parent_node_id!r}, its row {parent!r}")

    for row in chk.rows(c, "session_head", f"SELECT {_HEAD_COLS} FROM session_head"):
        sid = row[0]
        head = chk.run("session head", sid, store._head_meta, row)
        if head is None:
            continue
        live = nodes.get(sid, {})
        if head.leaf_node_id is not None and live.get(head.leaf_node_id, True):
            chk.add("session head", sid, f"its leaf {head.leaf_node_id!r} is not a live node")
        count = sum(1 for t in live.values() if not t)
        if head.graph_node_count != count:
            chk.add("session head", sid, f"it counts {head.graph_node_count} live nodes, the graph holds {count}")
        ref = head.checkpoint_ref
        if ref is not None:
            _verify_checkpoint(chk, sid, ref, load)

    for sid, tid, body in chk.rows(c, "turn_commits", "SELECT session_id, turn_id, result FROM turn_commits"):
        chk.run("turn commit result", f"{sid}/{tid}", decode_result, f"{sid}/{tid}", body)
    for sid, rel in chk.rows(c, "session_meta", "SELECT session_id, relation FROM session_meta"):
        chk.run("session relation", sid, decode_relation, sid, rel)
    for bid, state, dp, sp in chk.rows(
        c, "queued_work_batches", "SELECT batch_id, state, delivery_policy, slot_policy FROM queued_work_batches"
    ):
        chk.run("queued-work batch", bid, _check_batch_enums, state, dp, sp)
    for bid, idx, item_id, payload in chk.rows(
        c, "queued_work_items", "SELECT batch_id, item_index, item_id, payload FROM queued_work_items"
    ):
        chk.run("queued-work item", item_id, decode_payload, item_id, payload)
    for ns, name, ref in chk.rows(c, "artifact_refs", "SELECT namespace, name, blob_ref FROM artifact_refs"):
        chk.records += 1
        if ref not in good:
            chk.add("artifact", f"{ns}/{name}", f"its blob {ref} is missing or damaged")
    for sid, aid in chk.rows(
        c, "attachment_manifest",
        "SELECT session_id, attachment_id FROM attachment_manifest WHERE media_type IS NOT NULL",
    ):
        chk.records += 1
        if aid not in good:
            chk.add("attachment", f"{sid}/{aid}", "its bytes are missing or damaged")


def _check_batch_enums(state: str, dp: str, sp: str) -> None:
    BatchState(state)
    DeliveryPolicy(dp)
    SlotPolicy(sp)


def _verify_checkpoint(chk: _Checker, sid: str, ref: str, load: Any) -> None:
    chk.records += 1
    try:
        data = load(ref)
        if data is None:
            chk.add("checkpoint", ref, f"session {sid!r}: its head names this checkpoint, which is missing or damaged")
            return
        hydrate(ref, decode_manifest(ref, data), load)
    except CorruptRecord as e:
        chk.add("checkpoint", ref, f"session {sid!r}: {e.detail or e}")


def verify_registry_file(path: str | os.PathLike[str]) -> tuple[int, list[Problem]]:
    """(records checked, problems) of processes.db, host_events.db or effects.db, opened
    read-only: integrity, then every row decoded the way the store decodes it."""
    from . import effects_schema, host_events_schema, process_schema

    kinds = {
        process_schema.KIND: process_schema.MIGRATIONS,
        host_events_schema.KIND: host_events_schema.MIGRATIONS,
        effects_schema.KIND: effects_schema.MIGRATIONS,
    }
    chk = _Checker(os.fspath(path))
    try:
        _, kind = schema_version(path)
        if kind not in kinds:
            chk.add("file", os.fspath(path), f"not a lashstore registry file (kind {kind!r})")
            return 0, chk.problems
        db = Database(path, kind=kind, migrations=kinds[kind], readonly=True)
    except LashStoreError as e:
        chk.add("file", os.fspath(path), str(e))
        return 0, chk.problems
    try:
        with db.read("verify") as c:
            _integrity(chk, c)
            if kind == process_schema.KIND:
                _verify_processes(chk, c)
            elif kind == host_events_schema.KIND:
                _verify_host_events(chk, c)
            else:
                _verify_effects(chk, c)
    except BackendError as e:
        chk.add("file", os.fspath(path), str(e))
    finally:
        db.close()
    return chk.records, chk.problems


def _verify_processes(chk: _Checker, c: sqlite3.Connection) -> None:
    from ...rules import process as prules

    for r in chk.rows(c, "processes", f"SELECT {prules.PROCESS_COLUMNS} FROM processes"):
        chk.run("process", r[0], prules.decode_record, prules.ProcessRow(*r))
    for r in chk.rows(c, "process_events", f"SELECT process_id, {prules.EVENT_COLUMNS} FROM process_events"):
        chk.run("process event", f"{r[0]}#{r[1]}", prules.decode_event, r[0], prules.EventRow(*r[1:]))


def _verify_host_events(chk: _Checker, c: sqlite3.Connection) -> None:
    from .host_events import _OCC_COLS, _SUB_COLS, _occ, _sub

    for r in chk.rows(c, "host_event_subscriptions", f"SELECT {_SUB_COLS} FROM host_event_subscriptions"):
        chk.run("trigger subscription", r[1], _sub, r)
    for r in chk.rows(c, "host_event_occurrences", f"SELECT {_OCC_COLS} FROM host_event_occurrences"):
        chk.run("host event occurrence", r[1], _occ, r)


def _verify_effects(chk: _Checker, c: sqlite3.Connection) -> None:
    from ...rules import effects as erules
    from .effects import _ROW

    sql = f"SELECT scope_kind, session_id, scope_id, replay_key, {_ROW} FROM effect_replay"
    for r in chk.rows(c, "effect_replay", sql):
        key = erules.EffectKey(*r[:4])
        chk.run("effect", str(key), erules.effect_record, key, erules.StoredEffect(*r[4:]))


# -- dump and load ------------------------------------------------------------------------------


def dump_session(store: Any, session_id: str | None = None) -> SessionDump:
    """Everything the session holds, from one read snapshot. Blobs: the head's checkpoint and its
    snapshots, the file's named artifacts, the session's attachments (garbage stays behind).
    Raises CorruptRecord on the first record that does not decode."""
    with store._db.read("export session") as c:
        sid = _sid(store, c, session_id)
        if sid is None:
            raise ValidationError(f"{store.path} holds no session to export")
        dump = SessionDump(session_id=sid, meta=_meta(c, sid))
        row = c.execute(f"SELECT {_HEAD_COLS} FROM session_head WHERE session_id = ?", (sid,)).fetchone()
        wanted: list[str] = []
        if row is not None:
            h = store._head_meta(row)
            dump.head = DumpHead(
                head_revision=h.head_revision, config=h.config, agent_frames=h.agent_frames,
                current_agent_frame_id=h.current_agent_frame_id, checkpoint_ref=h.checkpoint_ref,
                leaf_node_id=h.leaf_node_id, node_count=h.graph_node_count, updated_at_ms=h.updated_at_ms,
            )
            if h.checkpoint_ref is not None:
                wanted.append(h.checkpoint_ref)
                data = _blob(c, h.checkpoint_ref)
                if data is None:
                    raise CorruptRecord("session head", sid, f"its checkpoint {h.checkpoint_ref} is missing")
                m = decode_manifest(h.checkpoint_ref, data)
                wanted += [r for r in (m.tool_state_ref, m.plugin_snapshot_ref, m.execution_state_ref) if r]
        dump.nodes = [
            DumpNode(node=decode_node(nid, body), tombstoned=bool(t))
            for nid, t, body in c.execute(
                "SELECT node_id, tombstoned, body FROM graph_nodes WHERE session_id = ? ORDER BY seq", (sid,)
            )
        ]
        dump.usage = [
            DumpUsage(source=s, model=m, usage=TokenUsage(input_tokens=i, output_tokens=o, cached_input_tokens=ca,
                                                           reasoning_tokens=r),
                      revision=rev, idx=idx, created_at_ms=at)
            for rev, idx, s, m, i, o, ca, r, at in c.execute(
                "SELECT head_revision, idx, source, model, input_tokens, output_tokens, cached_input_tokens, "
                "reasoning_tokens, created_at_ms FROM usage_deltas WHERE session_id = ? ORDER BY head_revision, idx",
                (sid,),
            )
        ]
        dump.turns = [
            DumpTurn(turn_id=tid, turn_commit_hash=h, result=decode_result(f"{sid}/{tid}", body), committed_at_ms=at)
            for tid, h, body, at in c.execute(
                "SELECT turn_id, turn_commit_hash, result, committed_at_ms FROM turn_commits WHERE session_id = ? "
                "ORDER BY committed_at_ms, turn_id",
                (sid,),
            )
        ]
        items: dict[str, list[tuple[str, Any]]] = {}
        for bid, item_id, payload in c.execute(
            "SELECT i.batch_id, i.item_id, i.payload FROM queued_work_items i JOIN queued_work_batches b "
            "ON b.batch_id = i.batch_id WHERE b.session_id = ? ORDER BY i.batch_id, i.item_index",
            (sid,),
        ):
            items.setdefault(bid, []).append((item_id, decode_payload(item_id, payload)))
        dump.batches = [
            DumpBatch(
                batch_id=r[0], enqueue_seq=r[1], source_key=r[2], state=r[3], delivery_policy=r[4],
                slot_policy=r[5], merge_key=r[6], available_at_ms=r[7], enqueued_at_ms=r[8],
                items=items.get(r[0], []), claim_id=r[9], claim_owner_id=r[10], claim_token=r[11],
                claim_fencing_token=r[12], claim_claimed_at_ms=r[13], claim_expires_at_ms=r[14],
                finished_at_ms=r[15],
            )
            for r in c.execute(
                "SELECT batch_id, enqueue_seq, source_key, state, delivery_policy, slot_policy, merge_key, "
                "available_at_ms, enqueued_at_ms, claim_id, claim_owner_id, claim_token, claim_fencing_token, "
                "claim_claimed_at_ms, claim_expires_at_ms, finished_at_ms FROM queued_work_batches "
                "WHERE session_id = ? ORDER BY enqueue_seq",
                (sid,),
            )
        ]
        dump.attachments = [
            DumpAttachment(attachment_id=r[0], canonical_uri=r[1], intent_at_ms=r[2], committed_at_ms=r[3],
                           media_type=r[4], byte_len=r[5], width=r[6], height=r[7], label=r[8])
            for r in c.execute(
                "SELECT attachment_id, canonical_uri, intent_at_ms, committed_at_ms, media_type, byte_len, width, "
                "height, label FROM attachment_manifest WHERE session_id = ? ORDER BY intent_at_ms, attachment_id",
                (sid,),
            )
        ]
        wanted += [a.attachment_id for a in dump.attachments if a.media_type is not None]
        dump.artifacts = [
            DumpArtifact(namespace=ns, name=name, blob_ref=ref, created_at_ms=at)
            for ns, name, ref, at in c.execute(
                "SELECT namespace, name, blob_ref, created_at_ms FROM artifact_refs ORDER BY namespace, name"
            )
        ]
        wanted += [a.blob_ref for a in dump.artifacts]
        for ref in dict.fromkeys(wanted):
            row = c.execute(
                "SELECT kind, compression, raw_size, created_at_ms, content FROM blobs WHERE hash = ?", (ref,)
            ).fetchone()
            if row is None:
                raise CorruptRecord("blob", ref, f"session {sid!r} refers to it but it is missing")
            check_stored_blob(ref, row[0], row[1], row[2], row[4])
            dump.blobs.append(DumpBlob(ref=ref, kind=row[0], compression=row[1], raw_size=row[2],
                                       data=bytes(row[4]), created_at_ms=row[3]))
    return dump


def _meta(c: sqlite3.Connection, sid: str) -> SessionMeta | None:
    row = c.execute(
        f"SELECT {META_COLUMNS} FROM session_meta WHERE session_id = ?",
        (sid,),
    ).fetchone()
    if row is None:
        return None
    return meta_from_row(row)


def _blob(c: sqlite3.Connection, ref: str) -> bytes | None:
    row = c.execute("SELECT kind, compression, raw_size, content FROM blobs WHERE hash = ?", (ref,)).fetchone()
    return None if row is None else check_stored_blob(ref, *row)


def load_session_dump(store: Any, dump: SessionDump) -> int | None:
    """Replace everything the session holds with the dump, in one transaction (a failure leaves
    the session as it was). Named artifacts of the dump are upserted; other sessions of the
    file and other artifacts are untouched. Every blob is checked against its sha256 first.

    Returns the head revision written: the dump's, unless the session already had a head at that
    revision or later; then one past it, so a writer holding the old head meets a conflict
    (and no cached knowledge of "the head at revision N" can describe the replaced head)."""
    rules.check_dump(dump)
    for b in dump.blobs:
        BlobKind(b.kind)
        check_stored_blob(b.ref, b.kind, b.compression, b.raw_size, b.data)
    sid = dump.session_id
    now = store._clock.now_ms()
    with store._db.write("import session") as c:
        store._bind_check(c, sid)
        h = dump.head
        revision = None if h is None else h.head_revision
        row = c.execute("SELECT head_revision FROM session_head WHERE session_id = ?", (sid,)).fetchone()
        if row is not None and revision is not None and revision <= row[0]:
            revision = row[0] + 1
        for table in ("session_head", "graph_nodes", "usage_deltas", "turn_commits", "session_meta",
                      "queued_work_batches", "attachment_manifest"):
            c.execute(f"DELETE FROM {table} WHERE session_id = ?", (sid,))
        c.executemany(
            "INSERT OR IGNORE INTO blobs (hash, kind, compression, raw_size, created_at_ms, content) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [(b.ref, b.kind, b.compression, b.raw_size, b.created_at_ms if b.created_at_ms is not None else now, b.data)
             for b in dump.blobs],
        )
        if dump.meta is not None:
            m = dump.meta
            c.execute(
                "INSERT INTO session_meta (session_id, session_name, created_at, model, cwd, relation) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (sid, m.session_name, m.created_at, m.model, m.cwd, pack(m.relation)),
            )
        c.executemany(
            "INSERT INTO graph_nodes (session_id, node_id, parent_node_id, tombstoned, body) VALUES (?, ?, ?, ?, ?)",
            [(sid, d.node.node_id, d.node.parent_node_id, int(d.tombstoned), pack(d.node)) for d in dump.nodes],
        )
        if h is not None:
            c.execute(
                f"INSERT INTO session_head ({_HEAD_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (sid, revision, h.checkpoint_ref, h.leaf_node_id, h.node_count, h.updated_at_ms,
                 pack(HeadBody(h.config, h.agent_frames, h.current_agent_frame_id))),
            )
        c.executemany(
            "INSERT INTO usage_deltas (session_id, head_revision, idx, source, model, input_tokens, output_tokens, "
            "cached_input_tokens, reasoning_tokens, created_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (sid, u.revision if u.revision is not None else 0, u.idx if u.idx is not None else n,
                 u.source, u.model, u.usage.input_tokens, u.usage.output_tokens, u.usage.cached_input_tokens,
                 u.usage.reasoning_tokens, u.created_at_ms if u.created_at_ms is not None else now)
                for n, u in enumerate(dump.usage)
            ],
        )
        c.executemany(
            "INSERT INTO turn_commits (session_id, turn_id, turn_commit_hash, result, committed_at_ms) "
            "VALUES (?, ?, ?, ?, ?)",
            [(sid, t.turn_id, t.turn_commit_hash, pack(t.result),
              t.committed_at_ms if t.committed_at_ms is not None else now) for t in dump.turns],
        )
        seqs = [b.enqueue_seq for b in dump.batches]
        keep_seq = not seqs or not c.execute(
            f"SELECT count(*) FROM queued_work_batches WHERE enqueue_seq IN ({','.join('?' * len(seqs))})", seqs
        ).fetchone()[0]
        for b in dump.batches:
            c.execute(
                "INSERT INTO queued_work_batches (enqueue_seq, batch_id, session_id, source_key, state, delivery_policy, "
                "slot_policy, merge_key, available_at_ms, enqueued_at_ms, claim_id, claim_owner_id, claim_token, "
                "claim_fencing_token, claim_claimed_at_ms, claim_expires_at_ms, finished_at_ms) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (b.enqueue_seq if keep_seq else None, b.batch_id, sid, b.source_key, BatchState(b.state).value,
                 DeliveryPolicy(b.delivery_policy).value, SlotPolicy(b.slot_policy).value, b.merge_key,
                 b.available_at_ms, b.enqueued_at_ms, b.claim_id, b.claim_owner_id, b.claim_token,
                 b.claim_fencing_token, b.claim_claimed_at_ms, b.claim_expires_at_ms, b.finished_at_ms),
            )
            c.executemany(
                "INSERT INTO queued_work_items (batch_id, item_index, item_id, payload) VALUES (?, ?, ?, ?)",
                [(b.batch_id, i, item_id, pack(payload)) for i, (item_id, payload) in enumerate(b.items)],
            )
        c.executemany(
            "INSERT INTO attachment_manifest (session_id, attachment_id, canonical_uri, intent_at_ms, committed_at_ms, "
            "media_type, byte_len, width, height, label) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(sid, a.attachment_id, a.canonical_uri, a.intent_at_ms, a.committed_at_ms, a.media_type, a.byte_len,
              a.width, a.height, a.label) for a in dump.attachments],
        )
        c.executemany(
            "INSERT INTO artifact_refs (namespace, name, blob_ref, created_at_ms) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (namespace, name) DO UPDATE SET blob_ref = excluded.blob_ref",
            [(a.namespace, a.name, a.blob_ref, a.created_at_ms if a.created_at_ms is not None else now)
             for a in dump.artifacts],
        )
        if h is not None and h.checkpoint_ref is not None:
            # The whole checkpoint must hydrate from what is now in the file, or nothing is kept.
            store._get_checkpoint(c, h.checkpoint_ref)
        store._bound_cache = sid
    # This object's cache of the head's snapshot refs described another head.
    store._head_children = (None, set())
    store._pending_children = store._head_children
    return revision


# -- registries ---------------------------------------------------------------------------------


def prune_occurrences(store: Any, older_than_ms: int, *, dry_run: bool = False) -> tuple[int, int]:
    """Delete host-event occurrences recorded at least `older_than_ms` ago, with their delivery
    reservations. Returns (occurrences, deliveries). A pruned occurrence's idempotency key can
    be recorded again (as a new occurrence)."""
    v.check_nonneg_int(older_than_ms, "older_than_ms")
    with (store._db.read if dry_run else store._db.write)("prune host event occurrences") as c:
        cutoff = store._clock.now_ms() - older_than_ms
        deliveries = c.execute(
            "SELECT count(*) FROM host_event_deliveries WHERE occurrence_id IN "
            "(SELECT occurrence_id FROM host_event_occurrences WHERE occurred_at_ms <= ?)",
            (cutoff,),
        ).fetchone()[0]
        if dry_run:
            n = c.execute("SELECT count(*) FROM host_event_occurrences WHERE occurred_at_ms <= ?", (cutoff,)).fetchone()[0]
        else:
            c.execute(
                "DELETE FROM host_event_deliveries WHERE occurrence_id IN "
                "(SELECT occurrence_id FROM host_event_occurrences WHERE occurred_at_ms <= ?)",
                (cutoff,),
            )
            n = c.execute("DELETE FROM host_event_occurrences WHERE occurred_at_ms <= ?", (cutoff,)).rowcount
    return n, deliveries


def prune_effects(store: Any, older_than_ms: int, *, dry_run: bool = False) -> int:
    """Delete finished (completed or failed) effect records last updated at least
    `older_than_ms` ago. In-progress records are never touched. A later call with a pruned key
    runs its function again."""
    v.check_nonneg_int(older_than_ms, "older_than_ms")
    with (store._db.read if dry_run else store._db.write)("prune effects") as c:
        cutoff = store._clock.now_ms() - older_than_ms
        where = "status IN ('completed', 'failed') AND updated_at_ms <= ?"
        if dry_run:
            return c.execute(f"SELECT count(*) FROM effect_replay WHERE {where}", (cutoff,)).fetchone()[0]
        return c.execute(f"DELETE FROM effect_replay WHERE {where}", (cutoff,)).rowcount


# -- as methods ---------------------------------------------------------------------------------


class SqliteMaintenanceMixin:
    """The functions above as methods of `SqliteSessionStore`."""

    def list_graph_nodes(self) -> list[tuple[GraphNode, bool]]:
        return list_graph_nodes(self)

    def list_tombstoned_nodes(self) -> list[GraphNode]:
        return list_tombstoned_nodes(self)

    def prune_graph(self, keep_turns: int, *, dry_run: bool = False) -> GraphPruneResult:
        return prune_graph(self, keep_turns, dry_run=dry_run)

    def prune_finished_queue(self, older_than_ms: int, *, dry_run: bool = False) -> int:
        return prune_finished_queue(self, older_than_ms, dry_run=dry_run)

    def prune_turn_stamps(self, *, older_than_ms: int | None = None, keep_last: int | None = None,
                          dry_run: bool = False) -> int:
        return prune_turn_stamps(self, older_than_ms=older_than_ms, keep_last=keep_last, dry_run=dry_run)

    def compact_usage(self, *, dry_run: bool = False) -> int:
        return compact_usage(self, dry_run=dry_run)

    def collect_garbage(self, *, grace_ms: int = rules.DEFAULT_GC_GRACE_MS, dry_run: bool = False) -> GcReport:
        return collect_garbage(self, grace_ms=grace_ms, dry_run=dry_run)

    def shrink(self) -> tuple[int, int, bool]:
        return shrink(self)

    def verify(self) -> tuple[int, list[Problem]]:
        return verify_session_store(self)

    def dump_session(self) -> SessionDump:
        return dump_session(self)

    def load_session_dump(self, dump: SessionDump) -> int | None:
        return load_session_dump(self, dump)
