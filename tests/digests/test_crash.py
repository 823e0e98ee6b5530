"""A dispatcher killed midway and started again: no one missed, duplicates bounded."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.digests.helpers import add_confirmed, add_post
from tests.digests.processes import sent

BATCH = 20


def _dispatcher(
    database_uri: str, log: Path, delay: float, quiet: bool = False
) -> subprocess.Popen:
    env = {
        **os.environ,
        "SECRET_KEY": "crash-test",
        "DATABASE_URL": database_uri,
        "EMAIL_PROVIDER": "logging",
        "SEND_LOG": str(log),
        "SEND_DELAY": str(delay),
        "SEND_BATCH": str(BATCH),
        "DISPATCH_LEASE": "1",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "tests.digests.dispatch_script"],
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.DEVNULL if quiet else subprocess.PIPE,
        stderr=subprocess.DEVNULL if quiet else subprocess.PIPE,
    )


@pytest.mark.slow
def test_dispatcher_killed_midway_then_restarted_misses_no_one(
    app, client, admin_headers, database_uri, tmp_path
):
    emails = add_confirmed(app, 200)
    add_post(client, admin_headers, 1)
    digest = client.post("/admin/digests", json={}, headers=admin_headers).get_json()
    log = tmp_path / "sent.log"

    first = _dispatcher(database_uri, log, delay=0.3, quiet=True)
    deadline = time.monotonic() + 60
    while len(sent(log)) < 3 * BATCH and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(10)
    sent_before_kill = len(sent(log))
    assert BATCH <= sent_before_kill < len(emails), "the kill must land midway"

    time.sleep(1.5)  # the killed batch's lease runs out
    second = _dispatcher(database_uri, log, delay=0)
    _out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err.decode()[-2000:]

    counts = Counter(sent(log))
    assert set(counts) == set(emails)  # no one missed
    duplicates = sum(n - 1 for n in counts.values())
    print(f"killed after {sent_before_kill} sent; duplicates after restart: {duplicates}")
    assert duplicates <= BATCH  # at most the batch in flight at the kill
    report = client.get(f"/admin/digests/{digest['id']}", headers=admin_headers).get_json()
    assert (report["status"], report["sent"], report["pending"]) == ("sent", 200, 0)
