"""gunicorn with gunicorn.conf.py: SIGTERM mid-batch still records the batch, exit 0.

Also checks, on the same real server, that metrics add up across workers
(multiprocess mode) and that access lines carry the request id.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from newsletter.extensions import db
from newsletter.models import Delivery, DeliveryStatus
from tests.conftest import is_postgresql
from tests.meta.scrape import sample
from tests.ops.gunicorn_master import gunicorn_master
from tests.servers import wait_for

SLOW_SECONDS = 3.0


@pytest.fixture(params=["true", "false"], ids=["dispatch-process", "dispatch-threads"])
def gunicorn(database_uri: str, tmp_path: Path, request: pytest.FixtureRequest):
    """The app under gunicorn (2 workers, our config file) with the slow provider.

    Both ways of dispatching: one process beside the workers (the default), and
    a thread in each worker (DISPATCH_PROCESS=false).
    """
    batch_log = tmp_path / "batches.log"
    settings = {
        "EMAIL_PROVIDER": "slow-test",
        "LOG_FORMAT": "json",
        "SLOW_SECONDS": str(SLOW_SECONDS),
        "BATCH_LOG": str(batch_log),
        "DISPATCH_PROCESS": request.param,
    }
    with gunicorn_master(
        database_uri, tmp_path, "tests.ops.slow_app:app", "--graceful-timeout", "20", **settings
    ) as (process, base, log):
        yield process, base, batch_log, log, request.param == "true"


@pytest.mark.slow
def test_sigterm_mid_batch_records_the_batch_and_exits_0(
    gunicorn, app, admin_headers, database_uri
):
    process, base, batch_log, log_file, in_own_process = gunicorn
    response = requests.post(
        f"{base}/subscribe",
        json={"email": "eve@example.com"},
        headers={"X-Request-ID": "rid-9"},
        timeout=10,
    )
    assert response.status_code == 202
    assert response.headers["X-Request-ID"] == "rid-9"
    wait_for(lambda: batch_log.exists(), 20, "the provider to start the batch")

    in_flight = requests.get(f"{base}/metrics", headers=admin_headers, timeout=5).text
    assert sample(in_flight, "newsletter_signups_total") == 1  # whichever worker answers
    assert sample(in_flight, "newsletter_dispatch_in_flight") == 1
    # The ledger: a lease writes ``sending`` (SQLite); a row lock writes nothing (PostgreSQL).
    claimed_as = "queued" if is_postgresql(database_uri) else "sending"
    assert sample(in_flight, "newsletter_deliveries", state=claimed_as) == 1
    if is_postgresql(database_uri):
        with app.app_context():  # "queued", yet held: the dispatcher's row lock is the claim
            free = db.session.scalars(select(Delivery.id).with_for_update(skip_locked=True))
            assert free.all() == []
            db.session.remove()

    sigterm_at = time.time()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0

    lines = batch_log.read_text(encoding="utf-8").split()
    assert lines[0] == "started" and float(lines[1]) < sigterm_at
    assert lines[2] == "finished" and float(lines[3]) > sigterm_at  # it was in flight
    with app.app_context():
        states = db.session.scalars(select(Delivery.status)).all()
    assert states == [DeliveryStatus.SENT]

    log_file.seek(0)
    log = log_file.read()  # read once: iterating the file first left nothing to search
    access = [
        json.loads(line)
        for line in log.splitlines()
        if line.startswith("{") and '"gunicorn.access"' in line and "/subscribe" in line
    ]
    assert len(access) == 1 and access[0]["request_id"] == "rid-9"
    assert ("dispatcher process started" in log) is in_own_process
    assert "eve@example.com" not in log
