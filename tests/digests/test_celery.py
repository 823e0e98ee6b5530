"""Two Celery workers on real Redis and PostgreSQL share one digest, with no duplicate."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.digests.processes import ENQUEUE_BROKER as BROKER
from tests.digests.processes import (
    a_digest_for_workers,
    outputs,
    sent,
    sent_by_workers,
    start_worker,
)

RECIPIENTS = 3000


@pytest.mark.slow
def test_two_workers_share_a_digest_of_thousands_without_duplicates(
    make_app, admin_headers, database_uri, tmp_path
):
    client, emails = a_digest_for_workers(make_app, admin_headers, database_uri, RECIPIENTS)
    logs = [tmp_path / "w1.log", tmp_path / "w2.log"]
    workers = [
        start_worker(f"w{i + 1}", database_uri, BROKER, log, tmp_path / f"w{i + 1}.out")
        for i, log in enumerate(logs)
    ]
    digest, report = sent_by_workers(client, admin_headers, workers, timeout=180)
    assert digest["recipients"] == RECIPIENTS
    assert report.get("status") == "sent", (report, outputs(tmp_path))
    per_worker = [sent(log) for log in logs]
    counts = Counter(per_worker[0] + per_worker[1])
    assert set(counts) == set(emails)
    assert max(counts.values()) == 1  # no duplicate
    assert all(per_worker), f"both workers must have sent: {[len(w) for w in per_worker]}"
    assert report["sent"] == RECIPIENTS
