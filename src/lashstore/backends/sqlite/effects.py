"""Effect replay on SQLite: durable memoisation of non-deterministic calls.

The claim is one BEGIN IMMEDIATE transaction (so two processes asking for the same key serialise
and exactly one claims); the executor runs outside any transaction; finishing, releasing and
heartbeat renewals are single UPDATEs fenced by the lease token. The claim loop, the heartbeat
and the decorator live in `lashstore.durable_calls`; every decision in `lashstore.rules.effects`.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from ...model.effects import EffectRecord, EffectScope, EffectStatus
from ...model.session import DurabilityTier
from ...options import StoreOptions
from ...rules import effects as rules
from ...rules.effects import EffectKey, EffectPolicy, StoredEffect
from ...rules import validate as v
from ...durable_calls import EffectEngine, ScopeLike
from .connection import Database
from .effects_schema import KIND, MIGRATIONS

__all__ = ["SqliteEffectStore"]

_ROW = (
    "envelope_hash, status, outcome, error, lease_owner_id, lease_token, lease_expires_at_ms, due_at_ms, "
    "attempts, created_at_ms, updated_at_ms"
)
_KEY = "scope_kind = ? AND session_id = ? AND scope_id = ? AND replay_key = ?"


def _load(c: sqlite3.Connection, key: EffectKey) -> StoredEffect | None:
    row = c.execute(f"SELECT {_ROW} FROM effect_replay WHERE {_KEY}", tuple(key)).fetchone()
    return None if row is None else StoredEffect(*row)


class SqliteEffectStore(EffectEngine):
    """Recorded effect outcomes in one SQLite file. Thread-safe; share one per process.

    lease_ttl_ms: how long a claim stays live without renewal (default 30 s). While an executor
        runs, a heartbeat renews it every third of that (heartbeat=False turns renewal off, so a
        call longer than the TTL can be taken over; only for tests of expiry).
    strict: replay only, for every call through this object.
    policy: the default EffectPolicy of calls that pass none.
    """

    def __init__(
        self,
        path: str | Path,
        options: StoreOptions | None = None,
        lease_ttl_ms: int = 30_000,
        *,
        heartbeat: bool = True,
        strict: bool = False,
        policy: EffectPolicy | None = None,
    ) -> None:
        self._init_engine(options, lease_ttl_ms, heartbeat, strict, policy)
        self.path = str(path)
        self._db = Database(
            self.path,
            kind=KIND,
            migrations=MIGRATIONS,
            synchronous=self._opts.synchronous,
            busy_timeout_ms=self._opts.busy_timeout_ms,
            readonly=self._opts.readonly and self.path != ":memory:",
        )

    @classmethod
    def memory(cls, options: StoreOptions | None = None, lease_ttl_ms: int = 30_000, **kw: Any) -> "SqliteEffectStore":
        """A private in-memory SQLite database (durability tier inline)."""
        return cls(":memory:", options, lease_ttl_ms, **kw)

    # -- plumbing ------------------------------------------------------------------------------
    def __enter__(self) -> "SqliteEffectStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._close_engine()
        self._db.close()

    @property
    def closed(self) -> bool:
        return self._db.closed

    def durability_tier(self) -> DurabilityTier:
        return DurabilityTier.INLINE if self.path == ":memory:" else DurabilityTier.DURABLE

    # -- engine primitives ---------------------------------------------------------------------
    def _tx_prepare(self, key: EffectKey, envelope_hash: str, owner_id: str, token: str, ttl_ms: int,
                    due_in_ms: int | None, strict: bool) -> tuple[Any, int]:
        with self._db.write("claim effect") as c:
            now = self._clock.now_ms()
            row = _load(c, key)
            d = rules.decide(row, key, envelope_hash, now, strict=strict, due_in_ms=due_in_ms)
            if isinstance(d, rules.Claim):
                if d.takeover:
                    c.execute(
                        "UPDATE effect_replay SET lease_owner_id = ?, lease_token = ?, lease_expires_at_ms = ?, "
                        f"due_at_ms = ?, attempts = attempts + 1, updated_at_ms = ? WHERE {_KEY}",
                        (owner_id, token, now + ttl_ms, d.due_at_ms, now, *key),
                    )
                else:
                    c.execute(
                        "INSERT INTO effect_replay (scope_kind, session_id, scope_id, replay_key, envelope_hash, "
                        "status, lease_owner_id, lease_token, lease_expires_at_ms, due_at_ms, attempts, "
                        "created_at_ms, updated_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?)",
                        (*key, envelope_hash, rules.IN_PROGRESS, owner_id, token, now + ttl_ms, d.due_at_ms, now, now),
                    )
            return d, now

    def _tx_finish(self, key: EffectKey, envelope_hash: str, token: str, status: str,
                   outcome: bytes | None, error: bytes | None) -> bool:
        with self._db.write("record effect outcome") as c:
            n = c.execute(
                "UPDATE effect_replay SET status = ?, outcome = ?, error = ?, lease_owner_id = NULL, "
                "lease_token = NULL, lease_expires_at_ms = 0, updated_at_ms = ? "
                f"WHERE {_KEY} AND envelope_hash = ? AND lease_token = ? AND status = 'in_progress'",
                (status, outcome, error, self._clock.now_ms(), *key, envelope_hash, token),
            ).rowcount
        return n == 1

    def _tx_release(self, key: EffectKey, envelope_hash: str, token: str) -> bool:
        with self._db.write("release effect") as c:
            n = c.execute(
                "UPDATE effect_replay SET lease_owner_id = NULL, lease_token = NULL, lease_expires_at_ms = 0, "
                f"updated_at_ms = ? WHERE {_KEY} AND envelope_hash = ? AND lease_token = ? AND status = 'in_progress'",
                (self._clock.now_ms(), *key, envelope_hash, token),
            ).rowcount
        return n == 1

    def _tx_renew(self, leases: list[tuple[EffectKey, str, str]], ttl_ms: int) -> list[str]:
        lost: list[str] = []
        with self._db.write("renew effect leases") as c:
            expires = self._clock.now_ms() + ttl_ms
            for key, envelope_hash, token in leases:
                n = c.execute(
                    "UPDATE effect_replay SET lease_expires_at_ms = ? "
                    f"WHERE {_KEY} AND envelope_hash = ? AND lease_token = ? AND status = 'in_progress'",
                    (expires, *key, envelope_hash, token),
                ).rowcount
                if n != 1:
                    lost.append(token)
        return lost

    # -- reads and deletes ---------------------------------------------------------------------
    def get_effect(self, scope: ScopeLike, replay_key: str) -> EffectRecord | None:
        key = EffectKey.of(EffectScope.of(scope), rules.check_replay_key(replay_key))
        with self._db.read("get effect") as c:
            row = _load(c, key)
        return None if row is None else rules.effect_record(key, row)

    def list_effects(
        self,
        scope: ScopeLike | None = None,
        *,
        session_id: str | None = None,
        status: EffectStatus | str | None = None,
        limit: int | None = None,
    ) -> list[EffectRecord]:
        """Recorded effects in the order they were first claimed, narrowed by scope, session and
        status (AND); with `limit`, the newest `limit` of them."""
        cols: list[tuple[str, Any]] = []
        if scope is not None:
            s = EffectScope.of(scope)
            cols += [("scope_kind", s.kind), ("session_id", s.session_id or ""), ("scope_id", s.id)]
        if session_id is not None:
            cols.append(("session_id", v.check_id(session_id, "session_id")))
        if status is not None:
            cols.append(("status", rules.check_status(status)))
        v.check_nonneg_int(limit, "limit", optional=True)
        where = " AND ".join(f"{n} = ?" for n, _ in cols) or "1"
        params: tuple = tuple(x for _, x in cols)
        sql = f"SELECT seq, scope_kind, session_id, scope_id, replay_key, {_ROW} FROM effect_replay WHERE {where} ORDER BY seq"
        if limit is not None:
            sql = f"SELECT * FROM ({sql} DESC LIMIT ?) ORDER BY seq"
            params += (limit,)
        with self._db.read("list effects") as c:
            rows = c.execute(sql, params).fetchall()
        return [rules.effect_record(EffectKey(*r[1:5]), StoredEffect(*r[5:])) for r in rows]

    def delete_effect(self, scope: ScopeLike, replay_key: str) -> bool:
        """Forget one recorded effect, so its next call runs again. A live claim on it then ends
        in lease_lost for its owner."""
        key = EffectKey.of(EffectScope.of(scope), rules.check_replay_key(replay_key))
        with self._db.write("delete effect") as c:
            return c.execute(f"DELETE FROM effect_replay WHERE {_KEY}", tuple(key)).rowcount == 1

    def delete_scope(self, scope: ScopeLike) -> int:
        """Forget every recorded effect of a scope; returns how many."""
        s = EffectScope.of(scope)
        with self._db.write("delete effect scope") as c:
            return c.execute(
                "DELETE FROM effect_replay WHERE scope_kind = ? AND session_id = ? AND scope_id = ?",
                (s.kind, s.session_id or "", s.id),
            ).rowcount
