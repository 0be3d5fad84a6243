"""The statements of the session store, written once for SQLite and PostgreSQL.

Each function takes an open transaction (`engine.tx.Tx`) and does one thing with rows: read and
decode them (every column checked, CorruptRecord when damaged), or write them. Decisions are the
engine's and `rules/`'s; these only store rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from ...codec import pack
from ...errors import CorruptRecord
from ...model.blobs import BlobInfo, BlobKind, Compression
from ...model.session import GraphNode, SessionMeta, TokenLedgerEntry, TokenUsage
from ...engine.tx import Tx, any_of
from ..common import (
    HEAD_COLUMNS,
    META_COLUMNS,
    PreparedBlob,
    check_columns,
    check_passthrough,
    check_stored_blob,
    decode_node,
    meta_from_row,
)

# -- blobs ------------------------------------------------------------------------------------------

# A re-put refreshes created_at_ms: bytes that were garbage and are put again are young again, so
# the GC grace period protects them until the commit that references them.
INSERT_BLOB = (
    "INSERT INTO blobs (hash, kind, compression, raw_size, created_at_ms, content) VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (hash) DO UPDATE SET created_at_ms = excluded.created_at_ms"
)


def insert_blobs(t: Tx, blobs: list[PreparedBlob], now: int, *, defer: bool = False) -> None:
    rows = [(b.ref, b.kind, b.compression, b.raw_size, now, b.stored) for b in blobs]
    (t.defer_many if defer else t.many)(INSERT_BLOB, rows)


def load_blob(t: Tx, ref: str) -> bytes | None:
    """The verified logical bytes of a blob, None when there is none."""
    row = t.one("SELECT kind, compression, raw_size, content FROM blobs WHERE hash = ?", (ref,))
    return None if row is None else check_stored_blob(ref, row[0], row[1], row[2], row[3])


def blob_info(t: Tx, ref: str) -> BlobInfo | None:
    row = t.one("SELECT kind, compression, raw_size, length(content) FROM blobs WHERE hash = ?", (ref,))
    if row is None:
        return None
    try:
        return BlobInfo(ref, BlobKind(row[0]), Compression(row[1]), row[2], row[3])
    except ValueError as e:
        raise CorruptRecord("blob", ref, str(e)) from None


def blob_stats(t: Tx) -> dict[str, int]:
    n, raw, stored = t.one("SELECT count(*), coalesce(sum(raw_size), 0), coalesce(sum(length(content)), 0) FROM blobs")  # type: ignore[misc]
    return {"count": int(n), "raw_bytes": int(raw), "stored_bytes": int(stored)}


def require_refs(t: Tx, refs: list[str], decoded: list[str]) -> None:
    """Passed-through refs exist, and the snapshots among them decode (`check_passthrough`).

    Locked FOR KEY SHARE where rows are locked one by one (PostgreSQL): the collector's table
    lock then waits for this transaction, so a blob checked here cannot be swept before the
    reference to it commits. Only the bytes of the refs that must decode are fetched."""
    if not refs:
        return
    want, want_params = any_of(t, "hash", decoded)
    cond, params = any_of(t, "hash", refs)
    rows = t.all(
        f"SELECT hash, kind, compression, raw_size, CASE WHEN {want} THEN content END FROM blobs WHERE {cond}"
        f"{t.dialect.for_key_share}",
        [*want_params, *params],
    )
    found = {r[0]: r for r in rows}

    def load(ref: str) -> bytes | None:
        r = found.get(ref)
        if r is None:
            return None
        if r[4] is None:
            return b""  # it exists; its bytes are not needed
        return check_stored_blob(ref, r[1], r[2], r[3], r[4])

    check_passthrough(refs, decoded, load)


def blob_sizes(t: Tx) -> list[tuple[str, int, int]]:
    """(hash, stored bytes, created_at_ms) of every blob."""
    return t.all("SELECT hash, length(content), created_at_ms FROM blobs")


def delete_blobs(t: Tx, refs: Iterable[str]) -> None:
    t.many("DELETE FROM blobs WHERE hash = ?", [(r,) for r in refs])


def lock_blobs(t: Tx) -> None:
    """Hold off every writer of blobs for the rest of the transaction (the collector's sweep)."""
    if t.dialect.name == "postgres":
        t.execute("LOCK TABLE blobs IN EXCLUSIVE MODE")


# -- named artifacts --------------------------------------------------------------------------------


def put_artifact(t: Tx, owner: str, namespace: str, name: str, ref: str, now: int) -> None:
    t.execute(
        "INSERT INTO artifact_refs (session_id, namespace, name, blob_ref, created_at_ms) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (session_id, namespace, name) DO UPDATE SET blob_ref = excluded.blob_ref",
        (owner, namespace, name, ref, now),
    )


def artifact_ref(t: Tx, owner: str, namespace: str, name: str) -> str | None:
    row = t.one("SELECT blob_ref FROM artifact_refs WHERE session_id = ? AND namespace = ? AND name = ?",
                (owner, namespace, name))
    return None if row is None else row[0]


def delete_artifact(t: Tx, owner: str, namespace: str, name: str) -> bool:
    return t.rowcount("DELETE FROM artifact_refs WHERE session_id = ? AND namespace = ? AND name = ?",
                      (owner, namespace, name)) > 0


def list_artifacts(t: Tx, owner: str, namespace: str | None) -> list[tuple[str, str, str]]:
    if namespace is None:
        rows = t.all("SELECT namespace, name, blob_ref FROM artifact_refs WHERE session_id = ? ORDER BY namespace, name",
                     (owner,))
    else:
        rows = t.all("SELECT namespace, name, blob_ref FROM artifact_refs WHERE session_id = ? AND namespace = ? "
                     "ORDER BY name", (owner, namespace))
    return [tuple(r) for r in rows]  # type: ignore[misc]


# -- meta -------------------------------------------------------------------------------------------

_META_INSERT = f"INSERT INTO session_meta ({META_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"


def save_meta(t: Tx, meta: SessionMeta, *, overwrite: bool) -> None:
    """Write the meta; without `overwrite`, a session that has one keeps it."""
    tail = (
        " ON CONFLICT (session_id) DO UPDATE SET session_name = excluded.session_name, "
        "created_at = excluded.created_at, model = excluded.model, cwd = excluded.cwd, relation = excluded.relation"
        if overwrite else " ON CONFLICT (session_id) DO NOTHING"
    )
    t.execute(_META_INSERT + tail, (meta.session_id, meta.session_name, meta.created_at, meta.model, meta.cwd,
                                    pack(meta.relation)))


def load_meta(t: Tx, sid: str) -> SessionMeta | None:
    row = t.one(f"SELECT {META_COLUMNS} FROM session_meta WHERE session_id = ?", (sid,))
    return None if row is None else meta_from_row(row)


def has_meta(t: Tx, sid: str) -> bool:
    return t.one("SELECT 1 FROM session_meta WHERE session_id = ?", (sid,)) is not None


def stored_session_ids(t: Tx, limit: int) -> list[str]:
    """Sessions that have a head, else a meta, else named artifacts (at most `limit`)."""
    for sql in ("SELECT session_id FROM session_head LIMIT ?", "SELECT session_id FROM session_meta LIMIT ?",
                "SELECT DISTINCT session_id FROM artifact_refs WHERE session_id <> '' LIMIT ?"):
        ids = [r[0] for r in t.all(sql, (limit,))]
        if ids:
            return ids
    return []


# -- heads ------------------------------------------------------------------------------------------

_COMMIT_HEAD_SPEC = (("head_revision", "i"), ("node_count", "i"), ("leaf_node_id", "s?"), ("checkpoint_ref", "s?"))


def head_row(t: Tx, sid: str) -> tuple | None:
    return t.one(f"SELECT {HEAD_COLUMNS} FROM session_head WHERE session_id = ?", (sid,))


def all_head_rows(t: Tx) -> list[tuple]:
    return t.all(f"SELECT {HEAD_COLUMNS} FROM session_head")


def lock_head(t: Tx, sid: str) -> tuple[int, int, str | None, str | None] | None:
    """(revision, live node count, leaf, checkpoint ref) of the session's head, locked until
    commit; the database clock comes along where it is used."""
    row = t.one(
        f"SELECT head_revision, node_count, leaf_node_id, checkpoint_ref{t.now_column} FROM session_head "
        f"WHERE session_id = ?{t.dialect.for_update}",
        (sid,),
    )
    if row is None:
        return None
    if len(row) > 4:
        t.set_now(row[4])
    check_columns(row, _COMMIT_HEAD_SPEC, "session head", sid)
    return row[0], row[1], row[2], row[3]


def head_revision(t: Tx, sid: str) -> int:
    row = t.one("SELECT head_revision FROM session_head WHERE session_id = ?", (sid,))
    return 0 if row is None else int(row[0])


def insert_head(t: Tx, sid: str, revision: int, checkpoint_ref: str | None, leaf: str | None, count: int,
                now: int, body: bytes) -> None:
    t.defer(f"INSERT INTO session_head ({HEAD_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (sid, revision, checkpoint_ref, leaf, count, now, body))


def update_head(t: Tx, sid: str, revision: int, checkpoint_ref: str | None, leaf: str | None, count: int,
                now: int, body: bytes) -> None:
    t.defer("UPDATE session_head SET head_revision = ?, checkpoint_ref = ?, leaf_node_id = ?, node_count = ?, "
            "updated_at_ms = ?, body = ? WHERE session_id = ?", (revision, checkpoint_ref, leaf, count, now, body, sid))


def move_head(t: Tx, sid: str, leaf: str | None, count: int, now: int) -> None:
    """A change of the visible graph outside a commit (a tombstone): the revision moves too."""
    t.execute("UPDATE session_head SET leaf_node_id = ?, node_count = ?, head_revision = head_revision + 1, "
              "updated_at_ms = ? WHERE session_id = ?", (leaf, count, now, sid))


# -- graph ------------------------------------------------------------------------------------------


def live_nodes(t: Tx, sid: str) -> list[GraphNode]:
    rows = t.all("SELECT node_id, body FROM graph_nodes WHERE session_id = ? AND NOT tombstoned ORDER BY seq", (sid,))
    return [decode_node(nid, body) for nid, body in rows]


def path_nodes(t: Tx, sid: str, leaf: str, limit: int) -> list[GraphNode]:
    """The live ancestry of `leaf`, root first (at most `limit` nodes)."""
    rows = t.all(
        """
        WITH RECURSIVE path (node_id, parent_node_id, body, depth) AS (
            SELECT node_id, parent_node_id, body, 0 FROM graph_nodes
             WHERE session_id = ? AND node_id = ? AND NOT tombstoned
            UNION ALL
            SELECT g.node_id, g.parent_node_id, g.body, p.depth + 1
              FROM path p JOIN graph_nodes g ON g.session_id = ? AND g.node_id = p.parent_node_id
             WHERE NOT g.tombstoned AND p.depth < ?
        )
        SELECT node_id, body FROM path ORDER BY depth DESC
        """,
        (sid, leaf, sid, limit),
    )
    return [decode_node(nid, body) for nid, body in rows]


def live_node(t: Tx, sid: str, node_id: str) -> GraphNode | None:
    row = t.one("SELECT body FROM graph_nodes WHERE session_id = ? AND node_id = ? AND NOT tombstoned", (sid, node_id))
    return None if row is None else decode_node(node_id, row[0])


def node_states(t: Tx, sid: str, ids: Iterable[str]) -> dict[str, bool]:
    """node id -> tombstoned, for those of `ids` that exist."""
    ids = list(ids)
    if not ids:
        return {}
    cond, params = any_of(t, "node_id", ids)
    return {nid: bool(tomb) for nid, tomb in t.all(
        f"SELECT node_id, tombstoned FROM graph_nodes WHERE session_id = ? AND {cond}", (sid, *params))}


def node_parent(t: Tx, sid: str, node_id: str) -> tuple[str | None, bool] | None:
    r = t.one("SELECT parent_node_id, tombstoned FROM graph_nodes WHERE session_id = ? AND node_id = ?", (sid, node_id))
    return None if r is None else (r[0], bool(r[1]))


def node_counts(t: Tx, sid: str) -> tuple[int, int]:
    """(all nodes, live nodes) of the session."""
    total, live = t.one("SELECT count(*), coalesce(sum(CASE WHEN tombstoned THEN 0 ELSE 1 END), 0) FROM graph_nodes "
                        "WHERE session_id = ?", (sid,))  # type: ignore[misc]
    return int(total), int(live)


def delete_nodes(t: Tx, sid: str) -> None:
    t.defer("DELETE FROM graph_nodes WHERE session_id = ?", (sid,))


def insert_nodes(t: Tx, sid: str, nodes: list[GraphNode], bodies: list[bytes]) -> None:
    t.defer_many("INSERT INTO graph_nodes (session_id, node_id, parent_node_id, body) VALUES (?, ?, ?, ?)",
                 [(sid, n.node_id, n.parent_node_id, body) for n, body in zip(nodes, bodies)])


def tombstone(t: Tx, sid: str, ids: list[str]) -> int:
    cond, params = any_of(t, "node_id", ids)
    return t.rowcount(f"UPDATE graph_nodes SET tombstoned = TRUE WHERE session_id = ? AND {cond} AND NOT tombstoned",
                      (sid, *params))


def vacuum(t: Tx, sid: str) -> int:
    return t.rowcount("DELETE FROM graph_nodes WHERE session_id = ? AND tombstoned", (sid,))


# -- usage ------------------------------------------------------------------------------------------

# Counts are at most 2**53 each; SQLite's sum() stops at 2**63, so each is summed as two halves
# that cannot overflow in any table SQLite can hold, and joined in Python.
_SPLIT = 26
_COUNTS = ("input_tokens", "output_tokens", "cached_input_tokens", "reasoning_tokens")
_SPLIT_SUMS = ", ".join(f"sum({c} >> {_SPLIT}), sum({c} & {(1 << _SPLIT) - 1})" for c in _COUNTS)
_BAD_USAGE = " OR ".join(f"{c} < 0 OR {c} IS NULL" for c in _COUNTS)
_NON_EMPTY = " + ".join(_COUNTS) + " > 0"


def usage(t: Tx, sid: str) -> list[TokenLedgerEntry]:
    """The merged ledger (`rules.usage.merge_ledger`'s rule, done by the database): empty entries
    dropped, entries added by (source, model), in order of first appearance."""
    typed = "" if t.dialect.name == "postgres" else " OR " + " OR ".join(f"typeof({c}) <> 'integer'" for c in _COUNTS)
    rows = t.all(
        f"SELECT source, model, {_SPLIT_SUMS}, min(CASE WHEN {_NON_EMPTY} THEN head_revision * 4294967296 + idx END) "
        f"AS first, sum(CASE WHEN {_BAD_USAGE}{typed} THEN 1 ELSE 0 END) FROM usage_deltas WHERE session_id = ? "
        "GROUP BY source, model ORDER BY first",
        (sid,),
    )
    out = []
    for r in rows:
        if r[11] or type(r[0]) is not str or type(r[1]) is not str:
            raise CorruptRecord(
                "usage ledger", sid, f"a row of ({r[0]!r}, {r[1]!r}) holds a token count that is not a non-negative "
                "integer (or a source or model that is not text); run `lashstore verify`"
            )
        if r[10] is None:
            continue  # only empty rows
        c = [int(x) for x in r[2:10]]
        out.append(TokenLedgerEntry(r[0], r[1], TokenUsage(
            input_tokens=(c[0] << _SPLIT) + c[1], output_tokens=(c[2] << _SPLIT) + c[3],
            cached_input_tokens=(c[4] << _SPLIT) + c[5], reasoning_tokens=(c[6] << _SPLIT) + c[7])))
    return out


def insert_usage(t: Tx, sid: str, revision: int, entries: list[TokenLedgerEntry], now: int) -> None:
    t.defer_many(
        "INSERT INTO usage_deltas (session_id, head_revision, idx, source, model, input_tokens, output_tokens, "
        "cached_input_tokens, reasoning_tokens, created_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(sid, revision, i, e.source, e.model, e.usage.input_tokens, e.usage.output_tokens,
          e.usage.cached_input_tokens, e.usage.reasoning_tokens, now) for i, e in enumerate(entries)],
    )


# -- turn stamps ------------------------------------------------------------------------------------


def turn_stamp(t: Tx, sid: str, turn_id: str) -> tuple[str, bytes] | None:
    """(turn_commit_hash, encoded result) of a stamped turn."""
    row = t.one("SELECT turn_commit_hash, result FROM turn_commits WHERE session_id = ? AND turn_id = ?", (sid, turn_id))
    return None if row is None else (row[0], row[1])


def insert_turn_stamp(t: Tx, sid: str, turn_id: str, turn_hash: str, result: bytes, now: int) -> None:
    t.defer("INSERT INTO turn_commits (session_id, turn_id, turn_commit_hash, result, committed_at_ms) "
            "VALUES (?, ?, ?, ?, ?)", (sid, turn_id, turn_hash, result, now))


# -- garbage collection roots -----------------------------------------------------------------------


def other_roots(t: Tx) -> list[str]:
    """Blobs held by a named artifact or an attachment-manifest row (committed or not)."""
    return ([r[0] for r in t.all("SELECT DISTINCT blob_ref FROM artifact_refs")]
            + [r[0] for r in t.all("SELECT DISTINCT attachment_id FROM attachment_manifest")])


def count_blobs(t: Tx) -> int:
    return int(t.one("SELECT count(*) FROM blobs")[0])  # type: ignore[index]
