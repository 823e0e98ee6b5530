"""Fetching a feed within one time limit for the whole exchange, redirects and body included.

requests' ``timeout`` bounds each socket read, not the exchange: a server sending
a byte of a header every half second, or answering each of 30 redirects just in
time, held an import for minutes. Here a watchdog shuts the fetch's sockets down
when its time is up, so whatever read is blocked returns at once, and each
connect is given only the time that is left.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from contextvars import ContextVar
from typing import Any

import requests

from ..http_pools import MixedInAdapter, pools_with


class Deadline:
    """A whole fetch's time limit: once it passes, each socket opened under it is shut down."""

    def __init__(self, seconds: float) -> None:
        self.ends = time.monotonic() + seconds  # the timer, started on entering, matches it
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._expired = False
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        with self._lock:  # waits for a watchdog already at work; none will start after
            self._sockets.clear()

    @property
    def passed(self) -> bool:
        """True once the time is up (the watchdog may be a moment behind the clock)."""
        return self._expired or time.monotonic() >= self.ends

    def remaining(self) -> float:
        """Seconds left, 0 when the time is up."""
        return max(self.ends - time.monotonic(), 0.0)

    def watch(self, sock: socket.socket) -> None:
        """Shut ``sock`` down when the time is up (now, if it already is)."""
        with self._lock:
            if self._expired:
                _shut(sock)
            else:
                self._sockets.add(sock)

    def _expire(self) -> None:
        with self._lock:
            self._expired = True
            for sock in self._sockets:
                _shut(sock)


def _shut(sock: socket.socket) -> None:
    # socket.socket's own shutdown, not SSLSocket's: that one also drops the TLS state
    # a blocked read is using, which then fails with ValueError, not as a lost
    # connection. Shut down, a blocked read returns at once (the end of the stream).
    # OSError: closed already, or never connected; nothing to wake.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


# The deadline of the fetch this thread is making: connections are created deep in
# urllib3, which passes them nothing of ours; the adapter sets it around each request.
_CURRENT: ContextVar[Deadline | None] = ContextVar("feed_deadline", default=None)


class _Watched:
    """A urllib3 connection whose sockets the current fetch's deadline can shut down."""

    sock: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline = _CURRENT.get()

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()  # type: ignore[misc]
        if self._deadline is not None:
            self._deadline.watch(sock)  # a plain connection's reads; TLS replaces the socket
        return sock

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        if self._deadline is not None:
            # TLS: a new socket object on the same descriptor (its handshake is bounded
            # by the connect timeout, the time left, not by the watchdog).
            self._deadline.watch(self.sock)


class _DeadlineAdapter(MixedInAdapter):
    """Sends each request (a redirect is one more) within what is left of the deadline."""

    pools = pools_with(_Watched)  # connections the deadline watches

    def __init__(self, deadline: Deadline) -> None:
        self.deadline = deadline
        super().__init__()

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Any = None,
    ) -> requests.Response:
        """The response, or ``requests.Timeout`` once the deadline has passed."""
        # The caller's timeout gives way to the time left: a connect (no socket to
        # watch yet) must not wait longer than that. Read once: 0 would be a ValueError.
        left = self.deadline.remaining()
        if self.deadline.passed or left <= 0:
            raise requests.Timeout("the fetch's time is up", request=request)
        token = _CURRENT.set(self.deadline)
        try:
            return super().send(request, stream, left, verify, cert, proxies)
        finally:
            _CURRENT.reset(token)


def session_within(deadline: Deadline) -> requests.Session:
    """A requests session whose every request, redirects included, ends by ``deadline``."""
    session = requests.Session()
    adapter = _DeadlineAdapter(deadline)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
