"""Security headers for the hosted pages: a strict CSP they can live with.

Our pages use no inline script or style and load nothing from elsewhere, so
they can say so; a page that started to would break visibly in the browser
tests. Headers a response already carries are left as they are.
"""

from __future__ import annotations

from flask import Flask, Response, request

PAGE_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
# The subscriber's pages, and error pages outside any blueprint (404). Other
# HTML (an admin's digest preview, say) keeps its own rules.
PAGE_BLUEPRINTS = {"subscriptions", None}


def register_security_headers(app: Flask) -> None:
    """Add ``nosniff`` to every response and the CSP to the subscriber's HTML pages."""

    @app.after_request
    def _headers(response: Response) -> Response:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        if response.mimetype == "text/html" and request.blueprint in PAGE_BLUEPRINTS:
            response.headers.setdefault("Content-Security-Policy", PAGE_CSP)
        return response
