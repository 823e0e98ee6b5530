"""A local fake of a Postmark-like batch API: ``POST /email/batch`` takes a JSON list.

Run as ``python bench/fake_provider.py PORT [--nodelay]``; it parses every
batch fully (as a real API would) and answers one result per message.

By default its answers go out as two writes (headers, then body) on a socket
with Nagle's algorithm on, as ``http.server`` does: a client posting batches
back to back then waits for its own delayed ACK (about 40 ms) on every
answer. ``--nodelay`` sets ``TCP_NODELAY`` on each connection: no such stall.
"""

from __future__ import annotations

import json
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


if __name__ == "__main__":
    Handler.disable_nagle_algorithm = "--nodelay" in sys.argv[2:]
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    print("ready", flush=True)
    server.serve_forever()
