"""Effect-replay conformance: checklist section A (A1-A4), spec §8.2 C-8..C-13, and lashstore's
answers to W-22 (namespaced scopes, lease heartbeat, error policy, strict replay that never runs
an executor, per-controller strict mode, release on an unencodable outcome).

Each scenario is a plain function taking an `EffectHarness`:

    harness = EffectHarness(
        name="mybackend",
        expected_tier=DurabilityTier.DURABLE,
        open_store=lambda options, **kw: MyEffectStore(url, options, **kw),
        reopen_store=lambda store: MyEffectStore(url, store.options, store.lease_ttl_ms),
    )
    for scenario in EFFECT_SCENARIOS + EFFECT_REOPEN_SCENARIOS:
        scenario(harness)
    harness.close()

`open_store` takes the keyword arguments `lease_ttl_ms`, `heartbeat`, `strict` and `policy`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..clock import ManualClock
from ..errors import EffectError, ReplayConflict, ValidationError, WaitTimeout
from ..model.effects import EffectScope, EffectStatus
from ..model.session import DurabilityTier
from ..options import StoreOptions
from ..rules.effects import EffectPolicy

__all__ = [
    "EffectHarness",
    "memory_effect_harness",
    "sqlite_effect_harness",
    "EFFECT_SCENARIOS",
    "EFFECT_REOPEN_SCENARIOS",
]

BOUND_S = 10.0  # generous bound for every join/wait; the checklist's 2 s is asserted separately


@dataclasses.dataclass
class EffectHarness:
    """open_store(options, **kw): a fresh, empty effect store. reopen_store(store): a second
    handle on the same storage (same options and TTL), or None for a non-durable backend."""

    name: str
    expected_tier: DurabilityTier
    open_store: Callable[..., Any]
    reopen_store: Callable[[Any], Any] | None = None
    _opened: list[Any] = dataclasses.field(default_factory=list, repr=False)

    @property
    def durable(self) -> bool:
        return self.reopen_store is not None

    def make(self, options: StoreOptions | None = None, **kw: Any) -> Any:
        store = self.open_store(options, **kw)
        self._opened.append(store)
        return store

    def reopen(self, store: Any) -> Any:
        if self.reopen_store is None:
            return None
        other = self.reopen_store(store)
        self._opened.append(other)
        return other

    def close(self) -> None:
        opened, self._opened = self._opened, []
        for obj in reversed(opened):
            obj.close()


def memory_effect_harness() -> EffectHarness:
    from ..backends.memory.effects import MemoryEffectStore

    return EffectHarness(
        name="memory",
        expected_tier=DurabilityTier.INLINE,
        open_store=lambda options, **kw: MemoryEffectStore(options, **kw),
    )


def sqlite_effect_harness(directory: str | Path) -> EffectHarness:
    from ..backends.sqlite.effects import SqliteEffectStore

    root = Path(directory)
    counter = itertools.count(1)
    return EffectHarness(
        name="sqlite",
        expected_tier=DurabilityTier.DURABLE,
        open_store=lambda options, **kw: SqliteEffectStore(root / f"effects-{next(counter)}.db", options, **kw),
        reopen_store=lambda store: SqliteEffectStore(
            store.path, store.options, store.lease_ttl_ms, heartbeat=store.heartbeat_enabled
        ),
    )


# -- helpers ---------------------------------------------------------------------------------------

TURN = EffectScope.turn("effect-conformance-session", "effect-conformance-turn")


def exec_envelope(effect_id: str) -> dict[str, Any]:
    """The checklist's exec_code envelope, as plain JSON."""
    return {
        "invocation": {"effect_id": effect_id, "kind": "exec_code", "replay_key": f"effect-conformance:{effect_id}"},
        "command": {"type": "exec_code", "code": f"emit {effect_id}"},
    }


def exec_outcome(marker: str) -> dict[str, Any]:
    return {
        "type": "exec_code",
        "result": {"ok": {"observations": [], "tool_calls": [], "images": [], "error": None,
                          "duration_ms": 0, "terminal_finish": marker}},
    }


def finish_of(outcome: Any) -> str:
    return outcome["result"]["ok"]["terminal_finish"]


def never(log: list[str] | None = None, name: str = "executor") -> Callable[[], Any]:
    def run() -> Any:
        if log is not None:
            log.append(name)
        raise AssertionError(f"{name} must not be called on replay")

    return run


def expect(exc_type: type[BaseException], fn: Callable[[], Any], code: str | None = None) -> BaseException:
    try:
        fn()
    except exc_type as e:
        if code is not None:
            assert getattr(e, "code", None) == code, f"expected code {code!r}, got {e!r}"
        return e
    raise AssertionError(f"expected {exc_type.__name__}")


class _Thread(threading.Thread):
    """A thread that keeps its target's result or exception."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self._fn = fn
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self._fn()
        except BaseException as e:  # noqa: BLE001
            self.error = e

    def outcome(self, timeout: float = BOUND_S) -> Any:
        self.join(timeout)
        assert not self.is_alive(), "worker thread did not finish in time"
        if self.error is not None:
            raise self.error
        return self.result


def _wait_for(pred: Callable[[], bool], what: str, timeout: float = BOUND_S) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.002)


# -- checklist section A / spec E-1..E-3 (C-8) -----------------------------------------------------


def a1_effect_host_preserves_scope_metadata(h: EffectHarness) -> None:
    host = h.make()
    s1 = EffectScope.queue_drain("session-1", "drain-1")
    c1 = host.scoped(s1)
    s2 = EffectScope.turn("session-1", "turn-1")
    c2 = host.scoped(s2)
    assert c1.effect_scope() == s1 and c1.scope_id() == "drain-1" and c1.turn_id() is None
    assert c2.effect_scope() == s2 and c2.scope_id() == "turn-1" and c2.turn_id() == "turn-1"
    # A plain (kind, id) tuple is a scope too.
    c3 = host.scoped(("turn", "session-1/turn-3"))
    assert c3.effect_scope() == EffectScope("turn", "session-1/turn-3") and c3.turn_id() == "session-1/turn-3"


def a2_effect_host_rejects_missing_scope_ids(h: EffectHarness) -> None:
    host = h.make()
    makers: list[Callable[[], Any]] = [
        lambda: EffectScope.turn("", "turn"),
        lambda: EffectScope.turn("session", ""),
        lambda: EffectScope.process(""),
        lambda: EffectScope.queue_drain("session", ""),
        lambda: EffectScope.session_delete(""),
        lambda: EffectScope.runtime_operation(""),
        lambda: ("turn", " "),
        lambda: ("", "x"),
        lambda: "turn:x",
    ]
    for make in makers:
        def scoped() -> Any:
            return host.scoped(make())

        e = expect(ValidationError, scoped)
        assert "missing_effect_scope_id" in str(e), str(e)
        e = expect(ValidationError, lambda: host.execute(make(), "k", {}, lambda: 1))
        assert "missing_effect_scope_id" in str(e), str(e)
    assert host.list_effects() == []


def a3_effect_host_static_scope_preserves_metadata(h: EffectHarness) -> None:
    host = h.make()
    s = EffectScope.runtime_operation("static-runtime-op")
    r = host.scoped_static(s)
    if r is None:
        return
    assert r.effect_scope() == s and r.scope_id() == "static-runtime-op"


def a4_concurrent_effects_run_together_and_replay_by_key(h: EffectHarness) -> None:
    """C-9 / A4: executors of two effects run at the same time; replay answers by key."""
    host = h.make()
    ctl = host.scoped(TURN)
    barrier = threading.Barrier(2, timeout=2.0)
    fast_done = threading.Event()
    order: list[str] = []

    def rec(x: str) -> Callable[[], Any]:
        def run() -> Any:
            barrier.wait()  # a controller that serialises effects never gets both here
            if x == "effect-fast":
                order.append(x)
                fast_done.set()
            else:
                assert fast_done.wait(2.0)
                order.append(x)
            return exec_outcome(x)

        return run

    started = time.monotonic()
    slow = _Thread(lambda: ctl.execute("effect-conformance:effect-slow", exec_envelope("effect-slow"), rec("effect-slow")))
    fast = _Thread(lambda: ctl.execute("effect-conformance:effect-fast", exec_envelope("effect-fast"), rec("effect-fast")))
    slow.start()
    fast.start()
    slow_out, fast_out = slow.outcome(), fast.outcome()
    assert time.monotonic() - started < 2.0 + 1.0
    assert finish_of(slow_out) == "effect-slow" and finish_of(fast_out) == "effect-fast"
    assert order == ["effect-fast", "effect-slow"]

    ctl.start_replay()
    calls: list[str] = []
    rfast = _Thread(lambda: ctl.execute("effect-conformance:effect-fast", exec_envelope("effect-fast"), never(calls)))
    rslow = _Thread(lambda: ctl.execute("effect-conformance:effect-slow", exec_envelope("effect-slow"), never(calls)))
    rfast.start()
    rslow.start()
    assert finish_of(rfast.outcome(2.0)) == "effect-fast"
    assert finish_of(rslow.outcome(2.0)) == "effect-slow"
    assert calls == []


# -- spec §8.2 C-10..C-13 ----------------------------------------------------------------------------


def c10_effect_replays_without_local_executor(h: EffectHarness) -> None:
    host = h.make()
    ctl = host.scoped(TURN)
    env = exec_envelope("exec-replay")
    assert ctl.execute("exec-replay", env, lambda: "recorded") == "recorded"
    ctl.start_replay()
    assert ctl.execute("exec-replay", env, never()) == "recorded"
    rec = host.get_effect(TURN, "exec-replay")
    assert rec.status is EffectStatus.COMPLETED and rec.outcome == "recorded" and rec.attempts == 1


def c11_effect_rejects_envelope_hash_conflict(h: EffectHarness) -> None:
    host = h.make()
    first = {"command": {"type": "exec_code", "code": "first"}}
    changed = {"command": {"type": "exec_code", "code": "changed"}}
    assert host.execute(TURN, "same-key", first, lambda: 1) == 1
    e = expect(ReplayConflict, lambda: host.execute(TURN, "same-key", changed, never()))
    assert "same-key" in str(e)
    # Key order inside the envelope is not a change (the hash is of canonical JSON).
    assert host.execute(TURN, "same-key", {"command": {"code": "first", "type": "exec_code"}}, never()) == 1


def c12_effect_reclaims_stale_in_progress_lease(h: EffectHarness) -> None:
    clock = ManualClock()
    host = h.make(StoreOptions(clock=clock), lease_ttl_ms=20, heartbeat=False)
    ctl = host.scoped(TURN)
    env = exec_envelope("stale")
    entered, release = threading.Event(), threading.Event()

    def blocked() -> Any:
        entered.set()
        assert release.wait(BOUND_S)
        return "first-owner"

    first = _Thread(lambda: ctl.execute("stale", env, blocked))
    first.start()
    assert entered.wait(BOUND_S)
    clock.advance(40)
    assert ctl.execute("stale", env, lambda: "reclaimed-owner") == "reclaimed-owner"
    release.set()
    first.join(BOUND_S)
    assert isinstance(first.error, EffectError) and first.error.code == "lease_lost", first.error
    ctl.start_replay()
    assert ctl.execute("stale", env, never()) == "reclaimed-owner"
    assert host.get_effect(TURN, "stale").attempts == 2


def c13_sleep_replay_returns_after_recorded_due_time(h: EffectHarness) -> None:
    host = h.make()
    ctl = host.scoped(TURN)
    t = time.monotonic()
    ctl.sleep("nap", 120)
    assert time.monotonic() - t >= 0.100
    ctl.start_replay()
    t = time.monotonic()
    ctl.sleep("nap", 120)
    assert time.monotonic() - t < 0.050
    rec = host.get_effect(TURN, "nap")
    assert rec.status is EffectStatus.COMPLETED and rec.due_at_ms is not None
    # Another duration under the same key is another request.
    expect(ReplayConflict, lambda: host.sleep(TURN, "nap", 121))


# -- W-22 and lashstore's decisions ------------------------------------------------------------------


def e01_strict_replay_without_history_fails_and_writes_nothing(h: EffectHarness) -> None:
    strict_store = h.make(strict=True)
    calls: list[str] = []
    expect(EffectError, lambda: strict_store.execute(TURN, "k", {}, never(calls)), code="replay_missing")
    expect(EffectError, lambda: strict_store.sleep(TURN, "nap", 10), code="replay_missing")
    assert strict_store.list_effects() == []
    host = h.make()
    expect(EffectError, lambda: host.execute(TURN, "k", {}, never(calls), strict=True), code="replay_missing")
    expect(EffectError, lambda: host.execute(TURN, "k", {}, never(calls), policy=EffectPolicy(strict=True)),
           code="replay_missing")
    ctl = host.scoped(TURN, strict=True)
    expect(EffectError, lambda: ctl.execute("k", {}, never(calls)), code="replay_missing")
    assert calls == [] and host.list_effects() == []


def e02_strict_replay_never_runs_an_expired_in_progress_effect(h: EffectHarness) -> None:
    """W-22d: strict mode reports the missing outcome instead of taking the row over."""
    clock = ManualClock()
    host = h.make(StoreOptions(clock=clock), lease_ttl_ms=20, heartbeat=False)
    entered, release = threading.Event(), threading.Event()

    def blocked() -> Any:
        entered.set()
        assert release.wait(BOUND_S)
        return "late but fine"

    first = _Thread(lambda: host.execute(TURN, "k", {"q": 1}, blocked))
    first.start()
    assert entered.wait(BOUND_S)
    clock.advance(100)
    e = expect(EffectError, lambda: host.execute(TURN, "k", {"q": 1}, never(), strict=True), code="replay_missing")
    assert "never finished" in str(e)
    rec = host.get_effect(TURN, "k")
    assert rec.status is EffectStatus.IN_PROGRESS and rec.attempts == 1
    release.set()
    # Nobody took the row over, so the slow owner still records its outcome.
    assert first.outcome() == "late but fine"
    assert host.execute(TURN, "k", {"q": 1}, never(), strict=True) == "late but fine"


def e03_effect_errors_are_recorded_and_other_errors_retried(h: EffectHarness) -> None:
    """W-22c, the default policy: EffectError is permanent, anything else is transient."""
    host = h.make()

    def declined() -> Any:
        raise EffectError("card_declined", "the card was declined")

    e = expect(EffectError, lambda: host.execute(TURN, "pay", {"amount": 5}, declined), code="card_declined")
    assert e.message == "the card was declined"
    e = expect(EffectError, lambda: host.execute(TURN, "pay", {"amount": 5}, never()), code="card_declined")
    assert e.message == "the card was declined"
    rec = host.get_effect(TURN, "pay")
    assert rec.status is EffectStatus.FAILED and rec.error.code == "card_declined"

    calls = []

    def flaky() -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("network down")
        return "ok"

    expect(ConnectionError, lambda: host.execute(TURN, "fetch", {"u": "x"}, flaky))
    rec = host.get_effect(TURN, "fetch")
    assert rec.status is EffectStatus.IN_PROGRESS and rec.lease_owner_id is None  # released
    # Strict replay does not run a released effect either.
    expect(EffectError, lambda: host.execute(TURN, "fetch", {"u": "x"}, never(), strict=True), code="replay_missing")
    assert host.execute(TURN, "fetch", {"u": "x"}, flaky) == "ok"
    assert host.execute(TURN, "fetch", {"u": "x"}, never()) == "ok"
    assert len(calls) == 2 and host.get_effect(TURN, "fetch").attempts == 2


def e04_policy_can_record_any_error(h: EffectHarness) -> None:
    host = h.make()
    everything = EffectPolicy(record_errors=lambda e: True)

    def boom() -> Any:
        raise ValueError("bad answer")

    e = expect(EffectError, lambda: host.execute(TURN, "k", {}, boom, policy=everything), code="ValueError")
    assert isinstance(e.__cause__, ValueError) and e.message == "bad answer"
    expect(EffectError, lambda: host.execute(TURN, "k", {}, never()), code="ValueError")
    # A policy recording nothing retries even EffectError.
    nothing = EffectPolicy(record_errors=())

    def permanent() -> Any:
        raise EffectError("nope", "no")

    expect(EffectError, lambda: host.execute(TURN, "k2", {}, permanent, policy=nothing), code="nope")
    assert host.execute(TURN, "k2", {}, lambda: "second try") == "second try"
    # A store-wide default policy applies to calls that pass none.
    recording = h.make(policy=EffectPolicy(record_errors=(KeyError,)))

    def missing() -> Any:
        raise KeyError("k")

    expect(EffectError, lambda: recording.execute(TURN, "k", {}, missing), code="KeyError")
    expect(EffectError, lambda: recording.execute(TURN, "k", {}, never()), code="KeyError")


def e05_heartbeat_keeps_a_long_effect_from_being_reclaimed(h: EffectHarness) -> None:
    """W-22b: an effect running for several TTLs keeps its lease; a second caller waits and
    replays instead of running it again."""
    host = h.make(lease_ttl_ms=300)
    runs: list[str] = []
    entered = threading.Event()

    def long_call() -> Any:
        runs.append("long")
        entered.set()
        time.sleep(1.0)
        return "done once"

    first = _Thread(lambda: host.execute(TURN, "long", {}, long_call))
    first.start()
    assert entered.wait(BOUND_S)
    claimed = host.get_effect(TURN, "long")

    def second() -> Any:
        runs.append("second")
        return "ran twice"

    assert host.execute(TURN, "long", {}, second) == "done once"
    assert first.outcome() == "done once"
    assert runs == ["long"]
    rec = host.get_effect(TURN, "long")
    assert rec.attempts == 1 and rec.status is EffectStatus.COMPLETED
    assert claimed.status is EffectStatus.IN_PROGRESS and claimed.lease_owner_id == host.owner_id


def e06_live_lease_makes_others_wait_with_a_timeout(h: EffectHarness) -> None:
    host = h.make()
    entered, release = threading.Event(), threading.Event()

    def blocked() -> Any:
        entered.set()
        assert release.wait(BOUND_S)
        return 42

    first = _Thread(lambda: host.execute(TURN, "k", {}, blocked))
    first.start()
    assert entered.wait(BOUND_S)
    t = time.monotonic()
    e = expect(WaitTimeout, lambda: host.execute(TURN, "k", {}, never(), policy=EffectPolicy(wait_timeout_ms=60)))
    assert time.monotonic() - t >= 0.05 and host.owner_id in str(e)
    waiter = _Thread(lambda: host.execute(TURN, "k", {}, never()))
    waiter.start()
    time.sleep(0.05)
    assert waiter.is_alive()
    release.set()
    assert first.outcome() == 42 and waiter.outcome() == 42


def e07_unencodable_outcome_releases_the_row(h: EffectHarness) -> None:
    """W-22f: the row is released, so the next call runs again at once."""
    host = h.make()
    e = expect(ValidationError, lambda: host.execute(TURN, "k", {}, lambda: {"when": object()}))
    assert "outcome" in str(e)
    rec = host.get_effect(TURN, "k")
    assert rec.status is EffectStatus.IN_PROGRESS and rec.lease_owner_id is None and rec.lease_expires_at_ms == 0
    assert host.execute(TURN, "k", {}, lambda: {"when": "now"}) == {"when": "now"}


def e08_scope_kinds_and_sessions_are_separate_namespaces(h: EffectHarness) -> None:
    """W-22a: a turn "x", a process "x" and turn "x" of another session never share a record."""
    host = h.make()
    scopes = [
        EffectScope("turn", "x"),
        EffectScope.process("x"),
        EffectScope.turn("session-a", "x"),
        EffectScope.turn("session-b", "x"),
        EffectScope.queue_drain("session-a", "x"),
    ]
    for i, s in enumerate(scopes):
        assert host.execute(s, "k", {"i": i}, lambda i=i: i) == i
    for i, s in enumerate(scopes):
        assert host.execute(s, "k", {"i": i}, never()) == i
    assert len(host.list_effects()) == 5
    assert [r.scope for r in host.list_effects(session_id="session-a")] == [scopes[2], scopes[4]]
    assert [r.scope for r in host.list_effects(EffectScope.turn("session-b", "x"))] == [scopes[3]]


def e09_strict_mode_is_per_controller(h: EffectHarness) -> None:
    """W-22e: start_replay on one controller leaves the store and other controllers alone."""
    host = h.make()
    a = host.scoped(EffectScope.turn("s", "t1"))
    b = host.scoped(EffectScope.turn("s", "t1"))
    a.start_replay()
    expect(EffectError, lambda: a.execute("k", {}, never()), code="replay_missing")
    assert b.execute("k", {}, lambda: "b ran") == "b ran"
    assert host.execute(EffectScope.turn("s", "t1"), "k2", {}, lambda: "store ran") == "store ran"
    assert a.execute("k", {}, never()) == "b ran"
    assert host.strict is False


def e10_taken_over_sleep_keeps_its_first_due_time(h: EffectHarness) -> None:
    clock = ManualClock(1_000_000)
    host = h.make(StoreOptions(clock=clock), lease_ttl_ms=50, heartbeat=False)
    first = _Thread(lambda: host.sleep(TURN, "nap", 1_000))
    first.start()
    _wait_for(lambda: host.get_effect(TURN, "nap") is not None, "the first sleep's claim")
    assert host.get_effect(TURN, "nap").due_at_ms == 1_001_000
    clock.advance(100)  # the first sleeper's lease (no heartbeat) has expired
    second = _Thread(lambda: host.sleep(TURN, "nap", 1_000))
    second.start()
    _wait_for(lambda: host.get_effect(TURN, "nap").attempts == 2, "the takeover")
    assert host.get_effect(TURN, "nap").due_at_ms == 1_001_000  # not 1_001_100
    clock.set(1_001_000)
    assert second.outcome() is None
    first.join(BOUND_S)
    assert isinstance(first.error, EffectError) and first.error.code == "lease_lost"
    assert host.get_effect(TURN, "nap").status is EffectStatus.COMPLETED


def e11_get_list_and_delete_effects(h: EffectHarness) -> None:
    host = h.make()
    s1, s2 = EffectScope.turn("s", "t1"), EffectScope.turn("s", "t2")
    host.execute(s1, "a", {}, lambda: 1)
    host.execute(s1, "b", {}, lambda: 2)
    host.execute(s2, "a", {}, lambda: 3)
    assert host.get_effect(s1, "missing") is None
    assert [(r.scope, r.replay_key, r.outcome) for r in host.list_effects()] == [(s1, "a", 1), (s1, "b", 2), (s2, "a", 3)]
    assert [r.outcome for r in host.list_effects(limit=2)] == [2, 3]
    assert [r.outcome for r in host.list_effects(status="completed")] == [1, 2, 3]
    assert host.list_effects(status=EffectStatus.FAILED) == []
    expect(ValidationError, lambda: host.list_effects(status="done"))
    assert host.delete_effect(s1, "a") is True and host.delete_effect(s1, "a") is False
    assert host.execute(s1, "a", {}, lambda: "again") == "again"
    assert host.delete_scope(s1) == 2
    assert [r.scope for r in host.list_effects()] == [s2]


def e12_bad_input_is_refused_before_writing(h: EffectHarness) -> None:
    host = h.make()
    expect(ValidationError, lambda: host.execute(TURN, "", {}, lambda: 1))
    expect(ValidationError, lambda: host.execute(TURN, "  ", {}, lambda: 1))
    expect(ValidationError, lambda: host.execute(TURN, "k", {"c": object()}, lambda: 1))
    expect(ValidationError, lambda: host.execute(TURN, "k", {1: "int key"}, lambda: 1))
    expect(ValidationError, lambda: host.execute(TURN, "k", {}, "not callable"))  # type: ignore[arg-type]
    expect(ValidationError, lambda: host.execute(TURN, "k", {}, lambda: 1, policy="strict"))  # type: ignore[arg-type]
    expect(ValidationError, lambda: host.sleep(TURN, "nap", -1))
    expect(ValidationError, lambda: host.sleep(TURN, "nap", 1.5))  # type: ignore[arg-type]
    expect(ValidationError, lambda: h.make(lease_ttl_ms=0))
    expect(ValidationError, lambda: EffectPolicy(wait_timeout_ms=-1))
    expect(ValidationError, lambda: EffectPolicy(record_errors=("x",)))  # type: ignore[arg-type]
    assert host.list_effects() == []

    async def coro() -> int:
        return 1

    # An async executor handed to the sync execute is refused (and its claim released).
    expect(ValidationError, lambda: host.execute(TURN, "k", {}, coro))
    assert host.execute(TURN, "k", {}, lambda: 2) == 2


def e13_async_execute_and_sleep(h: EffectHarness) -> None:
    host = h.make()
    calls: list[int] = []

    async def main() -> Any:
        loop_thread = threading.get_ident()

        async def call() -> Any:
            assert threading.get_ident() == loop_thread  # the executor runs on the caller's loop
            calls.append(1)
            await asyncio.sleep(0.01)
            return {"answer": 42}

        a = await host.aexecute(TURN, "llm", {"p": "q"}, call)
        b = await host.aexecute(TURN, "llm", {"p": "q"}, call)
        results = await asyncio.gather(
            *(host.aexecute(TURN, f"par-{i}", {"i": i}, lambda i=i: asyncio.sleep(0.05, result=i)) for i in range(5))
        )
        t = time.monotonic()
        await host.asleep(TURN, "nap", 60)
        slept = time.monotonic() - t
        t = time.monotonic()
        await host.asleep(TURN, "nap", 60)
        replayed = time.monotonic() - t

        async def declined() -> Any:
            raise EffectError("declined", "no")

        try:
            await host.aexecute(TURN, "pay", {}, declined)
        except EffectError as e:
            assert e.code == "declined"
        else:
            raise AssertionError("expected EffectError")
        return a, b, results, slept, replayed

    a, b, results, slept, replayed = asyncio.run(main())
    assert a == b == {"answer": 42} and calls == [1]
    assert results == [0, 1, 2, 3, 4]
    assert slept >= 0.05 and replayed < 0.05
    expect(EffectError, lambda: host.execute(TURN, "pay", {}, never()), code="declined")


def e14_async_cancellation_releases_the_claim(h: EffectHarness) -> None:
    host = h.make()

    async def main() -> None:
        started = asyncio.Event()

        async def slow() -> Any:
            started.set()
            await asyncio.sleep(30)
            return "never"

        task = asyncio.ensure_future(host.aexecute(TURN, "k", {}, slow))
        await started.wait()
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        else:
            raise AssertionError("expected cancellation")

    asyncio.run(main())
    rec = host.get_effect(TURN, "k")
    assert rec.status is EffectStatus.IN_PROGRESS and rec.lease_owner_id is None
    assert host.execute(TURN, "k", {}, lambda: "ran after cancel") == "ran after cancel"


def e15_begin_settles_once(h: EffectHarness) -> None:
    host = h.make()
    att = host.begin(TURN, "k", {"x": 1})
    assert not att.replayed
    assert att.complete((1, 2)) == [1, 2]  # returned as it replays
    expect(ValidationError, lambda: att.complete(3))
    again = host.begin(TURN, "k", {"x": 1})
    assert again.replayed and again.outcome == [1, 2]
    rel = host.begin(TURN, "r", {})
    rel.release()
    rel.release()  # idempotent
    assert host.get_effect(TURN, "r").lease_owner_id is None


# -- durable backends --------------------------------------------------------------------------------


def r01_recorded_outcomes_survive_reopen(h: EffectHarness) -> None:
    host = h.make()
    assert host.execute(TURN, "ok", {"a": 1}, lambda: {"b": [1, 2]}) == {"b": [1, 2]}

    def declined() -> Any:
        raise EffectError("declined", "no")

    expect(EffectError, lambda: host.execute(TURN, "bad", {}, declined))
    host.sleep(TURN, "nap", 1)
    host.close()
    again = h.reopen(host)
    strict = again.scoped(TURN, strict=True)
    assert strict.execute("ok", {"a": 1}, never()) == {"b": [1, 2]}
    expect(EffectError, lambda: strict.execute("bad", {}, never()), code="declined")
    strict.sleep("nap", 1)
    expect(ReplayConflict, lambda: again.execute(TURN, "ok", {"a": 2}, never()))
    assert again.durability_tier() == h.expected_tier


def r02_second_handle_waits_for_the_first_and_replays(h: EffectHarness) -> None:
    host = h.make()
    other = h.reopen(host)
    entered, release = threading.Event(), threading.Event()

    def blocked() -> Any:
        entered.set()
        assert release.wait(BOUND_S)
        return "from the first handle"

    first = _Thread(lambda: host.execute(TURN, "k", {}, blocked))
    first.start()
    assert entered.wait(BOUND_S)
    waiter = _Thread(lambda: other.execute(TURN, "k", {}, never()))
    waiter.start()
    time.sleep(0.05)
    assert waiter.is_alive()
    release.set()
    assert first.outcome() == waiter.outcome() == "from the first handle"


def r03_crashed_owner_is_taken_over_after_its_lease_expires(h: EffectHarness) -> None:
    clock = ManualClock()
    host = h.make(StoreOptions(clock=clock), lease_ttl_ms=1_000, heartbeat=False)
    att = host.begin(TURN, "k", {"x": 1})  # claimed, then the "process" dies without settling
    assert not att.replayed
    host.close()
    again = h.reopen(host)
    expect(WaitTimeout, lambda: again.execute(TURN, "k", {"x": 1}, never(), policy=EffectPolicy(wait_timeout_ms=30)))
    clock.advance(1_001)
    expect(EffectError, lambda: again.execute(TURN, "k", {"x": 1}, never(), strict=True), code="replay_missing")
    assert again.execute(TURN, "k", {"x": 1}, lambda: "second owner") == "second owner"
    assert again.get_effect(TURN, "k").attempts == 2


EFFECT_SCENARIOS: list[Callable[[EffectHarness], None]] = [
    a1_effect_host_preserves_scope_metadata,
    a2_effect_host_rejects_missing_scope_ids,
    a3_effect_host_static_scope_preserves_metadata,
    a4_concurrent_effects_run_together_and_replay_by_key,
    c10_effect_replays_without_local_executor,
    c11_effect_rejects_envelope_hash_conflict,
    c12_effect_reclaims_stale_in_progress_lease,
    c13_sleep_replay_returns_after_recorded_due_time,
    e01_strict_replay_without_history_fails_and_writes_nothing,
    e02_strict_replay_never_runs_an_expired_in_progress_effect,
    e03_effect_errors_are_recorded_and_other_errors_retried,
    e04_policy_can_record_any_error,
    e05_heartbeat_keeps_a_long_effect_from_being_reclaimed,
    e06_live_lease_makes_others_wait_with_a_timeout,
    e07_unencodable_outcome_releases_the_row,
    e08_scope_kinds_and_sessions_are_separate_namespaces,
    e09_strict_mode_is_per_controller,
    e10_taken_over_sleep_keeps_its_first_due_time,
    e11_get_list_and_delete_effects,
    e12_bad_input_is_refused_before_writing,
    e13_async_execute_and_sleep,
    e14_async_cancellation_releases_the_claim,
    e15_begin_settles_once,
]

EFFECT_REOPEN_SCENARIOS: list[Callable[[EffectHarness], None]] = [
    r01_recorded_outcomes_survive_reopen,
    r02_second_handle_waits_for_the_first_and_replays,
    r03_crashed_owner_is_taken_over_after_its_lease_expires,
]
