"""Hundreds of simultaneous signups and confirmations against a real gunicorn server.

Several gunicorn worker processes, each with threads, on the test database
(SQLite or PostgreSQL): every answer is the documented one (no 500, no 503),
every request ends (no deadlock), and the database holds exact counts.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

import pytest
import requests
from sqlalchemy import func, select

from newsletter.extensions import db
from newsletter.models import ConsentEvent, ConsentKind, Delivery, Status, Subscriber
from tests.ops.gunicorn_master import gunicorn_master

DISTINCT = 200
SAME = 100  # simultaneous signups of one address, in three spellings
TIMEOUT = 60.0  # a request still unanswered by then is a deadlock


def together(count: int, work: Callable[[int], int]) -> Counter:
    """Run ``work`` in ``count`` threads released at once; the count of each status."""
    barrier = threading.Barrier(count)
    statuses: list[int | str] = [0] * count

    def run(index: int) -> None:
        barrier.wait()
        try:
            statuses[index] = work(index)
        except requests.RequestException as exc:
            statuses[index] = type(exc).__name__

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT * 2)
    assert not any(t.is_alive() for t in threads), "requests still hanging: deadlock"
    return Counter(statuses)


def _count(app, query) -> int:
    with app.app_context():
        try:
            return db.session.scalar(query)
        finally:
            db.session.remove()


@pytest.mark.slow
def test_hundreds_of_simultaneous_signups_and_confirmations(make_app, database_uri, tmp_path):
    app = make_app()
    spellings = ["same@example.com", "Same@Example.com", "SAME@EXAMPLE.COM"]

    def address(index: int) -> str:
        return spellings[index % 3] if index < SAME else f"reader{index}@example.com"

    # Four workers of eight threads; nothing sends (the test reads the ledger, not mail).
    options = ("--workers", "4", "--threads", "8", "--timeout", "120")
    quiet = {"DISPATCH_IN_PROCESS": "false", "DISPATCH_PROCESS": "false"}
    with gunicorn_master(
        database_uri, tmp_path, "wsgi:app", *options, OUTBOX_DIR=str(tmp_path), **quiet
    ) as (_, url, _):

        def signup(index: int) -> int:
            response = requests.post(
                f"{url}/subscribe", json={"email": address(index)}, timeout=TIMEOUT
            )
            return response.status_code

        assert together(SAME + DISTINCT, signup) == Counter({202: SAME + DISTINCT})

        subscribers = _count(app, select(func.count()).select_from(Subscriber))
        assert subscribers == DISTINCT + 1
        # One confirmation email each: the same address's 99 repeats fall in its throttle.
        assert _count(app, select(func.count()).select_from(Delivery)) == DISTINCT + 1
        signups = select(func.count()).where(ConsentEvent.kind == ConsentKind.SIGNUP)
        assert _count(app, signups) == DISTINCT + 1

        with app.app_context():
            tokens = app.extensions["newsletter.tokens"]
            paths = {
                s.email: f"/confirm/{tokens.confirm_token(s.public_id, s.round)}"
                for s in db.session.scalars(select(Subscriber))
            }
            db.session.remove()
        # Every distinct subscriber confirms once; "same" clicks its link 50 times at once.
        clicks = list(paths.values()) + [paths["same@example.com"]] * 49

        def confirm(index: int) -> int:
            return requests.post(f"{url}{clicks[index]}", json={}, timeout=TIMEOUT).status_code

        assert together(len(clicks), confirm) == Counter({200: len(clicks)})

    confirmed = select(func.count()).where(Subscriber.status == Status.CONFIRMED)
    assert _count(app, confirmed) == DISTINCT + 1
    events = select(func.count()).where(ConsentEvent.kind == ConsentKind.CONFIRMED)
    assert _count(app, events) == DISTINCT + 1
    log = (tmp_path / "gunicorn.log").read_text()
    assert "Traceback" not in log and "WORKER TIMEOUT" not in log
