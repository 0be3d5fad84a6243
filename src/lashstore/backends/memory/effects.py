"""Effect replay in plain Python, deciding exactly as SQLite does (through `rules.effects`).

Durability tier inline: recorded outcomes live as long as the store object. Executors still run
outside the lock, so effects run concurrently, as on SQLite.
"""

from __future__ import annotations

import threading
from typing import Any

from ...durable_calls import EffectEngine, ScopeLike
from ...errors import StoreClosed
from ...model.effects import EffectRecord, EffectScope, EffectStatus
from ...model.session import DurabilityTier
from ...options import StoreOptions
from ...rules import effects as rules
from ...rules import validate as v
from ...rules.effects import EffectKey, EffectPolicy, StoredEffect

__all__ = ["MemoryEffectStore"]


class MemoryEffectStore(EffectEngine):
    def __init__(
        self,
        options: StoreOptions | None = None,
        lease_ttl_ms: int = 30_000,
        *,
        heartbeat: bool = True,
        strict: bool = False,
        policy: EffectPolicy | None = None,
    ) -> None:
        self._init_engine(options, lease_ttl_ms, heartbeat, strict, policy)
        self._lock = threading.RLock()
        self._rows: dict[EffectKey, StoredEffect] = {}  # insertion order = first claim
        self._closed = False
        self.path = ":memory:"

    # -- plumbing ------------------------------------------------------------------------------
    def __enter__(self) -> "MemoryEffectStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._close_engine()
        with self._lock:
            self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    def durability_tier(self) -> DurabilityTier:
        return DurabilityTier.INLINE

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed("memory effect store is closed")

    def _held(self, key: EffectKey, envelope_hash: str, token: str) -> StoredEffect | None:
        row = self._rows.get(key)
        if row is None or row.envelope_hash != envelope_hash or row.lease_token != token:
            return None
        return row if row.status == rules.IN_PROGRESS else None

    # -- engine primitives ---------------------------------------------------------------------
    def _tx_prepare(self, key: EffectKey, envelope_hash: str, owner_id: str, token: str, ttl_ms: int,
                    due_in_ms: int | None, strict: bool) -> tuple[Any, int]:
        with self._lock:
            self._check_open()
            now = self._clock.now_ms()
            row = self._rows.get(key)
            d = rules.decide(row, key, envelope_hash, now, strict=strict, due_in_ms=due_in_ms)
            if isinstance(d, rules.Claim):
                if row is not None:
                    self._rows[key] = row._replace(
                        lease_owner_id=owner_id, lease_token=token, lease_expires_at_ms=now + ttl_ms,
                        due_at_ms=d.due_at_ms, attempts=row.attempts + 1, updated_at_ms=now,
                    )
                else:
                    self._rows[key] = StoredEffect(
                        envelope_hash, rules.IN_PROGRESS, None, None, owner_id, token, now + ttl_ms, d.due_at_ms,
                        1, now, now,
                    )
            return d, now

    def _tx_finish(self, key: EffectKey, envelope_hash: str, token: str, status: str,
                   outcome: bytes | None, error: bytes | None) -> bool:
        with self._lock:
            self._check_open()
            row = self._held(key, envelope_hash, token)
            if row is None:
                return False
            self._rows[key] = row._replace(
                status=status, outcome=outcome, error=error, lease_owner_id=None, lease_token=None,
                lease_expires_at_ms=0, updated_at_ms=self._clock.now_ms(),
            )
            return True

    def _tx_release(self, key: EffectKey, envelope_hash: str, token: str) -> bool:
        with self._lock:
            self._check_open()
            row = self._held(key, envelope_hash, token)
            if row is None:
                return False
            self._rows[key] = row._replace(
                lease_owner_id=None, lease_token=None, lease_expires_at_ms=0, updated_at_ms=self._clock.now_ms()
            )
            return True

    def _tx_renew(self, leases: list[tuple[EffectKey, str, str]], ttl_ms: int) -> list[str]:
        lost: list[str] = []
        with self._lock:
            self._check_open()
            expires = self._clock.now_ms() + ttl_ms
            for key, envelope_hash, token in leases:
                row = self._held(key, envelope_hash, token)
                if row is None:
                    lost.append(token)
                else:
                    self._rows[key] = row._replace(lease_expires_at_ms=expires)
        return lost

    # -- reads and deletes ---------------------------------------------------------------------
    def get_effect(self, scope: ScopeLike, replay_key: str) -> EffectRecord | None:
        key = EffectKey.of(EffectScope.of(scope), rules.check_replay_key(replay_key))
        with self._lock:
            self._check_open()
            row = self._rows.get(key)
        return None if row is None else rules.effect_record(key, row)

    def list_effects(
        self,
        scope: ScopeLike | None = None,
        *,
        session_id: str | None = None,
        status: EffectStatus | str | None = None,
        limit: int | None = None,
    ) -> list[EffectRecord]:
        s = None if scope is None else EffectScope.of(scope)
        if session_id is not None:
            v.check_id(session_id, "session_id")
        want = rules.check_status(status)
        v.check_nonneg_int(limit, "limit", optional=True)
        with self._lock:
            self._check_open()
            items = [
                (k, r)
                for k, r in self._rows.items()
                if (s is None or (k.scope_kind, k.session_id, k.scope_id) == (s.kind, s.session_id or "", s.id))
                and (session_id is None or k.session_id == session_id)
                and (want is None or r.status == want)
            ]
        if limit is not None:
            items = items[len(items) - limit :] if limit else []
        return [rules.effect_record(k, r) for k, r in items]

    def delete_effect(self, scope: ScopeLike, replay_key: str) -> bool:
        key = EffectKey.of(EffectScope.of(scope), rules.check_replay_key(replay_key))
        with self._lock:
            self._check_open()
            return self._rows.pop(key, None) is not None

    def delete_scope(self, scope: ScopeLike) -> int:
        s = EffectScope.of(scope)
        prefix = (s.kind, s.session_id or "", s.id)
        with self._lock:
            self._check_open()
            doomed = [k for k in self._rows if (k.scope_kind, k.session_id, k.scope_id) == prefix]
            for k in doomed:
                del self._rows[k]
            return len(doomed)
