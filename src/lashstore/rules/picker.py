"""Session picker summaries: the first user message and the number of user messages."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ..model.session import GraphNode

__all__ = ["user_message_text", "summarise", "Summariser"]

Summariser = Callable[[Iterable[GraphNode]], tuple[str, int]]


def _parts_text(parts: Any) -> str | None:
    if isinstance(parts, str):
        return parts
    if not isinstance(parts, list):
        return None
    out = []
    for p in parts:
        if isinstance(p, str):
            out.append(p)
        elif isinstance(p, dict):
            kind = p.get("type") or p.get("kind")
            if kind in ("image", "image_ref", "input_image"):
                out.append("[Image attached]")
            elif isinstance(p.get("text"), str):
                out.append(p["text"])
            elif isinstance(p.get("content"), str) and kind not in ("tool_call", "tool_result"):
                out.append(p["content"])
    return "\n\n".join(out)


def user_message_text(payload: Any) -> str | None:
    """The text of a user message payload, or None when the payload is not one.

    Understands `{"role": "user", "content": str | parts}`, `{"role": "user", "parts": [...]}`,
    and the same wrapped as `{"event": {...}}` or `{"message": {...}}`.
    """
    if not isinstance(payload, dict):
        return None
    for wrapper in ("event", "message"):
        inner = payload.get(wrapper)
        if isinstance(inner, dict):
            return user_message_text(inner)
    if payload.get("role") != "user":
        return None
    for key in ("parts", "content", "text"):
        if key in payload:
            text = _parts_text(payload[key])
            if text is not None:
                return text.strip()
    return ""


def summarise(nodes: Iterable[GraphNode]) -> tuple[str, int]:
    first: str | None = None
    count = 0
    for n in nodes:
        text = user_message_text(n.payload)
        if text is not None:
            count += 1
            if first is None:
                first = text
    return first or "", count
