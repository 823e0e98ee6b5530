"""Shared helpers of the digest tests: confirmed subscribers and posts, made fast."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from flask import Flask
from sqlalchemy import insert, select

from newsletter.extensions import db
from newsletter.models import Delivery, DeliveryKind, Status, Subscriber, new_public_id, utcnow
from newsletter.providers import Message, Outcome, SendResult


def add_confirmed(app: Flask, count: int, prefix: str = "reader") -> list[str]:
    """Insert ``count`` confirmed subscribers in one statement; their addresses."""
    now = utcnow()
    emails = [f"{prefix}{i}@example.com" for i in range(count)]
    rows = [
        {
            "email": e,
            "public_id": new_public_id(),
            "status": Status.CONFIRMED,
            "round": 0,
            "created_at": now,
            "updated_at": now,
            "confirmed_at": now,
            "soft_bounces": 0,
        }
        for e in emails
    ]
    with app.app_context():
        for start in range(0, len(rows), 5000):
            db.session.execute(insert(Subscriber), rows[start : start + 5000])
        db.session.commit()
        db.session.remove()
    return emails


def add_post(client, headers, n: int, **fields) -> dict:
    """Post the ``n``-th test post through the admin API; its JSON."""
    body = {
        "title": f"Post {n}",
        "url": f"https://blog.example.org/post-{n}",
        "summary": f"Summary of post {n}.",
        "published_at": f"2026-10-{n + 1:02d}T09:00:00Z",
        **fields,
    }
    response = client.post("/admin/posts", json=body, headers=headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def digest_deliveries(app: Flask, digest_id: int) -> list[Delivery]:
    """The digest's deliveries (test copies aside)."""
    with app.app_context():
        rows = db.session.scalars(
            select(Delivery).where(
                Delivery.digest_id == digest_id, Delivery.kind == DeliveryKind.DIGEST
            )
        ).all()
        db.session.expunge_all()
        return list(rows)


def a_digest_to(count: int, admin: dict[str, str]) -> Callable[[Flask], int]:
    """Queue one digest to ``count`` confirmed subscribers (``reader{i}@example.com``)."""

    def queue(app: Flask) -> int:
        add_confirmed(app, count)
        client = app.test_client()
        add_post(client, admin, 1)
        assert client.post("/admin/digests", json={}, headers=admin).status_code == 202
        return count

    return queue


class ThreadNotingProvider:
    """Sends nothing: notes which thread sent whom, and takes ``delay`` seconds a batch.

    ``side_by_side``: each of that many sending threads' first batch waits (at
    most 10 s) for the others' first, so a test that expects them to share a
    digest does not depend on which claims first on a loaded machine.
    """

    name = "thread-noting"
    max_batch = 100

    def __init__(self, delay: float = 0.03, side_by_side: int = 1) -> None:
        self.sent: list[tuple[str, str]] = []  # (thread name, recipient)
        self._lock = threading.Lock()
        self._delay = delay
        self._together = threading.Barrier(side_by_side, timeout=10)
        self._started: set[str] = set()

    def send_batch(self, messages: Sequence[Message]) -> list[SendResult]:
        """Note the batch, wait as a provider's round trip would, answer sent."""
        thread = threading.current_thread().name
        with self._lock:
            first = thread not in self._started
            self._started.add(thread)
        if first and self._together.parties > 1:
            self._together.wait()
        time.sleep(self._delay)  # on the wire: another thread claims and renders meanwhile
        with self._lock:
            self.sent += [(thread, m.to) for m in messages]
        return [SendResult(Outcome.SENT, provider_id=m.key) for m in messages]
