"""The subscriber export with its database lost: the usual 503 before it starts, a cut-off
file the client can tell is cut off after.

The export is streamed: its response starts before its last row is read. It used
to start before its first: a database that did not answer then gave gunicorn's
bare HTML 500 and a traceback, not the 503 every other admin endpoint gives.

PostgreSQL is reached through a TCP proxy the test cuts; SQLite's folder is moved
away (for a new connection) or its open connections interrupted (mid-read).
"""

from __future__ import annotations

import contextlib
import csv
import http.client
import io
import logging
import socket
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from flask import Flask
from sqlalchemy import event, insert

from newsletter.extensions import db
from newsletter.models import Status, Subscriber
from newsletter.subscriptions.export import COLUMNS, export_csv
from tests.conftest import ADMIN_TOKEN
from tests.faults.test_database_outage import Outage
from tests.ops.gunicorn_master import gunicorn_master

EXPORT = "/admin/subscribers/export.csv"
HEADER = ",".join(COLUMNS)


class LostDatabase(Outage):
    """``Outage``, and a cut of the connections open now, in the middle of a read."""

    def __init__(self, database_uri: str, tmp_path: Path) -> None:
        super().__init__(database_uri, tmp_path)
        self._sqlite: list[sqlite3.Connection] = []

    def watch(self, app: Flask) -> None:
        """Note each SQLite connection ``app`` opens, for ``cut``."""
        if not self.postgresql:
            with app.app_context():
                event.listen(db.engine, "connect", lambda conn, _record: self._sqlite.append(conn))

    def cut(self) -> None:
        """Queries under way fail: PostgreSQL's connections dropped, SQLite's interrupted."""
        if self.postgresql:
            self.proxy.stop()
        for conn in self._sqlite:
            with contextlib.suppress(sqlite3.ProgrammingError):  # closed already
                conn.interrupt()


@pytest.fixture
def lost(database_uri: str, tmp_path: Path) -> Iterator[LostDatabase]:
    """The test database behind a switch."""
    switch = LostDatabase(database_uri, tmp_path)
    yield switch
    if switch.postgresql:
        switch.proxy.stop()


def _seed(app: Flask, count: int, name: str | None = None) -> None:
    """``count`` pending subscribers, written at once."""
    with app.app_context():
        rows = [
            {"email": f"user{i:06d}@example.org", "name": name, "status": Status.PENDING}
            for i in range(count)
        ]
        db.session.execute(insert(Subscriber), rows)
        db.session.commit()
        db.session.remove()


def test_an_export_with_the_database_down_is_the_usual_503(make_app, lost, admin_headers):
    app = make_app(**lost.settings)
    client = app.test_client()
    lost.down()
    listing = client.get("/admin/subscribers", headers=admin_headers)
    exported = client.get(EXPORT, headers=admin_headers)
    assert listing.status_code == 503  # what every admin endpoint answers
    assert exported.status_code == 503, exported.get_data(as_text=True)[:200]
    assert exported.mimetype == "application/json"
    assert exported.get_json() == listing.get_json()
    assert exported.get_json()["error"]["code"] == "unavailable"
    assert exported.headers["Retry-After"] == listing.headers["Retry-After"]
    assert "Content-Disposition" not in exported.headers  # no file to save

    lost.up()
    again = client.get(EXPORT, headers=admin_headers)
    assert again.status_code == 200 and again.get_data(as_text=True) == HEADER + "\r\n"


def test_an_export_longer_than_its_first_read_is_whole_and_as_before(make_app, admin_headers):
    # Its first chunk is read in the view, the rest as the response goes: one query throughout.
    app = make_app()
    _seed(app, 2_345, name="=Name")
    response = app.test_client().get(EXPORT, headers=admin_headers)
    assert response.status_code == 200
    with app.app_context():
        expected = "".join(export_csv(db.session))  # what the CLI writes
        db.session.remove()
    assert response.get_data(as_text=True) == expected
    rows = list(csv.DictReader(io.StringIO(expected)))
    assert len(rows) == 2_345 and rows[-1]["email"] == "user002344@example.org"
    assert {row["name"] for row in rows} == {"'=Name"}


def test_an_export_left_after_its_first_chunk_gives_its_connection_back(make_app, admin_headers):
    app = make_app()
    _seed(app, 1500)
    response = app.test_client().get(EXPORT, headers=admin_headers, buffered=False)
    next(iter(response.response))
    with app.app_context():
        pool = db.engine.pool
    assert pool.checkedout() == 1  # the export's own, reading on
    response.close()  # as a server does when its client goes
    assert pool.checkedout() == 0


def test_an_export_cut_off_after_its_first_chunk_is_dropped_not_ended(
    make_app, lost, admin_headers, caplog
):
    app = make_app(**lost.settings)
    _seed(app, 1500)  # the rows are read 1,000 at a time and sent 500 at a time
    lost.watch(app)
    response = app.test_client().get(EXPORT, headers=admin_headers, buffered=False)
    assert response.status_code == 200
    body = iter(response.response)
    first = next(body).decode()
    assert first.startswith(HEADER + "\r\n") and first.count("\r\n") == 501
    lost.cut()
    caplog.clear()
    # What WSGI servers take as a connection to drop: no last chunk, an incomplete read.
    with pytest.raises(ConnectionError):
        for _ in body:
            pass
    response.close()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, caplog.text
    message = errors[0].getMessage()
    assert message.startswith("subscriber export cut short after 1000 rows: OperationalError: ")
    assert "\n" not in message and errors[0].exc_info is None


def _incomplete_export(base: str, cut: Callable[[], None]) -> tuple[bytes, bytes | None]:
    """GET the export, read a little, ``cut`` the database, read on.

    The body read, and what the response ended in: None for a complete chunked
    body, else the part ``http.client`` read before the connection closed.
    """
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)
    sock = socket.socket()
    # A small receive window: the server gets little ahead of what was read.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
    sock.settimeout(60)
    sock.connect((parts.hostname, parts.port))
    conn.sock = sock
    try:
        conn.request("GET", EXPORT, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        response = conn.getresponse()
        assert response.status == 200
        assert response.getheader("Transfer-Encoding") == "chunked"
        body = response.read(64 * 1024)
        cut()
        try:
            body += response.read()
        except http.client.IncompleteRead as exc:
            return body + exc.partial, exc.partial
        return body, None
    finally:
        conn.close()


@pytest.mark.slow
def test_under_gunicorn_an_export_cut_off_midway_is_an_incomplete_read(
    make_app, lost, tmp_path, admin_headers
):
    if not lost.postgresql:
        pytest.skip("an open SQLite file cannot be cut from another process; PostgreSQL can")
    app = make_app()
    # About 12 MB of CSV: far more than the socket buffers between gunicorn and the
    # client, so gunicorn is still reading rows when the database goes.
    _seed(app, 50_000, name="N" * 180)
    proxied = lost.settings["SQLALCHEMY_DATABASE_URI"]
    settings = {"OUTBOX_DIR": str(tmp_path / "outbox"), "DISPATCH_IN_PROCESS": "false"}
    with gunicorn_master(proxied, tmp_path, "wsgi:app", DISPATCH_PROCESS="false", **settings) as (
        _,
        base,
        log,
    ):
        body, partial = _incomplete_export(base, lost.cut)
        assert partial is not None, f"a complete body of {len(body)} bytes"
        rows = list(csv.reader(io.StringIO(body.decode())))
        assert 1 < len(rows) < 50_001
        # A database that does not answer when the export starts: the usual 503 JSON.
        conn = http.client.HTTPConnection(urlsplit(base).netloc, timeout=30)
        try:
            conn.request("GET", EXPORT, headers=admin_headers)
            refused = conn.getresponse()
            answer = refused.read()
        finally:
            conn.close()
        assert refused.status == 503
        assert b'"code":"unavailable"' in answer.replace(b" ", b"")
        log.flush()
        logged = (tmp_path / "gunicorn.log").read_text(errors="replace")
    assert "Traceback" not in logged, logged[-3000:]
    cut_lines = [line for line in logged.splitlines() if "subscriber export cut short" in line]
    assert len(cut_lines) == 1, logged[-3000:]
    assert "OperationalError" in cut_lines[0]
