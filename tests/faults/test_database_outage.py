"""The database goes away mid-run and comes back: 503s meanwhile, nothing half-written,
and the in-process dispatcher resumes by itself.

PostgreSQL is reached through a TCP proxy the test cuts (live connections
dropped, new ones refused); SQLite's file is moved away (a fresh connection
per checkout, so every one meets the missing file) and put back.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, make_url, select
from sqlalchemy.pool import NullPool

from newsletter.delivery import ledger
from newsletter.delivery.dispatcher import BackgroundDispatcher
from newsletter.delivery.health import dispatch_health
from newsletter.extensions import db
from newsletter.models import ConsentEvent, Delivery, Subscriber
from tests.conftest import Outbox, is_postgresql
from tests.faults.tcp_proxy import TcpProxy
from tests.servers import wait_for


class Outage:
    """A database the test can take down and bring back; ``settings`` reach it."""

    def __init__(self, database_uri: str, tmp_path: Path) -> None:
        self.postgresql = is_postgresql(database_uri)
        if self.postgresql:
            url = make_url(database_uri)
            self.proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
            self.proxy.start()
            proxied = url.set(host="127.0.0.1", port=self.proxy.port)
            self.settings = {"SQLALCHEMY_DATABASE_URI": proxied.render_as_string(False)}
        else:
            self.folder, self.away = tmp_path / "db", tmp_path / "db-away"
            self.folder.mkdir()
            source = sqlite3.connect(make_url(database_uri).database)
            copy = sqlite3.connect(self.folder / "newsletter.db")
            source.backup(copy)
            source.close()
            copy.close()
            self.settings = {
                "SQLALCHEMY_DATABASE_URI": f"sqlite:///{self.folder / 'newsletter.db'}",
                "SQLALCHEMY_ENGINE_OPTIONS": {"poolclass": NullPool},
            }

    def down(self) -> None:
        """The database stops answering."""
        if self.postgresql:
            self.proxy.stop()
        else:
            self.folder.rename(self.away)

    def up(self) -> None:
        """The database is back."""
        if self.postgresql:
            self.proxy.start()
        else:
            self.away.rename(self.folder)


@pytest.fixture
def outage(database_uri: str, tmp_path: Path) -> Iterator[Outage]:
    """The test database behind a switch."""
    switch = Outage(database_uri, tmp_path)
    yield switch
    if switch.postgresql:
        switch.proxy.stop()


def _count(app, model) -> int:
    with app.app_context():
        try:
            return db.session.scalar(select(func.count()).select_from(model))
        finally:
            db.session.remove()


@pytest.mark.slow
def test_dispatcher_waits_out_an_outage_and_resumes_by_itself(make_app, outage):
    app = make_app(RATELIMIT_ENABLED=False, DISPATCH_INTERVAL=0.1, **outage.settings)
    client, outbox = app.test_client(), Outbox(app)
    dispatcher = BackgroundDispatcher(app)
    app.extensions["newsletter.dispatch_waker"] = dispatcher.wake
    dispatcher.start()
    try:
        assert client.post("/subscribe", json={"email": "before@example.com"}).status_code == 202
        wait_for(lambda: outbox.messages("before@example.com"))

        outage.down()
        refused = client.post("/subscribe", json={"email": "during@example.com"})
        assert refused.status_code == 503
        assert refused.get_json()["error"]["code"] == "unavailable"
        assert int(refused.headers["Retry-After"]) > 0
        assert client.get("/healthz").status_code == 503
        dispatcher.wake()
        wait_for(lambda: dispatch_health(app).last_error)  # it met the outage...
        met = dispatch_health(app).last_error or ""
        # ...and says so in one line for /healthz, not SQLAlchemy's statement and link.
        assert met.startswith("OperationalError: ") and "\n" not in met, met
        time.sleep(1.0)
        assert dispatcher._thread is not None and dispatcher._thread.is_alive()  # ...and lives

        outage.up()
        assert client.get("/healthz").status_code == 200
        assert client.post("/subscribe", json={"email": "after@example.com"}).status_code == 202
        wait_for(lambda: outbox.messages("after@example.com"))  # no restart, no cron
    finally:
        dispatcher.stop()
    assert outbox.messages("during@example.com") == []
    assert _count(app, Subscriber) == 2 and _count(app, Delivery) == 2


@pytest.mark.slow
def test_signup_cut_off_mid_transaction_leaves_nothing_half_written(make_app, outage, monkeypatch):
    """The connection dies after the subscriber row is written, before its delivery."""
    if not outage.postgresql:
        pytest.skip("an open SQLite file cannot be cut mid-transaction; PostgreSQL can")
    app = make_app(RATELIMIT_ENABLED=False, **outage.settings)
    client = app.test_client()
    # The signup's inserts run on the driver's cursor (driver_sql.py), out of sight
    # of SQLAlchemy's cursor events: the cut goes just before the delivery's insert.
    insert_delivery = ledger._INSERT_DELIVERIES.run
    cuts = []

    def cut_before_the_delivery(connection, rows):
        cuts.append(len(rows))
        outage.down()
        return insert_delivery(connection, rows)

    monkeypatch.setattr(ledger._INSERT_DELIVERIES, "run", cut_before_the_delivery)
    try:
        response = client.post("/subscribe", json={"email": "cut@example.com"})
    finally:
        monkeypatch.undo()
        outage.up()
    assert cuts == [1]
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "unavailable"
    assert _count(app, Subscriber) == 0
    assert _count(app, ConsentEvent) == 0
    assert _count(app, Delivery) == 0
    # The service recovers on the next request, with no restart.
    assert client.post("/subscribe", json={"email": "cut@example.com"}).status_code == 202
    assert _count(app, Subscriber) == 1 and _count(app, Delivery) == 1
