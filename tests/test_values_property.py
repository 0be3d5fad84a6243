"""Property: every value validation accepts reads back equal in value and in type, from a fresh
handle; every value it refuses raises ValidationError and leaves an export of the store byte for
byte as it was. On memory, SQLite and PostgreSQL, for payloads, configs, node bodies, checkpoint
state, ids and token counts."""

from __future__ import annotations

import io
import itertools
import math
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import lashstore
from lashstore import ops
from lashstore.codec import MAX_DEPTH, json_problem
from lashstore.errors import ValidationError
from lashstore.model.session import GraphAppend, GraphNode, HydratedSessionCheckpoint, TokenLedgerEntry, TokenUsage
from lashstore.rules.validate import MAX_ID_BYTES, MAX_TOKENS
from lashstore.testing.integrity_suite import nested
from lashstore.testing.postgres import fresh_schema
from lashstore.testing.session_suite import runtime_commit
from postgres_support import deployment_url, postgres_url  # noqa: F401 - the fixture

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                              HealthCheck.too_slow])

_counter = itertools.count()

# -- values -----------------------------------------------------------------------------------

leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
    | st.binary(max_size=64)
)
json_values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=25,
)
surrogate = st.sampled_from(["\ud800", "a\udfffb", "\udc00x"])
hostile_leaves = (
    surrogate
    | st.just(math.nan)
    | st.just(math.inf)
    | st.integers(min_value=2**64, max_value=2**80)
    | st.integers(max_value=-(2**63) - 1, min_value=-(2**80))
    | st.tuples(st.integers())
    | st.frozensets(st.integers(), max_size=2)
    | st.just(bytearray(b"x"))
    | st.just(nested(MAX_DEPTH + 1))
    | st.builds(object)
)
hostile_values = st.recursive(
    hostile_leaves,
    lambda inner: st.lists(inner, min_size=1, max_size=3).map(lambda xs: [*xs, 1])
    | st.dictionaries(st.text(max_size=4), inner, min_size=1, max_size=3)
    | st.builds(lambda k: {k: 1}, surrogate),
    max_leaves=6,
)


def same(a: Any, b: Any) -> bool:
    """Equal in value and in type, all the way down (and -0.0 is not 0.0)."""
    if type(a) is not type(b):
        return False
    if type(a) is dict:
        return a.keys() == b.keys() and all(type(k) is str for k in b) and all(same(a[k], b[k]) for k in a)
    if type(a) is list:
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if type(a) is float:
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    return a == b


# -- deployments ------------------------------------------------------------------------------


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def url(request, tmp_path):
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store'}"
    return deployment_url(request.getfixturevalue("postgres_url"), fresh_schema("prop"))


def _export(dep: Any, sid: str) -> bytes:
    buf = io.BytesIO()
    ops.export_session(dep, sid, buf)
    return b"".join(buf.getvalue().splitlines(keepends=True)[1:])  # the header holds the time


def _slots(value: Any) -> list[tuple[str, Any]]:
    """Commits that put `value` in each payload slot of a session at revision 1 (leaf "root")."""
    def append(**kw: Any) -> Any:
        return runtime_commit("s", expected_head_revision=1, graph=GraphAppend(
            [GraphNode(node_id=f"n{next(_counter)}", parent_node_id="root", **kw)], None))

    return [
        ("config", runtime_commit("s", expected_head_revision=1, config={"v": value})),
        ("node payload", append(payload=value)),
        ("node caused_by", append(caused_by=value)),
        ("tool state", runtime_commit("s", expected_head_revision=1, tool_state=value)),
        ("plugin snapshot", runtime_commit("s", expected_head_revision=1, plugin_snapshot=value)),
        ("turn state", msgspec.structs.replace(runtime_commit("s", expected_head_revision=1),
                                               checkpoint=HydratedSessionCheckpoint(turn_state=value))),
        ("agent frames", runtime_commit("s", expected_head_revision=1, agent_frames=[{"frame_id": "f", "v": value}],
                                        current_agent_frame_id="f")),
    ]


def _read_slot(read: Any, what: str, commit: Any) -> Any:
    if what == "config":
        return read.config["v"]
    if what in ("node payload", "node caused_by"):
        nid = commit.graph.nodes[0].node_id
        got = next(n for n in read.graph.nodes if n.node_id == nid)
        return got.payload if what == "node payload" else got.caused_by
    if what == "tool state":
        return read.checkpoint.tool_state
    if what == "plugin snapshot":
        return read.checkpoint.plugin_snapshot
    if what == "turn state":
        return read.checkpoint.turn_state
    return read.agent_frames[0]["v"]


def _session(dep: Any) -> Any:
    sid = "s"
    if dep.sessions.has_session(sid):
        dep.sessions.delete_session(sid)
    store = dep.sessions.create_store(sid)
    store.commit_runtime_state(runtime_commit(sid, nodes=[GraphNode(node_id="root")], leaf="root"))
    return store


def test_accepted_values_read_back_equal_in_value_and_type(url):
    with lashstore.open(url) as dep:

        @SETTINGS
        @given(value=json_values)
        def check(value: Any) -> None:
            assert json_problem(value) is None
            for what, commit in _slots(value):
                store = _session(dep)
                store.commit_runtime_state(commit)
                store.close()
                with dep.sessions.open_store("s") as fresh:
                    read = fresh.load_session()
                    got = _read_slot(read, what, commit)
                    assert same(got, value), (what, value, got)

        check()


def test_refused_values_leave_the_export_byte_identical(url):
    with lashstore.open(url) as dep:

        @SETTINGS
        @given(value=hostile_values)
        def check(value: Any) -> None:
            assume(json_problem(value) is not None)
            store = _session(dep)
            before = _export(dep, "s")
            for what, commit in _slots(value):
                with pytest.raises(ValidationError):
                    store.commit_runtime_state(commit)
                assert _export(dep, "s") == before, what
            with pytest.raises(ValidationError):
                store.put_typed_blob(value)
            store.close()
            assert _export(dep, "s") == before

        check()


ids = st.text(min_size=1, max_size=40)


def test_ids_are_accepted_and_read_back_or_refused_without_change(url):
    with lashstore.open(url) as dep:

        @SETTINGS
        @given(node_id=ids | st.text(min_size=170, max_size=200), session_id=ids)
        def check(node_id: str, session_id: str) -> None:
            store = _session(dep)
            before = _export(dep, "s")
            commit = runtime_commit("s", expected_head_revision=1,
                                    graph=GraphAppend([GraphNode(node_id=node_id, parent_node_id="root")], node_id))
            valid = (node_id.strip() != "" and "\x00" not in node_id and len(node_id.encode("utf-8", "surrogatepass"))
                     <= MAX_ID_BYTES and not any(0xD800 <= ord(c) <= 0xDFFF for c in node_id) and node_id != "root")
            if valid:
                store.commit_runtime_state(commit)
                with dep.sessions.open_store("s") as fresh:
                    got = fresh.load_node(node_id)
                    assert got is not None and got.node_id == node_id and fresh.load_head().leaf_node_id == node_id
            else:
                with pytest.raises(ValidationError):
                    store.commit_runtime_state(commit)
                assert _export(dep, "s") == before
            store.close()
            ok_sid = (session_id.strip() != "" and "\x00" not in session_id
                      and not any(0xD800 <= ord(c) <= 0xDFFF for c in session_id))
            if ok_sid:
                with dep.sessions.create_store(session_id) as made:
                    assert made.session_id == session_id
                assert dep.sessions.has_session(session_id)
                assert session_id in [s.session_id for s in dep.sessions.list_sessions()]
                dep.sessions.delete_session(session_id)
            else:
                with pytest.raises(ValidationError):
                    dep.sessions.create_store(session_id)

        check()


def test_token_counts_are_bounded_and_sum_exactly(url):
    with lashstore.open(url) as dep:

        @SETTINGS
        @given(counts=st.lists(st.integers(min_value=-(2**64), max_value=2**64), min_size=1, max_size=6))
        def check(counts: list[int]) -> None:
            store = _session(dep)
            before = _export(dep, "s")
            usage = [TokenLedgerEntry("src", "model", TokenUsage(input_tokens=c, output_tokens=c)) for c in counts]
            if all(0 <= c <= MAX_TOKENS for c in counts):
                store.commit_runtime_state(runtime_commit("s", expected_head_revision=1, usage=usage))
                total = sum(counts)
                want = [] if total == 0 else [TokenLedgerEntry("src", "model", TokenUsage(input_tokens=total,
                                                                                            output_tokens=total))]
                with dep.sessions.open_store("s") as fresh:
                    assert fresh.load_usage() == want
                    assert fresh.load_session().token_ledger == want
            else:
                with pytest.raises(ValidationError):
                    store.commit_runtime_state(runtime_commit("s", expected_head_revision=1, usage=usage))
                assert _export(dep, "s") == before
            store.close()

        check()
