"""Parsed JSON a column can store: no NUL or half a UTF-16 pair, no nesting too deep."""

from __future__ import annotations

import re
from typing import Any

# No encoding can hold a lone surrogate, which JSON may escape ("\ud800"); PostgreSQL's
# text cannot hold NUL either.
_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")


def unstorable(data: Any, allow_nul: bool = False, max_depth: int | None = None) -> str | None:
    """Why ``data`` cannot be stored, in one walk, or None.

    ``"text"``: a key or string holds a lone surrogate or (unless allowed) NUL.
    ``"nesting"``: lists or objects more than ``max_depth`` levels within each
    other. Python's parser reads about a thousand levels; turning that back
    into JSON for a JSON column, a few frames further down the stack, did not.
    """
    pattern = _LONE_SURROGATE if allow_nul else _UNSTORABLE
    pending = [(data, 0)]
    while pending:
        item, level = pending.pop()
        if isinstance(item, str):
            if pattern.search(item):
                return "text"
        elif isinstance(item, dict | list):
            if max_depth is not None and level >= max_depth:
                return "nesting"
            if isinstance(item, dict):
                pending.extend((key, level) for key in item)
                pending.extend((value, level + 1) for value in item.values())
            else:
                pending.extend((value, level + 1) for value in item)
    return None


def storable(data: Any, max_depth: int) -> Any:
    """``data`` as every column can store it: odd text replaced, nesting past ``max_depth`` cut.

    Each NUL and lone surrogate becomes U+FFFD rather than dropped: dropped,
    one id or address could become another's. Other control characters stay
    (a bounce's diagnostic text has lines). Nearly every value is stored as
    it is, and is returned so, not copied.
    """
    if unstorable(data, max_depth=max_depth) is None:
        return data
    return _made_storable(data, 0, max_depth)


def _made_storable(data: Any, level: int, max_depth: int) -> Any:
    if isinstance(data, str):
        return storable_text(data)
    if isinstance(data, dict | list) and level >= max_depth:
        return None  # the stack this walk takes stays max_depth frames deep
    if isinstance(data, dict):
        return {
            storable_text(key): _made_storable(value, level + 1, max_depth)
            for key, value in data.items()
        }
    if isinstance(data, list):
        return [_made_storable(value, level + 1, max_depth) for value in data]
    return data


def storable_text(value: str) -> str:
    """``value`` with each NUL and lone surrogate replaced by U+FFFD."""
    return _UNSTORABLE.sub("\ufffd", value)
