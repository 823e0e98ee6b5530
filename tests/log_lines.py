"""What a logger said during a block, caught on the logger itself."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager


class _Lines(logging.Handler):
    def __init__(self, level: int) -> None:
        super().__init__(level)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@contextmanager
def said_by(logger: logging.Logger, level: int = logging.WARNING) -> Iterator[list[str]]:
    """The messages ``logger`` said at ``level`` or above while the block ran.

    On the logger itself, not the root: other tests' logging setups may stop
    propagation, and pytest's caplog would then see nothing.
    """
    handler = _Lines(level)
    logger.addHandler(handler)
    try:
        yield handler.lines
    finally:
        logger.removeHandler(handler)
