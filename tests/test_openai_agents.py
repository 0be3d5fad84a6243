"""LashstoreSession: the OpenAI Agents SDK `Session` protocol on lashstore.

Driven through the SDK's own `Runner` with a fake model (a `Model` subclass returning canned
responses and recording what it was sent; no network, tracing disabled), then operation by
operation. Runs on the memory and SQLite backends; compaction (the SDK's
`OpenAIResponsesCompactionSession` with a fake `responses.compact` client) also on PostgreSQL.

Skipped only when the SDK is not installed and CI is unset; in CI a missing package fails.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import multiprocessing as mp
import os
import signal
import sys
import threading
import uuid
from pathlib import Path
from types import SimpleNamespace
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
from agents.memory import OpenAIResponsesCompactionSession, Session  # noqa: E402
from agents.models.interface import Model  # noqa: E402
from agents.usage import Usage  # noqa: E402
from openai.types.responses import ResponseOutputMessage, ResponseOutputText  # noqa: E402

import lashstore  # noqa: E402
from lashstore.errors import BackendError  # noqa: E402
from lashstore.integrations.openai_agents import LashstoreSession  # noqa: E402

from postgres_support import deployment_url, postgres_url  # noqa: E402,F401  (the fixture)

BACKENDS = ["memory", "sqlite"]
#: The compaction tests also run on PostgreSQL.
ALL_BACKENDS = [*BACKENDS, "postgres"]


def _url(backend: str, tmp: Path, pg: str | None = None) -> str:
    if backend == "postgres":
        assert pg is not None
        return deployment_url(pg, f"oa_{uuid.uuid4().hex[:12]}")  # a fresh schema per test
    return "memory://" if backend == "memory" else f"sqlite:///{tmp / 'store'}"


def _backend_url(backend: str, tmp: Path, request: pytest.FixtureRequest) -> str:
    return _url(backend, tmp, request.getfixturevalue("postgres_url") if backend == "postgres" else None)


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



# ------------------------------------------------------------------------------------------------
# Compaction: OpenAIResponsesCompactionSession over LashstoreSession, next to SQLiteSession
# ------------------------------------------------------------------------------------------------


class IdModel(FakeModel):
    """FakeModel with stable message ids and a response id per call (the SDK compacts only
    after a response that has one), so two runs can be compared item for item."""

    def __init__(self, replies: list[str]) -> None:
        super().__init__(replies)
        self.calls = 0

    async def get_response(self, *args: Any, **kwargs: Any) -> ModelResponse:
        response = await super().get_response(*args, **kwargs)
        self.calls += 1
        response.output[0].id = f"msg_{self.calls}"
        response.response_id = f"resp_{self.calls}"
        return response


class FakeCompactClient:
    """Stands in for AsyncOpenAI (no network): `responses.compact(**request)` records the request
    and answers with one compaction item naming what it was given."""

    def __init__(self) -> None:
        self.responses = self
        self.requests: list[dict] = []
        self.outputs: list[list[dict]] = []

    async def compact(self, **request: Any) -> Any:
        self.requests.append(request)
        n = len(request.get("input") or [])
        self.outputs.append([{"type": "compaction", "id": f"cmp_{len(self.requests)}",
                              "encrypted_content": f"summary {len(self.requests)} of {n} items"}])
        return SimpleNamespace(output=self.outputs[-1], usage=None)


def _turn(i: int) -> list[dict]:
    return [{"role": "user", "content": f"old question {i}"}, {"role": "assistant", "content": f"old answer {i}"}]


async def _compacting_run(underlying: Any, scenario: str) -> tuple[list[Any], list[dict], list[list[Any]]]:
    """Three Runner turns through OpenAIResponsesCompactionSession over `underlying`: the stored
    items afterwards, the compaction requests, and what the model was sent each turn."""
    if scenario != "whole":
        # Older history than the model sees (its session_settings limit): compaction must
        # replace just the newest part, which the SDK does through `_get_compaction_snapshot`.
        await underlying.add_items([item for i in range(40 if scenario == "segments" else 5) for item in _turn(i)])
    client = FakeCompactClient()
    session = OpenAIResponsesCompactionSession(
        "cmp", underlying, client=client, should_trigger_compaction=lambda ctx: len(ctx["session_items"]) >= 4
    )
    model = IdModel([f"answer {i}" for i in range(3)])
    agent = Agent(name="a", instructions="Answer briefly.", model=model)
    for i in range(3):
        await Runner.run(agent, f"question {i}", session=session)
    return await underlying.get_items(limit=100_000), client.requests, model.inputs


@pytest.mark.parametrize("scenario", ["whole", "window", "segments"])
@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_automatic_compaction_matches_sqlite_session(backend: str, scenario: str, tmp_path: Path,
                                                     request: pytest.FixtureRequest,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """The SDK's automatic compaction does over LashstoreSession what it does over its own
    SQLiteSession: same requests to `responses.compact`, same model inputs, same stored items.
    "window": the model sees only the newest items (a session limit), so only a suffix is
    replaced; "segments": the same across many history segments."""
    from lashstore.integrations import openai_agents as mod

    if scenario == "segments":
        monkeypatch.setattr(mod, "SEGMENT_ITEMS", 3)
    settings = None if scenario == "whole" else {"limit": 4}
    url = _backend_url(backend, tmp_path, request)
    caplog.set_level(logging.WARNING, logger="openai-agents.openai.compaction")

    async def main() -> None:
        theirs = SQLiteSession("cmp", str(tmp_path / "sdk.db"), session_settings=settings)
        ours = LashstoreSession("cmp", url, session_settings=settings)
        try:
            expected = await _compacting_run(theirs, scenario)
            got = await _compacting_run(ours, scenario)
            assert expected[1], "the SDK's session did not compact: the scenario tests nothing"
            assert got[1] == expected[1]  # the compaction requests
            assert got[2] == expected[2]  # what the model saw, turn by turn
            assert got[0] == expected[0]  # the stored history
            again = LashstoreSession("cmp", ours.deployment)  # nothing cached
            assert await again.get_items(limit=100_000) == expected[0]
            assert await again.get_items(limit=3) == expected[0][-3:]
        finally:
            ours.close()
            theirs.close()

    asyncio.run(main())
    assert "Skipped automatic compaction" not in caplog.text


@pytest.mark.parametrize("segment", [3, 64])
@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_compaction_snapshot_matches_sqlite_session(backend: str, segment: int, tmp_path: Path,
                                                    request: pytest.FixtureRequest,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """`_get_compaction_snapshot` (the hook automatic compaction uses) answers as SQLiteSession's:
    the newest items, whether they are all, a suffix replaced in one commit, a stale snapshot
    refused, and `prune_prefix` dropping the leading items it approves of."""
    from lashstore.integrations import openai_agents as mod

    monkeypatch.setattr(mod, "SEGMENT_ITEMS", segment)
    url = _backend_url(backend, tmp_path, request)

    async def main() -> None:
        theirs = SQLiteSession("snap", str(tmp_path / "sdk.db"))
        ours = LashstoreSession("snap", url)
        try:
            for s in (ours, theirs):
                await s.add_items([{"role": "user", "content": f"m{i}", "n": i} for i in range(150)])

            async def both(limit: int) -> tuple[Any, Any]:
                return await ours._get_compaction_snapshot(limit), await theirs._get_compaction_snapshot(limit)

            async def same_history() -> list[Any]:
                items = await theirs.get_items()
                assert await ours.get_items() == items
                assert await LashstoreSession("snap", ours.deployment).get_items() == items
                return items

            for limit in (1, 5, 149, 150, 151, 400):
                a, b = await both(limit)
                assert (a.items, a.complete) == (b.items, b.complete)

            # Replace the newest 7 of a 10-item snapshot.
            a, b = await both(10)
            out = [{"type": "compaction", "id": "c1", "encrypted_content": "x"}]
            assert await a.replace_suffix(3, out) is True and await b.replace_suffix(3, out) is True
            items = await same_history()
            assert len(items) == 144 and items[-1] == out[0]

            # A snapshot older than a write is refused, and nothing changes.
            a, b = await both(4)
            for s in (ours, theirs):
                await s.add_items([{"role": "user", "content": "later"}])
            assert await a.replace_suffix(0, out) is False and await b.replace_suffix(0, out) is False
            assert len(await same_history()) == 145

            # The whole history; then a replacement reaching into older segments.
            a, b = await both(1000)
            assert a.complete and b.complete
            assert await a.replace_suffix(100, out * 2) is True and await b.replace_suffix(100, out * 2) is True
            assert len(await same_history()) == 102

            # prune_prefix: the leading items it approves of go in the same commit.
            def old(item: Any) -> bool:
                return isinstance(item.get("n"), int) and item["n"] < 20

            a = await ours._get_compaction_snapshot(5, prune_prefix=old)
            b = await theirs._get_compaction_snapshot(5, prune_prefix=old)
            assert await a.replace_suffix(2, out) is True and await b.replace_suffix(2, out) is True
            items = await same_history()
            assert items[0]["n"] == 20 and len(items) == 80  # 102 - 3 replaced + 1 - 20 pruned

            # And the history goes on as usual afterwards.
            for s in (ours, theirs):
                await s.add_items([{"role": "user", "content": f"after {i}"} for i in range(70)])
                await s.pop_item()
            await same_history()
            assert await ours.get_items(limit=9) == await theirs.get_items(limit=9)
        finally:
            ours.close()
            theirs.close()

    asyncio.run(main())


class _Crash:
    """Where a test process 'dies': once armed, the first commit goes through and every later
    one fails (`kill`: the process SIGKILLs itself, `when` before or after that first commit)."""

    def __init__(self, kill: bool = False, when: str = "after") -> None:
        self.armed = False
        self.commits = 0
        self.kill = kill
        self.when = when

    def commit(self, do: Any) -> Any:
        if not self.armed:
            return do()
        if self.kill and self.when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        if self.commits >= 1:
            raise BackendError("injected failure: the process died after its first commit")
        self.commits += 1
        result = do()
        if self.kill:
            os.kill(os.getpid(), signal.SIGKILL)
        return result


class _DyingStore:
    def __init__(self, store: Any, crash: _Crash) -> None:
        self._store, self._crash = store, crash

    def commit_runtime_state(self, commit: Any) -> Any:
        return self._crash.commit(lambda: self._store.commit_runtime_state(commit))

    def tombstone_nodes(self, ids: list[str]) -> int:
        return self._crash.commit(lambda: self._store.tombstone_nodes(ids))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


class _DyingFactory:
    """A SessionStoreFactory whose stores commit through `_Crash`."""

    def __init__(self, factory: Any, crash: _Crash) -> None:
        self._factory, self._crash = factory, crash

    def open_store(self, sid: str) -> Any:
        return _DyingStore(self._factory.open_store(sid), self._crash)

    def create_store(self, sid: str, **kw: Any) -> Any:
        return _DyingStore(self._factory.create_store(sid, **kw), self._crash)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._factory, name)


_OLD = [item for i in range(50) for item in _turn(i)]  # 100 items: history segments too
_NEW = [{"type": "compaction", "id": "cmp_1", "encrypted_content": "summary 1 of 100 items"}]


@pytest.mark.parametrize("mode", ["manual", "automatic"])
@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_compaction_replacement_is_one_commit(backend: str, mode: str, tmp_path: Path,
                                              request: pytest.FixtureRequest) -> None:
    """Compaction through the SDK replaces the history in one commit: with every commit after
    the first failing (the process 'died'), the history is the new one, never empty (the SDK's
    fallback for other sessions is clear_session + add_items, two commits)."""
    url = _backend_url(backend, tmp_path, request)

    async def main() -> None:
        with lashstore.open(url) as dep:
            crash = _Crash()
            session = LashstoreSession("cmp", _DyingFactory(dep.sessions, crash))
            await session.add_items(_OLD)
            client = FakeCompactClient()
            if mode == "manual":
                wrapper = OpenAIResponsesCompactionSession("cmp", session, client=client)
                crash.armed = True
                try:
                    await wrapper.run_compaction({"force": True})
                except BackendError:
                    pass  # the injected failure; what counts is what is stored
            else:
                def decide(ctx: dict) -> bool:  # called after the run's items are appended
                    crash.armed = True
                    return True

                wrapper = OpenAIResponsesCompactionSession("cmp", session, client=client,
                                                           should_trigger_compaction=decide)
                model = IdModel(["the answer"])
                try:
                    await Runner.run(Agent(name="a", model=model), "one more question", session=wrapper)
                except BackendError:
                    pass
            assert len(client.outputs) == 1, "compaction never ran"
            history = await LashstoreSession("cmp", dep).get_items()
            assert history, "compaction left an empty history"
            assert history == client.outputs[0]
            session.close()

    asyncio.run(main())


def _compact_and_die(url: str, when: str) -> None:
    """Child process: manual compaction over LashstoreSession, SIGKILLed just before or just
    after the first commit of the replacement."""
    agents.set_tracing_disabled(True)
    dep = lashstore.open(url)
    crash = _Crash(kill=True, when=when)
    session = LashstoreSession("cmp", _DyingFactory(dep.sessions, crash))
    wrapper = OpenAIResponsesCompactionSession("cmp", session, client=FakeCompactClient())

    async def main() -> None:
        await session.get_items()
        crash.armed = True
        await wrapper.run_compaction({"force": True})

    asyncio.run(main())
    sys.exit(3)  # not reached: the replacement commits


@pytest.mark.skipif(sys.platform == "win32", reason="uses SIGKILL")
@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_compaction_killed_around_its_commit_leaves_old_or_new(backend: str, when: str, tmp_path: Path,
                                                               request: pytest.FixtureRequest) -> None:
    """A process SIGKILLed right before or right after the first commit of a compaction leaves
    the old history or the new one for the next process (never an empty one)."""
    url = _backend_url(backend, tmp_path, request)
    seed = LashstoreSession("cmp", url)
    asyncio.run(seed.add_items(_OLD))
    seed.close()
    child = mp.get_context("spawn").Process(target=_compact_and_die, args=(url, when))
    child.start()
    child.join(120)
    assert child.exitcode == -signal.SIGKILL, f"the child ended with {child.exitcode}"
    after = LashstoreSession("cmp", url)
    try:
        history = asyncio.run(after.get_items())
        assert history, "the killed compaction left an empty history"
        assert history == (_OLD if when == "before" else _NEW)
    finally:
        after.close()


@pytest.mark.parametrize("segment", [3, 64])
@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_random_replacements_match_a_list(backend: str, segment: int, tmp_path: Path,
                                          request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Suffix replacements from snapshots (with and without prune_prefix), whole replacements,
    adds, pops and clears at random across history segments, compared with a plain list; a
    stale snapshot is refused; a second session object must agree at every check."""
    import random

    from lashstore.integrations import openai_agents as mod

    monkeypatch.setattr(mod, "SEGMENT_ITEMS", segment)
    rng = random.Random(segment * 7 + len(backend))
    dep = lashstore.open(_backend_url(backend, tmp_path, request))
    counter = iter(range(10**9))

    def batch(k: int) -> list[dict]:
        return [{"role": rng.choice(("user", "assistant")), "content": "x", "n": next(counter)} for _ in range(k)]

    try:
        a = LashstoreSession("model", dep)
        model: list[dict] = []
        for step in range(300):
            op = rng.random()
            if op < 0.4:
                items = batch(rng.choice((1, 2, 5, segment, 2 * segment + 1)))
                a._add_items(items)
                model.extend(items)
            elif op < 0.55:
                assert a._pop_item() == (model.pop() if model else None)
            elif op < 0.75:
                limit = rng.choice((1, 2, segment, 3 * segment, 1000))
                rev, items, complete = a._snapshot(limit)
                assert items == model[-limit:] and complete == (len(model) <= limit)
                if not items:
                    continue
                start = rng.randrange(len(items))
                out = batch(rng.choice((0, 1, 2, segment + 1)))
                keep = model[: len(model) - (len(items) - start)]
                prune = None
                if keep and rng.random() < 0.3:
                    cutoff = keep[rng.randrange(len(keep))]["n"]

                    def prune(item: dict, cutoff: int = cutoff) -> bool:
                        return item["n"] < cutoff

                    while keep and prune(keep[0]):
                        keep.pop(0)
                if rng.random() < 0.1:  # someone else writes first: the snapshot is stale
                    extra = batch(1)
                    LashstoreSession("model", dep)._add_items(extra)
                    model.extend(extra)
                    assert a._replace_suffix(rev, items[start:], out, prune) is False
                    continue
                assert a._replace_suffix(rev, items[start:], out, prune) is True
                model = keep + out
            elif op < 0.8:
                model = batch(rng.choice((0, 1, segment, 3 * segment)))
                a._replace_items(model)
            elif op < 0.98:
                limit = rng.choice((None, 1, 2, segment - 1, segment, segment + 1, 5 * segment, 10_000))
                assert a._get_items(limit) == (model if limit is None else model[-limit:])
            else:
                a._clear()
                model = []
            if step % 20 == 0:
                b = LashstoreSession("model", dep)  # nothing cached
                assert b._get_items(None) == model
                assert b._get_items(3) == model[-3:]
        assert LashstoreSession("model", dep)._get_items(None) == model
        a.close()
    finally:
        dep.close()
