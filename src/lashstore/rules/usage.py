"""The token-usage ledger merge."""

from __future__ import annotations

from collections.abc import Iterable

from ..model.session import TokenLedgerEntry, TokenUsage

__all__ = ["merge_ledger"]


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
