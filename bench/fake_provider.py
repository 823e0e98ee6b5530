"""A local fake of a Postmark-like batch API: ``POST /email/batch`` takes a JSON list.

Run as ``python bench/fake_provider.py PORT``; it parses every batch fully
(as a real API would) and answers one result per message.
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
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    print("ready", flush=True)
    server.serve_forever()
