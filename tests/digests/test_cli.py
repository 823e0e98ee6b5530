"""``flask digest send``: dry run, then a real send followed to the end."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Sequence

import pytest

from config import ConfigError
from newsletter.providers import REGISTRY, Message, Outcome, SendResult
from tests.digests.helpers import add_confirmed, add_post


def test_dry_run_shows_posts_and_recipients_and_sends_nothing(app, client, admin_headers, outbox):
    add_confirmed(app, 4)
    add_post(client, admin_headers, 1, title="Hip Extension")
    result = app.test_cli_runner().invoke(args=["digest", "send", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "1 new post(s) to 4 confirmed subscriber(s)" in result.output
    assert "Hip Extension" in result.output and "dry run" in result.output
    assert client.get("/admin/digests", headers=admin_headers).get_json()["items"] == []


def test_send_asks_nothing_off_a_terminal_and_follows_until_sent(
    app, client, admin_headers, outbox
):
    emails = add_confirmed(app, 30)
    add_post(client, admin_headers, 1)
    result = app.test_cli_runner().invoke(args=["digest", "send", "--subject", "Hello"])
    assert result.exit_code == 0, result.output
    assert re.search(r"digest \d+ sent: sent 30, failed 0, skipped 0", result.output)
    assert sorted(m["To"] for m in outbox.messages()) == sorted(emails)
    again = app.test_cli_runner().invoke(args=["digest", "send"])
    assert again.exit_code == 1 and "no new posts" in again.output


@pytest.mark.parametrize(
    "args",
    [["digest", "send", "--yes"], ["subscribers", "export"], ["outbox", "dispatch"]],
)
def test_a_command_on_a_database_never_migrated_says_to_migrate_it(make_app, tmp_path, args):
    app = make_app(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'never-migrated.db'}")
    result = app.test_cli_runner().invoke(args=args)
    assert result.exit_code == 1
    assert "run `flask --app wsgi db upgrade` first" in result.output
    assert "Traceback" not in result.output and result.exception is not None
    assert isinstance(result.exception, SystemExit)


def test_a_sqlite_file_in_a_folder_that_does_not_exist_stops_start_up(make_app, tmp_path):
    with pytest.raises(ConfigError, match=r"folder .* does not exist"):
        make_app(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'missing' / 'x.db'}")


def test_a_sqlite_file_that_is_a_folder_or_an_outbox_that_cannot_be_stop_start_up(
    make_app, tmp_path
):
    # Each used to end start-up (or `db upgrade`) in a traceback.
    with pytest.raises(ConfigError, match="which is a folder"):
        make_app(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path}")
    (tmp_path / "a-file").write_text("")
    with pytest.raises(ConfigError, match=r"OUTBOX_DIR .* cannot be used as a folder"):
        make_app(OUTBOX_DIR=str(tmp_path / "a-file" / "outbox"))


def test_a_relative_sqlite_path_is_checked_under_the_instance_folder(make_app, tmp_path):
    app = make_app(SQLALCHEMY_DATABASE_URI="sqlite:///newsletter-relative.db")
    assert app.config["SQLALCHEMY_DATABASE_URI"] == "sqlite:///newsletter-relative.db"
    with pytest.raises(ConfigError, match="instance"):
        make_app(SQLALCHEMY_DATABASE_URI="sqlite:///no-such-sub/x.db")


def test_a_subject_past_its_limit_is_refused_and_nothing_goes(app, client, admin_headers):
    add_confirmed(app, 1)
    add_post(client, admin_headers, 1)
    result = app.test_cli_runner().invoke(args=["digest", "send", "--subject", "S" * 201])
    assert result.exit_code == 2 and "--subject" in result.output, result.output
    assert "at most 200 characters" in result.output
    assert client.get("/admin/digests", headers=admin_headers).get_json()["items"] == []


def test_a_digest_to_nobody_is_refused_on_the_command_line_too(app, client, admin_headers):
    add_post(client, admin_headers, 1)
    result = app.test_cli_runner().invoke(args=["digest", "send", "--yes"])
    assert result.exit_code == 1 and "No subscriber has confirmed yet" in result.output


class _CtrlCDuringTheFirstBatch:
    """A provider during whose first batch the operator presses Ctrl-C (or cron's SIGTERM)."""

    name = "ctrl-c"
    max_batch = 50

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.sent: list[str] = []

    def send_batch(self, messages: Sequence[Message]) -> list[SendResult]:
        """Accept every message; the first batch's call is interrupted once it is made."""
        self.sent += [m.to for m in messages]
        if len(self.sent) == len(messages):
            os.kill(os.getpid(), self.signum)
        return [SendResult(Outcome.SENT, provider_id=m.key) for m in messages]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("command", [["digest", "send", "--yes"], ["outbox", "dispatch"]])
def test_a_signal_mid_send_records_the_batch_in_flight_and_nobody_gets_two(
    make_app, admin_headers, monkeypatch, command, signum
):
    """Stopped between the provider's answer and its record, a batch went out twice."""
    provider = _CtrlCDuringTheFirstBatch(signum)
    monkeypatch.setitem(REGISTRY, "ctrl-c", lambda _config: provider)
    # A lease of a second: a batch left "sending" would be claimed again below.
    app = make_app(EMAIL_PROVIDER="ctrl-c", DISPATCH_BATCH_SIZE=50, SEND_RATE=0, DISPATCH_LEASE=1)
    emails = add_confirmed(app, 120)
    client = app.test_client()
    add_post(client, admin_headers, 1)
    if command[0] == "outbox":
        digest_id = client.post("/admin/digests", json={}, headers=admin_headers).get_json()["id"]
    previous = signal.getsignal(signum)

    stopped = app.test_cli_runner().invoke(args=command)
    assert stopped.exit_code == 130, stopped.output
    assert "readers may then get it twice" in stopped.stderr  # what a second Ctrl-C costs
    assert "stopped" in stopped.stderr
    assert len(provider.sent) == 50  # the batch in flight, then no other
    assert signal.getsignal(signum) is previous  # the command's handler is gone with it

    time.sleep(1.1)  # past the lease
    assert app.test_cli_runner().invoke(args=["outbox", "dispatch"]).exit_code == 0
    assert sorted(provider.sent) == sorted(emails)  # each exactly once
    if command[0] == "digest":
        digest_id = int(re.search(r"digest (\d+) queued", stopped.output).group(1))
    report = client.get(f"/admin/digests/{digest_id}", headers=admin_headers).get_json()
    assert (report["status"], report["sent"]) == ("sent", 120)


def test_ctrl_c_while_celery_sends_only_stops_the_watching(make_app, admin_headers):
    from tests.digests.processes import ENQUEUE_BROKER
    from tests.servers import redis_or_fail

    redis_or_fail(ENQUEUE_BROKER)
    app = make_app(CELERY_BROKER_URL=ENQUEUE_BROKER)
    add_confirmed(app, 3)
    add_post(app.test_client(), admin_headers, 1)
    threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT)).start()  # no worker runs
    stopped = app.test_cli_runner().invoke(args=["digest", "send", "--yes"])
    assert stopped.exit_code == 130, stopped.output
    assert "stopped watching: the Celery workers go on sending digest" in stopped.stderr
    assert "twice" not in stopped.stderr  # nothing is sent here
