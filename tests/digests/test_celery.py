"""Two Celery workers on real Redis and PostgreSQL share one digest, with no duplicate."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import is_postgresql
from tests.digests.helpers import add_confirmed, add_post

BROKER = os.environ.get("TEST_CELERY_BROKER_URL", "redis://127.0.0.1:6379/3")
RECIPIENTS = 3000


def _redis_or_fail() -> None:
    import redis

    try:
        redis.Redis.from_url(BROKER).flushdb()  # our own database number: only our queue
    except redis.ConnectionError:
        if os.environ.get("CI"):
            pytest.fail(f"Redis is required at {BROKER}")
        pytest.skip(f"no Redis at {BROKER}")


def _worker(name: str, database_uri: str, log: Path, out: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "SECRET_KEY": "celery-test",
        "DATABASE_URL": database_uri,
        "CELERY_BROKER_URL": BROKER,
        "EMAIL_PROVIDER": "logging",
        "SEND_LOG": str(log),
        "SEND_BATCH": "50",
        "SEND_DELAY": "0.01",
        "DISPATCH_INTERVAL": "2",
    }
    with out.open("wb") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.digests.celery_worker", name],
            env=env,
            cwd=Path(__file__).resolve().parents[2],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )


@pytest.mark.slow
def test_two_workers_share_a_digest_of_thousands_without_duplicates(
    make_app, admin_headers, database_uri, tmp_path
):
    if not is_postgresql(database_uri):
        pytest.skip("the scale-out runs on PostgreSQL (set TEST_DATABASE_URL)")
    _redis_or_fail()
    app = make_app(CELERY_BROKER_URL=BROKER)
    client = app.test_client()
    emails = add_confirmed(app, RECIPIENTS)
    add_post(client, admin_headers, 1)
    logs = [tmp_path / "w1.log", tmp_path / "w2.log"]
    workers = [
        _worker(f"w{i + 1}", database_uri, log, tmp_path / f"w{i + 1}.out")
        for i, log in enumerate(logs)
    ]
    try:
        digest = client.post("/admin/digests", json={}, headers=admin_headers).get_json()
        assert digest["recipients"] == RECIPIENTS
        deadline = time.monotonic() + 180
        report = {}
        while time.monotonic() < deadline:
            report = client.get(f"/admin/digests/{digest['id']}", headers=admin_headers).get_json()
            if report["status"] == "sent":
                break
            time.sleep(0.5)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.wait(30)
    outputs = "\n".join(p.read_text()[-2000:] for p in tmp_path.glob("w*.out"))
    assert report.get("status") == "sent", (report, outputs)
    per_worker = [log.read_text().split() if log.exists() else [] for log in logs]
    counts = Counter(per_worker[0] + per_worker[1])
    assert set(counts) == set(emails)
    assert max(counts.values()) == 1  # no duplicate
    assert all(per_worker), f"both workers must have sent: {[len(w) for w in per_worker]}"
    assert report["sent"] == RECIPIENTS
