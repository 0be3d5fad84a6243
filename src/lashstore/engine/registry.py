"""What the three registries (processes, host events, effects) share: verify, shrink, and the
dump and load of every row (`lashstore copy`).

A registry engine names its tables (`_spec`, a `backends.sql.rows.Spec`), checks its rows for
verify (`_check_rows`), and keeps counters beside its rows (`_counters`, `_raise_counters`).
"""

from __future__ import annotations

from typing import Any

from ..backends.sql import rows as sql
from ..errors import LashStoreError, StoreClosed, ValidationError
from ..model.maintenance import Problem, RegistryDump
from .maintenance import Checker
from .tx import Tx

__all__ = ["RegistryMethods"]

_SCALARS = (str, int, bytes, type(None))


class RegistryMethods:
    """Mixed into a `DbStore` of one registry."""

    _spec: sql.Spec
    _what: str
    location: str
    closed: bool
    _db: Any
    # and DbStore's _read and _write

    # -- per registry -----------------------------------------------------------------------------
    def _check_rows(self, t: Tx, chk: Checker) -> None:
        """Decode every row the way the registry does; a Problem for each that fails."""
        raise NotImplementedError

    def _counters(self, t: Tx) -> dict[str, int]:
        return {}

    def _raise_counters(self, t: Tx, dump: RegistryDump) -> None:
        """Move the counters past `dump.counters` and every number the rows now written use
        (before they are checked: a mistyped number is left for the check to name)."""

    # -- shared -----------------------------------------------------------------------------------
    def verify(self) -> tuple[int, list[Problem]]:
        """(records checked, problems): the database's own integrity check, then every row
        decoded the way the registry decodes it, in one snapshot. Nothing is changed."""
        if self.closed:
            raise StoreClosed(f"{self._what} {self.location} is closed (verify)")
        chk = Checker(self.location)
        try:
            for what, key, detail in self._db.integrity_problems():
                chk.add(what, key, detail)
            self._read(lambda t: self._check_rows(t, chk), f"verify {self._what}")
        except LashStoreError as e:
            chk.add("registry", self.location, str(e))
        return chk.records, chk.problems

    def shrink(self) -> tuple[int, int, bool]:
        """Give the database's free space back: (bytes before, bytes after, fully checkpointed).
        SQLite rewrites the file; PostgreSQL vacuums the registry's tables."""
        return self._db.shrink(tables=tuple(self._spec))

    def dump_registry(self) -> RegistryDump:
        """Every row and counter of the registry, from one snapshot."""
        return self._read(lambda t: RegistryDump(tables=sql.read_tables(t, self._spec), counters=self._counters(t)),
                          f"dump {self._what}")

    def load_registry(self, dump: RegistryDump) -> None:
        """Write a dump into this registry, which must hold no rows, in one transaction. Every
        row is then checked as verify would; on any failure nothing is written."""
        self._check_shape(dump)

        def tx(t: Tx) -> None:
            busy = sql.tables_with_rows(t, self._spec)
            if busy:
                raise ValidationError(f"{self._what} {self.location} already holds rows in {', '.join(busy)}; "
                                      "load a dump only into an empty registry; nothing was written")
            sql.write_tables(t, self._spec, dump.tables)
            self._raise_counters(t, dump)
            chk = Checker(self.location)
            self._check_rows(t, chk)
            if chk.problems:
                p = chk.problems[0]
                raise ValidationError(f"the dump's {p.what} {p.key!r} is not a valid record ({p.detail}); "
                                      f"{len(chk.problems)} problem(s) in all; nothing was written")

        self._write(tx, f"load {self._what}")

    def _check_shape(self, dump: RegistryDump) -> None:
        unknown = sorted(set(dump.tables) - set(self._spec))
        if unknown:
            raise ValidationError(f"the dump names tables {self._what} does not have: {', '.join(unknown)}")
        for table, rows in dump.tables.items():
            cols = self._spec[table][0]
            for i, row in enumerate(rows):
                if type(row) not in (tuple, list) or len(row) != len(cols):
                    raise ValidationError(f"row {i} of {table} is not {len(cols)} values ({', '.join(cols)})")
                for name, value in zip(cols, row):
                    ok = (type(value) is bool or value is None) if name in sql.BOOL_COLUMNS else type(value) in _SCALARS
                    if not ok:
                        raise ValidationError(f"row {i} of {table}: column {name} holds {type(value).__name__}")
        for name, value in dump.counters.items():
            if type(value) is not int or value < 0:
                raise ValidationError(f"counter {name!r} of the dump is {value!r}, not a count")
