"""Effect replay: durable memoisation of non-deterministic calls (LLM calls, tool calls, sleeps).

A recorded effect is keyed by (scope, replay key). A scope is a kind plus an id, and, for the
kinds that live inside a session, the session id: kinds are separate namespaces (a turn "x" and a
process "x" never share records), and so are sessions (turn "turn-1" of two sessions in one
effects database never replay each other's outcomes).
"""

from __future__ import annotations

import enum
from typing import Any

import msgspec

from ..errors import ValidationError

__all__ = [
    "EffectScope",
    "EffectStatus",
    "EffectErrorInfo",
    "EffectRecord",
    "MISSING_EFFECT_SCOPE_ID",
]

#: The reference's error code for a scope with a blank id; kept in ValidationError messages.
MISSING_EFFECT_SCOPE_ID = "missing_effect_scope_id"


def _blank(value: Any) -> bool:
    return type(value) is not str or not value.strip()


class EffectScope(msgspec.Struct, frozen=True):
    """Where an effect belongs: `EffectScope("turn", "turn-3", session_id="session-1")`.

    The named constructors mirror the reference's variants. A plain `(kind, id)` tuple is accepted
    wherever a scope is (`EffectScope.of`). Blank kinds or ids are refused at construction with a
    ValidationError whose message starts with `missing_effect_scope_id`.
    """

    kind: str
    id: str
    session_id: str | None = None

    def __post_init__(self) -> None:
        if _blank(self.kind):
            raise ValidationError(f"{MISSING_EFFECT_SCOPE_ID}: effect scope kind must be a non-blank string, got {self.kind!r}")
        if _blank(self.id):
            raise ValidationError(
                f"{MISSING_EFFECT_SCOPE_ID}: effect scope {self.kind!r} needs a non-blank id, got {self.id!r}"
            )
        if self.session_id is not None and _blank(self.session_id):
            raise ValidationError(
                f"{MISSING_EFFECT_SCOPE_ID}: effect scope {self.kind!r} needs a non-blank session_id, "
                f"got {self.session_id!r}"
            )
        from ..rules.validate import check_id, check_optional_id

        check_id(self.kind, "effect scope kind")
        check_id(self.id, "effect scope id")
        check_optional_id(self.session_id, "effect scope session_id")

    # -- the reference's variants ----------------------------------------------------------------
    @classmethod
    def turn(cls, session_id: str, turn_id: str) -> "EffectScope":
        return cls("turn", turn_id, session_id=_as_session(session_id, "turn"))

    @classmethod
    def process(cls, process_id: str) -> "EffectScope":
        return cls("process", process_id)

    @classmethod
    def queue_drain(cls, session_id: str, drain_id: str) -> "EffectScope":
        return cls("queue_drain", drain_id, session_id=_as_session(session_id, "queue_drain"))

    @classmethod
    def session_delete(cls, session_id: str) -> "EffectScope":
        return cls("session_delete", session_id, session_id=_as_session(session_id, "session_delete"))

    @classmethod
    def runtime_operation(cls, operation_id: str) -> "EffectScope":
        return cls("runtime_operation", operation_id)

    @classmethod
    def of(cls, scope: "EffectScope | tuple[str, str] | tuple[str, str, str]") -> "EffectScope":
        """An EffectScope from itself, `(kind, id)` or `(kind, id, session_id)` (tuple or list)."""
        if isinstance(scope, EffectScope):
            return scope
        if isinstance(scope, (tuple, list)) and len(scope) in (2, 3):
            return cls(*scope)
        raise ValidationError(
            f"{MISSING_EFFECT_SCOPE_ID}: an effect scope is an EffectScope or a (kind, id) tuple, got {scope!r}"
        )

    @property
    def turn_id(self) -> str | None:
        """The turn id for a turn scope, else None."""
        return self.id if self.kind == "turn" else None

    def __str__(self) -> str:
        if self.session_id is None:
            return f"{self.kind}:{self.id}"
        return f"{self.kind}:{self.session_id}/{self.id}"


def _as_session(session_id: Any, kind: str) -> str:
    # A blank session id must fail even though the field is optional in general.
    if _blank(session_id):
        raise ValidationError(
            f"{MISSING_EFFECT_SCOPE_ID}: effect scope {kind!r} needs a non-blank session_id, got {session_id!r}"
        )
    return session_id


class EffectStatus(str, enum.Enum):
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"


class EffectErrorInfo(msgspec.Struct):
    """A recorded failure; replayed as `EffectError(code, message)`."""

    code: str
    message: str


class EffectRecord(msgspec.Struct, kw_only=True):
    """One stored effect, as `get_effect` / `list_effects` show it.

    An in_progress row without a lease owner was released (its executor raised an error the
    policy retries, or its outcome could not be encoded): the next caller runs it again.
    """

    scope: EffectScope
    replay_key: str
    envelope_hash: str
    status: EffectStatus
    outcome: Any = None
    error: EffectErrorInfo | None = None
    lease_owner_id: str | None = None
    lease_expires_at_ms: int = 0
    due_at_ms: int | None = None
    attempts: int = 0
    created_at_ms: int = 0
    updated_at_ms: int = 0
