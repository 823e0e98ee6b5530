"""FEED_TIMEOUT bounds the whole fetch: headers that trickle in, and redirect after redirect."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from flask import Flask

from tests.digests.test_feed import RSS

Answer = Callable[[socket.socket, str], None]


@contextmanager
def raw_server(answer: Answer) -> Iterator[str]:
    """A TCP server on 127.0.0.1 that reads each request and leaves the rest to ``answer``."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.1)
    stop = threading.Event()

    def handle(connection: socket.socket) -> None:
        with connection:
            request = connection.recv(65536).decode("latin-1")
            answer(connection, request.split(" ")[1] if " " in request else "/")

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=handle, args=(connection,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def hung_up_within(connection: socket.socket, seconds: float) -> bool:
    """Wait ``seconds`` for the client; True when it closed the connection meanwhile."""
    connection.settimeout(seconds)
    try:
        return connection.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:
        return True


def import_from(app: Flask, url: str, headers: dict[str, str]) -> tuple[int, dict, float]:
    """Import the feed at ``url``: the status, the JSON answer, and the seconds it took."""
    started = time.monotonic()
    answer = app.test_client().post("/admin/posts/import-feed", json={"url": url}, headers=headers)
    return answer.status_code, answer.get_json(), time.monotonic() - started


def test_a_header_that_trickles_in_is_cut_at_the_timeout(make_app, admin_headers):
    # A byte of one header every 0.2 s: each read waits far less than the timeout.
    hung_up = threading.Event()

    def trickle_header(connection: socket.socket, path: str) -> None:
        connection.sendall(b"HTTP/1.1 200 OK\r\nX-Long: ")
        for _ in range(40):  # 8 s, then the server gives up (without the limit, the test fails)
            if hung_up_within(connection, 0.2):
                hung_up.set()
                return
            connection.sendall(b"a")

    app = make_app(FEED_TIMEOUT=1.0)
    with raw_server(trickle_header) as base:
        status, body, took = import_from(app, f"{base}/rss.xml", admin_headers)
        assert hung_up.wait(2), "the import left the connection open"
    assert status == 502 and body["error"]["code"] == "feed_unreachable"
    assert "took over 1 s" in body["error"]["message"]
    assert took < 1 + 2


def test_redirects_each_in_time_are_cut_at_the_timeout_all_told(make_app, admin_headers):
    # Each of 8 redirects answers in 0.6 s, under the timeout; all told they take 4.8 s.
    hung_up = threading.Event()

    def slow_redirects(connection: socket.socket, path: str) -> None:
        if hung_up_within(connection, 0.6):
            hung_up.set()
            return
        hop = int(path.rsplit("/", 1)[1])
        if hop < 8:
            head = f"HTTP/1.1 302 Found\r\nLocation: /hop/{hop + 1}\r\nContent-Length: 0\r\n"
            connection.sendall(f"{head}Connection: close\r\n\r\n".encode())
        else:
            feed = RSS.encode()
            head = "HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\n"
            head += f"Content-Length: {len(feed)}\r\nConnection: close\r\n\r\n"
            connection.sendall(head.encode() + feed)

    app = make_app(FEED_TIMEOUT=1.0)
    with raw_server(slow_redirects) as base:
        status, body, took = import_from(app, f"{base}/hop/1", admin_headers)
        assert hung_up.wait(2), "the import left the last hop's connection open"
    assert status == 502 and body["error"]["code"] == "feed_unreachable", body
    assert "took over 1 s" in body["error"]["message"]
    assert took < 1 + 2
