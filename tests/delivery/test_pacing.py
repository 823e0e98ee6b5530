"""``SEND_RATE`` holds a process to its rate across passes, and it waits holding no batch."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Sequence

from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.delivery.dispatcher import Pacer, dispatch_pass
from newsletter.extensions import db
from newsletter.models import Delivery, DeliveryStatus
from newsletter.providers import Message, Outcome, SendResult

RATE = 4  # messages a second: batches of 4, one second apart


class Timed:
    """A provider that notes when each batch came and says when the first did."""

    name = "timed"
    max_batch = 100

    def __init__(self) -> None:
        self.batches: list[tuple[float, int]] = []
        self.first_sent = threading.Event()

    def send_batch(self, messages: Sequence[Message]) -> list[SendResult]:
        self.batches.append((time.monotonic(), len(messages)))
        self.first_sent.set()
        return [SendResult(Outcome.SENT) for _ in messages]


def _two_batches_queued(make_app) -> Flask:
    """An app paced at ``RATE`` with two batches' worth of confirmations queued."""
    app: Flask = make_app(RATELIMIT_ENABLED=False, SEND_RATE=float(RATE))
    client = app.test_client()
    for n in range(2 * RATE):
        assert client.post("/subscribe", json={"email": f"r{n}@example.com"}).status_code == 202
    return app


def test_batches_keep_to_the_rate_and_none_is_held_while_waiting(make_app) -> None:
    app = _two_batches_queued(make_app)
    provider = Timed()
    failures: list[BaseException] = []

    def dispatch() -> None:
        with app.app_context():
            app.extensions["newsletter.provider"] = provider
            try:
                dispatch_pass()
            except BaseException as exc:  # reported by the test below
                failures.append(exc)
            finally:
                db.session.remove()

    worker = threading.Thread(target=dispatch)
    worker.start()
    try:
        assert provider.first_sent.wait(10)
        time.sleep(0.4)  # well inside the second's wait before the next batch
        with app.app_context(), Session(db.engine) as other:
            # Every row can be locked at once (PostgreSQL: the pass holds no row lock)
            # and none is leased (SQLite's claim): the next batch is not yet claimed.
            statuses = other.scalars(select(Delivery.status).with_for_update(nowait=True)).all()
            other.rollback()
    finally:
        worker.join(10)
    assert not failures and not worker.is_alive()
    assert sorted(statuses) == [DeliveryStatus.QUEUED] * RATE + [DeliveryStatus.SENT] * RATE
    (first, first_size), (second, second_size) = provider.batches
    assert (first_size, second_size) == (RATE, RATE)
    assert second - first >= 0.9  # RATE messages, then a second before the next RATE


def test_the_rate_holds_across_passes_as_celery_tasks_run_them(make_app) -> None:
    """Each Celery task runs its own pass: the process's pacer remembers the last one's batch."""
    app = _two_batches_queued(make_app)
    provider = Timed()
    with app.app_context():
        app.extensions["newsletter.provider"] = provider
        for _ in range(2):  # two tasks out of time after their first batch, in one process
            dispatch_pass(for_seconds=0.0)
            db.session.remove()
    (first, first_size), (second, second_size) = provider.batches
    assert (first_size, second_size) == (RATE, RATE)
    assert second - first >= 0.9  # without the pacer's memory: a few milliseconds


def test_a_stop_request_cuts_the_wait_short(make_app) -> None:
    """A slow rate must not keep a shutting-down dispatcher past its grace period."""
    app: Flask = make_app(RATELIMIT_ENABLED=False, SEND_RATE=0.1)
    assert app.test_client().post("/subscribe", json={"email": "a@example.com"}).status_code == 202
    provider = Timed()
    started = time.monotonic()
    stop_at = started + 0.3  # the request comes while the pass is already waiting
    with app.app_context():
        app.extensions["newsletter.provider"] = provider
        pacer: Pacer = app.extensions["newsletter.pacer"]
        assert pacer.take_turn(1) is not None  # a batch just went: the next in ten seconds
        dispatch_pass(should_stop=lambda: time.monotonic() >= stop_at)
        db.session.remove()
    assert time.monotonic() - started < 5
    assert provider.batches == []  # it stopped before claiming, as asked


def test_threads_sharing_one_pacer_take_turns(make_app) -> None:
    """A Celery worker's thread (or gevent) pool: its tasks share the process's one pacer."""
    app: Flask = make_app(RATELIMIT_ENABLED=False, SEND_RATE=float(RATE))
    client = app.test_client()
    for n in range(3 * RATE):
        assert client.post("/subscribe", json={"email": f"r{n}@example.com"}).status_code == 202
    provider = Timed()
    app.extensions["newsletter.provider"] = provider
    failures: list[BaseException] = []
    start = threading.Barrier(3)

    def task() -> None:  # a Celery task out of time after its first batch
        with app.app_context():
            try:
                start.wait(5)
                dispatch_pass(for_seconds=0.0)
            except BaseException as exc:
                failures.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=task) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    assert not failures and not any(t.is_alive() for t in threads)
    times = sorted(at for at, _ in provider.batches)
    assert sorted(size for _, size in provider.batches) == [RATE] * 3
    # A turn a second apart (less what one claim took more than the next: the first pays
    # the compiling). The pacer before turns were booked under a lock let all three
    # take the same one: they went within milliseconds.
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert min(gaps) >= 0.5, gaps


class SlowToRead(Pacer):
    """A pacer whose last turn's end takes 10 ms to read: unlocked, threads would book alike."""

    @property
    def _next_at(self) -> float:
        value = self._stored
        time.sleep(0.01)  # another thread runs meanwhile, and may book a turn
        return value

    @_next_at.setter
    def _next_at(self, value: float) -> None:
        self._stored = value


def test_turns_are_booked_under_the_lock() -> None:
    """The test above catches the old wait-then-count pacer; this one a lost lock."""
    pacer = SlowToRead(rate=100.0)  # turns of 0.1 s for 10 messages
    ends: list[float] = []
    start = threading.Barrier(3)

    def book() -> None:
        start.wait(5)
        turn = pacer.take_turn(10)
        assert turn is not None
        ends.append(turn)

    threads = [threading.Thread(target=book) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    gaps = [later - earlier for earlier, later in itertools.pairwise(sorted(ends))]
    assert len(ends) == 3 and min(gaps) >= 0.099, gaps  # unlocked: all three end alike


def test_a_turn_a_claim_did_not_fill_is_given_back() -> None:
    pacer = Pacer(rate=10.0)
    turn = pacer.take_turn(10)  # a second booked
    assert turn is not None
    pacer.give_back(turn, 9)  # one message claimed: a tenth of a second used
    started = time.monotonic()
    assert pacer.take_turn(1) is not None
    assert time.monotonic() - started < 0.5  # not the second the full turn would have cost


def test_a_turn_another_already_follows_is_not_shortened() -> None:
    """Two threads booked a second each; the first claims nothing: the second still goes alone."""
    pacer = Pacer(rate=10.0)
    first = pacer.take_turn(10)  # now, for a second
    second_ends = pacer._next_at + 1.0  # the turn the second thread is about to take
    second = threading.Thread(target=pacer.take_turn, args=(10,))  # sleeps through the first
    second.start()
    time.sleep(0.1)
    assert first is not None and pacer._next_at == second_ends
    pacer.give_back(first, 10)  # the first thread's claim came back empty
    assert pacer._next_at == second_ends  # a third batch still waits for the second's end
    second.join(5)
