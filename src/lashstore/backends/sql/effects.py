"""The statements of effect replay, written once for SQLite and PostgreSQL.

One row per recorded effect, keyed by `EffectKey` (scope kind, session id or "", scope id,
replay key). Finishing, releasing and renewing are fenced by the lease token: an owner that lost
its lease matches no row, so it can never overwrite the new owner's.
"""

from __future__ import annotations

from ...engine.tx import Tx
from ...rules.effects import IN_PROGRESS, EffectKey, StoredEffect
from ..common import check_columns

#: the capability's tables
TABLES = ("effect_replay",)

#: Every row, as the store's dump holds them (`backends.sql.rows`): `seq` only orders rows, and a
#: loaded store numbers them again.
DUMP: dict[str, tuple[tuple[str, ...], str]] = {
    "effect_replay": (
        ("scope_kind", "session_id", "scope_id", "replay_key", "envelope_hash", "status", "outcome", "error",
         "lease_owner_id", "lease_token", "lease_expires_at_ms", "due_at_ms", "attempts", "created_at_ms",
         "updated_at_ms"),
        "seq",
    ),
}

_ROW = (
    "envelope_hash, status, outcome, error, lease_owner_id, lease_token, lease_expires_at_ms, due_at_ms, "
    "attempts, created_at_ms, updated_at_ms"
)
_KEY_COLS = "scope_kind, session_id, scope_id, replay_key"
_KEY = "scope_kind = ? AND session_id = ? AND scope_id = ? AND replay_key = ?"
_SCOPE = "scope_kind = ? AND session_id = ? AND scope_id = ?"
_HELD = f"{_KEY} AND envelope_hash = ? AND lease_token = ? AND status = '{IN_PROGRESS}'"
_UNLEASED = "lease_owner_id = NULL, lease_token = NULL, lease_expires_at_ms = 0"
_FINISHED = "status IN ('completed', 'failed') AND updated_at_ms <= ?"

_KEY_SPEC = (("scope_kind", "s"), ("session_id", "s"), ("scope_id", "s"), ("replay_key", "s"))
_ROW_SPEC = (("envelope_hash", "s"), ("status", "s"), ("outcome", "b?"), ("error", "b?"), ("lease_owner_id", "s?"),
             ("lease_token", "s?"), ("lease_expires_at_ms", "I"), ("due_at_ms", "I?"), ("attempts", "i"),
             ("created_at_ms", "I"), ("updated_at_ms", "I"))


def _stored(key: EffectKey, row: tuple) -> StoredEffect:
    check_columns(row, _ROW_SPEC, "effect", key)
    return StoredEffect(*row)


def decode_row(row: tuple) -> tuple[EffectKey, StoredEffect]:
    """A row of `_KEY_COLS, _ROW` (as `listing` and `every_row` read them); CorruptRecord when a
    column holds a value of the wrong type."""
    check_columns(row, _KEY_SPEC, "effect", "/".join(map(str, row[:4])))
    key = EffectKey(*row[:4])
    return key, _stored(key, row[4:])


def load(t: Tx, key: EffectKey, *, lock: bool = False) -> StoredEffect | None:
    """The effect's row (locked until commit with `lock`, where rows lock)."""
    row = t.one(f"SELECT {_ROW} FROM effect_replay WHERE {_KEY}{t.dialect.for_update if lock else ''}", tuple(key))
    return None if row is None else _stored(key, row)


def insert_claim(t: Tx, key: EffectKey, envelope_hash: str, owner_id: str, token: str, expires: int,
                 due_at: int | None, now: int) -> None:
    t.execute(
        f"INSERT INTO effect_replay ({_KEY_COLS}, envelope_hash, status, lease_owner_id, lease_token, "
        "lease_expires_at_ms, due_at_ms, attempts, created_at_ms, updated_at_ms) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?)",
        (*key, envelope_hash, IN_PROGRESS, owner_id, token, expires, due_at, now, now),
    )


def take_over(t: Tx, key: EffectKey, owner_id: str, token: str, expires: int, due_at: int | None, now: int) -> None:
    t.execute(
        "UPDATE effect_replay SET lease_owner_id = ?, lease_token = ?, lease_expires_at_ms = ?, due_at_ms = ?, "
        f"attempts = attempts + 1, updated_at_ms = ? WHERE {_KEY}",
        (owner_id, token, expires, due_at, now, *key),
    )


def settle(t: Tx, key: EffectKey, envelope_hash: str, token: str, status: str, outcome: bytes | None,
           error: bytes | None, now: int) -> bool:
    """Record the outcome (or error) of a held claim; False when the lease is no longer held."""
    return t.rowcount(
        f"UPDATE effect_replay SET status = ?, outcome = ?, error = ?, {_UNLEASED}, updated_at_ms = ? WHERE {_HELD}",
        (status, outcome, error, now, *key, envelope_hash, token),
    ) == 1


def release(t: Tx, key: EffectKey, envelope_hash: str, token: str, now: int) -> bool:
    return t.rowcount(f"UPDATE effect_replay SET {_UNLEASED}, updated_at_ms = ? WHERE {_HELD}",
                      (now, *key, envelope_hash, token)) == 1


def renew(t: Tx, key: EffectKey, envelope_hash: str, token: str, expires: int) -> bool:
    return t.rowcount(f"UPDATE effect_replay SET lease_expires_at_ms = ? WHERE {_HELD}",
                      (expires, *key, envelope_hash, token)) == 1


def listing(t: Tx, where: list[tuple[str, object]], limit: int | None) -> list[tuple]:
    """Rows (`decode_row`'s shape) whose columns equal the values of `where`, in first-claim
    order; with `limit`, the newest `limit` of them."""
    cond = " AND ".join(f"{name} = ?" for name, _ in where) or "1 = 1"
    params: list[object] = [value for _, value in where]
    q = f"SELECT seq, {_KEY_COLS}, {_ROW} FROM effect_replay WHERE {cond} ORDER BY seq"
    if limit is not None:
        q = f"SELECT * FROM ({q} DESC LIMIT ?) newest ORDER BY seq"
        params.append(limit)
    return [r[1:] for r in t.all(q, params)]


def every_row(t: Tx) -> list[tuple]:
    return t.all(f"SELECT {_KEY_COLS}, {_ROW} FROM effect_replay ORDER BY seq")


def delete(t: Tx, key: EffectKey) -> bool:
    return t.rowcount(f"DELETE FROM effect_replay WHERE {_KEY}", tuple(key)) == 1


def delete_scope(t: Tx, kind: str, session_id: str, scope_id: str) -> tuple[int, list[EffectKey]]:
    """Delete a scope's effects: (how many, their keys)."""
    params = (kind, session_id, scope_id)
    keys = [EffectKey(*r) for r in t.all(f"SELECT {_KEY_COLS} FROM effect_replay WHERE {_SCOPE}{t.dialect.for_update}",
                                         params)]
    return t.rowcount(f"DELETE FROM effect_replay WHERE {_SCOPE}", params), keys


def finished_before(t: Tx, cutoff: int, *, delete: bool) -> int:
    """Count (or delete) the completed and failed effects last updated at or before `cutoff`."""
    if delete:
        return t.rowcount(f"DELETE FROM effect_replay WHERE {_FINISHED}", (cutoff,))
    return int(t.one(f"SELECT count(*) FROM effect_replay WHERE {_FINISHED}", (cutoff,))[0])  # type: ignore[index]
