"""Waiting for something to be stored: a notifier that wakes waiters in this process, plus a
bounded poll that sees what other processes write.

A notification is only a hint to look again, never the truth: a waiter re-reads the database
after every wake-up and at least every POLL_CAP_S, so a lost or spurious notification costs
latency, never correctness. Time here is the monotonic clock: a wait lasts real seconds, whatever
clock the store's records use.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

from ..errors import WaitTimeout

__all__ = ["Notifier", "shared_notifier", "wait_for", "POLL_START_S", "POLL_CAP_S"]

T = TypeVar("T")

#: Waiters poll the database from POLL_START_S, doubling up to POLL_CAP_S, to see writes made
#: by other processes; writes in this process wake them at once through a Notifier.
POLL_START_S = 0.005
POLL_CAP_S = 0.040


class Notifier:
    """A condition with a generation counter, so a notification between a waiter's check and its
    wait is never lost."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._generation = 0

    @property
    def generation(self) -> int:
        return self._generation

    def notify(self) -> None:
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    def wait(self, seen: int, timeout: float) -> None:
        with self._cond:
            if self._generation == seen:
                self._cond.wait(timeout)


_shared: dict[str, Notifier] = {}
_shared_lock = threading.Lock()


def shared_notifier(key: str) -> Notifier:
    """The notifier of one database (keyed by its resolved path), shared by every handle on it
    in this process, so a write through one handle wakes waiters on all of them."""
    with _shared_lock:
        n = _shared.get(key)
        if n is None:
            n = _shared[key] = Notifier()
        return n


def wait_for(check: Callable[[], T | None], notifier: Notifier, timeout: float, *, poll: bool, what: str) -> T:
    """Run `check` until it returns something other than None; WaitTimeout after `timeout` s.

    `check` runs at once, after every notification, and (with `poll`) at least every
    POLL_CAP_S. `timeout` is checked by the caller (`rules.process.check_timeout`).
    """
    deadline = time.monotonic() + timeout
    delay = POLL_START_S
    while True:
        seen = notifier.generation
        found = check()
        if found is not None:
            return found
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WaitTimeout(f"{what} did not happen within {timeout:g} s; wait again with a longer timeout")
        notifier.wait(seen, min(delay, remaining) if poll else remaining)
        if poll:
            delay = min(delay * 2, POLL_CAP_S)
