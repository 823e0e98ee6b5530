"""JSON for the HTTP providers, with bodies that arrive already encoded.

A digest copy is several kilobytes, nearly all of it the body every copy
shares. Encoding that body afresh for each reader was the largest single
cost of sending (about 12 µs a copy once the body holds any non-ASCII
character, as most do). The renderer encodes the shared parts once (per
digest, or per batch of confirmations) and hands each copy over as a
``PreEncoded`` string, spliced from those parts and the reader's own values;
``dumps`` puts its bytes in as they are.
"""

from __future__ import annotations

from typing import Any

import orjson


class PreEncoded(str):
    """A string that carries its own JSON encoding (quotes included)."""

    json: bytes

    def __new__(cls, value: str, json: bytes) -> PreEncoded:
        """``value``, with ``json`` its exact encoding: the caller vouches for the match."""
        self = super().__new__(cls, value)
        self.json = json
        return self

    def __getnewargs__(self) -> tuple[str, bytes]:
        """Copied or pickled with its encoding (``copy``, ``dataclasses.asdict``)."""
        return (str.__str__(self), self.json)


def json_content(value: str) -> bytes:
    """``value`` encoded as the inside of a JSON string, without its quotes.

    JSON escapes each character on its own, so the contents of two strings
    joined are the joined contents of each: parts encoded apart splice.
    """
    return orjson.dumps(value)[1:-1]


def dumps(payload: Any) -> bytes:
    """``payload`` as JSON bytes, each ``PreEncoded`` string as its own encoding."""
    return orjson.dumps(payload, default=_subclass, option=orjson.OPT_PASSTHROUGH_SUBCLASS)


def _subclass(value: Any) -> Any:
    """What orjson hands back under ``OPT_PASSTHROUGH_SUBCLASS``: subclasses of builtins."""
    if isinstance(value, PreEncoded):
        return orjson.Fragment(value.json)
    # Any other subclass: its base value, as plain orjson would write it (not what an
    # overridden __str__ or __int__ says).
    for builtin, base_value in ((str, str.__str__), (int, int.__int__), (dict, dict.copy)):
        if isinstance(value, builtin):
            return base_value(value)
    if isinstance(value, list):
        return list.copy(value)
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")
