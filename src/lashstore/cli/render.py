"""Rich helpers shared by the commands: consoles, tables, and short renderings of stored records.

Every value that comes from the store is wrapped in `Text`, never passed as a markup string, so a
message containing "[red]" prints as itself.
"""

from __future__ import annotations

import datetime
import os
import sys
import time
from collections.abc import Iterable
from typing import Any

import msgspec
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..model.session import ChildRelation, GraphNode, SessionRelation, SessionSummary, TokenLedgerEntry

__all__ = [
    "out",
    "err",
    "print_error",
    "write_json",
    "human_time",
    "human_bytes",
    "short_ref",
    "relation_text",
    "node_role_text",
    "sessions_table",
    "nodes_table",
    "usage_table",
    "blob_table",
    "compression_ratio",
    "PREVIEW_CHARS",
]

PREVIEW_CHARS = 60


PIPE_WIDTH = 120


def _console(stderr: bool) -> Console:
    # Made per call, not at import, so a replaced sys.stdout (pytest's capsys, a pipe) is honoured.
    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        # rich assumes 80 columns when it cannot ask a terminal; tables of ids and refs need more.
        console = Console(stderr=stderr, highlight=False, width=PIPE_WIDTH)
    return console


def out() -> Console:
    return _console(stderr=False)


def err() -> Console:
    return _console(stderr=True)


def print_error(message: str) -> None:
    # soft_wrap: an error message is one line, whatever the width, so it can be grepped.
    err().print(Text(f"error: {message}", style="bold red"), soft_wrap=True)


def print_warning(message: str) -> None:
    err().print(Text(f"warning: {message}", style="bold yellow"), soft_wrap=True)


def write_json(value: Any) -> None:
    """Indented JSON of structs, lists and dicts, on stdout, bypassing rich (no wrapping, no colour)."""
    data = msgspec.json.format(msgspec.json.encode(msgspec.to_builtins(value)), indent=2)
    sys.stdout.write(data.decode("utf-8") + "\n")
    sys.stdout.flush()


def human_time(ms: int | None, now_ms: int | None = None) -> str:
    if ms is None:
        return "-"
    now = time.time() * 1000 if now_ms is None else now_ms
    age = (now - ms) / 1000
    if -5 <= age < 60:
        return f"{max(int(age), 0)}s ago"
    if 0 < age < 3600:
        return f"{int(age // 60)} min ago"
    if 0 < age < 86400:
        return f"{int(age // 3600)} h ago"
    return datetime.datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M")


def human_bytes(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


def short_ref(ref: str | None, n: int = 12) -> str:
    return "-" if ref is None else f"{ref[:n]}…"


def relation_text(relation: SessionRelation | None) -> str:
    if type(relation) is ChildRelation:
        return f"child of {relation.parent_session_id}"
    return "root" if relation is not None else "-"


def _clip(text: str, limit: int = PREVIEW_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _content_text(content: Any) -> str:
    if type(content) is str:
        return content
    if type(content) is list:
        parts = []
        for p in content:
            if type(p) is str:
                parts.append(p)
            elif type(p) is dict:
                if type(p.get("text")) is str:
                    parts.append(p["text"])
                elif p.get("type") in ("image", "image_url", "input_image"):
                    parts.append("[image]")
        return " ".join(parts)
    if content is None:
        return ""
    return _clip(msgspec.json.encode(msgspec.to_builtins(content)).decode(), 200)


def node_role_text(payload: Any, limit: int = PREVIEW_CHARS) -> tuple[str, str]:
    """(role, first `limit` chars) of a node payload; payloads are the caller's, so anything goes."""
    if type(payload) is dict:
        for wrapper in ("message", "event"):
            if type(payload.get(wrapper)) is dict and "role" not in payload:
                return node_role_text(payload[wrapper], limit)
        role = str(payload.get("role") or payload.get("kind") or payload.get("type") or "?")
        text = _content_text(payload.get("content", payload.get("parts", payload.get("text"))))
        calls = payload.get("tool_calls")
        if type(calls) is list and calls:
            shown = []
            for c in calls:
                fn = c.get("function", c) if type(c) is dict else {}
                name = fn.get("name", "?") if type(fn) is dict else "?"
                args = fn.get("arguments", "") if type(fn) is dict else ""
                if type(args) is not str:
                    args = msgspec.json.encode(msgspec.to_builtins(args)).decode()
                shown.append(f"→ {name}({args})")
            text = (text + " " if text else "") + " ".join(shown)
        if role == "tool" and type(payload.get("name")) is str:
            role = f"tool:{payload['name']}"
        return role, _clip(text, limit)
    if payload is None:
        return "-", ""
    if type(payload) is bytes:
        return "bytes", f"{len(payload)} bytes"
    return type(payload).__name__, _clip(msgspec.json.encode(msgspec.to_builtins(payload)).decode(), limit)


NARROW = 100


def sessions_table(rows: list[SessionSummary], title: str | None = None, width: int = PIPE_WIDTH) -> Table:
    """The `sessions` listing. Below NARROW columns the name is left out so ids and errors fit."""
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False)
    with_names = width >= NARROW
    with_errors = any(r.error for r in rows)
    # Ids never wrap: they are what a user copies into `show`. Free text wraps instead.
    table.add_column("session", style="bold cyan", no_wrap=True)
    if with_names:
        table.add_column("name", overflow="fold")
    table.add_column("model", no_wrap=True)
    table.add_column("rev", justify="right", no_wrap=True)
    table.add_column("nodes", justify="right", no_wrap=True)
    table.add_column("updated", no_wrap=True)
    table.add_column("relation", overflow="fold")
    if with_errors:
        table.add_column("error", style="red", overflow="fold")
    for r in rows:
        meta = r.meta
        cells = [Text(r.session_id)]
        if with_names:
            cells.append(Text(meta.session_name if meta else "-"))
        cells += [
            Text(meta.model or "-" if meta else "-"),
            Text("-" if r.head_revision is None else str(r.head_revision)),
            Text(str(r.node_count)),
            Text(human_time(r.updated_at_ms)),
            Text(relation_text(meta.relation) if meta else "-"),
        ]
        if with_errors:
            error = r.error or ""
            if r.path:
                # The session column already names the file; keep the message short.
                error = error.replace(r.path, os.path.basename(r.path))
            cells.append(Text(error))
        table.add_row(*cells)
    return table


def nodes_table(
    nodes: Iterable[GraphNode],
    *,
    title: str | None = None,
    on_path: set[str] | None = None,
    leaf: str | None = None,
) -> Table:
    """One row per node. With `on_path` (the full graph), a parent column and a path marker."""
    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    table.add_column("#", justify="right", style="dim")
    if on_path is not None:
        table.add_column("", width=1)
    table.add_column("node", style="cyan", overflow="fold")
    if on_path is not None:
        table.add_column("parent", style="dim", overflow="fold")
    table.add_column("role", style="bold")
    table.add_column("text", overflow="fold")
    for i, n in enumerate(nodes, 1):
        role, text = node_role_text(n.payload)
        cells: list[Any] = [Text(str(i))]
        if on_path is not None:
            cells.append(Text("●", style="green") if n.node_id in on_path else Text(""))
        node_cell = Text(n.node_id)
        if n.node_id == leaf:
            node_cell.append(" (leaf)", style="green")
        cells.append(node_cell)
        if on_path is not None:
            cells.append(Text(n.parent_node_id or "-"))
        cells += [Text(role, style=_role_style(role)), Text(text)]
        table.add_row(*cells)
    return table


def _role_style(role: str) -> str:
    if role == "user":
        return "bold green"
    if role == "assistant":
        return "bold blue"
    if role.startswith("tool"):
        return "bold magenta"
    return "bold"


def usage_table(entries: list[TokenLedgerEntry], title: str | None = "Token usage") -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("source")
    table.add_column("model", style="bold")
    for name in ("input", "cached", "output", "reasoning", "total"):
        table.add_column(name, justify="right")
    sums = [0, 0, 0, 0, 0]
    for e in entries:
        u = e.usage
        values = [u.input_tokens, u.cached_input_tokens, u.output_tokens, u.reasoning_tokens, u.total()]
        sums = [a + b for a, b in zip(sums, values)]
        table.add_row(Text(e.source), Text(e.model), *(Text(f"{v:,}") for v in values))
    if len(entries) > 1:
        table.add_section()
        table.add_row(Text("all", style="bold"), Text(""), *(Text(f"{v:,}", style="bold") for v in sums))
    return table


def compression_ratio(stats: dict[str, int]) -> str:
    raw, stored = stats.get("raw_bytes", 0), stats.get("stored_bytes", 0)
    if not raw or not stored:
        return "-"
    return f"{raw / stored:.2f}x ({100 * (1 - stored / raw):.0f}% saved)"


def blob_table(rows: list[tuple[str, dict[str, int]]], title: str | None = "Blobs") -> Table:
    """One row per (label, `blob_stats()`): logical bytes before compression against stored bytes."""
    table = Table(title=title, title_justify="left")
    table.add_column("session", style="cyan", overflow="fold")
    table.add_column("blobs", justify="right")
    table.add_column("raw (before compression)", justify="right")
    table.add_column("stored (after)", justify="right")
    table.add_column("ratio", justify="right")
    for label, stats in rows:
        raw, stored = stats.get("raw_bytes", 0), stats.get("stored_bytes", 0)
        table.add_row(
            Text(label),
            Text(str(stats.get("count", 0))),
            Text(f"{human_bytes(raw)} ({raw:,} B)"),
            Text(f"{human_bytes(stored)} ({stored:,} B)"),
            Text(compression_ratio(stats)),
        )
    return table
