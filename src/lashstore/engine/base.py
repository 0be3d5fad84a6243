"""What every store of the engine shares: its database, its options, its life."""

from __future__ import annotations

from typing import Any

from ..errors import StoreClosed
from ..model.session import DurabilityTier
from ..options import StoreOptions
from .tx import Db

__all__ = ["DbStore"]


class DbStore:
    """A store over one database (`engine.tx.Db`). Thread-safe: every operation is one
    transaction of the database object.

    tier: the durability the backend gives. owns_db: close the database with the store.
    """

    #: what the store is, in messages ("session store", "process registry", ...)
    _what = "store"

    def __init__(self, db: Db, *, options: StoreOptions | None = None,
                 tier: DurabilityTier = DurabilityTier.DURABLE, owns_db: bool = True) -> None:
        self._db = db
        self._opts = options or StoreOptions()
        self._clock = self._opts.clock
        self._tx_clock = db.clock_for(self._opts)  # type: ignore[attr-defined]
        self._tier = tier
        self._owns_db = owns_db
        self._closed = False

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closed = True
        if self._owns_db:
            self._db.close()

    @property
    def closed(self) -> bool:
        return self._closed or self._db.closed

    @property
    def options(self) -> StoreOptions:
        return self._opts

    @property
    def database(self) -> Db:
        return self._db

    @property
    def location(self) -> str:
        """Where the store is, for reports (a file, `postgresql:<schema>`, `memory:`)."""
        return self._db.location  # type: ignore[attr-defined]

    def durability_tier(self) -> DurabilityTier:
        return self._tier

    def _write(self, fn: Any, where: str) -> Any:
        if self._closed:
            raise StoreClosed(f"{self._what} {self.location} is closed ({where})")
        return self._db.write(fn, where, clock=self._tx_clock)

    def _read(self, fn: Any, where: str) -> Any:
        if self._closed:
            raise StoreClosed(f"{self._what} {self.location} is closed ({where})")
        return self._db.read(fn, where, clock=self._tx_clock)
