"""A request body that ends before its Content-Length, under gunicorn: a 400, nothing kept.

gunicorn marks every body terminated and ended one whose client stopped
short as if it were whole: ``email=cut@example.co`` of a body announced one
byte longer signed up, and mailed, another real address.
"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select

from newsletter.extensions import db
from newsletter.models import Subscriber
from tests.ops.gunicorn_master import gunicorn_master


def _post_cut_short(base: str, body: bytes, announced: int) -> bytes:
    """POST ``body`` to /subscribe announcing ``announced`` bytes, stop sending; the answer."""
    parts = urlsplit(base)
    head = (
        "POST /subscribe HTTP/1.1\r\n"
        f"Host: {parts.netloc}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        "Accept: application/json\r\n"
        f"Content-Length: {announced}\r\n"
        "Connection: close\r\n\r\n"
    )
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as conn:
        conn.sendall(head.encode() + body)
        conn.shutdown(socket.SHUT_WR)  # the client sends nothing more
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    return answer


def _subscribers(app) -> int:
    with app.app_context():
        try:
            return db.session.scalar(select(func.count()).select_from(Subscriber))
        finally:
            db.session.remove()


@pytest.mark.slow
def test_a_body_cut_short_of_its_length_is_refused_and_nothing_is_kept(
    make_app, database_uri, tmp_path
):
    app = make_app()
    settings = {"OUTBOX_DIR": str(tmp_path), "DISPATCH_IN_PROCESS": "false"}
    with gunicorn_master(
        database_uri, tmp_path, "wsgi:app", DISPATCH_PROCESS="false", **settings
    ) as (_, base, _):
        body = b"email=cut@example.co"
        cut = _post_cut_short(base, body, len(body) + 1)
        whole = _post_cut_short(base, body + b"m", len(body) + 1)
    assert cut.startswith(b"HTTP/1.1 400"), cut[:200]
    assert b'"incomplete_body"' in cut
    assert whole.startswith(b"HTTP/1.1 202"), whole[:200]
    assert _subscribers(app) == 1  # the whole one only: cut@example.com
