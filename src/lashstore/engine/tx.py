"""The transaction interface every backend gives the engine, and the dialect it speaks.

The engine (and the statements in `lashstore.backends.sql`) run inside `Db.write(fn, where)` /
`Db.read(fn, where)`: `fn(tx)` gets one open transaction and returns a value; the backend begins,
commits, rolls back on any exception, translates driver errors into lashstore's, and (PostgreSQL)
runs `fn` again after a serialization failure or a lost connection, so `fn` must only read and
write through `tx`.

SQL is written once with `?` placeholders; a PostgreSQL transaction turns them into `%s`. What
differs between the dialects beyond that lives on `tx.dialect`: a few SQL fragments, and the few
statements that are truly one backend's (the SKIP LOCKED claim).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol, TypeVar

__all__ = ["Tx", "Db", "Dialect", "UniqueViolation", "any_of", "T"]

T = TypeVar("T")


class UniqueViolation(Exception):
    """Internal: an insert hit a unique key of `table` (mapped by `Tx.unique_errors`)."""


class Dialect(Protocol):
    """What differs between the SQL backends, for the statements written once."""

    name: str  # "sqlite" or "postgres"
    #: appended to a SELECT that must lock its rows until commit ("" where the whole database is
    #: locked by the write transaction, as on SQLite)
    for_update: str
    #: the same for rows that must only not be deleted under the transaction
    for_key_share: str
    #: the scalar maximum of two values ("max" on SQLite, "greatest" on PostgreSQL)
    greatest: str


class Tx(Protocol):
    """One open transaction."""

    dialect: Any
    #: table -> exception raised instead of a unique violation on that table
    unique_errors: dict[str, type[Exception]]

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any: ...

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple | None: ...

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]: ...

    def many(self, sql: str, params_seq: Sequence[Sequence[Any]]) -> None: ...

    def rowcount(self, sql: str, params: Sequence[Any] = ()) -> int: ...

    def defer(self, sql: str, params: Sequence[Any] = ()) -> None:
        """A write whose result nobody reads (PostgreSQL sends it with the next statement or the
        COMMIT, saving a round trip; SQLite runs it now)."""
        ...

    def defer_many(self, sql: str, params_seq: Sequence[Sequence[Any]]) -> None: ...

    def now(self) -> int:
        """The transaction's time in epoch ms: the store's clock, or the database's."""
        ...

    def set_now(self, value: int) -> None:
        """Adopt a database-clock reading fetched with another statement (where it is used)."""
        ...

    def lock(self, *key: str) -> None:
        """A lock on `key` until the transaction ends (a no-op where the write transaction holds
        the whole database)."""
        ...

    def notify(self, topic: str) -> None:
        """Wake waiters on `topic` once this transaction commits."""
        ...


class Db(Protocol):
    dialect: Any

    def write(self, fn: Callable[[Tx], T], where: str, *, clock: Any = None) -> T: ...

    def read(self, fn: Callable[[Tx], T], where: str, *, clock: Any = None) -> T: ...

    @property
    def closed(self) -> bool: ...

    def close(self) -> None: ...


def any_of(t: Tx, column: str, values: Iterable[Any]) -> tuple[str, list[Any]]:
    """(`column` is one of `values`, its parameters): `= ANY(?)` with one array on PostgreSQL,
    `IN (?, ...)` on SQLite."""
    vals = list(values)
    if t.dialect.name == "postgres":
        return f"{column} = ANY(?)", [vals]
    if not vals:
        return "0", []
    return f"{column} IN ({', '.join('?' * len(vals))})", vals
