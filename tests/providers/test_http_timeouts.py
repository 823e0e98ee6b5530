"""A timeout before the request went out is a plain failure; after it, the outcome is unknown."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from newsletter.providers import Outcome
from newsletter.providers.http import HttpApi


@contextmanager
def _silent_server() -> Iterator[int]:
    """A TCP server that takes connections, reads what comes, and never says a word."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            held.append(connection)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        for connection in held:
            connection.close()
        listener.close()


def test_a_request_written_in_full_then_unanswered_is_unknown() -> None:
    with _silent_server() as port:
        answer = HttpApi(f"http://127.0.0.1:{port}", timeout=0.3).post("/email", data=b"{}")
    assert answer.outcome is Outcome.UNKNOWN
    assert answer.error.startswith("sent, no answer in time")


def test_a_tls_handshake_that_never_ends_sent_nothing() -> None:
    # urllib3 reports the handshake's timeout as a read timeout: nothing went out yet.
    with _silent_server() as port:
        answer = HttpApi(f"https://127.0.0.1:{port}", timeout=0.3).post("/email", data=b"{}")
    assert answer.outcome is Outcome.TRANSIENT
    assert answer.error.startswith("timed out before sending")
