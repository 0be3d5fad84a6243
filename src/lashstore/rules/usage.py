"""The token-usage ledger merge."""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any

from ..model.session import TokenLedgerEntry, TokenUsage

__all__ = ["merge_ledger", "plan_usage_fold"]


def merge_ledger(entries: Iterable[TokenLedgerEntry]) -> list[TokenLedgerEntry]:
    """Merge entries by (source, model), in first-seen order, adding all four counters.

    Entries with no tokens at all are dropped. Unlike the reference SQLite store, an entry with
    only cached input tokens is kept: cached tokens are billed, so they are usage.
    """
    merged: dict[tuple[str, str], TokenUsage] = {}
    for e in entries:
        u = e.usage
        if u.is_empty():
            continue
        acc = merged.get((e.source, e.model))
        if acc is None:
            merged[(e.source, e.model)] = TokenUsage(
                input_tokens=u.input_tokens,
                output_tokens=u.output_tokens,
                cached_input_tokens=u.cached_input_tokens,
                reasoning_tokens=u.reasoning_tokens,
            )
        else:
            acc.input_tokens += u.input_tokens
            acc.output_tokens += u.output_tokens
            acc.cached_input_tokens += u.cached_input_tokens
            acc.reasoning_tokens += u.reasoning_tokens
    return [TokenLedgerEntry(s, m, u) for (s, m), u in merged.items()]


def plan_usage_fold(
    rows: Iterable[tuple[Hashable, str, str, int, int, int, int]],
) -> tuple[list[Hashable], dict[Hashable, tuple[int, int, int, int]]]:
    """How to compact a ledger without changing what `merge_ledger` answers.

    `rows` are (row key, source, model, input, output, cached input, reasoning) in ledger order.
    Empty rows go; the rows of each (source, model) are added into the first of them, except that
    no folded row ever holds a count above MAX_TOKENS (every stored row obeys the bound a commit
    does): when the next row would push one past it, that row becomes the new accumulator.

    Returns (keys of rows to delete, {key of a kept row: its new four counts}).
    """
    from .validate import MAX_TOKENS

    doomed: list[Hashable] = []
    updates_done: list[list[Any]] = []  # accumulators closed because the next row would overflow
    acc: dict[tuple[str, str], list[Any]] = {}  # (source, model) -> [key, i, o, ca, r, changed]
    for key, source, model, i, o, ca, r in rows:
        if i + o + ca + r == 0:
            doomed.append(key)
            continue
        a = acc.get((source, model))
        if a is not None and max(a[1] + i, a[2] + o, a[3] + ca, a[4] + r) <= MAX_TOKENS:
            a[1] += i
            a[2] += o
            a[3] += ca
            a[4] += r
            a[5] = True
            doomed.append(key)
        else:
            if a is not None and a[5]:
                updates_done.append(a)
            acc[(source, model)] = [key, i, o, ca, r, False]
    updates = {a[0]: (a[1], a[2], a[3], a[4]) for a in updates_done + list(acc.values()) if a[5]}
    return doomed, updates
