"""A Celery worker serves its own /metrics: the answers it got and how long its batches took."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.request

import pytest

from tests.digests.processes import ENQUEUE_BROKER as BROKER
from tests.digests.processes import REPO_ROOT, outputs, sent, start_worker, stop
from tests.meta.scrape import sample
from tests.servers import free_port, redis_or_fail, wait_for

pytestmark = pytest.mark.slow  # real Celery workers


def _scrape(url: str) -> str:
    """The endpoint's text, or "" while it is not listening yet."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read().decode()
    except OSError:
        return ""


@pytest.mark.parametrize("processes", [1, 2], ids=["solo", "prefork"])
def test_a_worker_counts_what_it_sent_on_its_own_metrics_endpoint(
    make_app, database_uri, tmp_path, processes
):
    """Solo, or a prefork pool: what its processes count reaches the main process's endpoint.

    (Prefork: the pool processes do every task, the main one none, so any count
    seen here came through the shared folder.)
    """
    redis_or_fail(BROKER)
    app = make_app(CELERY_BROKER_URL=BROKER)
    port = free_port()
    log = tmp_path / "sent.log"
    worker = start_worker(
        "metrics",
        database_uri,
        BROKER,
        log,
        tmp_path / "worker.out",
        processes,
        WORKER_METRICS_BIND=f"127.0.0.1:{port}",
    )
    url = f"http://127.0.0.1:{port}/metrics"
    answers = {"provider": "logging", "outcome": "sent"}
    text = ""
    try:
        client = app.test_client()
        for n in range(3):  # each signup queues a dispatch task for the worker (pool)
            client.post("/subscribe", json={"email": f"reader{n}@example.com"})

        def all_counted() -> bool:
            nonlocal text
            text = _scrape(url)
            # A batch's answers are counted before its duration is (the timer ends after
            # the record): a scrape between the two would see the answers alone.
            return (
                sample(text, "newsletter_provider_answers_total", 0.0, **answers) == 3
                and sample(text, "newsletter_dispatch_batch_seconds_count", 0.0, provider="logging")
                >= 1
            )

        wait_for(all_counted, 60, "3 answers and a batch's time counted on the worker's endpoint")
    finally:
        stop([worker])
        print(outputs(tmp_path))  # pytest shows it if the test fails
    assert sample(text, "newsletter_provider_answers_total", **answers) == 3, outputs(tmp_path)
    assert sample(text, "newsletter_dispatch_batch_seconds_count", provider="logging") >= 1
    assert sorted(sent(log)) == [f"reader{n}@example.com" for n in range(3)]


def test_a_worker_that_cannot_take_its_metrics_port_stops_and_says_why(database_uri, tmp_path):
    redis_or_fail(BROKER)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        worker = start_worker(
            "clash",
            database_uri,
            BROKER,
            tmp_path / "sent.log",
            tmp_path / "worker.out",
            WORKER_METRICS_BIND=f"127.0.0.1:{port}",
        )
        try:
            code = worker.wait(30)
        except subprocess.TimeoutExpired:
            code = None  # still running, without its metrics
        finally:
            stop([worker])
    assert code not in (0, None), outputs(tmp_path)
    assert f"cannot serve worker metrics on 127.0.0.1:{port}" in outputs(tmp_path)


def test_the_celery_app_loads_without_prometheus_client():
    """The pool's shared folder must be set before prometheus_client is first imported."""
    probe = "import sys, newsletter.tasks; print('prometheus_client' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO_ROOT, timeout=60
    )
    assert result.stdout.strip() == "False", result.stderr


def test_a_worker_logs_json_lines_with_addresses_masked_when_asked(
    make_app, database_uri, tmp_path
):
    redis_or_fail(BROKER)
    app = make_app(CELERY_BROKER_URL=BROKER)
    log = tmp_path / "sent.log"
    worker = start_worker(
        "json", database_uri, BROKER, log, tmp_path / "worker.out", LOG_FORMAT="json"
    )
    try:
        app.test_client().post("/subscribe", json={"email": "jsonreader@example.com"})
        wait_for(lambda: sent(log) == ["jsonreader@example.com"], 60, "the confirmation sent")
    finally:
        stop([worker])
    lines = [line for line in (tmp_path / "worker.out").read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines if line.startswith("{")]
    # Celery's own lines come through our handler: JSON, none in Celery's format.
    assert records, outputs(tmp_path)
    assert not [line for line in lines if line.startswith("[20")], outputs(tmp_path)
    assert any("ready" in r.get("message", "") for r in records), outputs(tmp_path)
    assert "jsonreader@example.com" not in (tmp_path / "worker.out").read_text()
