"""A dispatcher killed mid-pass: every due email still goes out, duplicates bounded."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import is_postgresql

BATCH = 10
ADDRESSES = 35


def run_dispatcher(database_uri: str, log: Path, crash_after: int, lease: int) -> int:
    env = {
        **os.environ,
        "DATABASE_URL": database_uri,
        "SECRET_KEY": "test-secret-key",
        "SENT_LOG": str(log),
        "CRASH_AFTER_BATCHES": str(crash_after),
        "DISPATCH_BATCH_SIZE": str(BATCH),
        "DISPATCH_LEASE": str(lease),
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    script = Path(__file__).with_name("crashing_dispatch.py")
    return subprocess.run([sys.executable, str(script)], env=env, timeout=60).returncode


@pytest.mark.slow
def test_sigkilled_dispatcher_loses_nothing_and_duplicates_at_most_its_batch(
    make_app, database_uri, tmp_path
):
    app = make_app(RATELIMIT_ENABLED=False)
    client = app.test_client()
    for n in range(ADDRESSES):
        assert client.post("/subscribe", json={"email": f"r{n}@example.com"}).status_code == 202
    log = tmp_path / "sent.log"

    code = run_dispatcher(database_uri, log, crash_after=2, lease=1)
    assert code == -9  # really killed, mid-pass
    assert len(log.read_text().splitlines()) == 2 * BATCH  # two batches left, one unrecorded

    import time

    time.sleep(1.2)  # the dead dispatcher's lease runs out
    assert run_dispatcher(database_uri, log, crash_after=0, lease=1) == 0

    lines = log.read_text().splitlines()
    recipients = [line.split()[1] for line in lines]
    assert set(recipients) == {f"r{n}@example.com" for n in range(ADDRESSES)}  # no one missed
    duplicates = len(lines) - len(set(lines))
    assert duplicates == BATCH  # exactly the batch in flight at the kill, no more


def test_restart_before_the_lease_ends_does_not_resend_the_claimed_batch(
    make_app, database_uri, tmp_path
):
    if is_postgresql(database_uri):
        pytest.skip("SQLite's lease; PostgreSQL claims by row lock (the test below)")
    log = _five_subscribers(make_app, tmp_path)
    assert run_dispatcher(database_uri, log, crash_after=1, lease=3600) == -9
    assert run_dispatcher(database_uri, log, crash_after=0, lease=3600) == 0
    assert len(log.read_text().splitlines()) == 5  # the claimed batch waits out its lease


def test_a_dead_dispatchers_row_locks_free_its_batch_at_once(make_app, database_uri, tmp_path):
    if not is_postgresql(database_uri):
        pytest.skip("PostgreSQL's row-lock claim; SQLite claims by lease (the test above)")
    log = _five_subscribers(make_app, tmp_path)
    assert run_dispatcher(database_uri, log, crash_after=1, lease=3600) == -9
    # Nothing was written for the claim: the dead connection's locks are gone, and the
    # batch it had in flight is sent again now, lease or not. It is the one duplicate.
    assert run_dispatcher(database_uri, log, crash_after=0, lease=3600) == 0
    lines = log.read_text().splitlines()
    assert len(lines) == 10 and len(set(lines)) == 5


def _five_subscribers(make_app, tmp_path: Path) -> Path:
    """Five pending signups, each with its confirmation queued; the sent log's path."""
    client = make_app(RATELIMIT_ENABLED=False).test_client()
    for n in range(5):
        assert client.post("/subscribe", json={"email": f"l{n}@example.com"}).status_code == 202
    return tmp_path / "sent.log"
