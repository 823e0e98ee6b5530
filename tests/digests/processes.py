"""Dispatching processes for the digest tests: Celery workers, beat, and what they sent.

Shared by the two-worker test and the SIGKILL tests. Each worker sends through
``tests.digests.dispatch_script.LoggingProvider``, which appends every
recipient to ``SEND_LOG`` before answering, as a provider that accepted it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

REPO_ROOT = Path(__file__).resolve().parents[2]
# The broker every test that enqueues from the test process names: its Celery app keeps
# the connection pool of the first broker it sends to, so they must all name this one
# (each flushes it first; tests run one at a time).
ENQUEUE_BROKER = os.environ.get("TEST_CELERY_BROKER_URL", "redis://127.0.0.1:6379/3")


def _spawn(args: list[str], env: Mapping[str, str], out: Path) -> subprocess.Popen:
    with out.open("wb") as sink:
        return subprocess.Popen(
            [sys.executable, *args],
            env={**os.environ, **env},
            cwd=REPO_ROOT,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )


def start_worker(
    name: str,
    database_uri: str,
    broker: str,
    log: Path,
    out: Path,
    processes: int = 1,
    **settings: str,
) -> subprocess.Popen:
    """A Celery worker (``tests.digests.celery_worker``) logging what it sends to ``log``.

    Solo (the task runs in the process started) unless ``processes`` > 1.
    """
    env = {
        "SECRET_KEY": "celery-test",
        "DATABASE_URL": database_uri,
        "CELERY_BROKER_URL": broker,
        "EMAIL_PROVIDER": "logging",
        "SEND_LOG": str(log),
        "SEND_BATCH": "50",
        "SEND_DELAY": "0.01",
        "DISPATCH_INTERVAL": "2",
        **settings,
    }
    return _spawn(["-m", "tests.digests.celery_worker", name, str(processes)], env, out)


def start_beat(broker: str, folder: Path, interval: float) -> subprocess.Popen:
    """``celery -A newsletter.tasks beat``: queues a dispatch sweep every ``interval`` s."""
    env = {"CELERY_BROKER_URL": broker, "DISPATCH_INTERVAL": str(interval)}
    args = ["-m", "celery", "-A", "newsletter.tasks", "beat", "--loglevel=WARNING"]
    args += ["--schedule", str(folder / "beat-schedule")]
    return _spawn(args, env, folder / "beat.out")


def stop(processes: Iterable[subprocess.Popen]) -> None:
    """SIGTERM each process still running, wait, and SIGKILL one that hangs."""
    running = [p for p in processes if p.poll() is None]
    for process in running:
        process.send_signal(signal.SIGTERM)
    for process in running:
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def sent(log: Path) -> list[str]:
    """Every recipient the logging provider accepted, in order, repeats included."""
    return log.read_text().split() if log.exists() else []


def wait_for_digest(
    client: FlaskClient, headers: Mapping[str, str], digest_id: int, timeout: float
) -> dict:
    """The digest's report once it is ``sent`` or ``failed``, or the last one at ``timeout``."""
    deadline = time.monotonic() + timeout
    report: dict = {}
    while time.monotonic() < deadline:
        report = client.get(f"/admin/digests/{digest_id}", headers=headers).get_json()
        if report["status"] in ("sent", "failed"):
            break
        time.sleep(0.5)
    return report


def outputs(folder: Path) -> str:
    """The tail of every process's output in ``folder``, for a failure message."""
    return "\n".join(f"{p.name}: {p.read_text()[-2000:]}" for p in sorted(folder.glob("*.out")))


def a_digest_for_workers(
    make_app: Callable[..., Flask], headers: Mapping[str, str], database_uri: str, recipients: int
) -> tuple[FlaskClient, list[str]]:
    """PostgreSQL and Redis (else skip, or fail under CI): ``recipients`` confirmed, one post.

    The app enqueues on ``ENQUEUE_BROKER``; its test client and the addresses.
    """
    from tests.conftest import is_postgresql
    from tests.digests.helpers import add_confirmed, add_post
    from tests.servers import redis_or_fail

    if not is_postgresql(database_uri):
        pytest.skip("Celery workers share a digest on PostgreSQL only (set TEST_DATABASE_URL)")
    redis_or_fail(ENQUEUE_BROKER)
    app = make_app(CELERY_BROKER_URL=ENQUEUE_BROKER)
    client = app.test_client()
    emails = add_confirmed(app, recipients)
    add_post(client, headers, 1)
    return client, emails


def sent_by_workers(
    client: FlaskClient,
    headers: Mapping[str, str],
    workers: Iterable[subprocess.Popen],
    timeout: float,
) -> tuple[dict, dict]:
    """Trigger the digest and wait for it to end; the workers stopped whatever happens.

    The trigger's answer and the digest's last report.
    """
    try:
        digest = client.post("/admin/digests", json={}, headers=headers).get_json()
        return digest, wait_for_digest(client, headers, digest["id"], timeout=timeout)
    finally:
        stop(workers)
