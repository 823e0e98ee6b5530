"""Ctrl-C and SIGTERM on a command that sends: finish the batch in flight, then stop.

A batch's provider call and the record of its answers are one step: stopped
between them, the provider has the messages while the ledger still says
``sending``, and after the lease they go out again. ``dispatch_pass`` asks
``should_stop`` before each claim, so a command passes it this event.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

import click

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


# Said at the first signal, where this process sends; a second Ctrl-C may send twice.
WHILE_SENDING = (
    "stopping once the batch in flight is recorded (Ctrl-C again quits now, and its "
    "readers may then get it twice)"
)


@contextmanager
def stop_between_batches(notice: str = WHILE_SENDING) -> Iterator[threading.Event]:
    """An event the first SIGINT or SIGTERM sets, saying ``notice``; a second Ctrl-C quits."""
    stop = threading.Event()

    def first(signum: int, _frame: FrameType | None) -> None:
        stop.set()
        click.echo(f"\n{notice}", err=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = {signum: signal.signal(signum, first) for signum in _SIGNALS}
    try:
        yield stop
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
