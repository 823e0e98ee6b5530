"""A batch's time: once it is up, a batch of several requests makes no more of them.

A batch that takes one request per message (Mailgun's API, an SMTP relay)
or several (a refused batch sent in halves) could, with a slow provider, go
on past ``DISPATCH_LEASE``: on PostgreSQL the server then ended the claim,
another dispatcher claimed the batch, and its messages went out twice. The
dispatcher sets the time (half the lease from the send's start); the
providers ask before each request after the first, and give the messages
they did not try back, to be sent with the next claim.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from .base import Outcome, SendResult

_UNTIL: ContextVar[float | None] = ContextVar("newsletter_send_until", default=None)

# What a message not tried for want of time gets: back in the queue, on the batch's
# back-off (counted as a try, as any untried message of a stopped batch is).
OUT_OF_TIME = SendResult(
    Outcome.TRANSIENT,
    error="the batch's time ran out (half of DISPATCH_LEASE) before its turn",
)


@contextmanager
def sending_until(deadline: float | None) -> Iterator[None]:
    """Within the block, ``time_is_up`` once ``time.monotonic()`` passes ``deadline``."""
    token = _UNTIL.set(deadline)
    try:
        yield
    finally:
        _UNTIL.reset(token)


def time_is_up() -> bool:
    """Whether the batch being sent has used its time (never, outside ``sending_until``)."""
    until = _UNTIL.get()
    return until is not None and time.monotonic() >= until
