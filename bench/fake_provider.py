"""A local fake of a Postmark-like batch API: ``POST /email/batch`` takes a JSON list.

Run as ``python bench/fake_provider.py PORT``; it parses every batch fully
(as a real API would) and answers one result per message.

Its connections use ``TCP_NODELAY``: ``http.server`` writes an answer's
headers and body in two writes, and with Nagle's algorithm on, a client that
posts batches back to back (the digest bench's bare client) waited for its
own delayed ACK, about 40 ms, on every answer. That stall slowed the
baseline, not the dispatcher (whose own work between posts hid it), and made
the ratio look about five times better than it is.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    """Accepts every message of a batch."""

    protocol_version = "HTTP/1.1"
    accepted = 0

    def do_POST(self) -> None:
        """Parse the batch, answer a result per message."""
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        messages = json.loads(body)
        Handler.accepted += len(messages)
        answer = json.dumps(
            [
                {"ErrorCode": 0, "Message": "OK", "MessageID": f"fake-{i}"}
                for i in range(len(messages))
            ]
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: object) -> None:
        pass


def free_port() -> int:
    """A port of 127.0.0.1 nothing listens on now (the benches' servers take one each)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start() -> tuple[subprocess.Popen, str]:
    """This fake in its own process on a free port of 127.0.0.1; the process and its URL."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, str(port)], stdout=subprocess.PIPE)
    if proc.stdout is None or proc.stdout.readline().strip() != b"ready":
        raise RuntimeError("the fake provider did not start")
    return proc, f"http://127.0.0.1:{port}"


if __name__ == "__main__":
    Handler.disable_nagle_algorithm = True
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    print("ready", flush=True)
    server.serve_forever()
