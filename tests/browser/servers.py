"""Real HTTP servers on free 127.0.0.1 ports, each in a thread, for the browser tests."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.serving import BaseWSGIServer, make_server

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class ServerThread:
    """A threaded werkzeug server on 127.0.0.1 and a port the system picked."""

    def __init__(self, app: WSGIApp) -> None:
        self._server: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True)
        self.port = self._server.port
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.running = True

    def stop(self) -> None:
        """Stop serving and free the port; afterwards connections are refused."""
        if self.running:
            self.running = False
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=10)


class Gate:
    """WSGI middleware that holds ``POST /subscribe`` until the test opens the gate.

    It lets a test see the widget's "Processing..." state and click again while
    the first request is still in flight.
    """

    def __init__(self, app: WSGIApp) -> None:
        self.app = app
        self._open = threading.Event()
        self._open.set()
        self.held = 0
        self._lock = threading.Lock()

    def close(self) -> None:
        """Hold every signup from now on."""
        self._open.clear()

    def open(self) -> None:
        """Let the held signups (and later ones) through."""
        self._open.set()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ["REQUEST_METHOD"] == "POST" and environ["PATH_INFO"] == "/subscribe":
            with self._lock:
                self.held += 1
            self._open.wait(timeout=30)
        return self.app(environ, start_response)
