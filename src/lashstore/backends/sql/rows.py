"""Whole tables as rows, written once for SQLite and PostgreSQL: what a registry's dump reads and
its load writes (`lashstore copy` moves registries this way between backends).

A table's rows are tuples in a fixed column order (`Spec`), read in a fixed row order, in a form
both backends share: booleans as `bool` (SQLite keeps them as 0/1), binary as `bytes`. Numbers
that only order rows and that the destination hands out itself (an effect's `seq`) are not
columns of the spec: rows are written in their order and numbered again.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ...engine.tx import Tx

__all__ = ["Spec", "BOOL_COLUMNS", "normalise", "read_tables", "tables_with_rows", "write_tables"]

#: table -> (columns, ORDER BY of a dump)
Spec = dict[str, tuple[tuple[str, ...], str]]

#: Columns SQLite keeps as 0/1 integers and PostgreSQL as booleans.
BOOL_COLUMNS = frozenset({"enabled", "tombstoned"})


def normalise(columns: tuple[str, ...], row: Iterable[Any]) -> tuple:
    """One row in the shared form: booleans as bool, binary as bytes."""
    out = []
    for name, value in zip(columns, row):
        if name in BOOL_COLUMNS and value is not None:
            value = bool(value)
        elif type(value) is memoryview or type(value) is bytearray:
            value = bytes(value)
        out.append(value)
    return tuple(out)


def read_tables(t: Tx, spec: Spec) -> dict[str, list[tuple]]:
    return {
        table: [normalise(cols, r) for r in t.all(f"SELECT {', '.join(cols)} FROM {table} ORDER BY {order}")]
        for table, (cols, order) in spec.items()
    }


def tables_with_rows(t: Tx, spec: Spec) -> list[str]:
    return [table for table in spec if t.one(f"SELECT 1 FROM {table} LIMIT 1") is not None]


def write_tables(t: Tx, spec: Spec, tables: dict[str, list[tuple]]) -> None:
    for table, (cols, _) in spec.items():
        rows = tables.get(table) or []
        if rows:
            t.many(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", rows)
