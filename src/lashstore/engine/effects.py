"""The effect store, written once: every operation of `contracts.EffectStore` over a `Db`.

A call is claimed (or replayed) in one write transaction: a lock on its key where rows lock one
by one (its row may not exist yet), the row loaded, `rules.effects.decide`, and the claim written.
The executor runs outside any transaction, so effects run concurrently; finishing, releasing and
the heartbeat's renewals are single UPDATEs fenced by the lease token. A caller finding another
owner's live lease waits for it: polling with the rules' backoff, and woken at once where the
database carries notifications across connections (PostgreSQL's LISTEN/NOTIFY).

Statements are `backends.sql.effects`; decisions are `rules.effects`; a backend only opens its
database. The decorator and the context manager built on this engine are `lashstore.durable_calls`.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import inspect
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

from ..backends.sql import effects as sql
from ..errors import EffectError, StoreClosed, ValidationError, WaitTimeout
from ..model.effects import EffectRecord, EffectScope, EffectStatus
from ..model.session import DurabilityTier
from ..options import StoreOptions
from ..rules import effects as rules
from ..rules import validate as v
from ..rules.effects import EffectKey, EffectPolicy
from .base import DbStore
from .maintenance import Checker
from .registry import RegistryMethods
from .tx import Db, Tx

__all__ = ["EffectEngine", "EffectAttempt", "ScopedEffectController", "ScopeLike", "effect_topic"]

ScopeLike = EffectScope | tuple


def effect_topic(key: EffectKey) -> str:
    """The notification topic that wakes callers waiting on one effect."""
    return "e:" + hashlib.sha256("\x1f".join(key).encode("utf-8")).hexdigest()[:40]


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


class EffectEngine(DbStore, RegistryMethods):
    """Recorded effect outcomes in a database (`engine.tx.Db`). Thread-safe; share one per process.

    open_db(options) -> (database, owned): called once the arguments are checked (so bad input
        never creates anything); an owned database is closed with the store.
    lease_ttl_ms: how long a claim stays live without renewal (default 30 s). While an executor
        runs, a heartbeat renews it every third of that (heartbeat=False turns renewal off, so a
        call longer than the TTL can be taken over; only for tests of expiry).
    strict: replay only, for every call through this object.
    policy: the default EffectPolicy of calls that pass none.
    tier: the durability the backend gives.
    """

    def __init__(
        self,
        open_db: Callable[[StoreOptions], tuple[Db, bool]],
        options: StoreOptions | None = None,
        lease_ttl_ms: int = 30_000,
        *,
        heartbeat: bool = True,
        strict: bool = False,
        policy: EffectPolicy | None = None,
        tier: DurabilityTier = DurabilityTier.DURABLE,
    ) -> None:
        opts = options or StoreOptions()
        self._ttl = rules.check_ttl(lease_ttl_ms)
        if type(heartbeat) is not bool or type(strict) is not bool:
            raise ValidationError("heartbeat and strict must be bools")
        if policy is not None and not isinstance(policy, EffectPolicy):
            raise ValidationError(f"policy must be an EffectPolicy, got {type(policy).__name__}")
        self._strict = strict
        self._policy = policy or EffectPolicy()
        self.owner_id = f"{socket.gethostname()}:pid{os.getpid()}:{opts.ids.token()[:12]}"
        self._heartbeat: _Heartbeat | None = None
        db, owned = open_db(opts)
        super().__init__(db, options=opts, tier=tier, owns_db=owned)
        # A database that carries notifications across connections and processes offers a hub
        # (PostgreSQL's LISTEN/NOTIFY); elsewhere a waiter polls with the rules' backoff.
        self._hub = getattr(self._db, "hub", None)
        if heartbeat:
            self._heartbeat = _Heartbeat(self._renew_batch, max(self._ttl // 3, 1) / 1000)

    _what = "effect store"

    def close(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.close()
        super().close()

    # -- the transactional primitives of the claim loop -------------------------------------------
    def _tx_prepare(self, key: EffectKey, envelope_hash: str, owner_id: str, token: str, ttl_ms: int,
                    due_in_ms: int | None, strict: bool) -> tuple[Any, int]:
        """One write transaction: load the row, `rules.decide`, write the claim it answers.
        Returns (decision, the transaction's now)."""

        def tx(t: Tx) -> tuple[Any, int]:
            t.lock("effect", *key)  # the row may not exist yet: two first claims must not both insert
            row = sql.load(t, key, lock=True)
            now = t.now()  # after the locks: a waiter's time is the time it got the row
            d = rules.decide(row, key, envelope_hash, now, strict=strict, due_in_ms=due_in_ms)
            if isinstance(d, rules.Claim):
                if d.takeover:
                    sql.take_over(t, key, owner_id, token, now + ttl_ms, d.due_at_ms, now)
                else:
                    sql.insert_claim(t, key, envelope_hash, owner_id, token, now + ttl_ms, d.due_at_ms, now)
            return d, now

        return self._write(tx, "claim effect")

    def _tx_finish(self, key: EffectKey, envelope_hash: str, token: str, status: str,
                   outcome: bytes | None, error: bytes | None) -> bool:
        def tx(t: Tx) -> bool:
            ok = sql.settle(t, key, envelope_hash, token, status, outcome, error, t.now())
            if ok:
                t.notify(effect_topic(key))
            return ok

        return self._write(tx, "record effect outcome")

    def _tx_release(self, key: EffectKey, envelope_hash: str, token: str) -> bool:
        def tx(t: Tx) -> bool:
            ok = sql.release(t, key, envelope_hash, token, t.now())
            if ok:
                t.notify(effect_topic(key))
            return ok

        return self._write(tx, "release effect")

    def _tx_renew(self, leases: list[tuple[EffectKey, str, str]], ttl_ms: int) -> list[str]:
        """Renew every lease in one transaction; the tokens whose row no longer holds them."""

        def tx(t: Tx) -> list[str]:
            expires = t.now() + ttl_ms
            return [token for key, ehash, token in leases if not sql.renew(t, key, ehash, token, expires)]

        return self._write(tx, "renew effect leases")

    # -- configuration -------------------------------------------------------------------------
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
        """One look: a claim or a replay, or (how long to wait before the next look, the owner)."""
        notifier = self._notifier(key)
        # Read before the look, so a finish committed after it still wakes this caller.
        seen = notifier.generation if notifier is not None else 0
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
        delay_ms = rules.wait_delay_ms(polls, decision.retry_at_ms, now)
        if notifier is not None:
            # Sleep the backoff here, woken early by the owner's notification; then look again at once.
            notifier.wait(seen, delay_ms / 1000)
            return 0, decision.owner_id
        return delay_ms, decision.owner_id

    def _notifier(self, key: EffectKey) -> Any:
        """What wakes a caller waiting on `key` early (held for the look and its wait), or None
        where only polling sees another owner's finish."""
        if self._hub is None:
            return None
        self._hub.start()
        return self._hub.notifier(effect_topic(key))

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


    # -- reads and deletes ---------------------------------------------------------------------
    def get_effect(self, scope: ScopeLike, replay_key: str) -> EffectRecord | None:
        key = EffectKey.of(EffectScope.of(scope), rules.check_replay_key(replay_key))
        row = self._read(lambda t: sql.load(t, key), "get effect")
        return None if row is None else rules.effect_record(key, row)

    def list_effects(
        self,
        scope: ScopeLike | None = None,
        *,
        session_id: str | None = None,
        status: EffectStatus | str | None = None,
        limit: int | None = None,
    ) -> list[EffectRecord]:
        """Recorded effects in the order they were first claimed, narrowed by scope, session and
        status (AND); with `limit`, the newest `limit` of them."""
        where: list[tuple[str, object]] = []
        if scope is not None:
            s = EffectScope.of(scope)
            where += [("scope_kind", s.kind), ("session_id", s.session_id or ""), ("scope_id", s.id)]
        if session_id is not None:
            where.append(("session_id", v.check_id(session_id, "session_id")))
        if status is not None:
            where.append(("status", rules.check_status(status)))
        v.check_nonneg_int(limit, "limit", optional=True)
        rows = self._read(lambda t: sql.listing(t, where, limit), "list effects")
        return [rules.effect_record(*sql.decode_row(r)) for r in rows]

    def delete_effect(self, scope: ScopeLike, replay_key: str) -> bool:
        """Forget one recorded effect, so its next call runs again. A live claim on it then ends
        in lease_lost for its owner."""
        key = EffectKey.of(EffectScope.of(scope), rules.check_replay_key(replay_key))

        def tx(t: Tx) -> bool:
            gone = sql.delete(t, key)
            if gone:
                t.notify(effect_topic(key))
            return gone

        return self._write(tx, "delete effect")

    def delete_scope(self, scope: ScopeLike) -> int:
        """Forget every recorded effect of a scope; returns how many."""
        s = EffectScope.of(scope)

        def tx(t: Tx) -> int:
            n, keys = sql.delete_scope(t, s.kind, s.session_id or "", s.id)
            for key in keys:
                t.notify(effect_topic(key))
            return n

        return self._write(tx, "delete effect scope")

    # -- maintenance ---------------------------------------------------------------------------
    def prune_effects(self, older_than_ms: int, *, dry_run: bool = False) -> int:
        """Delete finished (completed or failed) records last updated at least `older_than_ms`
        ago; records in progress are never touched. A later call with a pruned key runs its
        function again. `dry_run` counts what would go."""
        v.check_nonneg_int(older_than_ms, "older_than_ms")

        def tx(t: Tx) -> int:
            return sql.finished_before(t, t.now() - older_than_ms, delete=not dry_run)

        return (self._read if dry_run else self._write)(tx, "prune effects")

    # -- maintenance (verify, shrink, dump and load: engine.registry) ---------------------------
    _spec = sql.DUMP

    def _check_rows(self, t: Tx, chk: Checker) -> None:
        for row in sql.every_row(t):
            chk.run("effect", "/".join(map(str, row[:4])), _decode_record, row)


def _decode_record(row: tuple) -> EffectRecord:
    return rules.effect_record(*sql.decode_row(row))


# -- one scope ------------------------------------------------------------------------------------


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
