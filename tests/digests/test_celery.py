"""Two Celery workers on real Redis and PostgreSQL share one digest, with no duplicate."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.conftest import is_postgresql
from tests.digests.helpers import add_confirmed, add_post
from tests.digests.processes import ENQUEUE_BROKER as BROKER
from tests.digests.processes import (
    outputs,
    sent,
    start_worker,
    stop,
    wait_for_digest,
)
from tests.servers import redis_or_fail

RECIPIENTS = 3000


@pytest.mark.slow
def test_two_workers_share_a_digest_of_thousands_without_duplicates(
    make_app, admin_headers, database_uri, tmp_path
):
    if not is_postgresql(database_uri):
        pytest.skip("the scale-out runs on PostgreSQL (set TEST_DATABASE_URL)")
    redis_or_fail(BROKER)
    app = make_app(CELERY_BROKER_URL=BROKER)
    client = app.test_client()
    emails = add_confirmed(app, RECIPIENTS)
    add_post(client, admin_headers, 1)
    logs = [tmp_path / "w1.log", tmp_path / "w2.log"]
    workers = [
        start_worker(f"w{i + 1}", database_uri, BROKER, log, tmp_path / f"w{i + 1}.out")
        for i, log in enumerate(logs)
    ]
    try:
        digest = client.post("/admin/digests", json={}, headers=admin_headers).get_json()
        assert digest["recipients"] == RECIPIENTS
        report = wait_for_digest(client, admin_headers, digest["id"], timeout=180)
    finally:
        stop(workers)
    assert report.get("status") == "sent", (report, outputs(tmp_path))
    per_worker = [sent(log) for log in logs]
    counts = Counter(per_worker[0] + per_worker[1])
    assert set(counts) == set(emails)
    assert max(counts.values()) == 1  # no duplicate
    assert all(per_worker), f"both workers must have sent: {[len(w) for w in per_worker]}"
    assert report["sent"] == RECIPIENTS
