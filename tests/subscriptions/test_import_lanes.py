"""An import over several connections (``IMPORT_CONNECTIONS``): same result, failures, wake-ups."""

from __future__ import annotations

import io
import threading

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter.extensions import db
from newsletter.models import ConsentEvent, Delivery, Subscriber
from newsletter.subscriptions import import_lanes, importer
from newsletter.subscriptions.importer import ImportFormatError
from tests.conftest import is_postgresql
from tests.subscriptions.test_import import confirmations, history, run_import

# Repeated addresses with no new name (so skipped whichever chunks they fall in),
# a bad line, some names.
REPEATS = (
    "email,name\n"
    "a@example.com,A\n"
    "b@example.com,\n"
    "c@example.com,C\n"
    "a@example.com,\n"
    "d@example.com,D\n"
    "A@EXAMPLE.com,A\n"
    "e@example.com,\n"
    "b@example.com,\n"
    "not-an-address\n"
    "f@example.com,F\n"
)


def lane_threads() -> list[threading.Thread]:
    """The import's lane threads still alive."""
    return [t for t in threading.enumerate() if t.name.startswith("newsletter-import-")]


def failing_import(app: Flask, body: str, connections: int = 2) -> BaseException:
    """What an import that must fail raised; fails the test, not hangs it, if it never ends."""
    raised: list[BaseException] = []

    def run() -> None:
        try:
            run_import(app, body, connections=connections)
        except BaseException as exc:  # handed to the test
            raised.append(exc)

    importing = threading.Thread(target=run, daemon=True)
    importing.start()
    importing.join(30)
    assert not importing.is_alive(), "the import never ended: a lane left the reader waiting"
    assert raised, "the import did not fail"
    return raised[0]


@pytest.fixture
def boom_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """The chunk holding ``boom@example.com`` is written, then fails (before its commit)."""
    write = importer._import_chunk

    def fail_on_boom(session, chunk, *args):
        write(session, chunk, *args)  # written, then lost with the rollback
        if any(row.email == "boom@example.com" for row in chunk):
            raise RuntimeError("the database went away")

    monkeypatch.setattr(importer, "_import_chunk", fail_on_boom)


# 300 addresses, the fifth of them the one that fails its chunk.
WITH_BOOM = "email\n" + "".join(
    ("boom" if i == 4 else f"r{i}") + "@example.com\n" for i in range(300)
)


def stored(app: Flask) -> dict[str, str | None]:
    """Every subscriber's name, by address."""
    with app.app_context():
        return dict(db.session.execute(select(Subscriber.email, Subscriber.name)).all())


@pytest.mark.usefixtures("small_chunks")
@pytest.mark.parametrize("connections", [1, 2, 3])
def test_any_number_of_connections_stores_the_same(app, connections):
    report = run_import(app, REPEATS, connections=connections)
    assert report["created"] == 6
    assert (report["updated"], report["skipped"]) == (0, 3)  # the three repeated lines
    assert report["errors"] == [{"line": 10, "message": report["errors"][0]["message"]}]
    assert stored(app) == {
        "a@example.com": "A",
        "b@example.com": None,
        "c@example.com": "C",
        "d@example.com": "D",
        "e@example.com": None,
        "f@example.com": "F",
    }
    assert history(app) == {e: ["imported", "confirmation_queued"] for e in stored(app)}
    assert confirmations(app) == dict.fromkeys(stored(app), 1)
    assert lane_threads() == []


@pytest.mark.usefixtures("small_chunks", "boom_fails")
def test_a_failing_chunk_stops_the_import_and_leaves_whole_chunks(app):
    error = failing_import(app, WITH_BOOM)
    assert isinstance(error, RuntimeError) and "went away" in str(error)
    assert lane_threads() == []
    names = stored(app)
    assert "boom@example.com" not in names
    assert len(names) < 30  # the reading stopped: a few chunks of the other lane at most
    assert len(names) % 3 == 0  # whole chunks only
    with app.app_context():
        for model in (ConsentEvent, Delivery):
            count = db.session.scalar(select(func.count()).select_from(model))
            assert count == len(names) * (2 if model is ConsentEvent else 1)


@pytest.mark.usefixtures("small_chunks", "boom_fails")
def test_a_lane_whose_rollback_fails_too_still_ends_the_import(app, monkeypatch):
    rollback = Session.rollback

    def rollback_then_fail(self):
        rollback(self)  # its locks are released; then the driver complains anyway
        raise ConnectionError("and the rollback failed too")

    monkeypatch.setattr(Session, "rollback", rollback_then_fail)
    error = failing_import(app, WITH_BOOM)
    assert isinstance(error, RuntimeError) and "went away" in str(error)  # not the rollback's
    assert lane_threads() == []  # the failed lane kept taking chunks: nothing waited on it
    assert "boom@example.com" not in stored(app)


def test_a_lane_that_cannot_start_ends_those_that_did(app, monkeypatch):
    start = import_lanes._Lane.start

    def second_cannot_start(self):
        if self.name.endswith("-1"):
            raise RuntimeError("can't start new thread")
        start(self)

    monkeypatch.setattr(import_lanes._Lane, "start", second_cannot_start)
    error = failing_import(app, "email\na@example.com\n")
    assert isinstance(error, RuntimeError) and "start new thread" in str(error)
    assert lane_threads() == []
    assert stored(app) == {}


def test_a_file_without_an_email_column_ends_every_lane(app):
    assert isinstance(failing_import(app, "name\nA\n"), ImportFormatError)
    assert lane_threads() == []


@pytest.mark.usefixtures("small_chunks")
@pytest.mark.parametrize("setting", [None, 2], ids=["unset", "two"])
def test_each_lane_wakes_the_dispatcher_and_the_default_depends_on_the_database(
    make_app, database_uri, setting
):
    app = make_app(IMPORT_CONNECTIONS=setting)
    woken_by: list[str] = []
    app.extensions["newsletter.dispatch_waker"] = lambda: woken_by.append(
        threading.current_thread().name
    )
    body = "email\n" + "".join(f"r{i}@example.com\n" for i in range(30))
    with app.app_context():
        report = importer.import_csv(db.session, io.BytesIO(body.encode()), confirmed=False)
        db.session.remove()
    assert report.created == 30
    if setting == 2 or is_postgresql(database_uri):  # two connections: each lane's commits wake it
        assert set(woken_by) == {"newsletter-import-0", "newsletter-import-1"}
        assert len(woken_by) >= 10  # one wake-up a chunk: 30 rows in chunks of 3 or fewer
    else:  # SQLite, unset: one writer at a time, so one connection
        assert woken_by == [threading.current_thread().name] * 10
