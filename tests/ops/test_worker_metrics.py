"""A Celery worker serves its own /metrics: the answers it got and how long its batches took."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.digests.processes import outputs, sent, start_worker, stop
from tests.servers import free_port, redis_or_fail

BROKER = os.environ.get("TEST_CELERY_BROKER_URL", "redis://127.0.0.1:6379/3")


def _samples(url: str) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.mark.parametrize("processes", [1, 2], ids=["solo", "prefork"])
def test_a_worker_counts_what_it_sent_on_its_own_metrics_endpoint(
    make_app, database_uri, tmp_path, processes
):
    """Solo, or a prefork pool whose processes' counts add up on the one endpoint."""
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
    answers = ("newsletter_provider_answers_total", (("outcome", "sent"), ("provider", "logging")))
    batches = ("newsletter_dispatch_batch_seconds_count", (("provider", "logging"),))
    try:
        client = app.test_client()
        for n in range(3):  # each signup queues a dispatch task for the worker (pool)
            client.post("/subscribe", json={"email": f"reader{n}@example.com"})
        samples: dict = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                samples = _samples(f"http://127.0.0.1:{port}/metrics")
            except OSError:
                samples = {}  # not listening yet
            if samples.get(answers) == 3:
                break
            time.sleep(0.3)
    finally:
        stop([worker])
    assert samples.get(answers) == 3, (samples, outputs(tmp_path))
    assert samples.get(batches, 0) >= 1
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
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr
