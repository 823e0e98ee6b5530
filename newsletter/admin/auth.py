"""Bearer-token authentication of the admin API, compared in constant time."""

from __future__ import annotations

import hmac

from flask import current_app, request

from ..errors import AppError


def token_matches(given: str, accepted: list[str]) -> bool:
    """True when ``given`` equals one of the accepted tokens; every one is compared."""
    given_bytes = given.encode()
    matched = False
    for token in accepted:
        matched |= hmac.compare_digest(given_bytes, token.encode())
    return matched


def require_admin() -> None:
    """Refuse the request unless it carries a current admin token in its header."""
    accepted = current_app.config["ADMIN_TOKENS"]
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if not accepted or scheme.lower() != "bearer" or not token_matches(given.strip(), accepted):
        raise AppError(
            "unauthorized",
            "A valid admin token is required (Authorization: Bearer <token>).",
            401,
            headers=[("WWW-Authenticate", 'Bearer realm="admin"')],  # RFC 9110 15.5.2
        )
