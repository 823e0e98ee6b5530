"""A Celery worker SIGKILLed mid-digest (real Redis and PostgreSQL): no one missed.

The first worker's provider is slow, so the kill lands while it holds a
claimed batch that the provider accepted but the ledger never recorded. Beat
keeps queuing sweeps, as in production; a second worker takes the dead one's
batch back at once, well inside the default 5-minute lease: on PostgreSQL the
claim is a row lock, which ended with the dead worker's connection.
Duplicates are counted: at most its batches in flight, one per sending thread.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

import pytest
from sqlalchemy import func, select

from newsletter import tasks
from newsletter.extensions import db
from newsletter.models import Delivery, DeliveryStatus
from tests.conftest import is_postgresql
from tests.digests.helpers import add_confirmed, add_post
from tests.digests.processes import (
    outputs,
    sent,
    start_beat,
    start_worker,
    stop,
    wait_for_digest,
)
from tests.servers import redis_or_fail

BROKER = os.environ.get("TEST_CELERY_CRASH_BROKER_URL", "redis://127.0.0.1:6379/6")
RECIPIENTS = 400
BATCH = 20


@pytest.mark.slow
def test_sigkilled_celery_worker_misses_no_one_and_duplicates_at_most_its_batches_in_flight(
    make_app, admin_headers, database_uri, tmp_path
):
    if not is_postgresql(database_uri):
        pytest.skip("the scale-out runs on PostgreSQL (set TEST_DATABASE_URL)")
    redis_or_fail(BROKER)
    app = make_app()  # writes the digest's rows; beat wakes the workers
    client = app.test_client()
    emails = add_confirmed(app, RECIPIENTS)
    add_post(client, admin_headers, 1)
    log = tmp_path / "sent.log"
    settings = {"SEND_BATCH": str(BATCH)}  # and the default lease, DISPATCH_LEASE=300
    beat = start_beat(BROKER, tmp_path, interval=1)
    first = start_worker(
        "doomed", database_uri, BROKER, log, tmp_path / "doomed.out", SEND_DELAY="0.3", **settings
    )
    processes = [beat, first]
    try:
        digest = client.post("/admin/digests", json={}, headers=admin_headers).get_json()
        assert digest["recipients"] == RECIPIENTS
        deadline = time.monotonic() + 60
        while len(sent(log)) < 3 * BATCH and time.monotonic() < deadline:
            assert first.poll() is None, outputs(tmp_path)
            time.sleep(0.05)
        os.kill(first.pid, signal.SIGKILL)
        assert first.wait(10) == -signal.SIGKILL
        sent_before_kill = len(sent(log))
        assert 3 * BATCH <= sent_before_kill < RECIPIENTS, "the kill must land mid-digest"
        report = client.get(f"/admin/digests/{digest['id']}", headers=admin_headers).get_json()
        assert report["status"] != "sent" and report["pending"] > 0
        # The provider took a batch that the ledger never recorded: the kill landed mid-batch.
        assert report["sent"] < sent_before_kill
        with app.app_context():
            leased = db.session.scalar(
                select(func.count())
                .select_from(Delivery)
                .where(Delivery.status == DeliveryStatus.SENDING)
            )
            db.session.remove()
        assert leased == 0, "a row-lock claim writes nothing, so there is no lease to wait out"

        second = start_worker("heir", database_uri, BROKER, log, tmp_path / "heir.out", **settings)
        processes.append(second)
        report = wait_for_digest(client, admin_headers, digest["id"], timeout=120)
    finally:
        stop(processes)

    assert report.get("status") == "sent", (report, outputs(tmp_path))
    counts = Counter(sent(log))
    assert set(counts) == set(emails)  # no one missed
    duplicates = sum(n - 1 for n in counts.values())
    print(f"killed after {sent_before_kill} sent; duplicates after restart: {duplicates}")
    # At most the batches in flight at the kill: one per sending thread, as many as a
    # solo worker on PostgreSQL runs (tasks.task_threads).
    threads = tasks.task_threads({"DISPATCH_THREADS": None}, postgresql=True, one_process=True)
    assert duplicates <= threads * BATCH
    assert (report["sent"], report["pending"], report["failed"]) == (RECIPIENTS, 0, 0)
