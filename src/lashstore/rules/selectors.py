"""Evaluating process value selectors against an event payload.

A selector picks a value out of a payload: all of it, the value at an RFC 6901 JSON pointer, a
constant, a template filled from other selectors, or whether a pointer resolves. `render` turns a
selected value into the string a wake carries; `truthy` decides a wake's `when`. Pure functions,
shared by every backend.
"""

from __future__ import annotations

import re
from typing import Any

from ..codec import canonical_json, check_json
from ..errors import ValidationError
from ..model.process import (
    ConstSelector,
    PayloadSelector,
    PointerSelector,
    PresentSelector,
    ProcessValueSelector,
    TemplateSelector,
)

__all__ = ["parse_pointer", "resolve_pointer", "select", "render", "truthy", "check_selector"]

_MISSING = object()
_INDEX = re.compile(r"0|[1-9][0-9]*\Z")
_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")


def parse_pointer(pointer: str) -> list[str]:
    """The reference tokens of an RFC 6901 pointer; ValidationError when it is malformed."""
    if type(pointer) is not str:
        raise ValidationError(f"a JSON pointer must be a string, got {pointer!r}")
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise ValidationError(f"JSON pointer {pointer!r} must be empty or start with '/'")
    tokens = pointer[1:].split("/")
    for t in tokens:
        i = t.find("~")
        while i != -1:
            if i + 1 >= len(t) or t[i + 1] not in "01":
                raise ValidationError(f"JSON pointer {pointer!r} has a '~' not followed by 0 or 1")
            i = t.find("~", i + 2)
    return [t.replace("~1", "/").replace("~0", "~") for t in tokens]


def resolve_pointer(document: Any, pointer: str) -> Any:
    """The value at `pointer`, or the module's _MISSING sentinel when a step does not exist."""
    cur = document
    for token in parse_pointer(pointer):
        if isinstance(cur, dict):
            if token not in cur:
                return _MISSING
            cur = cur[token]
        elif isinstance(cur, (list, tuple)):
            if not _INDEX.match(token):
                return _MISSING
            i = int(token)
            if i >= len(cur):
                return _MISSING
            cur = cur[i]
        else:
            return _MISSING
    return cur


def select(selector: ProcessValueSelector, payload: Any) -> Any:
    if isinstance(selector, PayloadSelector):
        return payload
    if isinstance(selector, PointerSelector):
        value = resolve_pointer(payload, selector.pointer)
        if value is _MISSING:
            raise ValidationError(f"payload pointer `{selector.pointer}` did not match")
        return value
    if isinstance(selector, ConstSelector):
        return selector.value
    if isinstance(selector, PresentSelector):
        return resolve_pointer(payload, selector.pointer) is not _MISSING
    if isinstance(selector, TemplateSelector):
        values = {name: render(select(sel, payload)) for name, sel in selector.fields.items()}
        # One pass, so a field value that itself looks like `{name}` is left as it is.
        return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), selector.template)
    raise ValidationError(f"unknown selector {selector!r}")


def render(value: Any) -> str:
    """A string as itself; anything else as compact JSON with sorted keys (`7` -> "7")."""
    if type(value) is str:
        return value
    return canonical_json(value).decode()


def truthy(value: Any) -> bool:
    """null false; bool itself; string, list, object non-empty; a number always true."""
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, (str, list, tuple, dict, bytes)):
        return len(value) > 0
    return True


def check_selector(selector: Any, what: str) -> None:
    """Refuse a malformed selector at registration, before any event can hit it."""
    if isinstance(selector, PayloadSelector):
        return
    if isinstance(selector, (PointerSelector, PresentSelector)):
        try:
            parse_pointer(selector.pointer)
        except ValidationError as e:
            raise ValidationError(f"{what}: {e}") from None
        return
    if isinstance(selector, ConstSelector):
        check_json(selector.value, f"{what}.value")
        return
    if isinstance(selector, TemplateSelector):
        if type(selector.template) is not str:
            raise ValidationError(f"{what}.template must be a string")
        if not isinstance(selector.fields, dict):
            raise ValidationError(f"{what}.fields must be a dict of selectors")
        for name, sel in selector.fields.items():
            if type(name) is not str or not name or "{" in name or "}" in name:
                raise ValidationError(f"{what}.fields: {name!r} is not a usable placeholder name")
            check_selector(sel, f"{what}.fields[{name!r}]")
        return
    raise ValidationError(
        f"{what} must be a selector (PayloadSelector, PointerSelector, ConstSelector, TemplateSelector "
        f"or PresentSelector), got {type(selector).__name__}"
    )
