"""Real servers for the tests: free ports, servers in threads, waiting, Redis."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import requests
from werkzeug.serving import make_server


def free_port() -> int:
    """An ephemeral port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate: Callable[[], object], timeout: float = 15.0, what: str = "it") -> None:
    """Poll ``predicate`` until it is true, or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def answers(url: str) -> bool:
    """True when ``url`` answers 200."""
    try:
        return requests.get(url, timeout=5).status_code == 200
    except requests.RequestException:
        return False


def redis_or_fail(broker: str) -> None:
    """Empty our own Redis database; skip without Redis, but fail when ``CI`` is set."""
    import redis

    try:
        redis.Redis.from_url(broker).flushdb()  # a test database number: only tests use it
    except redis.ConnectionError:
        if os.environ.get("CI"):
            pytest.fail(f"Redis is required at {broker}")
        pytest.skip(f"no Redis at {broker}")


@contextmanager
def running(server: Any) -> Iterator[str]:
    """Serve with ``server`` (werkzeug or ``http.server``) until the block ends; its base URL."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextmanager
def serve(app: Callable) -> Iterator[str]:
    """A WSGI app on a free port of 127.0.0.1, in a thread; yields its base URL."""
    with running(make_server("127.0.0.1", 0, app, threaded=True)) as base:
        yield base
