"""Local servers the provider tests talk to: Prism on the providers' documents, a Postmark fake."""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import parseaddr
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
    # Recipients Postmark answers 406 for, with the reason its suppressions dump gives
    # (a set: each a HardBounce; None: not in the dump, as if lifted meanwhile).
    inactive: set[str] | dict[str, str | None] = field(default_factory=set)
    suppressions_asked: list[tuple[str, str]] = field(default_factory=list)
    on_suppressions_asked: Callable[[], None] | None = None  # called as each lookup comes
    script: list[Script] = field(default_factory=list)  # answers for the next calls
    delay: float = 0.0  # how long a scripted "timeout" hangs before failing
    slow: float = 0.0  # seconds to wait after taking a batch, before answering
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
        if request.headers.get("X-Postmark-Server-Token") != self.token:
            return _json(401, {"ErrorCode": 10, "Message": "Bad or missing Server API token."})
        dump = re.fullmatch(r"/message-streams/([^/]+)/suppressions/dump", request.path)
        if request.method == "GET" and dump:
            return self._suppressions(dump.group(1), request.args.get("EmailAddress", ""))
        if request.method != "POST" or request.path != "/email/batch":
            return _json(404, {"ErrorCode": 404, "Message": "not found"})
        if not request.is_json or request.headers.get("Accept") != "application/json":
            return _json(415, {"ErrorCode": 415, "Message": "JSON in, JSON out"})
        if (request.content_length or 0) > self.max_bytes:
            return Response("Request Entity Too Large", 413, content_type="text/plain")
        batch = request.get_json()
        if not isinstance(batch, list) or not 1 <= len(batch) <= 500:
            return _json(422, {"ErrorCode": 0, "Message": "a batch holds 1 to 500 messages"})
        answer = _json(200, [self._one(message) for message in batch])
        time.sleep(self.slow)  # taken already: a client that stops waiting cannot undo it
        return answer

    def _suppressions(self, stream: str, address: str) -> Response:
        """``GET /message-streams/{stream}/suppressions/dump?EmailAddress=``, as documented."""
        self.suppressions_asked.append((stream, address))
        if self.on_suppressions_asked is not None:
            self.on_suppressions_asked()
        reasons = self.inactive if isinstance(self.inactive, dict) else {}
        reason = reasons.get(address, "HardBounce") if address in self.inactive else None
        listed = {
            "EmailAddress": address,
            "SuppressionReason": reason,
            "Origin": "Recipient",
            "CreatedAt": "2026-11-30T10:00:00-05:00",
        }
        return _json(200, {"Suppressions": [listed] if reason else []})

    def _one(self, message: dict) -> dict:
        missing = [name for name in _REQUIRED if not message.get(name)]
        if missing or not (message.get("TextBody") or message.get("HtmlBody")):
            return {"ErrorCode": 300, "Message": f"Invalid email request: missing {missing}"}
        if not deliverable(message["From"]):  # Postmark's wording: the field, then the value
            return {"ErrorCode": 300, "Message": f"Invalid 'From' address: '{message['From']}'."}
        if "@" not in message["To"] or message["To"].startswith("from."):
            return {"ErrorCode": 300, "Message": f"Invalid 'To' address: '{message['To']}'."}
        if message["To"] in self.inactive:
            return {"ErrorCode": 406, "Message": "You tried to send to an inactive recipient."}
        with self.lock:
            self.delivered.append(message)
            number = len(self.delivered)
        return {"ErrorCode": 0, "Message": "OK", "To": message["To"], "MessageID": f"pm-{number}"}


def _json(status: int, body: object, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status, headers, content_type="application/json")


@dataclass
class SendGridErrors:
    """Prism serving SendGrid's document, answering a refusal with SendGrid's own error body.

    Prism refuses a request its document does not allow (``from.email`` must be an
    address with a dotted domain: ``newsletter@localhost`` is not), but answers the
    document's example body (``"field": "field_name"``) and names the broken field only
    in its ``sl-violations`` header. SendGrid names it in the body, as
    ``{"errors": [{"field": "from.email", "message": ...}]}``: so does this proxy.
    """

    prism: str
    calls: int = 0
    session: requests.Session = field(default_factory=requests.Session)

    def __call__(self, environ: dict, start_response: Callable) -> object:
        request = Request(environ)
        self.calls += 1
        query = f"?{request.query_string.decode()}" if request.query_string else ""
        answer = self.session.request(
            request.method,
            f"{self.prism}{request.path}{query}",
            data=request.get_data(),
            headers={
                k: v for k, v in request.headers if k.lower() not in ("host", "content-length")
            },
            timeout=30,
        )
        body: object = answer.content
        violations = json.loads(answer.headers.get("sl-violations") or "[]")
        if answer.status_code >= 400 and violations:
            errors = [
                {"field": ".".join(map(str, v["location"][2:])), "message": v["message"]}
                for v in violations
                if v["location"][:2] == ["request", "body"]
            ]
            body = json.dumps({"errors": errors})
        headers = {"Content-Type": answer.headers.get("Content-Type") or "application/json"}
        if "X-Message-Id" in answer.headers:
            headers["X-Message-Id"] = answer.headers["X-Message-Id"]
        return Response(body, answer.status_code, headers)(environ, start_response)


def deliverable(address: str) -> bool:
    """What the providers take for an address: a local part, ``@``, a dotted domain."""
    local, _, domain = parseaddr(address)[1].rpartition("@")
    return bool(local) and "." in domain.strip(".")


@dataclass
class FakeMailgun:
    """Mailgun's ``POST /v3/{domain}/messages``, refusing addresses as its API does.

    Its answers, from Mailgun's document and what it sends: ``400 {"message": "'from'
    parameter is not a valid address. please check documentation"}`` (so for
    ``root@localhost``), the same for ``'to'``.
    """

    domain: str = "mg.example.org"
    key: str = "key-test"
    delivered: list[dict] = field(default_factory=list)
    calls: int = 0

    def __call__(self, environ: dict, start_response: Callable) -> object:
        request = Request(environ)
        self.calls += 1
        if request.path != f"/v3/{self.domain}/messages":
            return _json(404, {"message": "Domain not found"})(environ, start_response)
        auth = request.authorization
        if auth is None or (auth.username, auth.password) != ("api", self.key):
            return Response("Forbidden", 401)(environ, start_response)
        form = request.form
        for name in ("from", "to"):
            if not form.get(name) or not all(deliverable(a) for a in form.getlist(name)):
                message = f"'{name}' parameter is not a valid address. please check documentation"
                return _json(400, {"message": message})(environ, start_response)
        self.delivered.append(form.to_dict())
        answer = {"id": f"<{len(self.delivered)}@{self.domain}>", "message": "Queued. Thank you."}
        return _json(200, answer)(environ, start_response)


_RESEND_ADDRESS = (
    "The email address needs to follow the `email@example.com` or "
    "`Name <email@example.com>` format."
)


@dataclass
class FakeResend:
    """Resend's ``POST /emails`` and ``/emails/batch`` (strict: one bad email refuses the batch).

    Its refusal, as Resend sends it: ``422 {"statusCode": 422, "name": "validation_error",
    "message": "Invalid `from` field. The email address needs to follow ..."}``, or
    "Invalid `to` field" for the recipient.
    """

    key: str = "re_test"
    delivered: list[dict] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)

    def __call__(self, environ: dict, start_response: Callable) -> object:
        request = Request(environ)
        self.paths.append(request.path)
        if request.headers.get("Authorization") != f"Bearer {self.key}":
            answer = _json(
                403, {"statusCode": 403, "name": "invalid_api_key", "message": "API key is invalid"}
            )
            return answer(environ, start_response)
        body = request.get_json()
        emails = body if request.path == "/emails/batch" else [body]
        for email in emails:
            for name in ("from", "to"):
                value = email.get(name)
                addresses = [value] if isinstance(value, str) else value or []
                if not addresses or not all(deliverable(a) for a in addresses):
                    message = f"Invalid `{name}` field. {_RESEND_ADDRESS}"
                    refusal = {"statusCode": 422, "name": "validation_error", "message": message}
                    return _json(422, refusal)(environ, start_response)
        ids = []
        for email in emails:
            self.delivered.append(email)
            ids.append({"id": f"re-{len(self.delivered)}"})
        answer = {"data": ids} if request.path == "/emails/batch" else ids[0]
        return _json(200, answer)(environ, start_response)
