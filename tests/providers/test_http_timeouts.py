"""A timeout before the request went out is a plain failure; after it, the outcome is unknown."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from newsletter.providers import Outcome
from newsletter.providers.http import HttpApi
from newsletter.providers.mailgun import MailgunProvider

from .messages import digest


@contextmanager
def _silent_server(held: list[socket.socket] | None = None) -> Iterator[int]:
    """A TCP server that takes connections (into ``held``) and never says a word."""
    listener = socket.create_server(("127.0.0.1", 0))
    held = [] if held is None else held
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


def test_a_message_a_call_provider_stops_its_batch_at_the_first_unanswered_call() -> None:
    # Mailgun: one call a message. Each waiting out PROVIDER_TIMEOUT, a batch of 100 ran
    # past DISPATCH_LEASE, its answers were never recorded, and it went out again.
    connections: list[socket.socket] = []
    with _silent_server(connections) as port:
        provider = MailgunProvider("key", "mg.example.org", f"http://127.0.0.1:{port}", 0.3)
        results = provider.send_batch([digest(n) for n in range(3)])
        asked = len(connections)
    assert [r.outcome for r in results] == [Outcome.UNKNOWN, Outcome.TRANSIENT, Outcome.TRANSIENT]
    assert results[1].error.startswith("not tried: sent, no answer in time")
    assert asked == 1
