"""Whether parsed JSON can be stored: no NUL or half a UTF-16 pair, no nesting too deep."""

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
