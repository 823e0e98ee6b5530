"""Concurrent signups and confirmations on the real database: exact counts, no 500."""

from __future__ import annotations

import threading

from sqlalchemy import func, select

from newsletter.extensions import db
from newsletter.models import ConsentEvent, ConsentKind, Delivery, Subscriber
from tests.conftest import Outbox, path_of


def run_together(count: int, work) -> list:
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def runner(index: int) -> None:
        barrier.wait()
        results[index] = work(index)

    threads = [threading.Thread(target=runner, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def test_concurrent_signups_of_one_address_make_one_row_and_one_email(make_app):
    app = make_app(RATELIMIT_ENABLED=False)
    variants = ["same@example.com", "Same@Example.com", "SAME@EXAMPLE.COM"]

    def signup(index: int) -> int:
        return app.test_client().post("/subscribe", json={"email": variants[index % 3]}).status_code

    assert run_together(12, signup) == [202] * 12
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Subscriber)) == 1
        assert db.session.scalar(select(func.count()).select_from(Delivery)) == 1


def test_concurrent_distinct_signups_all_land(make_app):
    app = make_app(RATELIMIT_ENABLED=False)

    def signup(index: int) -> int:
        return (
            app.test_client()
            .post("/subscribe", json={"email": f"p{index}@example.com"})
            .status_code
        )

    assert run_together(16, signup) == [202] * 16
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Subscriber)) == 16


def test_concurrent_confirmations_record_one_confirmation(make_app):
    app = make_app(RATELIMIT_ENABLED=False)
    client, outbox = app.test_client(), Outbox(app)
    client.post("/subscribe", json={"email": "c@example.com"})
    outbox.dispatch()
    path = path_of(outbox.confirm_link("c@example.com"))

    def confirm(_index: int) -> int:
        return app.test_client().post(path).status_code

    assert run_together(8, confirm) == [200] * 8
    with app.app_context():
        confirmed = select(func.count()).where(ConsentEvent.kind == ConsentKind.CONFIRMED)
        assert db.session.scalar(confirmed) == 1
