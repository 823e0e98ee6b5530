"""A local siteverify endpoint that answers like Turnstile's and hCaptcha's."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from werkzeug.wrappers import Request, Response

SECRET = "captcha-test-secret"
SITE_KEY = "captcha-test-site-key"


@dataclass
class FakeSiteverify:
    """Accepts each token of ``good`` once (tokens are single-use), refuses the rest."""

    good: set[str] = field(default_factory=lambda: {"good-token"})
    delay: float = 0.0  # seconds to wait before answering (a slow verifier)
    status: int = 200  # anything else: the verifier is failing
    calls: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, environ: dict, start_response: Callable) -> object:
        request = Request(environ)
        form = request.form.to_dict()
        with self.lock:
            self.calls.append(form)
        time.sleep(self.delay)
        return self.verdict(request, form)(environ, start_response)

    def verdict(self, request: Request, form: dict[str, str]) -> Response:
        """The provider's answer: a form POST in, ``{"success", "error-codes"}`` out."""
        if self.status != 200:
            return Response("upstream trouble", self.status)
        if request.method != "POST" or request.mimetype != "application/x-www-form-urlencoded":
            return _json({"success": False, "error-codes": ["bad-request"]})
        if form.get("secret") != SECRET:
            return _json({"success": False, "error-codes": ["invalid-input-secret"]})
        token = form.get("response", "")
        with self.lock:
            accepted = token in self.good
            self.good.discard(token)
        if accepted:
            return _json({"success": True, "error-codes": [], "hostname": "127.0.0.1"})
        return _json({"success": False, "error-codes": ["invalid-input-response"]})


def _json(body: object) -> Response:
    return Response(json.dumps(body), 200, content_type="application/json")
