"""Durable calls: run a non-deterministic call once, record its outcome, replay it after a crash.

A decorated function runs once per key: once its outcome is recorded, every later call with that
key, in this process, another process or after a restart, returns the recorded result without
running it. A call that is running elsewhere is waited for (its owner's lease is renewed in the
background while it runs); a caller that crashed mid-call leaves a lease that expires, and the
next caller runs the call again. So a call may run more than once only when it crashed (or
raised a transient error) before its outcome was recorded: make such calls idempotent where
you can, as with any at-least-once system.

    import asyncio
    import lashstore

    store = lashstore.SqliteEffectStore("effects.db")

    @lashstore.durable(store, scope=("turn", "session-1/turn-3"), key=lambda city: f"weather:{city}")
    def fetch_weather(city: str) -> dict:
        return {"city": city, "temp_c": 21}       # a real program calls a weather API here

    assert fetch_weather("Paris") == {"city": "Paris", "temp_c": 21}   # runs
    assert fetch_weather("Paris") == {"city": "Paris", "temp_c": 21}   # replays; no second call

    async def main():
        @lashstore.durable(store, scope=("turn", "session-1/turn-3"), key=lambda prompt: f"llm:{prompt}")
        async def call_llm(prompt: str) -> str:
            return f"echo: {prompt}"              # a real program awaits its model client here

        return await call_llm("hello")

    assert asyncio.run(main()) == "echo: hello"

    # The context-manager form, when the call is not a function of its own:
    with lashstore.durable_call(store, ("turn", "session-1/turn-3"), "ticket:42", {"title": "Printer on fire"}) as call:
        if not call.replayed:
            call.result = {"ticket": 42, "title": "Printer on fire"}   # e.g. create the ticket
    assert call.result == {"ticket": 42, "title": "Printer on fire"}

    # A durable sleep: its due time is recorded, so after a restart it does not start over.
    store.sleep(("turn", "session-1/turn-3"), "pause-1", 10)

    store.close()

What identifies a call: the scope and the key. The *envelope* (by default the function's name
and its bound arguments) is hashed and stored with the outcome; calling the same key with a
different envelope raises `ReplayConflict` instead of replaying an answer to another question.
Arguments and results must be JSON-compatible (dict, list, str, int, float, bool, None, bytes);
anything else raises `ValidationError` before anything is written. Pass `envelope=` to choose
what identifies a call when an argument (a client, a connection) is not data. Results are
returned as they replay: a tuple comes back as a list, also on the first call.

Errors: an executor raising `EffectError` has failed for good; that failure is recorded and
raised again on every replay. Any other exception is treated as transient: it propagates and the
next call runs the function again. `EffectPolicy(record_errors=...)` changes that.

This module also holds the engine every effect store runs (`EffectEngine`): the claim loop, the
lease heartbeat, the wait for a running owner and the settling of an outcome. Backends provide
four transactional primitives; every decision comes from `lashstore.rules.effects`.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

from .codec import check_json
from .errors import EffectError, StoreClosed, ValidationError, WaitTimeout
from .model.effects import EffectScope
from .options import StoreOptions
from .rules import effects as rules
from .rules.effects import EffectKey, EffectPolicy

__all__ = [
    "durable",
    "durable_call",
    "DurableCall",
    "EffectAttempt",
    "EffectEngine",
    "ScopedEffectController",
    "EffectPolicy",
]

F = TypeVar("F", bound=Callable[..., Any])
ScopeLike = EffectScope | tuple


# -- the heartbeat ---------------------------------------------------------------------------------


class _Heartbeat:
    """One daemon thread per store that renews every lease held by a running executor.

    It wakes every `interval` (a third of the TTL), renews all held leases in one transaction,
    and marks the ones whose row no longer carries their token as lost. A renewal that fails
    (store busy) is retried on the next tick; two misses still leave a third of the TTL.
    """

    def __init__(self, renew: Callable[[list[tuple[EffectKey, str, str]]], list[str]], interval_s: float) -> None:
        self._renew = renew
        self._interval = interval_s
        self._cond = threading.Condition()
        self._leases: dict[str, tuple[EffectKey, str]] = {}
        self._lost: set[str] = set()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.last_error: BaseException | None = None
        self.renewals = 0

    def add(self, token: str, key: EffectKey, envelope_hash: str) -> None:
        with self._cond:
            if self._closed:
                return
            self._leases[token] = (key, envelope_hash)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="lashstore-effect-heartbeat", daemon=True)
                self._thread.start()
            if len(self._leases) == 1:
                self._cond.notify_all()

    def remove(self, token: str) -> None:
        with self._cond:
            self._leases.pop(token, None)
            self._lost.discard(token)

    def is_lost(self, token: str) -> bool:
        with self._cond:
            return token in self._lost

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout=10)

    def _run(self) -> None:
        next_at = time.monotonic() + self._interval
        while True:
            with self._cond:
                while not self._closed:
                    if not self._leases:
                        self._cond.wait()
                        next_at = time.monotonic() + self._interval
                        continue
                    delay = next_at - time.monotonic()
                    if delay <= 0:
                        break
                    self._cond.wait(delay)
                if self._closed:
                    return
                batch = [(k, h, t) for t, (k, h) in self._leases.items()]
                next_at = time.monotonic() + self._interval
            try:
                lost = self._renew(batch)
                self.renewals += 1
            except StoreClosed:
                return
            except Exception as e:  # noqa: BLE001 - a background thread must not die; retried next tick
                self.last_error = e
                continue
            if lost:
                with self._cond:
                    for t in lost:
                        if t in self._leases:
                            del self._leases[t]
                            self._lost.add(t)


# -- one attempt -----------------------------------------------------------------------------------


def _release_orphan(fut: "asyncio.Future[Any]") -> None:
    if fut.cancelled() or fut.exception() is not None:
        return
    att = fut.result()
    if isinstance(att, EffectAttempt) and not att.settled:
        threading.Thread(target=_quiet_release, args=(att,), name="lashstore-effect-release", daemon=True).start()


def _quiet_release(att: "EffectAttempt") -> None:
    try:
        att.release()
    except Exception:  # noqa: BLE001 - the lease expires by itself if this fails
        pass



async def _hop(fn: Callable[..., Any], *args: Any) -> Any:
    """Run one blocking store operation on a worker thread (one hop per operation)."""
    return await asyncio.get_running_loop().run_in_executor(None, functools.partial(fn, *args))


class EffectAttempt:
    """The result of `EffectStore.begin`: either a replay (`replayed`, `outcome`) or a claim that
    the caller settles exactly once with `complete(value)`, `fail(exc)` or `release()`.

    While a claim is open its lease is renewed in the background (unless the store was opened
    with heartbeat=False)."""

    def __init__(
        self,
        engine: "EffectEngine",
        key: EffectKey,
        envelope_hash: str,
        policy: EffectPolicy,
        *,
        replayed: bool,
        outcome: Any = None,
        token: str | None = None,
        due_at_ms: int | None = None,
    ) -> None:
        self._engine = engine
        self.key = key
        self.envelope_hash = envelope_hash
        self.policy = policy
        self.replayed = replayed
        self.outcome = outcome
        self.due_at_ms = due_at_ms
        self._token = token
        self._settled = replayed

    @property
    def scope(self) -> EffectScope:
        return self.key.scope()

    @property
    def settled(self) -> bool:
        return self._settled

    @property
    def lease_lost(self) -> bool:
        """True once the heartbeat found another caller holding this effect's row."""
        hb = self._engine._heartbeat
        return self._token is not None and hb is not None and hb.is_lost(self._token)

    def _open(self) -> str:
        if self._settled or self._token is None:
            raise ValidationError(f"effect {self.key} was already settled (or replayed); settle a claim once")
        return self._token

    def _lease_lost(self) -> EffectError:
        return EffectError(
            "lease_lost",
            f"the lease on effect {self.key} was lost before its outcome was recorded (it expired and "
            "another caller took the effect over); this caller's result was discarded",
        )

    # -- completing ----------------------------------------------------------------------------
    def _encode(self, value: Any) -> bytes:
        self._open()
        try:
            return rules.encode_outcome(value)
        except ValidationError:
            self.release()  # W-22f: never leave a row nobody can finish
            raise

    def _finish(self, data: bytes) -> Any:
        token = self._open()
        self._settled = True
        try:
            ok = self._engine._tx_finish(self.key, self.envelope_hash, token, rules.COMPLETED, data, None)
        finally:
            self._engine._unwatch(token)
        if not ok:
            raise self._lease_lost()
        self.outcome = rules.decode_outcome(self.key, data)
        return self.outcome

    def complete(self, value: Any) -> Any:
        """Record `value` as the outcome; returns it as every replay will (decoded from storage).

        Raises EffectError("lease_lost") when another caller took the effect over meanwhile."""
        return self._finish(self._encode(value))

    async def acomplete(self, value: Any) -> Any:
        return await _hop(self.complete, value)

    # -- failing -------------------------------------------------------------------------------
    def _settle_error(self, exc: BaseException) -> BaseException | None:
        """Record or release for `exc`; the exception to raise instead of `exc`, or None."""
        token = self._open()
        try:
            # Cancellation, interrupts and exits are never an effect's outcome.
            record = isinstance(exc, Exception) and self.policy.records(exc)
        except BaseException:
            self.release()  # a failing policy predicate must not strand the claim
            raise
        if not record:
            self.release()
            return None
        info = rules.error_info(exc)
        self._settled = True
        try:
            ok = self._engine._tx_finish(self.key, self.envelope_hash, token, rules.FAILED, None, rules.encode_error(info))
        finally:
            self._engine._unwatch(token)
        if not ok:
            return self._lease_lost()
        if isinstance(exc, EffectError):
            return None
        return EffectError(info.code, info.message)

    def fail(self, exc: BaseException) -> NoReturn:
        """Settle with an exception: recorded when the policy says so (then raised as it will be
        replayed), otherwise the row is released and `exc` is raised unchanged."""
        replacement = self._settle_error(exc)
        if replacement is None:
            raise exc
        raise replacement from exc

    async def afail(self, exc: BaseException) -> NoReturn:
        replacement = await self._asettle_error(exc)
        if replacement is None:
            raise exc
        raise replacement from exc

    async def _asettle_error(self, exc: BaseException) -> BaseException | None:
        if not isinstance(exc, Exception):
            # Under cancellation another await may be cancelled too: release on this thread.
            return self._settle_error(exc)
        return await _hop(self._settle_error, exc)

    # -- releasing -----------------------------------------------------------------------------
    def release(self) -> None:
        """Give the claim back without an outcome; the next caller runs the effect again."""
        if self._settled:
            return
        token = self._open()
        self._settled = True
        try:
            self._engine._tx_release(self.key, self.envelope_hash, token)
        finally:
            self._engine._unwatch(token)

    async def arelease(self) -> None:
        await _hop(self.release)

    def __del__(self) -> None:
        # An attempt dropped unsettled can never be settled: stop renewing its lease, so it
        # expires and the next caller takes over (no database work here; GC may run anywhere).
        try:
            if not self._settled and self._token is not None:
                self._engine._unwatch(self._token)
        except Exception:  # noqa: BLE001 - never raise from a finaliser
            pass

    def __repr__(self) -> str:
        state = "replayed" if self.replayed else ("settled" if self._settled else "claimed")
        return f"<EffectAttempt {self.key} {state}>"


# -- the engine ------------------------------------------------------------------------------------


class EffectEngine:
    """What every effect store runs; a backend supplies the transactional primitives:

    _tx_prepare(key, envelope_hash, owner_id, token, ttl_ms, due_in_ms, strict) -> (decision, now_ms)
        one write transaction: load the row, `rules.decide`, write a claim when it says Claim.
    _tx_finish(key, envelope_hash, token, status, outcome, error) -> bool   (token-fenced)
    _tx_release(key, envelope_hash, token) -> bool                           (token-fenced)
    _tx_renew([(key, envelope_hash, token)], ttl_ms) -> [lost tokens]        (token-fenced)
    """

    _opts: StoreOptions
    _clock: Any

    def _init_engine(
        self,
        options: StoreOptions | None,
        lease_ttl_ms: int,
        heartbeat: bool,
        strict: bool,
        policy: EffectPolicy | None,
    ) -> None:
        self._opts = options or StoreOptions()
        self._clock = self._opts.clock
        self._ttl = rules.check_ttl(lease_ttl_ms)
        if type(heartbeat) is not bool or type(strict) is not bool:
            raise ValidationError("heartbeat and strict must be bools")
        if policy is not None and not isinstance(policy, EffectPolicy):
            raise ValidationError(f"policy must be an EffectPolicy, got {type(policy).__name__}")
        self._strict = strict
        self._policy = policy or EffectPolicy()
        self.owner_id = f"{socket.gethostname()}:pid{os.getpid()}:{self._opts.ids.token()[:12]}"
        self._heartbeat = _Heartbeat(self._renew_batch, max(self._ttl // 3, 1) / 1000) if heartbeat else None

    # -- backend primitives (overridden) --------------------------------------------------------
    def _tx_prepare(self, key: EffectKey, envelope_hash: str, owner_id: str, token: str, ttl_ms: int,
                    due_in_ms: int | None, strict: bool) -> tuple[Any, int]:
        raise NotImplementedError

    def _tx_finish(self, key: EffectKey, envelope_hash: str, token: str, status: str,
                   outcome: bytes | None, error: bytes | None) -> bool:
        raise NotImplementedError

    def _tx_release(self, key: EffectKey, envelope_hash: str, token: str) -> bool:
        raise NotImplementedError

    def _tx_renew(self, leases: list[tuple[EffectKey, str, str]], ttl_ms: int) -> list[str]:
        raise NotImplementedError

    # -- configuration -------------------------------------------------------------------------
    @property
    def options(self) -> StoreOptions:
        return self._opts

    @property
    def lease_ttl_ms(self) -> int:
        return self._ttl

    @property
    def strict(self) -> bool:
        """Strict replay for every call through this store object (set at open)."""
        return self._strict

    @property
    def default_policy(self) -> EffectPolicy:
        return self._policy

    @property
    def heartbeat_enabled(self) -> bool:
        return self._heartbeat is not None

    def _close_engine(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.close()

    # -- scopes --------------------------------------------------------------------------------
    def scoped(self, scope: ScopeLike, *, strict: bool = False) -> "ScopedEffectController":
        """A controller bound to `scope` (validated now: blank ids raise ValidationError)."""
        return ScopedEffectController(self, EffectScope.of(scope), strict=strict)

    def scoped_static(self, scope: ScopeLike) -> "ScopedEffectController":
        """The reference's static form; every lashstore effect store supports it."""
        return self.scoped(scope)

    # -- the claim loop ------------------------------------------------------------------------
    def _args(self, scope: ScopeLike, replay_key: str, envelope: Any, policy: EffectPolicy | None,
              strict: bool) -> tuple[EffectKey, str, EffectPolicy, bool]:
        s = EffectScope.of(scope)
        rules.check_replay_key(replay_key)
        if policy is not None and not isinstance(policy, EffectPolicy):
            raise ValidationError(f"policy must be an EffectPolicy, got {type(policy).__name__}")
        pol = policy or self._policy
        return EffectKey.of(s, replay_key), rules.envelope_hash(envelope), pol, strict or pol.strict or self._strict

    def _step(self, key: EffectKey, ehash: str, due_in: int | None, pol: EffectPolicy, strict: bool,
              polls: int) -> EffectAttempt | tuple[int, str | None]:
        token = self._opts.ids.token()
        decision, now = self._tx_prepare(key, ehash, self.owner_id, token, self._ttl, due_in, strict)
        if isinstance(decision, rules.Claim):
            if self._heartbeat is not None:
                self._heartbeat.add(token, key, ehash)
            return EffectAttempt(self, key, ehash, pol, replayed=False, token=token, due_at_ms=decision.due_at_ms)
        if isinstance(decision, rules.Replay):
            return EffectAttempt(
                self, key, ehash, pol, replayed=True, outcome=rules.decode_outcome(key, decision.outcome),
                due_at_ms=decision.due_at_ms,
            )
        if isinstance(decision, rules.Failed):
            raise EffectError(decision.error.code, decision.error.message)
        return rules.wait_delay_ms(polls, decision.retry_at_ms, now), decision.owner_id

    def _wait_timeout(self, key: EffectKey, pol: EffectPolicy, owner: str | None) -> WaitTimeout:
        return WaitTimeout(
            f"effect {key} is still running under owner {owner!r} after {pol.wait_timeout_ms} ms; "
            "call again later (its outcome will replay), or raise wait_timeout_ms"
        )

    def _acquire(self, key: EffectKey, ehash: str, due_in: int | None, pol: EffectPolicy, strict: bool) -> EffectAttempt:
        deadline = None if pol.wait_timeout_ms is None else time.monotonic() + pol.wait_timeout_ms / 1000
        polls = 0
        while True:
            step = self._step(key, ehash, due_in, pol, strict, polls)
            if isinstance(step, EffectAttempt):
                if step.replayed:
                    self._wait_until(step.due_at_ms)
                return step
            delay_ms, owner = step
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise self._wait_timeout(key, pol, owner)
                delay_ms = min(delay_ms, max(1, int(left * 1000)))
            time.sleep(delay_ms / 1000)
            polls += 1

    async def _aacquire(self, key: EffectKey, ehash: str, due_in: int | None, pol: EffectPolicy, strict: bool) -> EffectAttempt:
        deadline = None if pol.wait_timeout_ms is None else time.monotonic() + pol.wait_timeout_ms / 1000
        polls = 0
        while True:
            fut = asyncio.get_running_loop().run_in_executor(
                None, functools.partial(self._step, key, ehash, due_in, pol, strict, polls)
            )
            try:
                step = await asyncio.shield(fut)
            except asyncio.CancelledError:
                # The worker thread may still claim; give such a claim straight back.
                fut.add_done_callback(_release_orphan)
                raise
            if isinstance(step, EffectAttempt):
                if step.replayed:
                    await self._await_until(step.due_at_ms)
                return step
            delay_ms, owner = step
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise self._wait_timeout(key, pol, owner)
                delay_ms = min(delay_ms, max(1, int(left * 1000)))
            await asyncio.sleep(delay_ms / 1000)
            polls += 1

    def _wait_until(self, due_at_ms: int | None) -> None:
        if due_at_ms is None:
            return
        while (left := due_at_ms - self._clock.now_ms()) > 0:
            time.sleep(min(left, 50) / 1000)

    async def _await_until(self, due_at_ms: int | None) -> None:
        if due_at_ms is None:
            return
        while (left := due_at_ms - self._clock.now_ms()) > 0:
            await asyncio.sleep(min(left, 50) / 1000)

    def _unwatch(self, token: str) -> None:
        if self._heartbeat is not None:
            self._heartbeat.remove(token)

    def _renew_batch(self, leases: list[tuple[EffectKey, str, str]]) -> list[str]:
        return self._tx_renew(leases, self._ttl)

    # -- public operations ---------------------------------------------------------------------
    def begin(self, scope: ScopeLike, replay_key: str, envelope: Any, *, policy: EffectPolicy | None = None,
              strict: bool = False) -> EffectAttempt:
        """Claim the effect or replay it: the building block of `execute` and `durable_call`.

        Returns a replayed attempt (its `outcome` set) or a claim to settle; raises the recorded
        error of a failed effect, ReplayConflict for a changed envelope, WaitTimeout when another
        caller's live claim outlasts the policy's wait."""
        key, ehash, pol, strict = self._args(scope, replay_key, envelope, policy, strict)
        return self._acquire(key, ehash, None, pol, strict)

    async def abegin(self, scope: ScopeLike, replay_key: str, envelope: Any, *, policy: EffectPolicy | None = None,
                     strict: bool = False) -> EffectAttempt:
        key, ehash, pol, strict = self._args(scope, replay_key, envelope, policy, strict)
        return await self._aacquire(key, ehash, None, pol, strict)

    def execute(self, scope: ScopeLike, replay_key: str, envelope: Any, executor: Callable[[], Any], *,
                policy: EffectPolicy | None = None, strict: bool = False) -> Any:
        """Run `executor()` once for (scope, replay_key) and record its outcome; replay it after.

        The executor runs outside any transaction, so effects run concurrently. Its return value
        must be JSON-compatible; what comes back is the recorded value (decoded)."""
        if not callable(executor):
            raise ValidationError(f"executor must be a callable taking no arguments, got {type(executor).__name__}")
        att = self.begin(scope, replay_key, envelope, policy=policy, strict=strict)
        if att.replayed:
            return att.outcome
        try:
            value = executor()
            if inspect.isawaitable(value):
                if inspect.iscoroutine(value):
                    value.close()
                raise ValidationError("the executor returned an awaitable; use aexecute for async executors")
        except BaseException as e:
            replacement = att._settle_error(e)
            if replacement is None:
                raise
            raise replacement from e
        return att.complete(value)

    async def aexecute(self, scope: ScopeLike, replay_key: str, envelope: Any,
                       executor: Callable[[], Awaitable[Any] | Any], *, policy: EffectPolicy | None = None,
                       strict: bool = False) -> Any:
        """`execute` for async code: the executor coroutine runs on the caller's loop; each store
        operation is one hop to a worker thread."""
        if not callable(executor):
            raise ValidationError(f"executor must be a callable taking no arguments, got {type(executor).__name__}")
        att = await self.abegin(scope, replay_key, envelope, policy=policy, strict=strict)
        if att.replayed:
            return att.outcome
        try:
            value = executor()
            if inspect.isawaitable(value):
                value = await value
        except BaseException as e:
            replacement = await att._asettle_error(e)
            if replacement is None:
                raise
            raise replacement from e
        return await att.acomplete(value)

    def sleep(self, scope: ScopeLike, replay_key: str, duration_ms: int, *, policy: EffectPolicy | None = None,
              strict: bool = False) -> None:
        """A durable sleep: the due time is recorded when first claimed, so a replay (or a caller
        taking over after a crash) returns at that same due time, immediately once it has passed."""
        d = rules.check_duration(duration_ms)
        key, ehash, pol, strict = self._args(scope, replay_key, rules.sleep_envelope(d), policy, strict)
        att = self._acquire(key, ehash, d, pol, strict)
        if att.replayed:
            return None
        try:
            self._wait_until(att.due_at_ms)
        except BaseException:
            att.release()
            raise
        att.complete(None)
        return None

    async def asleep(self, scope: ScopeLike, replay_key: str, duration_ms: int, *,
                     policy: EffectPolicy | None = None, strict: bool = False) -> None:
        d = rules.check_duration(duration_ms)
        key, ehash, pol, strict = self._args(scope, replay_key, rules.sleep_envelope(d), policy, strict)
        att = await self._aacquire(key, ehash, d, pol, strict)
        if att.replayed:
            return None
        try:
            await self._await_until(att.due_at_ms)
        except BaseException:
            att.release()
            raise
        await att.acomplete(None)
        return None


class ScopedEffectController:
    """An effect store bound to one scope (the reference's scoped controller).

    `start_replay()` makes this controller strict: it only replays recorded outcomes. It affects
    this controller alone, never other controllers or the store."""

    def __init__(self, store: EffectEngine, scope: EffectScope, *, strict: bool = False) -> None:
        self.store = store
        self.scope = scope
        self.strict = strict

    def effect_scope(self) -> EffectScope:
        return self.scope

    def scope_id(self) -> str:
        return self.scope.id

    def turn_id(self) -> str | None:
        return self.scope.turn_id

    def start_replay(self) -> None:
        self.strict = True

    def begin(self, replay_key: str, envelope: Any, *, policy: EffectPolicy | None = None) -> EffectAttempt:
        return self.store.begin(self.scope, replay_key, envelope, policy=policy, strict=self.strict)

    async def abegin(self, replay_key: str, envelope: Any, *, policy: EffectPolicy | None = None) -> EffectAttempt:
        return await self.store.abegin(self.scope, replay_key, envelope, policy=policy, strict=self.strict)

    def execute(self, replay_key: str, envelope: Any, executor: Callable[[], Any], *,
                policy: EffectPolicy | None = None) -> Any:
        return self.store.execute(self.scope, replay_key, envelope, executor, policy=policy, strict=self.strict)

    async def aexecute(self, replay_key: str, envelope: Any, executor: Callable[[], Any], *,
                       policy: EffectPolicy | None = None) -> Any:
        return await self.store.aexecute(self.scope, replay_key, envelope, executor, policy=policy, strict=self.strict)

    def sleep(self, replay_key: str, duration_ms: int, *, policy: EffectPolicy | None = None) -> None:
        self.store.sleep(self.scope, replay_key, duration_ms, policy=policy, strict=self.strict)

    async def asleep(self, replay_key: str, duration_ms: int, *, policy: EffectPolicy | None = None) -> None:
        await self.store.asleep(self.scope, replay_key, duration_ms, policy=policy, strict=self.strict)

    def __repr__(self) -> str:
        return f"<ScopedEffectController {self.scope}{' strict' if self.strict else ''}>"


# -- the decorator ---------------------------------------------------------------------------------


def _check_store(store: Any, who: str, methods: tuple[str, ...]) -> None:
    if not all(callable(getattr(store, m, None)) for m in methods):
        raise ValidationError(f"{who} needs an effect store (with {' and '.join(methods)}), got {type(store).__name__}")


def _resolve(spec: Any, bound: inspect.BoundArguments) -> Any:
    if callable(spec) and not isinstance(spec, (EffectScope, tuple, str)):
        return spec(*bound.args, **bound.kwargs)
    return spec


def durable(
    store: EffectEngine,
    scope: ScopeLike | Callable[..., ScopeLike],
    key: str | Callable[..., str] | None = None,
    *,
    envelope: Callable[..., Any] | None = None,
    policy: EffectPolicy | None = None,
) -> Callable[[F], F]:
    """Make a function (sync or async) durable: it runs once per (scope, key) and replays after.

    scope: an EffectScope, a `(kind, id)` tuple, or a function of the call's arguments giving one.
    key: a string, a function of the call's arguments giving one, or None for
        "{qualified name}:{hash of the arguments}".
    envelope: a function of the call's arguments giving the JSON value that identifies the call;
        default `{"function": qualified name, "arguments": {name: value}}` (without a leading
        `self` or `cls` parameter, so methods work; the instance is then not part of the
        identity: choose scope and key accordingly).
    policy: an EffectPolicy (which errors are recorded, strict replay, wait timeout).
    """
    _check_store(store, "durable()", ("execute", "aexecute"))

    def decorate(fn: F) -> F:
        sig = inspect.signature(fn)
        name = fn.__qualname__
        params = list(sig.parameters)
        # A method's instance is not data: the default envelope leaves it out.
        skipped = {params[0]} if params and params[0] in ("self", "cls") else set()

        def prepare(args: tuple, kwargs: dict) -> tuple[Any, str, Any]:
            try:
                bound = sig.bind(*args, **kwargs)
            except TypeError as e:
                raise TypeError(f"{name}(): {e}") from None
            bound.apply_defaults()
            if envelope is None:
                args_ = {k: x for k, x in bound.arguments.items() if k not in skipped}
                env = {"function": name, "arguments": args_}
                try:
                    check_json(env["arguments"], f"arguments of durable function {name}")
                except ValidationError as e:
                    raise ValidationError(f"{e}; pass envelope=... to durable() to choose what identifies a call") from None
            else:
                env = envelope(*bound.args, **bound.kwargs)
            s = _resolve(scope, bound)
            if key is None:
                from .codec import stable_hash

                k = f"{name}:{stable_hash(env)}"
            else:
                k = _resolve(key, bound)
            return s, k, env

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                s, k, env = prepare(args, kwargs)
                return await store.aexecute(s, k, env, lambda: fn(*args, **kwargs), policy=policy)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            s, k, env = prepare(args, kwargs)
            return store.execute(s, k, env, lambda: fn(*args, **kwargs), policy=policy)

        return wrapper  # type: ignore[return-value]

    return decorate


# -- the context manager ---------------------------------------------------------------------------

_UNSET: Any = object()


class DurableCall:
    """`with durable_call(store, scope, key, envelope) as call:` (or `async with`).

    On entry the effect is claimed or replayed. When `call.replayed` is False the body does the
    work and sets `call.result`; on a clean exit that result is recorded (and `call.result`
    becomes the recorded value). An exception leaving the body is recorded or not, as the
    policy says, exactly as with `execute`. A recorded failure is raised on entry.
    """

    def __init__(self, store: EffectEngine, scope: ScopeLike, key: str, envelope: Any, *,
                 policy: EffectPolicy | None = None, strict: bool = False) -> None:
        _check_store(store, "durable_call()", ("begin", "abegin"))
        self._store = store
        self._args = (scope, key, envelope)
        self._policy = policy
        self._strict = strict
        self._attempt: EffectAttempt | None = None
        self._result: Any = _UNSET

    @property
    def replayed(self) -> bool:
        return self._need().replayed

    @property
    def attempt(self) -> EffectAttempt:
        return self._need()

    @property
    def result(self) -> Any:
        att = self._need()
        if att.replayed:
            return att.outcome
        if self._result is _UNSET:
            raise ValidationError("no result yet: set call.result inside the with-block")
        return self._result

    @result.setter
    def result(self, value: Any) -> None:
        att = self._need()
        if att.replayed:
            raise ValidationError("this call was replayed; its result is the recorded one")
        if att.settled:
            raise ValidationError("this call was already recorded")
        self._result = value

    def _need(self) -> EffectAttempt:
        if self._attempt is None:
            raise ValidationError("enter the durable_call with `with` (or `async with`) first")
        return self._attempt

    def __enter__(self) -> "DurableCall":
        self._attempt = self._store.begin(*self._args, policy=self._policy, strict=self._strict)
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        att = self._need()
        if att.replayed:
            return False
        if exc is not None:
            replacement = att._settle_error(exc)
            if replacement is not None:
                raise replacement from exc
            return False
        if self._result is _UNSET:
            att.release()
            raise ValidationError("the durable_call body did not set call.result; nothing was recorded")
        self._result = att.complete(self._result)
        return False

    async def __aenter__(self) -> "DurableCall":
        self._attempt = await self._store.abegin(*self._args, policy=self._policy, strict=self._strict)
        return self

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        att = self._need()
        if att.replayed:
            return False
        if exc is not None:
            replacement = await att._asettle_error(exc)
            if replacement is not None:
                raise replacement from exc
            return False
        if self._result is _UNSET:
            await att.arelease()
            raise ValidationError("the durable_call body did not set call.result; nothing was recorded")
        self._result = await att.acomplete(self._result)
        return False


def durable_call(store: EffectEngine, scope: ScopeLike, key: str, envelope: Any, *,
                 policy: EffectPolicy | None = None, strict: bool = False) -> DurableCall:
    """The context-manager form of a durable call (see `DurableCall`)."""
    return DurableCall(store, scope, key, envelope, policy=policy, strict=strict)
