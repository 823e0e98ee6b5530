"""Shared helpers of the digest tests: confirmed subscribers and posts, made fast."""

from __future__ import annotations

from flask import Flask
from sqlalchemy import insert, select

from newsletter.extensions import db
from newsletter.models import Delivery, DeliveryKind, Status, Subscriber, new_public_id, utcnow


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
