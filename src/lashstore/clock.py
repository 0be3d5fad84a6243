"""Injectable time and id sources. Tokens and ids are random, never time plus a counter."""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from typing import Protocol

__all__ = ["Clock", "SystemClock", "ManualClock", "IdSource", "RandomIds"]


class Clock(Protocol):
    def now_ms(self) -> int:
        """Unix epoch milliseconds."""
        ...


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class ManualClock:
    """A clock that moves only when told to; for tests of expiry."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self._now = start_ms
        self._lock = threading.Lock()

    def now_ms(self) -> int:
        with self._lock:
            return self._now

    def advance(self, ms: int) -> int:
        with self._lock:
            self._now += ms
            return self._now

    def set(self, ms: int) -> None:
        with self._lock:
            self._now = ms


class IdSource(Protocol):
    def new_id(self, prefix: str) -> str: ...

    def token(self) -> str: ...


class RandomIds:
    def new_id(self, prefix: str) -> str:
        return f"{prefix}{uuid.uuid4().hex}"

    def token(self) -> str:
        return secrets.token_hex(16)
