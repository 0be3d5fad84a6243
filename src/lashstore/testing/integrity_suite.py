"""Conformance scenarios of trust: nothing accepted is lost or misreported, and one rule for what
is accepted, the same on every backend.

* a session deleted through one deployment is refused by the handles of another (never a commit
  acknowledged into a deleted session);
* ids: non-blank, valid Unicode, no NUL, at most `MAX_ID_BYTES` bytes of UTF-8;
* text fields: valid Unicode, no NUL; payloads: exact JSON types and bytes, nested at most
  `MAX_DEPTH` deep, readable whatever the caller's stack depth;
* token counts: integers from 0 to `MAX_TOKENS`, and totals that never overflow;
* a list of ids is a list: a string is never taken as its characters.

`INTEGRITY_SCENARIOS` take a `SessionHarness` and run on every backend.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from ..codec import MAX_DEPTH
from ..errors import SessionDeleted, SessionNotFound, ValidationError
from ..model.session import (
    GraphAppend,
    HydratedSessionCheckpoint,
    SessionMeta,
    TokenLedgerEntry,
    TokenUsage,
    TurnCommitStamp,
)
from ..rules.validate import MAX_ID_BYTES, MAX_TOKENS
from .harness import SessionHarness
from .session_suite import CREATED, node, refused, runtime_commit

__all__ = ["INTEGRITY_SCENARIOS", "nested"]

#: Bad text: a NUL, a lone surrogate (not valid Unicode), and the two inside other text.
BAD_TEXT = ("a\x00b", "\ud800", "ok\udfffok", "\x00")


def nested(depth: int, leaf: Any = 1) -> Any:
    """`leaf` inside `depth` lists (and a dict every other level)."""
    value = leaf
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


def _expect(exc: type[BaseException], fn: Callable[[], Any], what: str) -> BaseException:
    try:
        fn()
    except exc as e:
        return e
    except Exception as e:  # noqa: BLE001 - say which error came instead
        raise AssertionError(f"{what}: expected {exc.__name__}, got {type(e).__name__}: {e}") from e
    raise AssertionError(f"{what}: expected {exc.__name__}, but the call succeeded")


# -- deletion seen across deployments ------------------------------------------------------------


def deleted_session_is_refused_by_other_handles(h: SessionHarness) -> None:
    """Deployment B deletes a session deployment A is writing: A's next commit and read raise
    SessionDeleted (a SessionNotFound), nothing is written, and a session made again under the
    same id starts empty."""
    a = h.make_factory()
    b = h.again(a)
    store = a.create_store("shared")
    store.commit_runtime_state(runtime_commit("shared", nodes=[node("n1")], leaf="n1"))
    assert b.has_session("shared")
    assert b.delete_session("shared") is True
    assert not a.has_session("shared") and not b.has_session("shared")
    _expect(SessionDeleted, lambda: store.commit_runtime_state(
        runtime_commit("shared", nodes=[node("n2")], leaf="n2")), "commit after the deletion")
    _expect(SessionDeleted, lambda: store.commit_runtime_state(
        runtime_commit("shared", expected_head_revision=1, nodes=[node("n2")], leaf="n2")), "CAS commit after it")
    _expect(SessionNotFound, lambda: store.load_session(), "load_session after the deletion")
    assert not a.has_session("shared") and not b.has_session("shared"), "a refused commit revived the session"
    assert "shared" not in [s.session_id for s in a.list_sessions()]
    _expect(SessionNotFound, lambda: a.open_store("shared"), "open_store after the deletion")
    # Made again: empty, and the old handle still cannot reach it.
    fresh = b.create_store("shared")
    assert fresh.load_session() is None
    fresh.commit_runtime_state(runtime_commit("shared", nodes=[node("m1")], leaf="m1"))
    read = a.open_store("shared").load_session()
    assert read is not None and [n.node_id for n in read.graph.nodes] == ["m1"] and read.head_revision == 1


# -- ids ------------------------------------------------------------------------------------------


def _long_id(n_bytes: int) -> str:
    # Three-byte characters, so the rule is about UTF-8 bytes, not characters.
    s = "\u20ac" * (n_bytes // 3)
    return s + "x" * (n_bytes - len(s.encode("utf-8")))


def ids_follow_one_rule_on_every_backend(h: SessionHarness) -> None:
    """Every id slot refuses blank, NUL, lone-surrogate and over-long ids with ValidationError and
    no change; an id of exactly MAX_ID_BYTES bytes (multi-byte characters) reads back."""
    longest = _long_id(MAX_ID_BYTES)
    too_long = _long_id(MAX_ID_BYTES + 1)
    assert len(longest.encode("utf-8")) == MAX_ID_BYTES
    bad_ids = (*BAD_TEXT, too_long, " ", "")
    factory = h.make_factory()
    for bad in bad_ids:
        _expect(ValidationError, lambda bad=bad: factory.create_store(bad), f"create_store({bad[:8]!r})")
        _expect(ValidationError, lambda bad=bad: factory.has_session(bad), f"has_session({bad[:8]!r})")
    assert factory.list_sessions() == [], "a refused create left a session behind"

    store = h.make()
    slots: list[tuple[str, Callable[[str], Any]]] = [
        ("session id", lambda i: store.commit_runtime_state(runtime_commit(i))),
        ("node id", lambda i: store.commit_runtime_state(runtime_commit("root", nodes=[node(i)], leaf=i))),
        ("parent id", lambda i: store.commit_runtime_state(runtime_commit("root", nodes=[node("c", i)], leaf="c"))),
        ("leaf id", lambda i: store.commit_runtime_state(runtime_commit("root", nodes=[node("a")], leaf=i))),
        ("agent frame id", lambda i: store.commit_runtime_state(runtime_commit(
            "root", nodes=[msgspec.structs.replace(node("a"), agent_frame_id=i)], leaf="a"))),
        ("turn id", lambda i: store.commit_runtime_state(
            runtime_commit("root").with_turn_commit(TurnCommitStamp("root", i, "h")))),
        ("artifact name", lambda i: store.put_artifact(i, b"x")),
        ("artifact namespace", lambda i: store.put_artifact("a", b"x", namespace=i)),
        ("load_node", lambda i: store.load_node(i)),
        ("tombstone id", lambda i: store.tombstone_nodes([i])),
    ]
    for what, call in slots:
        for bad in bad_ids:
            refused(ValidationError, lambda call=call, bad=bad: call(bad), store, f"{what} {bad[:8]!r}")
    assert store.load_session() is None and store.session_id is None

    # The longest id is accepted in every slot and reads back equal.
    s = h.make()
    s.commit_runtime_state(runtime_commit(longest, nodes=[node(longest), node("child", longest)], leaf="child"))
    read = s.load_session()
    assert read is not None and read.session_id == longest
    assert [n.node_id for n in read.graph.nodes] == [longest, "child"]
    assert read.graph.nodes[1].parent_node_id == longest
    assert s.load_node(longest) is not None
    s.put_artifact(longest, b"bytes", namespace=longest)
    assert s.get_artifact(longest, namespace=longest) == b"bytes"
    made = factory.create_store(longest)
    assert made.session_id == longest and factory.has_session(longest)
    assert [x.session_id for x in factory.list_sessions()] == [longest]


# -- text and payloads ----------------------------------------------------------------------------


def text_and_payloads_refuse_nul_and_lone_surrogates(h: SessionHarness) -> None:
    """Text fields refuse NUL and lone surrogates; payloads refuse lone surrogates (in values and
    keys) but keep NUL; every refusal is a ValidationError and changes nothing."""
    store = h.make()
    for bad in BAD_TEXT:
        cases: list[tuple[str, Callable[[], Any]]] = [
            ("usage source", lambda: store.commit_runtime_state(runtime_commit(
                "root", usage=[TokenLedgerEntry(bad, "m", TokenUsage(input_tokens=1))]))),
            ("usage model", lambda: store.commit_runtime_state(runtime_commit(
                "root", usage=[TokenLedgerEntry("s", bad, TokenUsage(input_tokens=1))]))),
            ("node timestamp", lambda: store.commit_runtime_state(runtime_commit(
                "root", nodes=[msgspec.structs.replace(node("a"), timestamp=bad)], leaf="a"))),
            ("current agent frame", lambda: store.commit_runtime_state(
                runtime_commit("root", current_agent_frame_id=bad))),
            ("meta session_name", lambda: store.save_session_meta(
                SessionMeta(session_id="root", session_name=bad, created_at=CREATED))),
            ("meta model", lambda: store.save_session_meta(
                SessionMeta(session_id="root", session_name="n", created_at=CREATED, model=bad))),
            ("meta cwd", lambda: store.save_session_meta(
                SessionMeta(session_id="root", session_name="n", created_at=CREATED, cwd=bad))),
        ]
        if "\x00" not in bad:  # NUL is fine inside a payload; a lone surrogate is not
            cases += [
                ("payload value", lambda: store.commit_runtime_state(
                    runtime_commit("root", nodes=[node("a", payload={"text": bad})], leaf="a"))),
                ("payload key", lambda: store.commit_runtime_state(
                    runtime_commit("root", config={bad: 1}))),
                ("tool state", lambda: store.commit_runtime_state(runtime_commit("root", tool_state=[bad]))),
                ("typed blob", lambda: store.put_typed_blob({"k": bad})),
            ]
        for what, call in cases:
            refused(ValidationError, call, store, f"{what} {bad!r}")
    assert store.load_session() is None
    factory = h.make_factory()
    for bad in BAD_TEXT:
        _expect(ValidationError, lambda: factory.create_store("s", model=bad), f"create_store model {bad!r}")
        _expect(ValidationError, lambda: factory.create_store("s", cwd=bad), f"create_store cwd {bad!r}")
    assert not factory.has_session("s"), "a refused create left the session behind"
    # NUL inside a payload is kept exactly.
    store.commit_runtime_state(runtime_commit("root", nodes=[node("a", payload={"t\x00k": "v\x00"})], leaf="a"))
    assert store.load_node("a").payload == {"t\x00k": "v\x00"}  # type: ignore[union-attr]


def nesting_has_one_fixed_limit(h: SessionHarness) -> None:
    """A value nested MAX_DEPTH deep is accepted in every payload slot and reads back, also from
    deep inside the caller's own stack; one level more is refused, as is 990 levels."""
    store = h.make()
    deepest = nested(MAX_DEPTH)
    commit = runtime_commit(
        "root",
        nodes=[node("a", payload=deepest)],
        leaf="a",
        config={"c": nested(MAX_DEPTH - 1)},
        tool_state=deepest,
        plugin_snapshot=deepest,
    )
    commit = msgspec.structs.replace(commit, checkpoint=msgspec.structs.replace(commit.checkpoint, turn_state=deepest))
    store.commit_runtime_state(commit)

    def read_at_depth(n: int) -> Any:
        return store.load_session() if n == 0 else read_at_depth(n - 1)

    # Called with most of the default recursion limit (1000) used up by the caller.
    read = read_at_depth(700)
    assert read is not None
    assert read.graph.nodes[0].payload == deepest and read.checkpoint.tool_state == deepest
    assert read.checkpoint.turn_state == deepest and read.config == {"c": nested(MAX_DEPTH - 1)}
    for depth in (MAX_DEPTH + 1, 990, 5000):
        too_deep = nested(depth)
        for what, call in (
            ("config", lambda: store.commit_runtime_state(runtime_commit("root", config={"x": too_deep}))),
            ("node payload", lambda: store.commit_runtime_state(runtime_commit(
                "root", graph=GraphAppend([node("b", "a", payload=too_deep)], "b"), expected_head_revision=1))),
            ("tool state", lambda: store.commit_runtime_state(runtime_commit("root", tool_state=too_deep))),
            ("turn state", lambda: store.commit_runtime_state(msgspec.structs.replace(
                runtime_commit("root"), checkpoint=HydratedSessionCheckpoint(turn_state=too_deep)))),
            ("typed blob", lambda: store.put_typed_blob(too_deep)),
        ):
            e = refused(ValidationError, call, store, f"{what} nested {depth} deep")
            assert "nested more than" in str(e), f"{what}: {e}"
    assert store.load_session() is not None


# -- usage ----------------------------------------------------------------------------------------


def usage_counts_are_bounded_and_totals_never_overflow(h: SessionHarness) -> None:
    """Counts from 0 to MAX_TOKENS are accepted, anything else refused; the totals of many
    maximal entries are exact (no overflow, on load_session, load_usage and after compaction)."""
    store = h.make()
    for bad in (-1, MAX_TOKENS + 1, 2**62, 2**63, 2**64, True, 1.0, None, "1"):
        for field in ("input_tokens", "output_tokens", "cached_input_tokens", "reasoning_tokens"):
            usage = TokenUsage(**{field: bad})  # type: ignore[arg-type]
            refused(ValidationError, lambda usage=usage: store.commit_runtime_state(
                runtime_commit("root", usage=[TokenLedgerEntry("s", "m", usage)])), store, f"{field}={bad!r}")
    top = TokenUsage(input_tokens=MAX_TOKENS, output_tokens=MAX_TOKENS, cached_input_tokens=MAX_TOKENS,
                     reasoning_tokens=MAX_TOKENS)
    n = 20
    for i in range(n):
        store.commit_runtime_state(runtime_commit(
            "root", usage=[TokenLedgerEntry("s", "m", top), TokenLedgerEntry("s", "m", top)]))
    want = TokenUsage(input_tokens=2 * n * MAX_TOKENS, output_tokens=2 * n * MAX_TOKENS,
                      cached_input_tokens=2 * n * MAX_TOKENS, reasoning_tokens=2 * n * MAX_TOKENS)
    assert store.load_usage() == [TokenLedgerEntry("s", "m", want)]
    read = store.load_session()
    assert read is not None and read.token_ledger == [TokenLedgerEntry("s", "m", want)]
    compact = getattr(store, "compact_usage", None)
    if compact is not None:
        compact()
        assert store.load_usage() == [TokenLedgerEntry("s", "m", want)], "compaction changed the totals"


# -- id lists -------------------------------------------------------------------------------------


def id_lists_refuse_a_string(h: SessionHarness) -> None:
    """`tombstone_nodes("ab")` is refused, not taken as ["a", "b"]."""
    store = h.make()
    store.commit_runtime_state(runtime_commit("root", nodes=[node("a"), node("b", "a"), node("ab", "b")], leaf="ab"))
    for bad in ("ab", b"ab", {"a": 1}, 3, None):
        refused(ValidationError, lambda bad=bad: store.tombstone_nodes(bad), store, f"tombstone_nodes({bad!r})")  # type: ignore[arg-type]
    assert store.tombstone_nodes(("ab",)) == 1  # a tuple of ids is a list of ids


INTEGRITY_SCENARIOS: list[Callable[[SessionHarness], None]] = [
    deleted_session_is_refused_by_other_handles,
    ids_follow_one_rule_on_every_backend,
    text_and_payloads_refuse_nul_and_lone_surrogates,
    nesting_has_one_fixed_limit,
    usage_counts_are_bounded_and_totals_never_overflow,
    id_lists_refuse_a_string,
]

