"""Local servers the provider tests talk to: Prism on the providers' documents, a Postmark fake."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import requests
from werkzeug.wrappers import Request, Response

from tests.servers import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
SPECS = REPO_ROOT.parent / "shared" / "provider-specs"
PRISM = REPO_ROOT / "tools" / "prism" / "node_modules" / ".bin" / "prism"


@contextmanager
def prism(spec: str) -> Iterator[str]:
    """Prism serving one provider document on a free port; yields its base URL."""
    port = free_port()
    log = open(os.devnull, "w")  # noqa: SIM115 (closed below)
    process = subprocess.Popen(
        [str(PRISM), "mock", "-h", "127.0.0.1", "-p", str(port), str(SPECS / spec)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"prism exited with {process.returncode} serving {spec}")
            try:
                requests.get(base, timeout=1)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"prism did not answer within 60 s serving {spec}") from None
                time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


# A scripted answer for the next call: (status, headers, body) or "timeout".
Script = tuple[int, dict[str, str], object] | str

_REQUIRED = ("From", "To", "Subject", "MessageStream")


@dataclass
class FakePostmark:
    """Postmark's /email/batch as its documentation describes it, with scripted failures."""

    token: str = "postmark-test-token"
    inactive: set[str] = field(default_factory=set)  # recipients Postmark answers 406 for
    script: list[Script] = field(default_factory=list)  # answers for the next calls
    delay: float = 0.0  # how long a scripted "timeout" hangs before failing
    max_bytes: int = 50 * 1024 * 1024  # a batch request's largest body (Postmark: 50 MB)
    delivered: list[dict] = field(default_factory=list)
    calls: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def to(self, address: str) -> list[dict]:
        """Every message delivered to ``address``."""
        return [m for m in self.delivered if m["To"] == address]

    def __call__(self, environ: dict, start_response: Callable) -> object:
        request = Request(environ)
        return self.answer(request)(environ, start_response)

    def answer(self, request: Request) -> Response:
        """Validate like Postmark, then accept each message or refuse it by ErrorCode."""
        with self.lock:
            self.calls += 1
            scripted = self.script.pop(0) if self.script else None
        if scripted == "timeout":
            time.sleep(self.delay)
            return _json(503, {"ErrorCode": 100, "Message": "hung, not accepted"})
        if scripted is not None:
            status, headers, body = scripted
            return _json(status, body, headers)
        if request.method != "POST" or request.path != "/email/batch":
            return _json(404, {"ErrorCode": 404, "Message": "not found"})
        if request.headers.get("X-Postmark-Server-Token") != self.token:
            return _json(401, {"ErrorCode": 10, "Message": "Bad or missing Server API token."})
        if not request.is_json or request.headers.get("Accept") != "application/json":
            return _json(415, {"ErrorCode": 415, "Message": "JSON in, JSON out"})
        if (request.content_length or 0) > self.max_bytes:
            return Response("Request Entity Too Large", 413, content_type="text/plain")
        batch = request.get_json()
        if not isinstance(batch, list) or not 1 <= len(batch) <= 500:
            return _json(422, {"ErrorCode": 0, "Message": "a batch holds 1 to 500 messages"})
        return _json(200, [self._one(message) for message in batch])

    def _one(self, message: dict) -> dict:
        missing = [name for name in _REQUIRED if not message.get(name)]
        if missing or not (message.get("TextBody") or message.get("HtmlBody")):
            return {"ErrorCode": 300, "Message": f"Invalid email request: missing {missing}"}
        if "@" not in message["To"]:
            return {"ErrorCode": 300, "Message": "Invalid 'To' address"}
        if message["To"] in self.inactive:
            return {"ErrorCode": 406, "Message": "You tried to send to an inactive recipient."}
        with self.lock:
            self.delivered.append(message)
            number = len(self.delivered)
        return {"ErrorCode": 0, "Message": "OK", "To": message["To"], "MessageID": f"pm-{number}"}


def _json(status: int, body: object, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status, headers, content_type="application/json")
