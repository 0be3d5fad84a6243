"""Effect-replay decisions shared by every backend: what a caller does with the row it finds.

A backend opens one write transaction, loads the row for (scope, replay key), asks `decide`, and
writes the claim it answers in the same transaction. Finalising, releasing and renewing are
fenced by the lease token, so an owner that lost its lease can never overwrite the new owner's
row.

Lashstore's decisions where the reference is silent or weak (spec §10 W-22):
* (a) rows are keyed by (scope kind, session id or "", scope id, replay key): kinds and sessions
  are separate namespaces.
* (b) leases are renewed by a heartbeat while the executor runs (see `lashstore.durable_calls`).
* (c) only errors the policy names are recorded and replayed; by default that is `EffectError`
  (an executor raising EffectError says "this failed for good"), every other exception is
  treated as transient: it propagates, nothing is recorded, and the row is released so the next
  call runs the effect again.
* (d) strict replay never claims: a missing row, a released row or an expired in-progress row
  is `EffectError("replay_missing")`; a live in-progress row is waited for, then replayed.
* (e) strict mode is chosen per call (policy), per scoped controller or per store object; never
  shared behind the caller's back.
* (f) an outcome that is not JSON-compatible releases the row and raises ValidationError.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import msgspec

from ..codec import check_json, check_json_as_list, pack, stable_hash, unpack
from ..errors import CorruptRecord, EffectError, ReplayConflict, ValidationError
from ..model.effects import EffectErrorInfo, EffectRecord, EffectScope, EffectStatus
from .validate import check_id

__all__ = [
    "IN_PROGRESS",
    "COMPLETED",
    "FAILED",
    "EffectPolicy",
    "EffectKey",
    "StoredEffect",
    "Claim",
    "Replay",
    "Failed",
    "Busy",
    "decide",
    "is_live",
    "check_replay_key",
    "check_ttl",
    "check_duration",
    "check_status",
    "envelope_hash",
    "encode_outcome",
    "decode_outcome",
    "error_info",
    "encode_error",
    "decode_error",
    "wait_delay_ms",
    "effect_record",
    "sleep_envelope",
]

IN_PROGRESS = EffectStatus.IN_PROGRESS.value
COMPLETED = EffectStatus.COMPLETED.value
FAILED = EffectStatus.FAILED.value

ErrorFilter = tuple[type[BaseException], ...] | type[BaseException] | Callable[[BaseException], bool]


@dataclasses.dataclass(frozen=True)
class EffectPolicy:
    """How one effect call behaves.

    record_errors: which exceptions of the executor are recorded (status failed, replayed forever
        as `EffectError(code, message)`): an exception class, a tuple of them, or a predicate.
        Default `EffectError`. Anything else is retried: it propagates unchanged, nothing is
        recorded, and the row is released for the next call.
    strict: replay only; never run the executor (missing history is `EffectError("replay_missing")`).
    wait_timeout_ms: how long to wait for another caller's live in-progress lease before
        `WaitTimeout`; None waits as long as the owner keeps its lease alive (a crashed owner's
        lease expires after the TTL, and then this caller takes over).
    """

    record_errors: ErrorFilter = EffectError
    strict: bool = False
    wait_timeout_ms: int | None = None

    def __post_init__(self) -> None:
        r = self.record_errors
        ok = callable(r) or (isinstance(r, tuple) and all(isinstance(t, type) and issubclass(t, BaseException) for t in r))
        if not ok:
            raise ValidationError("record_errors must be an exception class, a tuple of them, or a predicate")
        if type(self.strict) is not bool:
            raise ValidationError(f"strict must be a bool, got {self.strict!r}")
        if self.wait_timeout_ms is not None and (type(self.wait_timeout_ms) is not int or self.wait_timeout_ms < 0):
            raise ValidationError(f"wait_timeout_ms must be a non-negative integer or None, got {self.wait_timeout_ms!r}")

    def records(self, exc: BaseException) -> bool:
        """True when `exc` is recorded as the effect's permanent outcome."""
        r = self.record_errors
        if isinstance(r, type) or isinstance(r, tuple):
            return isinstance(exc, r)
        return bool(r(exc))

    def replace(self, **changes: Any) -> "EffectPolicy":
        return dataclasses.replace(self, **changes)


class EffectKey(NamedTuple):
    """The primary key of a recorded effect."""

    scope_kind: str
    session_id: str  # "" for scopes outside a session
    scope_id: str
    replay_key: str

    @classmethod
    def of(cls, scope: EffectScope, replay_key: str) -> "EffectKey":
        return cls(scope.kind, scope.session_id or "", scope.id, replay_key)

    def scope(self) -> EffectScope:
        return EffectScope(self.scope_kind, self.scope_id, self.session_id or None)

    def __str__(self) -> str:
        return f"{self.scope()} key {self.replay_key!r}"


class StoredEffect(NamedTuple):
    """A stored row, in column order."""

    envelope_hash: str
    status: str
    outcome: bytes | None
    error: bytes | None
    lease_owner_id: str | None
    lease_token: str | None
    lease_expires_at_ms: int
    due_at_ms: int | None
    attempts: int
    created_at_ms: int
    updated_at_ms: int


class Claim(NamedTuple):
    """Run the executor: insert a new row (takeover False) or take over an unleased one."""

    takeover: bool
    due_at_ms: int | None


class Replay(NamedTuple):
    outcome: bytes
    due_at_ms: int | None


class Failed(NamedTuple):
    error: EffectErrorInfo


class Busy(NamedTuple):
    """Another caller holds a live lease; look again by `retry_at_ms` at the latest."""

    retry_at_ms: int
    owner_id: str | None


def is_live(token: str | None, expires_at_ms: int, now_ms: int) -> bool:
    """A lease is live while it has a token and has not reached its expiry."""
    return token is not None and expires_at_ms > now_ms


def decide(
    row: StoredEffect | None,
    key: EffectKey,
    envelope_hash: str,
    now_ms: int,
    *,
    strict: bool,
    due_in_ms: int | None,
) -> Claim | Replay | Failed | Busy:
    new_due = None if due_in_ms is None else now_ms + due_in_ms
    if row is None:
        if strict:
            raise EffectError("replay_missing", f"no recorded effect for {key}; strict replay never runs the executor")
        return Claim(False, new_due)
    if row.envelope_hash != envelope_hash:
        raise ReplayConflict(
            f"effect {key} was recorded for another request (envelope hash {row.envelope_hash[:12]}..., "
            f"this call {envelope_hash[:12]}...); use a new replay key for a different request"
        )
    if row.status == COMPLETED:
        if row.outcome is None:
            raise CorruptRecord("effect", str(key), "completed without an outcome")
        return Replay(row.outcome, row.due_at_ms)
    if row.status == FAILED:
        if row.error is None:
            raise CorruptRecord("effect", str(key), "failed without an error")
        return Failed(decode_error(key, row.error))
    if row.status != IN_PROGRESS:
        raise CorruptRecord("effect", str(key), f"unknown status {row.status!r}")
    if is_live(row.lease_token, row.lease_expires_at_ms, now_ms):
        return Busy(row.lease_expires_at_ms, row.lease_owner_id)
    if strict:
        why = "its executor never finished" if row.lease_token else "its last attempt was released without an outcome"
        raise EffectError("replay_missing", f"effect {key} has no recorded outcome ({why}); strict replay never runs it")
    return Claim(True, row.due_at_ms if row.due_at_ms is not None else new_due)


# -- input checks ----------------------------------------------------------------------------------


def check_replay_key(replay_key: Any) -> str:
    if type(replay_key) is not str or not replay_key.strip():
        raise ValidationError(f"replay_key_missing: an effect needs a non-blank replay key, got {replay_key!r}")
    return check_id(replay_key, "replay_key")


def check_ttl(lease_ttl_ms: Any) -> int:
    if type(lease_ttl_ms) is not int or lease_ttl_ms < 1:
        raise ValidationError(f"lease_ttl_ms must be a positive integer, got {lease_ttl_ms!r}")
    return lease_ttl_ms


def check_duration(duration_ms: Any) -> int:
    if type(duration_ms) is not int or duration_ms < 0:
        raise ValidationError(f"sleep duration_ms must be a non-negative integer, got {duration_ms!r}")
    return duration_ms


def check_status(status: Any) -> str | None:
    if status is None:
        return None
    try:
        return EffectStatus(status).value
    except ValueError:
        raise ValidationError(
            f"effect status must be one of {', '.join(x.value for x in EffectStatus)}, got {status!r}"
        ) from None


def envelope_hash(envelope: Any) -> str:
    check_json(envelope, "effect envelope")
    return stable_hash(envelope)


def sleep_envelope(duration_ms: int) -> dict[str, Any]:
    return {"effect": "sleep", "duration_ms": duration_ms}


# -- stored values ---------------------------------------------------------------------------------


def encode_outcome(value: Any) -> bytes:
    """msgpack of a JSON-compatible outcome; ValidationError otherwise (the caller releases the row)."""
    return pack(check_json_as_list(value, "effect outcome"))


def decode_outcome(key: EffectKey, data: Any) -> Any:
    try:
        return unpack(data)
    except (msgspec.DecodeError, TypeError) as e:
        raise CorruptRecord("effect outcome", str(key), str(e)) from None


def error_info(exc: BaseException) -> EffectErrorInfo:
    if isinstance(exc, EffectError):
        return EffectErrorInfo(str(exc.code), str(exc.message))
    return EffectErrorInfo(type(exc).__name__, str(exc))


def encode_error(info: EffectErrorInfo) -> bytes:
    return pack(info)


def decode_error(key: EffectKey, data: Any) -> EffectErrorInfo:
    try:
        return unpack(data, EffectErrorInfo)
    except (msgspec.DecodeError, TypeError) as e:
        raise CorruptRecord("effect error", str(key), str(e)) from None


def wait_delay_ms(attempt: int, retry_at_ms: int, now_ms: int) -> int:
    """Poll delay while another caller holds the lease: 2, 4, 8, ... ms, capped at 50 ms and at
    the lease's expiry (so a dead owner is taken over promptly)."""
    backoff = min(2 << min(attempt, 8), 50)
    return max(1, min(backoff, retry_at_ms - now_ms))


def effect_record(key: EffectKey, row: StoredEffect) -> EffectRecord:
    try:
        status = EffectStatus(row.status)
    except ValueError:
        raise CorruptRecord("effect", str(key), f"unknown status {row.status!r}") from None
    return EffectRecord(
        scope=key.scope(),
        replay_key=key.replay_key,
        envelope_hash=row.envelope_hash,
        status=status,
        outcome=None if row.outcome is None else decode_outcome(key, row.outcome),
        error=None if row.error is None else decode_error(key, row.error),
        lease_owner_id=row.lease_owner_id,
        lease_expires_at_ms=row.lease_expires_at_ms,
        due_at_ms=row.due_at_ms,
        attempts=row.attempts,
        created_at_ms=row.created_at_ms,
        updated_at_ms=row.updated_at_ms,
    )
