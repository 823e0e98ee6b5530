"""The dispatcher process's senders: helper threads (``DISPATCH_THREADS``), woken by a
digest's full batches, and processes that send digests only (``DISPATCH_DIGEST_PROCESSES``).

``dispatch_process.run`` is the function gunicorn's dispatcher processes run;
here it runs in a thread of the test, on the test database.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from flask import Flask
from sqlalchemy import func, select

from newsletter.delivery import dispatch_process
from newsletter.extensions import db
from newsletter.models import Delivery, DeliveryStatus
from tests.conftest import is_postgresql
from tests.digests.helpers import ThreadNotingProvider, a_digest_to
from tests.servers import wait_for

BATCH = 5


def _sent_by_the_dispatcher_process(
    make_app: Callable[..., Flask],
    threads: int | None,
    queue: Callable[[Flask], int],
    index: int = 0,
    left_queued: int = 0,
    side_by_side: int = 1,
    **settings: object,
) -> list[tuple[str, str]]:
    """Queue mail with ``queue``, let ``dispatch_process.run`` (process ``index``) send, stop it.

    ``queue`` answers how many messages this process should send; the
    ``left_queued`` others must still be queued, unsent, a second after.
    ``side_by_side``: threads whose first batches the provider holds until all
    have one (``ThreadNotingProvider``).
    """
    app: Flask = make_app(
        RATELIMIT_ENABLED=False,
        DISPATCH_IN_PROCESS=False,  # nothing else sends
        DISPATCH_BATCH_SIZE=BATCH,
        DISPATCH_THREADS=threads,
        **settings,
    )
    expected = queue(app)
    provider = ThreadNotingProvider(side_by_side=side_by_side)
    app.extensions["newsletter.provider"] = provider
    stop = threading.Event()
    process = threading.Thread(target=dispatch_process.run, args=(app, stop, index))
    process.start()
    try:
        wait_for(lambda: len(provider.sent) >= expected, 30, "everything queued sent")
        if left_queued:
            time.sleep(1.0)  # five looks at the queue, at DISPATCH_COALESCE's 0.2 s
    finally:
        stop.set()
        process.join(30)
    assert not process.is_alive()
    assert not [t for t in threading.enumerate() if t.name.startswith("newsletter-dispatcher")]
    with app.app_context():
        by_status = dict(
            db.session.execute(
                select(Delivery.status, func.count()).group_by(Delivery.status)
            ).all()
        )
        db.session.remove()
    assert by_status == {
        DeliveryStatus.SENT: expected,
        **({DeliveryStatus.QUEUED: left_queued} if left_queued else {}),
    }
    return provider.sent


def confirmations_for(count: int) -> Callable[[Flask], int]:
    """Queue ``count`` confirmation emails, one signup each."""

    def queue(app: Flask) -> int:
        client = app.test_client()
        for n in range(count):
            response = client.post("/subscribe", json={"email": f"r{n}@example.com"})
            assert response.status_code == 202
        return count

    return queue


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_every_thread_sends_a_share_of_a_digest_and_no_one_twice(make_app, admin_headers, threads):
    sent = _sent_by_the_dispatcher_process(
        make_app, threads, a_digest_to(90, admin_headers), side_by_side=threads
    )
    recipients = [to for _, to in sent]
    assert sorted(recipients) == sorted(f"reader{n}@example.com" for n in range(90))  # once each
    helpers = {f"newsletter-dispatcher-{n}" for n in range(2, threads + 1)}
    assert {name for name, _ in sent} == {"newsletter-dispatcher", *helpers}


@pytest.mark.parametrize("digest_processes", [None, 0])
def test_unset_the_threads_follow_the_database(
    make_app, admin_headers, database_uri, digest_processes
):
    sent = _sent_by_the_dispatcher_process(
        make_app,
        None,
        a_digest_to(90, admin_headers),
        DISPATCH_DIGEST_PROCESSES=digest_processes,
    )
    expected = {"newsletter-dispatcher"}
    # On PostgreSQL one dispatcher process gets a helper thread when it sends alone;
    # unset, a second process sends digests beside it (each then has one thread).
    if is_postgresql(database_uri) and digest_processes == 0:
        expected.add("newsletter-dispatcher-2")
    assert {name for name, _ in sent} == expected


def test_a_process_past_dispatch_processes_sends_digests_only(make_app, admin_headers):
    def confirmations_then_a_digest(app: Flask) -> int:
        confirmations_for(2 * BATCH)(app)  # queued first: due before every digest copy
        return a_digest_to(3 * BATCH + 2, admin_headers)(app)

    sent = _sent_by_the_dispatcher_process(
        make_app,
        None,
        confirmations_then_a_digest,
        index=1,  # DISPATCH_PROCESSES=1: process 1 is the digests' one
        left_queued=2 * BATCH,  # the confirmations wait for process 0
        DISPATCH_PROCESSES=1,
        DISPATCH_DIGEST_PROCESSES=1,
    )
    assert sorted(to for _, to in sent) == sorted(
        f"reader{n}@example.com" for n in range(3 * BATCH + 2)
    )


def test_helpers_sleep_through_a_digest_shorter_than_a_batch(make_app, admin_headers):
    sent = _sent_by_the_dispatcher_process(make_app, 2, a_digest_to(BATCH - 1, admin_headers))
    assert [name for name, _ in sent] == ["newsletter-dispatcher"] * (BATCH - 1)


def test_helpers_sleep_through_confirmations_even_in_full_batches(make_app):
    sent = _sent_by_the_dispatcher_process(make_app, 2, confirmations_for(4 * BATCH))
    assert [name for name, _ in sent] == ["newsletter-dispatcher"] * (4 * BATCH)
