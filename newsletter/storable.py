"""Whether parsed JSON can be stored: no NUL or half a UTF-16 pair, no nesting too deep."""

from __future__ import annotations

import re
from typing import Any

# No encoding can hold a lone surrogate, which JSON may escape ("\ud800"); PostgreSQL's
# text cannot hold NUL either.
_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")


def holds_unstorable_text(data: Any, allow_nul: bool = False) -> bool:
    """True if any key or string in ``data`` holds a lone surrogate or (unless allowed) NUL."""
    pattern = _LONE_SURROGATE if allow_nul else _UNSTORABLE
    pending = [data]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if pattern.search(item):
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


def nested_deeper_than(data: Any, depth: int) -> bool:
    """True if ``data`` has lists or objects more than ``depth`` levels within each other.

    Python's parser reads about a thousand levels; turning that back into
    JSON for a JSON column, a few frames further down the stack, did not.
    """
    pending = [(data, 0)]
    while pending:
        item, level = pending.pop()
        if isinstance(item, dict | list):
            if level >= depth:
                return True
            children = item.values() if isinstance(item, dict) else item
            pending.extend((child, level + 1) for child in children)
    return False
