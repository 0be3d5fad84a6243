"""One exception hierarchy for every backend.

Every error a caller can act on has its own class; the message says what happened and,
where there is one, what to do about it.
"""

from __future__ import annotations

__all__ = [
    "LashStoreError",
    "BackendError",
    "StoreBusy",
    "StoreClosed",
    "StoreUnavailable",
    "StoreReadOnly",
    "StoreFull",
    "SessionDeleted",
    "SessionBindingMismatch",
    "HeadRevisionConflict",
    "TurnCommitConflict",
    "RuntimeTurnCommitConflict",
    "QueuedWorkClaimExpired",
    "UnsupportedSchema",
    "CorruptRecord",
    "LeaseConflict",
    "LeaseExpired",
    "UnknownProcess",
    "ReplayConflict",
    "ValidationError",
    "EffectError",
    "SessionNotFound",
    "NotFound",
    "WaitTimeout",
]


class LashStoreError(Exception):
    """Root of every error lashstore raises on purpose."""


class BackendError(LashStoreError):
    """The database itself failed (I/O, constraint, driver error). The message carries the driver text."""


class StoreBusy(BackendError):
    """The database stayed locked by another writer for longer than the busy timeout.

    Safe to retry: nothing was written.
    """


class StoreUnavailable(BackendError):
    """The store cannot be reached or opened at all: a server that does not answer, a directory
    that cannot be created, no file descriptors left. The message says which and what to do."""


class StoreReadOnly(BackendError):
    """A write was attempted on a store that can only be read (a read-only directory or mount,
    or a deployment opened read-only). Reads keep working."""


class StoreFull(BackendError):
    """The disk (or quota) is full. Nothing of the failed operation was written."""


class StoreClosed(LashStoreError):
    """The store was used after `close()`."""


class ValidationError(LashStoreError, ValueError):
    """Caller input was refused before anything was written."""


class SessionBindingMismatch(LashStoreError):
    """A commit named a different session than the one this store holds."""

    def __init__(self, bound_session_id: str, attempted_session_id: str) -> None:
        self.bound_session_id = bound_session_id
        self.attempted_session_id = attempted_session_id
        super().__init__(
            f"this store holds session {bound_session_id!r} and cannot commit session "
            f"{attempted_session_id!r}; open the store for {attempted_session_id!r} instead"
        )


class HeadRevisionConflict(LashStoreError):
    """The head moved since the caller read it (optimistic compare-and-swap failed)."""

    def __init__(self, expected: int | None, actual: int) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"head revision conflict: expected {expected}, found {actual}; "
            "reload the session and retry the commit on top of revision "
            f"{actual}"
        )


class TurnCommitConflict(LashStoreError):
    """The same turn id was committed before with different content."""

    def __init__(self, session_id: str, turn_id: str, reason: str | None = None) -> None:
        self.session_id = session_id
        self.turn_id = turn_id
        detail = reason or "it was already committed with a different turn_commit_hash"
        super().__init__(f"turn {turn_id!r} of session {session_id!r} conflicts: {detail}")


#: The reference's name for `TurnCommitConflict`.
RuntimeTurnCommitConflict = TurnCommitConflict


class QueuedWorkClaimExpired(LashStoreError):
    """A queued-work claim no longer owns its batches (expired, reclaimed, or never held)."""

    def __init__(self, session_id: str, claim_id: str, reason: str | None = None) -> None:
        self.session_id = session_id
        self.claim_id = claim_id
        detail = f": {reason}" if reason else ""
        super().__init__(
            f"queued-work claim {claim_id!r} of session {session_id!r} is no longer held{detail}; "
            "claim the work again"
        )


class UnsupportedSchema(LashStoreError):
    """The database was written by a schema this version cannot read."""

    def __init__(self, kind: str, expected: int, found: int, detail: str | None = None) -> None:
        self.kind = kind
        self.expected = expected
        self.found = found
        if detail is None:
            if found > expected:
                detail = (
                    f"it was written by a newer lashstore (schema version {found}); "
                    "upgrade lashstore to open it"
                )
            else:
                detail = "it is not a lashstore database of this kind"
        super().__init__(
            f"unsupported {kind} schema: this lashstore supports schema version {expected}, "
            f"but the database reports version {found}; {detail}"
        )


class CorruptRecord(LashStoreError):
    """A stored record exists but cannot be decoded or fails its integrity check.

    Never reported as "not found": the data is there and is damaged.
    """

    def __init__(self, what: str, key: str, detail: str | None = None) -> None:
        self.what = what
        self.key = key
        self.detail = detail
        tail = f": {detail}" if detail else ""
        super().__init__(
            f"corrupt {what} {key!r}{tail}; the stored data is damaged: restore the file from a backup, "
            "or remove the damaged record"
        )


class LeaseConflict(LashStoreError):
    """Another owner holds a live lease."""


class LeaseExpired(LashStoreError):
    """The lease is missing, expired, or held under another token."""


class UnknownProcess(LashStoreError):
    """No process with that id is registered."""


class ReplayConflict(LashStoreError):
    """A replay key was reused with different content."""


class EffectError(LashStoreError):
    """An effect failed; `code` is machine-readable."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


class NotFound(LashStoreError, LookupError):
    """A record that must exist does not."""


class SessionNotFound(NotFound):
    """No session with that id exists in the deployment."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        super().__init__(
            f"no session {session_id!r} in this store; create it with create_store({session_id!r})"
        )


class SessionDeleted(SessionNotFound):
    """The session this handle was opened on has been deleted since (by another handle, another
    deployment or another process). Nothing was written; create or open the session again."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        NotFound.__init__(
            self,
            f"session {session_id!r} was deleted after this handle opened it; nothing was written. "
            f"Create it again with create_store({session_id!r}) if that is what you mean",
        )


class WaitTimeout(LashStoreError, TimeoutError):
    """A wait (`await_process`, an event wait) reached its timeout before the awaited thing happened."""
