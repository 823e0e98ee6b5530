"""DISPATCH_PROCESS=true under gunicorn: dispatcher processes, supervised by the master."""

from __future__ import annotations

import email
import os
import signal
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import is_postgresql
from tests.digests.helpers import add_confirmed
from tests.meta.scrape import sample
from tests.ops.gunicorn_master import children, gunicorn_master
from tests.servers import wait_for


def dispatchers(master: int) -> list[int]:
    """The master's children that run the dispatcher process."""
    found = []
    for child in children(master):
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        if b"newsletter.delivery.dispatch_process" in command:
            found.append(child)
    return found


def gone(pid: int) -> bool:
    """True once process ``pid`` has exited (reaped, or a zombie)."""
    try:
        return b"zombie" in Path(f"/proc/{pid}/status").read_bytes().lower()
    except FileNotFoundError:
        return True


def sent_count(base: str, admin: dict[str, str]) -> float:
    """Provider answers "sent" counted so far, as the workers' /metrics shows them."""
    metrics = requests.get(f"{base}/metrics", headers=admin, timeout=10).text
    sent = {"provider": "outbox", "outcome": "sent"}
    return sample(metrics, "newsletter_provider_answers_total", 0.0, **sent)


@pytest.mark.slow
def test_the_master_runs_restarts_and_stops_one_dispatcher_process(
    app, database_uri, tmp_path, admin_headers
):
    outbox = tmp_path / "outbox"
    settings = {
        "EMAIL_PROVIDER": "outbox",
        "OUTBOX_DIR": str(outbox),
        "DISPATCH_PROCESS": "true",
        "DISPATCH_DIGEST_PROCESSES": "0",  # alone, on either database
    }
    emails = lambda: sorted(outbox.glob("*.eml")) if outbox.exists() else []  # noqa: E731
    with gunicorn_master(database_uri, tmp_path, "wsgi:app", **settings) as (master, base, _):
        wait_for(lambda: len(dispatchers(master.pid)) == 1, 15, "the dispatcher process")
        first = dispatchers(master.pid)[0]

        signup = {"email": "ann@example.com"}
        assert requests.post(f"{base}/subscribe", json=signup, timeout=10).status_code == 202
        wait_for(lambda: len(emails()) == 1, 15, "the first confirmation")
        # Once it has counted its answer (an email is written before it is counted):
        wait_for(lambda: sent_count(base, admin_headers) == 1, 15, "the first answer counted")

        os.kill(first, signal.SIGKILL)  # a crash: the master starts another
        wait_for(lambda: dispatchers(master.pid) not in ([], [first]), 15, "a new dispatcher")
        signup = {"email": "bob@example.com"}
        assert requests.post(f"{base}/subscribe", json=signup, timeout=10).status_code == 202
        wait_for(lambda: len(emails()) == 2, 15, "the second confirmation")
        (second,) = dispatchers(master.pid)

        # The workers send nothing themselves: with the dispatcher paused, a signup
        # waits (a worker's thread would have sent it within a second)...
        os.kill(second, signal.SIGSTOP)
        try:
            signup = {"email": "cy@example.com"}
            assert requests.post(f"{base}/subscribe", json=signup, timeout=10).status_code == 202
            time.sleep(2.0)
            assert len(emails()) == 2
        finally:
            os.kill(second, signal.SIGCONT)
        wait_for(lambda: len(emails()) == 3, 15, "the paused dispatcher to send it")  # ...for it

        # What the dispatcher processes counted (the killed one too) reaches the
        # workers' /metrics: they share gunicorn's multiprocess metrics folder.
        wait_for(lambda: sent_count(base, admin_headers) == 3, 15, "every answer counted")
        metrics = requests.get(f"{base}/metrics", headers=admin_headers, timeout=10).text
        batches = sample(metrics, "newsletter_dispatch_batch_seconds_count", provider="outbox")
        assert batches == 3
        # ...and so does its health record: the workers answer /admin/stats.
        stats = requests.get(f"{base}/admin/stats", headers=admin_headers, timeout=10).json()
        assert stats["dispatch"]["last_pass_at"] is not None

        # The master made a folder for that record, handed down in the environment.
        health = handed(second, "DISPATCH_HEALTH_FILE")
        assert Path(health.decode()).parent.is_dir()
        assert handed(second, "DISPATCH_HEALTH_FILES") == b"1"  # and how many it started

        master.send_signal(signal.SIGTERM)
        assert master.wait(timeout=40) == 0
        assert not Path(health.decode()).parent.exists()  # removed once the process stopped
        assert gone(second)
        assert len(emails()) == 3  # each confirmation sent once


def handed(pid: int, name: str) -> bytes:
    """The value of ``name`` in the environment a dispatcher process was started with."""
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    [value] = [v.split(b"=", 1)[1] for v in environ if v.startswith(name.encode() + b"=")]
    return value


def index_of(pid: int) -> bytes:
    """The INDEX a dispatcher process was started with (last of its command line)."""
    return Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")[-1]


@pytest.mark.slow
def test_several_dispatcher_processes_each_send_alone_and_all_stop(app, database_uri, tmp_path):
    outbox = tmp_path / "outbox"
    settings = {
        "EMAIL_PROVIDER": "outbox",
        "OUTBOX_DIR": str(outbox),
        "DISPATCH_PROCESS": "true",
        "DISPATCH_PROCESSES": "2",
    }
    emails = lambda: sorted(outbox.glob("*.eml")) if outbox.exists() else []  # noqa: E731
    with gunicorn_master(database_uri, tmp_path, "wsgi:app", **settings) as (master, base, _):
        wait_for(lambda: len(dispatchers(master.pid)) == 2, 15, "two dispatcher processes")
        by_index = {index_of(pid): pid for pid in dispatchers(master.pid)}
        assert sorted(by_index) == [b"0", b"1"]

        # Either one sends while the other is stopped (SIGSTOP): neither relies on the other.
        for held, address in ((b"0", "ann@example.com"), (b"1", "bob@example.com")):
            os.kill(by_index[held], signal.SIGSTOP)
            try:
                sent_before = len(emails())
                response = requests.post(f"{base}/subscribe", json={"email": address}, timeout=10)
                assert response.status_code == 202
                wait_for(lambda n=sent_before: len(emails()) == n + 1, 15, f"{address}'s email")
            finally:
                os.kill(by_index[held], signal.SIGCONT)

        # One that dies is started again, with its own index.
        os.kill(by_index[b"1"], signal.SIGKILL)

        def started_again() -> bool:
            # One look at the children: a dying process can still show its command line.
            found = dispatchers(master.pid)
            return len(found) == 2 and by_index[b"1"] not in found

        wait_for(started_again, 15, "the second dispatcher to be started again")
        assert sorted(index_of(pid) for pid in dispatchers(master.pid)) == [b"0", b"1"]
        last = dispatchers(master.pid)

        master.send_signal(signal.SIGTERM)
        assert master.wait(timeout=40) == 0
        for pid in last:
            assert gone(pid)
        assert len(emails()) == 2  # each confirmation sent once


@pytest.mark.slow
def test_a_second_process_sends_the_digests_on_postgresql_only(
    app, database_uri, tmp_path, admin_headers
):
    outbox = tmp_path / "outbox"
    settings = {"EMAIL_PROVIDER": "outbox", "OUTBOX_DIR": str(outbox), "DISPATCH_PROCESS": "true"}
    emails = lambda: sorted(outbox.glob("*.eml")) if outbox.exists() else []  # noqa: E731
    readers = add_confirmed(app, 3)
    with gunicorn_master(database_uri, tmp_path, "wsgi:app", **settings) as (master, base, _):
        if not is_postgresql(database_uri):  # SQLite's one writer: one process sends it all
            wait_for(lambda: len(dispatchers(master.pid)) == 1, 15, "the dispatcher process")
            time.sleep(1.0)
            assert len(dispatchers(master.pid)) == 1
            return
        wait_for(lambda: len(dispatchers(master.pid)) == 2, 15, "two dispatcher processes")
        by_index = {index_of(pid): pid for pid in dispatchers(master.pid)}
        assert sorted(by_index) == [b"0", b"1"]
        # Read by its path: a seek on the open log would move gunicorn's own offset.
        started = (tmp_path / "gunicorn.log").read_text()
        assert f"dispatcher process started (index 1, pid {by_index[b'1']})" in started

        os.kill(by_index[b"0"], signal.SIGSTOP)  # the first, which sends everything else
        try:
            signup = {"email": "ann@example.com"}
            assert requests.post(f"{base}/subscribe", json=signup, timeout=10).status_code == 202
            post = {"title": "Open on Sunday", "url": "https://clinic.example/sunday"}
            response = requests.post(
                f"{base}/admin/posts", json=post, headers=admin_headers, timeout=10
            )
            assert response.status_code == 201
            response = requests.post(
                f"{base}/admin/digests", json={}, headers=admin_headers, timeout=10
            )
            assert response.status_code == 202
            wait_for(lambda: len(emails()) == len(readers), 15, "the digest, from process 1")
            time.sleep(1.0)  # five of its looks at the queue: it leaves the confirmation be
            sent_to = sorted(recipient(email) for email in emails())
            assert sent_to == sorted(readers)
        finally:
            os.kill(by_index[b"0"], signal.SIGCONT)
        wait_for(lambda: len(emails()) == len(readers) + 1, 15, "the confirmation, from process 0")
        assert "ann@example.com" in {recipient(email) for email in emails()}


@pytest.mark.slow
def test_a_reload_starts_the_dispatcher_processes_again_with_gunicorns_env(
    app, database_uri, tmp_path
):
    outbox = tmp_path / "outbox"
    settings = {
        "EMAIL_PROVIDER": "outbox",
        "OUTBOX_DIR": str(outbox),
        "DISPATCH_PROCESS": "true",
        "DISPATCH_DIGEST_PROCESSES": "0",  # one process, on either database, unless --env says
    }
    emails = lambda: sorted(outbox.glob("*.eml")) if outbox.exists() else []  # noqa: E731
    # Settings given on gunicorn's command line count too: it sets them as it starts.
    options = ("--env", "DISPATCH_PROCESSES=2")
    with gunicorn_master(database_uri, tmp_path, "wsgi:app", *options, **settings) as (
        master,
        base,
        _,
    ):
        wait_for(lambda: len(dispatchers(master.pid)) == 2, 15, "two dispatcher processes")
        before = dispatchers(master.pid)
        assert sorted(index_of(pid) for pid in before) == [b"0", b"1"]

        # A reload (how gunicorn takes new code) starts them again, as it does the workers.
        master.send_signal(signal.SIGHUP)

        def started_anew() -> bool:
            found = dispatchers(master.pid)
            return len(found) == 2 and not set(found) & set(before)

        wait_for(started_anew, 30, "two new dispatcher processes")
        after = dispatchers(master.pid)
        assert sorted(index_of(pid) for pid in after) == [b"0", b"1"]
        assert {handed(pid, "DISPATCH_HEALTH_FILES") for pid in after} == {b"2"}
        for pid in before:  # the old ones stopped, and were not started again
            assert gone(pid)
        logged = (tmp_path / "gunicorn.log").read_text()  # by its path, as above
        assert "dispatcher processes stopped for the reload" in logged
        assert "starting another" not in logged
        # The new ones send (the workers still run none of their own).
        signup = {"email": "ann@example.com"}
        assert requests.post(f"{base}/subscribe", json=signup, timeout=10).status_code == 202
        wait_for(lambda: len(emails()) == 1, 15, "the confirmation, from a new process")
        assert sorted(index_of(pid) for pid in dispatchers(master.pid)) == [b"0", b"1"]


def recipient(eml: Path) -> str:
    """The To address of a message the outbox wrote."""
    return email.message_from_bytes(eml.read_bytes())["To"]
