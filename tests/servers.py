"""Serving for a test: a real HTTP server on a free port of 127.0.0.1, in a thread."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from werkzeug.serving import make_server


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
