"""LashstoreSaver against LangGraph's own conformance suite, and through a real StateGraph.

The suite (`langgraph-checkpoint-conformance`) runs once per capability and backend, so a
failure names both; each test prints `capability: N passed, M failed`. The graph tests check
that a `messages` history grows the store linearly and reads back exactly as the graph wrote it.

Skipped only when LangGraph is not installed and CI is unset; in CI a missing package fails.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import uuid
from pathlib import Path
from typing import Annotated, Any, TypedDict

import msgspec
import pytest


def _require(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"{module} is not installed (pip install -e '.[langgraph]')", allow_module_level=True)


_require("langgraph.graph")
conformance = _require("langgraph.checkpoint.conformance")

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, RemoveMessage  # noqa: E402
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES, BASE_CAPABILITIES  # noqa: E402
from langgraph.checkpoint.memory import InMemorySaver  # noqa: E402
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer  # noqa: E402
from langgraph.graph import END, START, StateGraph  # noqa: E402
from langgraph.graph.message import add_messages  # noqa: E402

import lashstore  # noqa: E402
from lashstore import FullGraph  # noqa: E402
from lashstore.integrations.langgraph import LashstoreSaver  # noqa: E402

from postgres_support import deployment_url, postgres_url  # noqa: E402,F401  (the fixture)

BACKENDS = ["memory", "sqlite"]
#: The conformance suite also runs on PostgreSQL (LashstoreSaver uses only the public store API).
CONFORMANCE_BACKENDS = [*BACKENDS, "postgres"]


def _url(backend: str, tmp: Path, pg: str | None = None) -> str:
    if backend == "postgres":
        assert pg is not None
        return deployment_url(pg, f"lg_{uuid.uuid4().hex[:12]}")  # a fresh schema per saver
    return "memory://" if backend == "memory" else f"sqlite:///{tmp / uuid.uuid4().hex}"


# ------------------------------------------------------------------------------------------------
# The conformance suite, capability by capability
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("capability", sorted(c.value for c in ALL_CAPABILITIES))
@pytest.mark.parametrize("backend", CONFORMANCE_BACKENDS)
def test_conformance(backend: str, capability: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    pg = request.getfixturevalue("postgres_url") if backend == "postgres" else None

    @conformance.checkpointer_test(name=f"LashstoreSaver[{backend}]")
    async def factory():  # a fresh deployment per capability suite
        saver = LashstoreSaver.from_url(_url(backend, tmp_path, pg))
        try:
            yield saver
        finally:
            saver.close()

    report = asyncio.run(conformance.validate(factory, capabilities={capability}))
    result = report.results[capability]
    kind = "base" if capability in {c.value for c in BASE_CAPABILITIES} else "extended"
    print(f"\n{backend} {capability} ({kind}): {result.tests_passed} passed, {result.tests_failed} failed")
    assert result.detected, f"{capability} is not implemented"
    assert result.passed is True and result.tests_failed == 0, "\n".join(result.failures)
    assert result.tests_passed > 0


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_conformance_report_is_full(
    backend: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest
) -> None:
    """The whole suite in one run, printed as the package prints it: level FULL on SQLite and
    on PostgreSQL."""
    pg = request.getfixturevalue("postgres_url") if backend == "postgres" else None

    @conformance.checkpointer_test(name=f"LashstoreSaver[{backend}]")
    async def factory():
        saver = LashstoreSaver.from_url(_url(backend, tmp_path, pg))
        try:
            yield saver
        finally:
            saver.close()

    report = asyncio.run(conformance.validate(factory))
    with capsys.disabled():
        report.print_report()
        for name, r in sorted(report.results.items()):
            print(f"  {name}: {r.tests_passed} passed, {r.tests_failed} failed")
    assert report.passed_all_base()
    assert report.conformance_level() == "FULL"
    assert all(report.results[c.value].detected for c in ALL_CAPABILITIES)


# ------------------------------------------------------------------------------------------------
# A real compiled StateGraph
# ------------------------------------------------------------------------------------------------


class AgentState(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    tool_state: dict
    execution_state: bytes
    turn: int


def _words(i: int, n: int) -> str:
    return " ".join(f"w{(i * 7919 + k * 104729) % 5003}" for k in range(n))


def build_graph(checkpointer: Any) -> Any:
    """Plain-Python nodes: `agent` answers and `tools` updates tool and execution state."""

    def agent(state: AgentState) -> dict:
        turn = state.get("turn", 0) + 1
        last = state["messages"][-1]
        reply = AIMessage(content=f"reply {turn} to {last.content[:20]}: {_words(turn, 200)}", id=f"ai-{turn}")
        return {"messages": [reply], "turn": turn}

    def tools(state: AgentState) -> dict:
        turn = state["turn"]
        return {
            "tool_state": {"turn": turn, "files": [_words(turn + k, 40) for k in range(8)]},
            "execution_state": _words(turn, 300).encode(),
        }

    g = StateGraph(AgentState)
    g.add_node("agent", agent)
    g.add_node("tools", tools)
    g.add_edge(START, "agent")
    g.add_edge("agent", "tools")
    g.add_edge("tools", END)
    return g.compile(checkpointer=checkpointer)


def _user(i: int) -> HumanMessage:
    return HumanMessage(content=f"question {i}: {_words(i, 90)}", id=f"user-{i}")


def _run(checkpointer: Any, turns: int, thread: str = "t") -> tuple[Any, list[dict]]:
    graph = build_graph(checkpointer)
    cfg = {"configurable": {"thread_id": thread}}
    outs = [graph.invoke({"messages": [_user(i)]}, cfg) for i in range(turns)]
    return graph, outs


def _stored_bytes(saver: LashstoreSaver, thread: str = "t") -> int:
    """What the thread's session holds: every node's encoded body and every artifact's bytes."""
    store = saver.factory.open_store(saver.session_prefix + thread)
    try:
        read = store.load_session(FullGraph())
        total = sum(len(msgspec.msgpack.encode(n)) for n in read.graph.nodes)
        for _, _, ref in store.list_artifacts():
            total += len(store.get_blob(ref) or b"")
        return total
    finally:
        store.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_state_graph_storage_grows_linearly(backend: str, tmp_path: Path) -> None:
    n = 40
    sizes = {}
    for turns in (n, 2 * n):
        saver = LashstoreSaver.from_url(_url(backend, tmp_path))
        try:
            _run(saver, turns)
            sizes[turns] = _stored_bytes(saver)
        finally:
            saver.close()
    ratio = sizes[2 * n] / sizes[n]
    print(f"\n{backend}: {sizes[n]:,} bytes after {n} turns, {sizes[2 * n]:,} after {2 * n}: x{ratio:.2f}")
    # Linear storage doubles (plus a little for segment boundaries); the full-list-per-checkpoint
    # layout of LangGraph's own savers is close to x4 on this graph (see the contrast test).
    assert 1.8 < ratio < 2.3


def test_full_list_layout_would_fail_the_growth_check() -> None:
    """The same measure on InMemorySaver, which stores the whole list in every new version:
    the check above would catch that layout."""
    sizes = {}
    for turns in (40, 80):
        saver = InMemorySaver()
        _run(saver, turns)
        sizes[turns] = sum(len(v[1]) for v in saver.blobs.values())
    assert sizes[80] / sizes[40] > 3.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_state_graph_reads_back_what_the_graph_wrote(backend: str, tmp_path: Path) -> None:
    turns = 45  # 90 messages: more than 32 chunks, so list segments are read too
    url = _url(backend, tmp_path)
    dep = lashstore.open(url)
    try:
        saver = LashstoreSaver(dep)
        graph, outs = _run(saver, turns)
        reference, ref_outs = _run(InMemorySaver(), turns)
        assert outs == ref_outs  # what each invoke returned
        # A new saver on the same deployment: nothing cached, everything read from the store.
        fresh = build_graph(LashstoreSaver(dep))
        cfg = {"configurable": {"thread_id": "t"}}
        state = fresh.get_state(cfg)
        assert state.values == outs[-1]
        assert len(state.values["messages"]) == 2 * turns
        mine, theirs = list(fresh.get_state_history(cfg)), list(reference.get_state_history(cfg))
        assert len(mine) == len(theirs) == 4 * turns
        for a, b in zip(mine, theirs):
            assert a.values == b.values
            assert {k: v for k, v in a.metadata.items() if k != "run_id"} == {
                k: v for k, v in b.metadata.items() if k != "run_id"
            }
            assert a.next == b.next
        # Every checkpoint by id, through get_tuple, with its pending writes.
        ref_saver = reference.checkpointer
        for a, b in zip(fresh.checkpointer.list(cfg), ref_saver.list(cfg)):
            assert a.checkpoint["channel_values"] == b.checkpoint["channel_values"]
            assert a.checkpoint["versions_seen"].keys() == b.checkpoint["versions_seen"].keys()
            assert [(w[1], w[2]) for w in a.pending_writes] == [(w[1], w[2]) for w in b.pending_writes]
            again = fresh.checkpointer.get_tuple(a.config)
            assert again.checkpoint == a.checkpoint and again.metadata == a.metadata
        # The graph goes on from the fresh saver.
        out = fresh.invoke({"messages": [_user(turns)]}, cfg)
        assert len(out["messages"]) == 2 * turns + 2
    finally:
        dep.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_removed_messages_and_forks_read_back(backend: str, tmp_path: Path) -> None:
    """A list that stops extending its previous version (RemoveMessage) and a fork from an old
    checkpoint (update_state) each start a new chain; both read back as the graph wrote them."""
    saver = LashstoreSaver.from_url(_url(backend, tmp_path))
    try:
        graph, outs = _run(saver, 6)
        cfg = {"configurable": {"thread_id": "t"}}
        graph.update_state(cfg, {"messages": [RemoveMessage(id="user-2"), RemoveMessage(id="ai-3")]})
        after = graph.get_state(cfg).values["messages"]
        assert [m.id for m in after] == [m.id for m in outs[-1]["messages"] if m.id not in ("user-2", "ai-3")]
        history = list(graph.get_state_history(cfg))
        old = next(s for s in history if s.metadata["step"] == 4)
        forked = graph.update_state(old.config, {"messages": [HumanMessage(content="fork", id="fork-1")]})
        fork_state = graph.get_state(forked)
        assert [m.id for m in fork_state.values["messages"]] == [m.id for m in old.values["messages"]] + ["fork-1"]
        fresh = build_graph(LashstoreSaver(saver.deployment))
        assert fresh.get_state(forked).values == fork_state.values
        assert fresh.get_state(cfg).values == graph.get_state(cfg).values
    finally:
        saver.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_async_graph_and_maintenance(backend: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with LashstoreSaver.from_url(_url(backend, tmp_path)) as saver:
            graph = build_graph(saver)
            cfg = {"configurable": {"thread_id": "a"}}
            for i in range(5):
                await graph.ainvoke({"messages": [_user(i)]}, cfg)
            state = await graph.aget_state(cfg)
            assert len(state.values["messages"]) == 10
            history = [s async for s in graph.aget_state_history(cfg)]
            assert len(history) == 20
            await saver.acopy_thread("a", "b")
            copied = await graph.aget_state({"configurable": {"thread_id": "b"}})
            assert copied.values == state.values
            before = _stored_bytes(saver, "a")
            await saver.aprune(["a"], strategy="keep_latest")
            assert len([s async for s in graph.aget_state_history(cfg)]) == 1
            assert (await graph.aget_state(cfg)).values == state.values
            assert _stored_bytes(saver, "a") < before
            await graph.ainvoke({"messages": [_user(9)]}, cfg)  # the pruned thread goes on
            assert len((await graph.aget_state(cfg)).values["messages"]) == 12
            await saver.adelete_thread("b")
            assert (await saver.aget_tuple({"configurable": {"thread_id": "b"}})) is None

    asyncio.run(main())


def test_serde_is_the_callers_and_never_unpickles(tmp_path: Path) -> None:
    saver = LashstoreSaver.from_url("memory://")
    assert getattr(saver.serde, "pickle_fallback", False) is False

    class Counting(JsonPlusSerializer):
        calls = 0

        def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
            Counting.calls += 1
            return super().dumps_typed(obj)

    mine = LashstoreSaver.from_url("memory://", serde=Counting())
    _run(mine, 2)
    assert Counting.calls > 0
    saver.close()
    mine.close()


def test_messages_chain_is_incremental(tmp_path: Path) -> None:
    """Each new checkpoint of a growing list writes one chunk with only the new messages."""
    saver = LashstoreSaver.from_url(_url("sqlite", tmp_path))
    try:
        _run(saver, 10)
        store = saver.factory.open_store(saver.session_prefix + "t")
        read = store.load_session(FullGraph())
        store.close()
        chunks = [n.payload for n in read.graph.nodes if n.node_id.startswith("l:")]
        assert len(chunks) == 20  # one per new message: the user's (input step) and the reply
        assert all(c["c"] == 1 for c in chunks)
        assert sorted(c["k"] for c in chunks) == list(range(1, 21))
    finally:
        saver.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_subgraphs_and_interrupts_survive_a_new_saver(backend: str, tmp_path: Path) -> None:
    """Subgraph checkpoints (their own namespaces), an interrupt (a special pending write) and a
    resume from a newly opened saver, compared step by step with InMemorySaver."""
    from langgraph.types import Command, interrupt

    def build(checkpointer: Any) -> Any:
        def research(state: AgentState) -> dict:
            return {"messages": [AIMessage(content=f"notes on {state['messages'][-1].content[:12]}",
                                           id=f"notes-{len(state['messages'])}")]}

        sub = StateGraph(AgentState)
        sub.add_node("research", research)
        sub.add_edge(START, "research")
        sub.add_edge("research", END)

        def approve(state: AgentState) -> dict:
            answer = interrupt({"question": "approve?", "n": len(state["messages"])})
            return {"messages": [AIMessage(content=f"approved: {answer}", id=f"ok-{len(state['messages'])}")]}

        g = StateGraph(AgentState)
        g.add_node("sub", sub.compile())
        g.add_node("approve", approve)
        g.add_edge(START, "sub")
        g.add_edge("sub", "approve")
        g.add_edge("approve", END)
        return g.compile(checkpointer=checkpointer)

    url = _url(backend, tmp_path)
    dep = lashstore.open(url)
    try:
        ours, ref = build(LashstoreSaver(dep)), build(InMemorySaver())
        cfg = {"configurable": {"thread_id": "s"}}
        for i in range(3):
            for g in (ours, ref):
                g.invoke({"messages": [_user(i)]}, cfg)
            again = build(LashstoreSaver(dep))  # as after a restart, while interrupted
            mine, theirs = again.get_state(cfg, subgraphs=True), ref.get_state(cfg, subgraphs=True)
            assert mine.values == theirs.values
            assert mine.next == theirs.next == ("approve",)
            assert [t.interrupts[0].value for t in mine.tasks] == [t.interrupts[0].value for t in theirs.tasks]
            out = again.invoke(Command(resume=f"yes {i}"), cfg)
            assert out == ref.invoke(Command(resume=f"yes {i}"), cfg)
            ours = again
        subs = [s for s in LashstoreSaver(dep).list(None) if s.config["configurable"]["checkpoint_ns"]]
        assert subs, "the subgraph's checkpoints are stored under their own namespaces"
        for s in subs[:3]:
            assert LashstoreSaver(dep).get_tuple(s.config).checkpoint == s.checkpoint
            latest = LashstoreSaver(dep).get_tuple({"configurable": {
                "thread_id": "s", "checkpoint_ns": s.config["configurable"]["checkpoint_ns"]}})
            assert latest is not None and latest.checkpoint["id"] >= s.checkpoint["id"]
    finally:
        dep.close()


def test_putting_a_checkpoint_again(tmp_path: Path) -> None:
    """The same checkpoint again is a no-op; other content under the same id replaces it."""
    from langgraph.checkpoint.conformance.test_utils import generate_checkpoint, generate_metadata

    saver = LashstoreSaver.from_url(_url("sqlite", tmp_path))
    try:
        cfg = {"configurable": {"thread_id": "r", "checkpoint_ns": ""}}
        cp = generate_checkpoint(channel_values={"a": "one", "big": "x" * 2000}, channel_versions={"a": 1, "big": 1})
        stored = saver.put(cfg, cp, generate_metadata(step=0), {"a": 1, "big": 1})
        saver.put(cfg, cp, generate_metadata(step=0), {"a": 1, "big": 1})
        assert len(list(saver.list({"configurable": {"thread_id": "r"}}))) == 1
        cp2 = {**cp, "channel_values": {"a": "two", "big": "x" * 2000}}
        saver.put(cfg, cp2, generate_metadata(step=0, note="again"), {"a": 1, "big": 1})
        fresh = LashstoreSaver(saver.deployment)
        for s in (saver, fresh):
            tup = s.get_tuple(stored)
            assert tup.checkpoint["channel_values"] == {"a": "two", "big": "x" * 2000}
            assert tup.metadata["note"] == "again"
            assert [t.checkpoint["channel_values"]["a"] for t in s.list({"configurable": {"thread_id": "r"}})] == ["two"]
            assert s.get_tuple({"configurable": {"thread_id": "r"}}).checkpoint["id"] == cp["id"]
        child = generate_checkpoint(channel_values={"a": "three"}, channel_versions={"a": 2, "big": 1})
        saver.put(stored, child, generate_metadata(step=1), {"a": 2})
        tup = fresh.get_tuple({"configurable": {"thread_id": "r"}})
        assert tup.checkpoint["channel_values"] == {"a": "three", "big": "x" * 2000}
        assert tup.parent_config["configurable"]["checkpoint_id"] == cp["id"]
    finally:
        saver.close()
