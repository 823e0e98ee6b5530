"""gunicorn with gunicorn.conf.py: SIGTERM mid-batch still records the batch, exit 0.

Also checks, on the same real server, that metrics add up across workers
(multiprocess mode) and that access lines carry the request id.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from newsletter.extensions import db
from newsletter.models import Delivery, DeliveryStatus
from tests.conftest import ADMIN_TOKEN, SECRET
from tests.meta.scrape import sample
from tests.servers import answers, free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
SLOW_SECONDS = 3.0


@pytest.fixture(params=["true", "false"], ids=["dispatch-process", "dispatch-threads"])
def gunicorn(database_uri: str, tmp_path: Path, request: pytest.FixtureRequest):
    """The app under gunicorn (2 workers, our config file) with the slow provider.

    Both ways of dispatching: one process beside the workers (the default), and
    a thread in each worker (DISPATCH_PROCESS=false).
    """
    port = free_port()
    batch_log = tmp_path / "batches.log"
    env = {
        **os.environ,
        "DATABASE_URL": database_uri,
        "SECRET_KEY": SECRET,
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "EMAIL_PROVIDER": "slow-test",
        "RATELIMIT_ENABLED": "false",
        "LOG_FORMAT": "json",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        "SLOW_SECONDS": str(SLOW_SECONDS),
        "BATCH_LOG": str(batch_log),
        "DISPATCH_PROCESS": request.param,
    }
    stderr = open(tmp_path / "gunicorn.log", "w+", encoding="utf-8")  # noqa: SIM115
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"),
            *("--bind", f"127.0.0.1:{port}", "--workers", "2", "--graceful-timeout", "20"),
            "tests.ops.slow_app:app",
        ],
        cwd=ROOT,
        env=env,
        stdout=stderr,
        stderr=stderr,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: answers(f"{base}/healthz"), 30, "gunicorn to answer")
        yield process, base, batch_log, stderr, request.param == "true"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        stderr.close()


@pytest.mark.slow
def test_sigterm_mid_batch_records_the_batch_and_exits_0(gunicorn, app):
    process, base, batch_log, log_file, in_own_process = gunicorn
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    response = requests.post(
        f"{base}/subscribe",
        json={"email": "eve@example.com"},
        headers={"X-Request-ID": "rid-9"},
        timeout=10,
    )
    assert response.status_code == 202
    assert response.headers["X-Request-ID"] == "rid-9"
    wait_for(lambda: batch_log.exists(), 20, "the provider to start the batch")

    in_flight = requests.get(f"{base}/metrics", headers=admin, timeout=5).text
    assert sample(in_flight, "newsletter_signups_total") == 1  # whichever worker answers
    assert sample(in_flight, "newsletter_deliveries", state="sending") == 1

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
