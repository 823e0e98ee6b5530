"""An uploaded CSV's bytes as text: UTF-8, or UTF-16 when a byte order mark says so.

Spreadsheets save CSV as UTF-8 (Excel's "CSV UTF-8", Google Sheets,
Numbers, LibreOffice), and Excel's "Unicode Text" as UTF-16 with a byte
order mark. A byte that is not text in the file's encoding becomes one lone
surrogate (``UNREADABLE``), so the line holding it fails alone.
"""

from __future__ import annotations

import codecs
import io
import re
from typing import IO

_MARKER = "\udcff"
UNREADABLE = re.compile(r"[\udc80-\udcff]")  # what a stray byte becomes, in either encoding


def _mark_unreadable(error: UnicodeError) -> tuple[str, int]:
    if not isinstance(error, UnicodeDecodeError):
        raise error
    return _MARKER, error.end


codecs.register_error("newsletter.unreadable", _mark_unreadable)

_BOMS = ((codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))


def csv_text(stream: IO[bytes]) -> tuple[io.TextIOWrapper, str]:
    """The stream as text, and its encoding's name as a person would say it.

    Closing the wrapper leaves the caller's stream open: it stays the caller's to close.
    """
    head = stream.read(2)
    encoding = next((name for bom, name in _BOMS if head == bom), None)
    if encoding is None:  # UTF-8, its own BOM dropped by utf-8-sig
        raw = io.BufferedReader(_Replayed(head, stream))
        return _wrap(raw, "utf-8-sig"), "UTF-8"
    return _wrap(io.BufferedReader(_Replayed(b"", stream)), encoding), "UTF-16"


def _wrap(raw: io.BufferedReader, encoding: str) -> io.TextIOWrapper:
    return io.TextIOWrapper(raw, encoding=encoding, errors="newsletter.unreadable", newline="")


class _Replayed(io.RawIOBase):
    """The bytes already read from a stream that cannot seek back, then the rest of it."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._head:
            size = min(len(buffer), len(self._head))
            buffer[:size] = self._head[:size]
            self._head = self._head[size:]
            return size
        data = self._rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)
