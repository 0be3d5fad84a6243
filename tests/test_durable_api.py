"""The Python-facing API: @durable, durable_call, and the module docstring, run as written."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import textwrap

import pytest

import lashstore
from lashstore.backends.memory.effects import MemoryEffectStore
from lashstore.backends.sqlite.effects import SqliteEffectStore
from lashstore.durable_calls import DurableCall, durable, durable_call
from lashstore.errors import EffectError, ReplayConflict, ValidationError
from lashstore.model.effects import EffectScope, EffectStatus
from lashstore.rules.effects import EffectPolicy

SCOPE = ("turn", "session-1/turn-3")
durable_module = importlib.import_module("lashstore.durable_calls")


@pytest.fixture(params=["memory", "sqlite"])
def store(request, tmp_path):
    s = MemoryEffectStore() if request.param == "memory" else SqliteEffectStore(tmp_path / "effects.db")
    yield s
    s.close()


# -- the docstring -----------------------------------------------------------------------------------


def _docstring_example() -> str:
    doc = inspect.getdoc(durable_module) or ""
    start = doc.index("import asyncio")
    end = doc.index("store.close()") + len("store.close()")
    # getdoc strips the common indentation; the example is the indented block.
    lines = doc[doc.rindex("\n", 0, start) + 1 : end]
    return textwrap.dedent(lines)


def test_module_docstring_runs_as_written_and_replays(tmp_path, monkeypatch):
    # Until the lead exports them from lashstore/__init__.py, provide the public names here.
    for name, obj in (("SqliteEffectStore", SqliteEffectStore), ("durable", durable), ("durable_call", durable_call)):
        if getattr(lashstore, name, None) is not obj:
            monkeypatch.setattr(lashstore, name, obj, raising=False)
    monkeypatch.chdir(tmp_path)
    code = _docstring_example()
    exec(compile(code, "lashstore.durable_calls docstring", "exec"), {"__name__": "docstring_example"})
    assert (tmp_path / "effects.db").exists()
    # A second run (a "restarted program") replays every call from effects.db.
    exec(compile(code, "lashstore.durable_calls docstring", "exec"), {"__name__": "docstring_example"})
    with SqliteEffectStore(tmp_path / "effects.db") as s:
        recs = s.list_effects(SCOPE)
        assert [r.replay_key for r in recs] == ["weather:Paris", "llm:hello", "ticket:42", "pause-1"]
        assert all(r.status is EffectStatus.COMPLETED and r.attempts == 1 for r in recs)


# -- @durable ------------------------------------------------------------------------------------------


def test_durable_function_runs_once_per_key(store):
    calls = []

    @durable(store, scope=SCOPE, key=lambda city: f"weather:{city}")
    def fetch_weather(city: str) -> dict:
        calls.append(city)
        return {"city": city, "temp": 20 + len(calls)}

    assert fetch_weather("Paris") == {"city": "Paris", "temp": 21}
    assert fetch_weather("Paris") == {"city": "Paris", "temp": 21}
    assert fetch_weather(city="Oslo") == {"city": "Oslo", "temp": 22}
    assert calls == ["Paris", "Oslo"]
    assert fetch_weather.__name__ == "fetch_weather" and fetch_weather.__wrapped__ is not None


def test_durable_default_key_hashes_the_arguments(store):
    calls = []

    @durable(store, scope=SCOPE)
    def add(a: int, b: int = 2) -> int:
        calls.append((a, b))
        return a + b

    assert add(1) == 3 and add(1, 2) == 3 and add(a=1, b=2) == 3  # one call: defaults are bound
    assert add(2) == 4
    assert calls == [(1, 2), (2, 2)]
    keys = [r.replay_key for r in store.list_effects()]
    assert all(k.startswith(add.__qualname__ + ":") for k in keys) and len(set(keys)) == 2


def test_same_key_with_other_arguments_is_a_conflict(store):
    @durable(store, scope=SCOPE, key="the-one-key")
    def echo(x: str) -> str:
        return x

    assert echo("a") == "a"
    with pytest.raises(ReplayConflict):
        echo("b")


def test_arguments_that_are_not_json_are_refused(store):
    calls = []

    class Client:
        pass

    @durable(store, scope=SCOPE, key=lambda client, q: f"q:{q}")
    def ask(client: Client, q: str) -> str:
        calls.append(q)
        return q.upper()

    with pytest.raises(ValidationError) as e:
        ask(Client(), "hi")
    assert "client" in str(e.value) and "envelope=" in str(e.value)
    assert calls == [] and store.list_effects() == []

    @durable(store, scope=SCOPE, key=lambda client, q: f"q:{q}", envelope=lambda client, q: {"q": q})
    def ask2(client: Client, q: str) -> str:
        calls.append(q)
        return q.upper()

    assert ask2(Client(), "hi") == "HI" and ask2(Client(), "hi") == "HI" and calls == ["hi"]


def test_results_that_are_not_json_are_refused_and_not_recorded(store):
    results = [object(), "fine"]

    @durable(store, scope=SCOPE, key="k")
    def produce() -> object:
        return results.pop(0)

    with pytest.raises(ValidationError):
        produce()
    assert produce() == "fine"
    assert produce() == "fine"


def test_tuples_come_back_as_lists_on_the_first_call_too(store):
    @durable(store, scope=SCOPE, key="pair")
    def pair() -> tuple:
        return (1, "two")

    assert pair() == [1, "two"] and pair() == [1, "two"]


def test_scope_and_key_can_depend_on_the_arguments(store):
    @durable(store, scope=lambda session, n: EffectScope.turn(session, "t1"), key=lambda session, n: f"n:{n}")
    def square(session: str, n: int) -> int:
        return n * n

    assert square("a", 3) == 9 and square("b", 3) == 9
    assert {r.scope.session_id for r in store.list_effects()} == {"a", "b"}


def test_recorded_and_retried_errors(store):
    attempts = []

    @durable(store, scope=SCOPE, key=lambda n: f"charge:{n}")
    def charge(n: int) -> str:
        attempts.append(n)
        if n == 1:
            raise EffectError("card_declined", "declined")
        if len(attempts) == 2:
            raise TimeoutError("gateway timeout")
        return "charged"

    for _ in range(2):
        with pytest.raises(EffectError) as e:
            charge(1)
        assert e.value.code == "card_declined"
    with pytest.raises(TimeoutError):
        charge(2)
    assert charge(2) == "charged" and charge(2) == "charged"
    assert attempts == [1, 2, 2]


def test_policy_passes_through(store):
    @durable(store, scope=SCOPE, key="strict", policy=EffectPolicy(strict=True))
    def never_recorded() -> int:
        raise AssertionError("strict replay must not run the function")

    with pytest.raises(EffectError) as e:
        never_recorded()
    assert e.value.code == "replay_missing"


def test_async_durable_function(store):
    calls = []

    async def main():
        @durable(store, scope=SCOPE, key=lambda prompt: f"llm:{prompt}")
        async def call_llm(prompt: str) -> str:
            calls.append(prompt)
            await asyncio.sleep(0)
            return f"echo: {prompt}"

        assert inspect.iscoroutinefunction(call_llm)
        first = await call_llm("hi")
        second = await call_llm("hi")
        both = await asyncio.gather(call_llm("x"), call_llm("y"))
        return first, second, both

    assert asyncio.run(main()) == ("echo: hi", "echo: hi", ["echo: x", "echo: y"])
    # gather promises no order between its calls: each ran once, "hi" once before them.
    assert calls[0] == "hi" and sorted(calls[1:]) == ["x", "y"]


def test_durable_needs_an_effect_store():
    with pytest.raises(ValidationError):
        durable(object(), scope=SCOPE)
    with pytest.raises(ValidationError):
        durable_call(object(), SCOPE, "k", {})


def test_replay_after_restart(tmp_path):
    path = tmp_path / "effects.db"
    calls = []

    def program():
        store = SqliteEffectStore(path)

        @durable(store, scope=SCOPE, key=lambda city: f"weather:{city}")
        def fetch(city: str) -> dict:
            calls.append(city)
            return {"city": city}

        try:
            return fetch("Rome")
        finally:
            store.close()

    assert program() == program() == {"city": "Rome"}
    assert calls == ["Rome"]


# -- durable_call ----------------------------------------------------------------------------------------


def test_durable_call_records_then_replays(store):
    ran = []
    for _ in range(2):
        with durable_call(store, SCOPE, "ticket:1", {"title": "x"}) as call:
            if not call.replayed:
                ran.append(1)
                call.result = {"ticket": 1}
        assert call.result == {"ticket": 1}
    assert ran == [1]


def test_durable_call_body_must_set_a_result(store):
    with pytest.raises(ValidationError):
        with durable_call(store, SCOPE, "k", {}) as call:
            assert not call.replayed
    rec = store.get_effect(SCOPE, "k")
    assert rec.status is EffectStatus.IN_PROGRESS and rec.lease_owner_id is None  # released
    with durable_call(store, SCOPE, "k", {}) as call:
        call.result = 5
    assert call.result == 5


def test_durable_call_exceptions_follow_the_policy(store):
    with pytest.raises(KeyError):
        with durable_call(store, SCOPE, "transient", {}) as call:
            raise KeyError("retry me")
    assert store.get_effect(SCOPE, "transient").status is EffectStatus.IN_PROGRESS
    with pytest.raises(EffectError):
        with durable_call(store, SCOPE, "permanent", {}) as call:
            raise EffectError("gone", "for good")
    with pytest.raises(EffectError) as e:
        with durable_call(store, SCOPE, "permanent", {}) as call:
            pass  # the recorded failure is raised on entry
    assert e.value.code == "gone"
    with pytest.raises(EffectError) as e:
        with durable_call(store, SCOPE, "recorded-any", {}, policy=EffectPolicy(record_errors=lambda e: True)) as call:
            raise ValueError("v")
    assert e.value.code == "ValueError" and isinstance(e.value.__cause__, ValueError)


def test_durable_call_misuse(store):
    call = durable_call(store, SCOPE, "k", {})
    assert isinstance(call, DurableCall)
    with pytest.raises(ValidationError):
        call.result  # noqa: B018 - not entered yet
    with call:
        call.result = 1
    with pytest.raises(ValidationError):
        call.result = 2
    with durable_call(store, SCOPE, "k", {}) as again:
        assert again.replayed
        with pytest.raises(ValidationError):
            again.result = 3


def test_async_durable_call(store):
    async def main():
        out = []
        for _ in range(2):
            async with durable_call(store, SCOPE, "async-ticket", {"t": 1}) as call:
                if not call.replayed:
                    await asyncio.sleep(0)
                    call.result = ["made"]
            out.append((call.replayed, call.result))
        return out

    assert asyncio.run(main()) == [(False, ["made"]), (True, ["made"])]


# -- edges ---------------------------------------------------------------------------------------------


def test_methods_leave_self_out_of_the_envelope(store):
    calls = []

    class Weather:
        def __init__(self, client):
            self.client = client

        @durable(store, scope=SCOPE, key=lambda self, city: f"weather:{city}")
        def fetch(self, city: str) -> str:
            calls.append(city)
            return f"sunny in {city}"

    assert Weather(object()).fetch("Lima") == "sunny in Lima"
    assert Weather(object()).fetch("Lima") == "sunny in Lima"
    assert calls == ["Lima"]


def test_a_failing_policy_predicate_releases_the_claim(store):
    def broken(exc):
        raise RuntimeError("policy bug")

    def boom():
        raise ValueError("x")

    with pytest.raises(RuntimeError):
        store.execute(SCOPE, "k", {}, boom, policy=EffectPolicy(record_errors=broken))
    assert store.get_effect(SCOPE, "k").lease_owner_id is None
    assert store.execute(SCOPE, "k", {}, lambda: "ok") == "ok"


def test_a_dropped_claim_stops_being_renewed(store):
    import gc

    att = store.begin(SCOPE, "k", {})
    token = att._token
    assert token in store._heartbeat._leases
    del att
    gc.collect()
    assert token not in store._heartbeat._leases


def test_cancelled_while_claiming_gives_the_claim_back():
    import threading

    class SlowClaims(MemoryEffectStore):
        entered = threading.Event()

        def _tx_prepare(self, *args, **kwargs):
            self.entered.set()
            import time

            time.sleep(0.2)
            return super()._tx_prepare(*args, **kwargs)

    store = SlowClaims()

    async def main():
        task = asyncio.ensure_future(store.aexecute(SCOPE, "k", {}, lambda: "never"))
        await asyncio.get_running_loop().run_in_executor(None, store.entered.wait, 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    import time

    deadline = time.monotonic() + 5
    while True:
        rec = store.get_effect(SCOPE, "k")
        if rec is not None and rec.lease_owner_id is None:
            break
        assert time.monotonic() < deadline, rec
        time.sleep(0.01)
    assert store.execute(SCOPE, "k", {}, lambda: "after") == "after"
    store.close()


def test_durable_calls_keeps_its_public_names():
    from lashstore.engine import effects as engine

    for name in durable_module.__all__:
        assert getattr(durable_module, name) is not None, name
    # The engine lives in lashstore.engine.effects; durable_calls names the same objects.
    for name in ("EffectEngine", "EffectAttempt", "ScopedEffectController"):
        assert getattr(durable_module, name) is getattr(engine, name)
    assert issubclass(SqliteEffectStore, engine.EffectEngine) and issubclass(MemoryEffectStore, SqliteEffectStore)
