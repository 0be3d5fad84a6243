"""LashstoreSession: the OpenAI Agents SDK `Session` protocol on lashstore.

Driven through the SDK's own `Runner` with a fake model (a `Model` subclass returning canned
responses and recording what it was sent; no network, tracing disabled), then operation by
operation. Runs on the memory and SQLite backends.

Skipped only when the SDK is not installed and CI is unset; in CI a missing package fails.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest


def _require(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"{module} is not installed (pip install -e '.[openai-agents]')", allow_module_level=True)


agents = _require("agents")
agents.set_tracing_disabled(True)  # nothing is exported anywhere

from agents import Agent, Runner, SQLiteSession  # noqa: E402
from agents.items import ModelResponse  # noqa: E402
from agents.memory import Session  # noqa: E402
from agents.models.interface import Model  # noqa: E402
from agents.usage import Usage  # noqa: E402
from openai.types.responses import ResponseOutputMessage, ResponseOutputText  # noqa: E402

import lashstore  # noqa: E402
from lashstore.integrations.openai_agents import LashstoreSession  # noqa: E402

BACKENDS = ["memory", "sqlite"]


def _url(backend: str, tmp: Path) -> str:
    return "memory://" if backend == "memory" else f"sqlite:///{tmp / 'store'}"


class FakeModel(Model):
    """Answers each call with the next canned text and keeps the input it was given."""

    def __init__(self, replies: list[str]) -> None:
        self.replies = list(replies)
        self.inputs: list[list[Any]] = []

    async def get_response(self, system_instructions, input, model_settings, tools, output_schema,
                           handoffs, tracing, *, previous_response_id=None, conversation_id=None,
                           prompt=None, **kwargs) -> ModelResponse:
        self.inputs.append([dict(i) for i in input] if isinstance(input, list) else [{"role": "user", "content": input}])
        text = self.replies.pop(0)
        message = ResponseOutputMessage(
            id=f"msg_{uuid.uuid4().hex[:12]}",
            type="message",
            role="assistant",
            status="completed",
            content=[ResponseOutputText(type="output_text", text=text, annotations=[])],
        )
        return ModelResponse(output=[message], usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover - not used
        raise NotImplementedError


def _text(item: Any) -> str:
    content = item.get("content")
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content or [])


@pytest.mark.parametrize("backend", BACKENDS)
def test_runner_multi_turn_history(backend: str, tmp_path: Path) -> None:
    async def main() -> None:
        model = FakeModel(["Paris.", "About 2.1 million.", "You asked about Paris twice."])
        agent = Agent(name="geo", instructions="Answer briefly.", model=model)
        session = LashstoreSession("chat-1", _url(backend, tmp_path))
        try:
            r1 = await Runner.run(agent, "What is the capital of France?", session=session)
            r2 = await Runner.run(agent, "How many people live there?", session=session)
            r3 = await Runner.run(agent, "What did I ask?", session=session)
            assert [r1.final_output, r2.final_output, r3.final_output] == [
                "Paris.", "About 2.1 million.", "You asked about Paris twice."
            ]
            # The model saw the whole history on every later turn.
            assert [_text(i) for i in model.inputs[0]] == ["What is the capital of France?"]
            assert [_text(i) for i in model.inputs[1]] == [
                "What is the capital of France?", "Paris.", "How many people live there?"
            ]
            assert [_text(i) for i in model.inputs[2]] == [
                "What is the capital of France?", "Paris.", "How many people live there?",
                "About 2.1 million.", "What did I ask?",
            ]
            items = await session.get_items()
            assert [i.get("role") for i in items] == ["user", "assistant"] * 3
            assert [_text(i) for i in items][-1] == "You asked about Paris twice."
            assert await session.get_items(limit=2) == items[-2:]
        finally:
            session.close()

    asyncio.run(main())


def test_history_survives_a_new_process_view(tmp_path: Path) -> None:
    """A second session object (as after a restart) on the same SQLite store sees the history,
    and the run goes on from it."""

    async def main() -> None:
        url = _url("sqlite", tmp_path)
        first = LashstoreSession("chat-2", url)
        agent = Agent(name="a", model=FakeModel(["one"]))
        await Runner.run(agent, "first question", session=first)
        first.close()
        again = LashstoreSession("chat-2", url)
        model = FakeModel(["two"])
        await Runner.run(Agent(name="a", model=model), "second question", session=again)
        assert [_text(i) for i in model.inputs[0]] == ["first question", "one", "second question"]
        assert len(await again.get_items()) == 4
        again.close()

    asyncio.run(main())


@pytest.mark.parametrize("backend", BACKENDS)
def test_session_protocol_operations(backend: str, tmp_path: Path) -> None:
    async def main() -> None:
        session = LashstoreSession("ops", _url(backend, tmp_path))
        try:
            assert isinstance(session, Session)
            assert await session.get_items() == []
            assert await session.pop_item() is None
            items = [{"role": "user", "content": f"m{i}"} for i in range(10)]
            await session.add_items(items[:3])
            await session.add_items([])
            await session.add_items(items[3:])
            assert await session.get_items() == items
            assert await session.get_items(limit=1) == items[-1:]
            assert await session.get_items(limit=4) == items[-4:]
            assert await session.get_items(limit=100) == items
            assert await session.get_items(limit=0) == []
            assert await session.pop_item() == items[-1]
            assert await session.pop_item() == items[-2]
            assert await session.get_items() == items[:-2]
            await session.add_items([{"role": "assistant", "content": "after pop"}])
            got = await session.get_items()
            assert got == [*items[:-2], {"role": "assistant", "content": "after pop"}]
            assert await session.get_items(limit=1) == got[-1:]
            await session.clear_session()
            assert await session.get_items() == []
            assert await session.pop_item() is None
            await session.add_items(items[:2])
            assert await session.get_items() == items[:2]
        finally:
            session.close()

    asyncio.run(main())


def test_session_settings_limit_and_matches_sqlite_session(tmp_path: Path) -> None:
    """Same operations on the SDK's SQLiteSession and on LashstoreSession give the same answers."""

    async def main() -> None:
        ours = LashstoreSession("same", "memory://", session_settings={"limit": 3})
        theirs = SQLiteSession("same", str(tmp_path / "sdk.db"), session_settings={"limit": 3})
        for s in (ours, theirs):
            await s.add_items([{"role": "user", "content": f"q{i}", "n": i, "nested": {"k": [i, 1.5]}} for i in range(8)])
            await s.pop_item()
        assert await ours.get_items() == await theirs.get_items()  # the settings' limit of 3
        assert await ours.get_items(limit=5) == await theirs.get_items(limit=5)
        assert await ours.pop_item() == await theirs.pop_item()
        ours.close()
        theirs.close()

    asyncio.run(main())


def test_concurrent_pops_never_return_the_same_item(tmp_path: Path) -> None:
    """Two session objects on one store pop concurrently: every item comes out exactly once
    (the SDK's SQLAlchemySession can return an item twice, openai-agents-python#4205)."""
    url = _url("sqlite", tmp_path)
    dep = lashstore.open(url)
    try:
        a, b = LashstoreSession("race", dep), LashstoreSession("race", dep)
        asyncio.run(a.add_items([{"role": "user", "content": f"m{i}"} for i in range(150)]))
        popped: list[Any] = []
        lock = threading.Lock()

        def worker(s: LashstoreSession) -> None:
            while True:
                item = s._pop_item()
                if item is None:
                    return
                with lock:
                    popped.append(item["content"])

        threads = [threading.Thread(target=worker, args=(s,)) for s in (a, b, a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(popped) == sorted(f"m{i}" for i in range(150))
        assert asyncio.run(b.get_items()) == []
    finally:
        dep.close()


def test_concurrent_appends_keep_one_chain(tmp_path: Path) -> None:
    """Writers on separate session objects interleave; the head CAS keeps the chain whole."""
    dep = lashstore.open(_url("sqlite", tmp_path))
    try:
        sessions = [LashstoreSession("chain", dep) for _ in range(3)]

        def worker(k: int) -> None:
            for i in range(20):
                sessions[k]._add_items([{"role": "user", "content": f"{k}-{i}"}])

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        items = asyncio.run(sessions[0].get_items())
        assert len(items) == 60
        for k in range(3):  # each writer's items in its own order
            mine = [i["content"] for i in items if i["content"].startswith(f"{k}-")]
            assert mine == [f"{k}-{i}" for i in range(20)]
    finally:
        dep.close()


def test_cancelled_add_still_completes(tmp_path: Path) -> None:
    async def main() -> None:
        session = LashstoreSession("cancel", "memory://")
        task = asyncio.ensure_future(session.add_items([{"role": "user", "content": "kept"}]))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await session.get_items() == [{"role": "user", "content": "kept"}]
        session.close()

    asyncio.run(main())


def test_store_shows_items_as_a_chain(tmp_path: Path) -> None:
    """The items are graph nodes on one chain; the session picker reads the first user message."""
    url = _url("sqlite", tmp_path)
    session = LashstoreSession("picker", url, session_prefix="agents:")
    asyncio.run(session.add_items([{"role": "user", "content": "hello there"}, {"role": "assistant", "content": "hi"}]))
    session.close()
    with lashstore.open(url) as dep:
        store = dep.sessions.open_store("agents:picker")
        read = store.load_session()
        assert [n.payload["content"] for n in read.graph.nodes] == ["hello there", "hi"]
        assert read.graph.nodes[1].parent_node_id == read.graph.nodes[0].node_id
        assert read.graph.leaf_node_id == read.graph.nodes[1].node_id
        assert store.load_picker_info().first_user_message == "hello there"
        store.close()


@pytest.mark.parametrize("segment", [3, 64])
@pytest.mark.parametrize("backend", BACKENDS)
def test_random_operations_match_a_list(backend: str, segment: int, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Adds, pops, limited reads and clears at random, across many history segments, compared
    with a plain list; a second session object (as after a restart) must agree at every step."""
    import random

    from lashstore.integrations import openai_agents as mod

    monkeypatch.setattr(mod, "SEGMENT_ITEMS", segment)
    rng = random.Random(segment * 31 + len(backend))
    dep = lashstore.open(_url(backend, tmp_path))
    try:
        a = LashstoreSession("model", dep)
        model: list[dict] = []
        n = 0
        for step in range(400):
            op = rng.random()
            if op < 0.55:
                k = rng.choice((1, 1, 1, 2, 5, segment, 3 * segment + 1))
                batch = [{"role": "user", "content": f"m{n + i}", "n": n + i} for i in range(k)]
                n += k
                a._add_items(batch)
                model.extend(batch)
            elif op < 0.85:
                got = a._pop_item()
                assert got == (model.pop() if model else None)
            elif op < 0.99:
                limit = rng.choice((None, 1, 2, segment - 1, segment, segment + 1, 5 * segment, 10_000))
                expect = model if limit is None else model[-limit:]
                assert a._get_items(limit) == expect
            else:
                a._clear()
                model.clear()
            if step % 25 == 0:
                b = LashstoreSession("model", dep)  # nothing cached
                assert b._get_items(None) == model
                assert b._get_items(3) == model[-3:]
        assert LashstoreSession("model", dep)._get_items(None) == model
    finally:
        dep.close()
