"""Effect replay on PostgreSQL: durable memoisation of non-deterministic calls.

The claim is one transaction: a transaction advisory lock on the effect key (its row may not
exist yet), then the row `FOR UPDATE`, `rules.effects.decide`, and the claim written. Finishing,
releasing and heartbeat renewals are single UPDATEs fenced by the lease token. Lease times come
from the database clock unless the options inject one. The claim loop, heartbeat and decorator
are `lashstore.durable_calls.EffectEngine`'s; a caller waiting on another owner's lease sleeps on
a LISTEN/NOTIFY hint that the owner's finish or release sends inside its transaction, with the
engine's backoff (2 ms doubling to 50 ms, capped at the lease expiry) as the fallback.
"""

from __future__ import annotations

import hashlib
from typing import Any

from ...durable_calls import EffectEngine, ScopeLike
from ...errors import StoreClosed
from ...model.effects import EffectRecord, EffectScope, EffectStatus
from ...model.session import DurabilityTier
from ...options import StoreOptions
from ...rules import effects as rules
from ...rules import validate as v
from ...rules.effects import EffectKey, EffectPolicy, StoredEffect
from .connection import PostgresDatabase, Tx, open_database, uses_database_clock

__all__ = ["PostgresEffectStore", "COMPONENT", "effect_topic"]

COMPONENT = "effects"

_ROW = (
    "envelope_hash, status, outcome, error, lease_owner_id, lease_token, lease_expires_at_ms, due_at_ms, "
    "attempts, created_at_ms, updated_at_ms"
)
_KEY = "scope_kind = %s AND session_id = %s AND scope_id = %s AND replay_key = %s"


def effect_topic(key: EffectKey) -> str:
    """The NOTIFY payload that wakes callers waiting on one effect."""
    return "e:" + hashlib.sha256("\x1f".join(key).encode("utf-8")).hexdigest()[:40]


def _load(t: Tx, key: EffectKey, lock: str = "") -> StoredEffect | None:
    row = t.one(f"SELECT {_ROW} FROM effect_replay WHERE {_KEY}{lock}", tuple(key))
    return None if row is None else StoredEffect(*row)


class PostgresEffectStore(EffectEngine):
    """Recorded effect outcomes in the deployment's schema. Thread-safe; share one per process.

    database: a `PostgresDatabase` shared with the deployment, or a URL (then owned).
    lease_ttl_ms: how long a claim stays live without renewal (default 30 s). While an executor
        runs, a heartbeat renews it every third of that (heartbeat=False turns renewal off, so a
        call longer than the TTL can be taken over; only for tests of expiry).
    strict: replay only, for every call through this object.
    policy: the default EffectPolicy of calls that pass none.
    """

    def __init__(
        self,
        database: PostgresDatabase | str,
        options: StoreOptions | None = None,
        lease_ttl_ms: int = 30_000,
        *,
        heartbeat: bool = True,
        strict: bool = False,
        policy: EffectPolicy | None = None,
        schema: str | None = None,
    ) -> None:
        self._init_engine(options, lease_ttl_ms, heartbeat, strict, policy)
        self._tx_clock = None if uses_database_clock(self._opts) else self._clock
        self._db, self._owns_db = open_database(database, schema)
        try:
            self._db.ensure(COMPONENT)
        except BaseException:
            self._close_engine()
            if self._owns_db:
                self._db.close()
            raise
        self._closed = False

    # -- plumbing ------------------------------------------------------------------------------
    def __enter__(self) -> "PostgresEffectStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closed = True
        self._close_engine()
        if self._owns_db:
            self._db.close()

    @property
    def closed(self) -> bool:
        return self._closed or self._db.closed

    @property
    def database(self) -> PostgresDatabase:
        return self._db

    @property
    def schema(self) -> str:
        return self._db.schema

    def durability_tier(self) -> DurabilityTier:
        return DurabilityTier.DURABLE

    def _write(self, fn: Any, where: str) -> Any:
        if self._closed:
            raise StoreClosed(f"postgres effect store ({self.schema}) is closed")
        return self._db.write(fn, where, clock=self._tx_clock)

    def _read(self, fn: Any, where: str) -> Any:
        if self._closed:
            raise StoreClosed(f"postgres effect store ({self.schema}) is closed")
        return self._db.read(fn, where, clock=self._tx_clock)

    # -- waiting on another owner --------------------------------------------------------------
    def _step(self, key: EffectKey, ehash: str, due_in: int | None, pol: EffectPolicy, strict: bool,
              polls: int) -> Any:
        hub = self._db.hub
        hub.start()
        notifier = hub.notifier(effect_topic(key))
        seen = notifier.generation  # before the look: a finish committed after it still wakes us
        step = super()._step(key, ehash, due_in, pol, strict, polls)
        if isinstance(step, tuple):
            delay_ms, owner = step
            # Sleep the engine's backoff here, woken early by the owner's NOTIFY; the engine then
            # looks again at once.
            notifier.wait(seen, delay_ms / 1000)
            return 0, owner
        return step

    # -- engine primitives ---------------------------------------------------------------------
    def _tx_prepare(self, key: EffectKey, envelope_hash: str, owner_id: str, token: str, ttl_ms: int,
                    due_in_ms: int | None, strict: bool) -> tuple[Any, int]:
        def tx(t: Tx) -> tuple[Any, int]:
            t.lock("effect", *key)
            row = _load(t, key, " FOR UPDATE")
            now = t.now()
            d = rules.decide(row, key, envelope_hash, now, strict=strict, due_in_ms=due_in_ms)
            if isinstance(d, rules.Claim):
                if d.takeover:
                    t.execute(
                        "UPDATE effect_replay SET lease_owner_id = %s, lease_token = %s, lease_expires_at_ms = %s, "
                        f"due_at_ms = %s, attempts = attempts + 1, updated_at_ms = %s WHERE {_KEY}",
                        (owner_id, token, now + ttl_ms, d.due_at_ms, now, *key),
                    )
                else:
                    t.execute(
                        "INSERT INTO effect_replay (scope_kind, session_id, scope_id, replay_key, envelope_hash, "
                        "status, lease_owner_id, lease_token, lease_expires_at_ms, due_at_ms, attempts, "
                        "created_at_ms, updated_at_ms) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 1, %s, %s)",
                        (*key, envelope_hash, rules.IN_PROGRESS, owner_id, token, now + ttl_ms, d.due_at_ms, now, now),
                    )
            return d, now

        return self._write(tx, "claim effect")

    def _tx_finish(self, key: EffectKey, envelope_hash: str, token: str, status: str,
                   outcome: bytes | None, error: bytes | None) -> bool:
        def tx(t: Tx) -> bool:
            n = t.rowcount(
                "UPDATE effect_replay SET status = %s, outcome = %s, error = %s, lease_owner_id = NULL, "
                "lease_token = NULL, lease_expires_at_ms = 0, updated_at_ms = %s "
                f"WHERE {_KEY} AND envelope_hash = %s AND lease_token = %s AND status = 'in_progress'",
                (status, outcome, error, t.now(), *key, envelope_hash, token),
            )
            if n == 1:
                t.notify(effect_topic(key))
            return n == 1

        return self._write(tx, "record effect outcome")

    def _tx_release(self, key: EffectKey, envelope_hash: str, token: str) -> bool:
        def tx(t: Tx) -> bool:
            n = t.rowcount(
                "UPDATE effect_replay SET lease_owner_id = NULL, lease_token = NULL, lease_expires_at_ms = 0, "
                f"updated_at_ms = %s WHERE {_KEY} AND envelope_hash = %s AND lease_token = %s "
                "AND status = 'in_progress'",
                (t.now(), *key, envelope_hash, token),
            )
            if n == 1:
                t.notify(effect_topic(key))
            return n == 1

        return self._write(tx, "release effect")

    def _tx_renew(self, leases: list[tuple[EffectKey, str, str]], ttl_ms: int) -> list[str]:
        def tx(t: Tx) -> list[str]:
            lost: list[str] = []
            expires = t.now() + ttl_ms
            for key, envelope_hash, token in leases:
                n = t.rowcount(
                    "UPDATE effect_replay SET lease_expires_at_ms = %s "
                    f"WHERE {_KEY} AND envelope_hash = %s AND lease_token = %s AND status = 'in_progress'",
                    (expires, *key, envelope_hash, token),
                )
                if n != 1:
                    lost.append(token)
            return lost

        return self._write(tx, "renew effect leases")

    # -- reads and deletes ---------------------------------------------------------------------
    def get_effect(self, scope: ScopeLike, replay_key: str) -> EffectRecord | None:
        key = EffectKey.of(EffectScope.of(scope), rules.check_replay_key(replay_key))
        row = self._read(lambda t: _load(t, key), "get effect")
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
        where = " AND ".join(f"{n} = %s" for n, _ in cols) or "true"
        params: tuple = tuple(x for _, x in cols)
        q = (
            f"SELECT seq, scope_kind, session_id, scope_id, replay_key, {_ROW} FROM effect_replay "
            f"WHERE {where} ORDER BY seq"
        )
        if limit is not None:
            q = f"SELECT * FROM ({q} DESC LIMIT %s) newest ORDER BY seq"
            params += (limit,)
        rows = self._read(lambda t: t.all(q, params), "list effects")
        return [rules.effect_record(EffectKey(*r[1:5]), StoredEffect(*r[5:])) for r in rows]

    def delete_effect(self, scope: ScopeLike, replay_key: str) -> bool:
        """Forget one recorded effect, so its next call runs again. A live claim on it then ends
        in lease_lost for its owner."""
        key = EffectKey.of(EffectScope.of(scope), rules.check_replay_key(replay_key))

        def tx(t: Tx) -> bool:
            gone = t.rowcount(f"DELETE FROM effect_replay WHERE {_KEY}", tuple(key)) == 1
            if gone:
                t.notify(effect_topic(key))
            return gone

        return self._write(tx, "delete effect")

    def delete_scope(self, scope: ScopeLike) -> int:
        """Forget every recorded effect of a scope; returns how many."""
        s = EffectScope.of(scope)

        def tx(t: Tx) -> int:
            rows = t.all(
                "DELETE FROM effect_replay WHERE scope_kind = %s AND session_id = %s AND scope_id = %s "
                "RETURNING scope_kind, session_id, scope_id, replay_key",
                (s.kind, s.session_id or "", s.id),
            )
            for r in rows:
                t.notify(effect_topic(EffectKey(*r)))
            return len(rows)

        return self._write(tx, "delete effect scope")
