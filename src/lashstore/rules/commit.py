"""The turn commit: its semantic hash and the order of checks every backend applies.

Order (reference §5.5): session binding, then the turn stamp (an identical retry returns the
stored result before anything else is looked at), then the head-revision compare-and-swap, then
the queue completions. Only then is anything written.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from ..codec import stable_hash
from ..errors import HeadRevisionConflict, SessionBindingMismatch, TurnCommitConflict
from ..model.session import RuntimeCommit

__all__ = [
    "DEFAULT_VOLATILE_KEYS",
    "turn_commit_hash",
    "check_binding",
    "check_turn_stamp",
    "check_cas",
]

#: Keys dropped from every object before hashing: ids and times that differ between retries.
DEFAULT_VOLATILE_KEYS = frozenset({"node_id", "parent_node_id", "leaf_node_id", "timestamp"})


def _is_message(obj: dict[str, Any]) -> bool:
    return ("role" in obj and "parts" in obj) or ("kind" in obj and "content" in obj and "prune_state" in obj)


def _scrub(value: Any, volatile: frozenset[str]) -> Any:
    if isinstance(value, dict):
        drop_id = _is_message(value)
        return {
            k: _scrub(v, volatile)
            for k, v in value.items()
            if k not in volatile and not (drop_id and k == "id")
        }
    if isinstance(value, list):
        return [_scrub(v, volatile) for v in value]
    return value


def turn_commit_hash(commit: RuntimeCommit, volatile_keys: Iterable[str] = DEFAULT_VOLATILE_KEYS) -> str:
    """The semantic identity of a commit, for `TurnCommitStamp.turn_commit_hash`.

    Independent of `expected_head_revision`, of the stamp itself, and of volatile ids and times
    (`volatile_keys`, plus `id` inside message-like objects).
    """
    bare = msgspec.structs.replace(commit, expected_head_revision=None, turn_commit=None)
    return stable_hash(_scrub(msgspec.to_builtins(bare), frozenset(volatile_keys)))


def check_binding(bound_session_id: str | None, commit: RuntimeCommit) -> None:
    if bound_session_id is not None and bound_session_id != commit.session_id:
        raise SessionBindingMismatch(bound_session_id, commit.session_id)


def check_turn_stamp(commit: RuntimeCommit, stored_hash: str | None) -> bool:
    """True when this is an identical retry whose stored result must be returned as it is.

    `stored_hash` is the hash recorded for (stamp.session_id, stamp.turn_id), or None.
    """
    st = commit.turn_commit
    if st is None:
        return False
    if st.session_id != commit.session_id:
        raise TurnCommitConflict(
            st.session_id, st.turn_id, f"the stamp names session {st.session_id!r} but the commit is for {commit.session_id!r}"
        )
    if stored_hash is None:
        return False
    if stored_hash == st.turn_commit_hash:
        return True
    raise TurnCommitConflict(st.session_id, st.turn_id)


def check_cas(commit: RuntimeCommit, actual: int) -> int:
    """Raise on a stale expected revision; return the next revision."""
    expected = commit.expected_head_revision
    if expected is not None and expected != actual:
        raise HeadRevisionConflict(expected, actual)
    return actual + 1
