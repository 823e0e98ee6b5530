"""A dispatch task sends from two threads in a one-process worker on PostgreSQL, once each."""

from __future__ import annotations

import threading
from collections import Counter
from types import SimpleNamespace
from typing import Any

import pytest
from celery.concurrency.prefork import TaskPool as PreforkPool
from celery.concurrency.solo import TaskPool as SoloPool

from newsletter import tasks
from newsletter.providers import REGISTRY
from tests.conftest import is_postgresql
from tests.digests.helpers import ThreadNotingProvider, a_digest_to
from tests.digests.processes import ENQUEUE_BROKER as BROKER
from tests.digests.processes import (
    a_digest_for_workers,
    outputs,
    sent,
    sent_by_workers,
    start_worker,
)

RECIPIENTS = 600


@pytest.mark.parametrize(
    ("pool", "concurrency", "one_process"),
    [
        (SoloPool, 8, True),  # the solo pool runs tasks in the worker itself, whatever -c says
        ("solo", "auto", True),  # as named on the command line, before Celery resolves it
        (PreforkPool, 1, True),
        (PreforkPool, 2, False),
        ("prefork", "auto", False),
    ],
)
def test_the_worker_knows_whether_its_tasks_share_one_process(
    monkeypatch, pool: Any, concurrency: Any, one_process: bool
) -> None:
    monkeypatch.setitem(tasks._ONE_PROCESS, "worker", None)
    tasks._note_the_pool(sender=SimpleNamespace(pool_cls=pool, concurrency=concurrency))
    assert tasks._ONE_PROCESS["worker"] is one_process


@pytest.mark.parametrize(
    ("setting", "postgresql", "one_process", "threads"),
    [
        (None, True, True, 2),
        (None, True, False, 1),
        (None, False, True, 1),  # SQLite: one writer, nothing to overlap
        (3, False, False, 3),  # the operator's setting wins
        (1, True, True, 1),
    ],
)
def test_task_threads(setting, postgresql, one_process, threads) -> None:
    config = {"DISPATCH_THREADS": setting}
    assert tasks.task_threads(config, postgresql, one_process) == threads


def test_a_task_in_a_one_process_worker_sends_each_copy_once(
    make_app, admin_headers, database_uri, monkeypatch
) -> None:
    """The task body as a solo worker runs it: two passes side by side on PostgreSQL."""
    expected = 2 if is_postgresql(database_uri) else 1
    # Each pass's first batch waits for the other's: both really send side by side.
    provider = ThreadNotingProvider(delay=0.02, side_by_side=expected)
    monkeypatch.setitem(REGISTRY, "thread-noting", lambda _config: provider)
    app = make_app(EMAIL_PROVIDER="thread-noting", DISPATCH_BATCH_SIZE=50, SEND_RATE=0)
    assert a_digest_to(RECIPIENTS, admin_headers)(app) == RECIPIENTS
    emails = [f"reader{i}@example.com" for i in range(RECIPIENTS)]
    monkeypatch.setattr(tasks, "flask_app", lambda: app)
    monkeypatch.setitem(tasks._ONE_PROCESS, "worker", True)
    requeued = []
    monkeypatch.setattr(tasks.dispatch, "delay", lambda: requeued.append(True))

    claimed = 0
    for _ in range(20):  # each task sends for about a second, then queues another go
        claimed += tasks.dispatch.run()
        if not requeued:
            break
        requeued.clear()

    counts = Counter(to for _, to in provider.sent)
    threads = {thread for thread, _ in provider.sent}
    assert set(counts) == set(emails)
    assert max(counts.values()) == 1
    assert claimed == RECIPIENTS
    assert len(threads) == expected, threads


def test_a_failed_pass_beside_the_task_shows_in_its_health(make_app, monkeypatch) -> None:
    """Logged, and the dispatcher's last error (``/healthz``), as a pass of its own would be."""
    from newsletter.delivery import dispatcher
    from newsletter.delivery.health import dispatch_health

    app = make_app()
    real_pass = dispatcher.dispatch_pass

    def failing_beside(**kwargs: Any) -> Any:
        if threading.current_thread().name == "newsletter-task-helper":
            raise RuntimeError("the helper's pass broke")
        return real_pass(**kwargs)

    monkeypatch.setattr(dispatcher, "dispatch_pass", failing_beside)
    monkeypatch.setattr(tasks, "flask_app", lambda: app)
    monkeypatch.setitem(app.config, "DISPATCH_THREADS", 2)
    monkeypatch.setattr(tasks.dispatch, "delay", lambda: None)

    assert tasks.dispatch.run() == 0  # nothing due; the task itself does not fail
    assert "the helper's pass broke" in (dispatch_health(app).last_error or "")


@pytest.mark.slow
@pytest.mark.parametrize(("processes", "threads_per_process"), [(1, 2), (2, 1)])
def test_a_real_worker_sends_from_two_threads_only_when_solo(
    make_app, admin_headers, database_uri, tmp_path, processes: int, threads_per_process: int
) -> None:
    """A real ``celery worker`` finds its own pool: solo sends from two threads, prefork from one.

    The tests above give ``_note_the_pool`` a stand-in for the worker and
    force the flag; here Celery itself starts the worker and the tasks.
    """
    client, emails = a_digest_for_workers(make_app, admin_headers, database_uri, RECIPIENTS)
    log, thread_log = tmp_path / "sent.log", tmp_path / "threads.log"
    worker = start_worker(
        "threads",
        database_uri,
        BROKER,
        log,
        tmp_path / "worker.out",
        processes=processes,
        SEND_THREAD_LOG=str(thread_log),
        SEND_DELAY="0.05",  # 12 batches of 50 take 0.6 s: both passes of a task claim some
    )
    _, report = sent_by_workers(client, admin_headers, [worker], timeout=120)
    assert report.get("status") == "sent", (report, outputs(tmp_path))
    counts = Counter(sent(log))
    assert set(counts) == set(emails)
    assert max(counts.values()) == 1
    by_process: dict[str, set[str]] = {}
    for line in thread_log.read_text().splitlines():
        pid, thread = line.split(" ", 1)
        by_process.setdefault(pid, set()).add(thread)
    assert by_process, outputs(tmp_path)
    assert all(len(threads) == threads_per_process for threads in by_process.values()), by_process
