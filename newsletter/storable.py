"""Whether parsed JSON holds text no database column can store: NUL, or half a UTF-16 pair."""

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
