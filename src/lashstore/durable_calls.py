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

The engine every effect store runs (`EffectEngine`: the claim loop, the lease heartbeat, the wait
for a running owner and the settling of an outcome) lives in `lashstore.engine.effects`; its
names are importable from here too.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from .codec import check_json, stable_hash
from .engine.effects import EffectAttempt, EffectEngine, ScopedEffectController, ScopeLike
from .errors import ValidationError
from .model.effects import EffectScope
from .rules.effects import EffectPolicy

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
