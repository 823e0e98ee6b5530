"""SMTP against a real local SMTP server (aiosmtpd)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import ssl
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from flask import Flask
from sqlalchemy import select

from newsletter.delivery import dispatcher
from newsletter.delivery.dispatcher import log as dispatcher_log
from newsletter.delivery.failures import FailedBatches
from newsletter.extensions import db
from newsletter.models import Delivery, DeliveryStatus
from newsletter.providers import Outcome, ProviderConfigError
from newsletter.providers.smtp import SmtpProvider, parse_smtp_url
from tests.conftest import ADMIN_TOKEN
from tests.log_lines import said_by
from tests.servers import free_port

from .messages import confirmation, digest
from .test_postmark_dispatch import counts, dispatch

pytestmark = pytest.mark.slow


class Relay:
    """Keeps what it receives; refuses recipients in ``refuse`` with 550."""

    def __init__(self) -> None:
        self.received: list[tuple[list[str], email.message.EmailMessage]] = []
        self.refuse: set[str] = set()
        self.data: list[tuple[list[str], bytes]] = []  # each message's MAIL options and bytes

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        if address in self.refuse:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.received.append((list(envelope.rcpt_tos), message))
        self.data.append((list(envelope.mail_options), envelope.original_content))
        return "250 Message accepted"


class SevenBitRelay(Relay):
    """A relay that does not offer 8BITMIME (RFC 6152): it takes 7-bit data only."""

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # noqa: N802
        session.host_name = hostname
        return [line for line in responses if "8BITMIME" not in line]


@pytest.fixture
def relay() -> Iterator[tuple[Relay, int]]:
    """A plain SMTP relay on a free port, no authentication (a local Postfix, say)."""
    handler = Relay()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def test_sends_multipart_with_headers_on_an_open_relay(relay: tuple[Relay, int]) -> None:
    handler, port = relay
    provider = SmtpProvider(parse_smtp_url(f"smtp://127.0.0.1:{port}"), 5)
    results = provider.send_batch([digest(1), confirmation(2)])
    assert [r.outcome for r in results] == [Outcome.SENT, Outcome.SENT]
    (rcpts, sent), _ = handler.received
    assert rcpts == ["reader1@example.com"]
    assert sent["List-Unsubscribe"] == digest(1).headers["List-Unsubscribe"]
    assert sent["X-Newsletter-Key"] == digest(1).key
    assert sent.get_content_type() == "multipart/alternative"
    assert results[0].provider_id == sent["Message-ID"]


def test_an_idn_domain_goes_to_the_envelope_in_idna_2008(relay: tuple[Relay, int]) -> None:
    """``straße.de`` is not ``strasse.de``: the relay is told the stored reader's domain."""
    handler, port = relay
    provider = SmtpProvider(parse_smtp_url(f"smtp://127.0.0.1:{port}"), 5)
    results = provider.send_batch([digest(1, to="anna@straße.de")])
    assert [r.outcome for r in results] == [Outcome.SENT]
    ((rcpts, sent),) = handler.received
    assert rcpts == ["anna@xn--strae-oqa.de"]
    assert sent["To"] == "anna@xn--strae-oqa.de"


def test_refused_recipient_fails_only_its_message(relay: tuple[Relay, int]) -> None:
    handler, port = relay
    handler.refuse = {"reader2@example.com"}
    provider = SmtpProvider(parse_smtp_url(f"smtp://127.0.0.1:{port}"), 5)
    results = provider.send_batch([digest(1), digest(2), digest(3)])
    assert [r.outcome for r in results] == [Outcome.SENT, Outcome.REJECTED, Outcome.SENT]
    assert [rcpts for rcpts, _ in handler.received] == [
        ["reader1@example.com"],
        ["reader3@example.com"],
    ]


@pytest.mark.parametrize("relay_class", [Relay, SevenBitRelay], ids=["8BITMIME", "7bit-only"])
def test_bodies_beyond_ascii_go_as_the_relay_takes_them(relay_class: type[Relay]) -> None:
    # 8bit data went to every relay, unannounced: one without 8BITMIME may refuse it or
    # strip its high bits. Now announced with BODY=8BITMIME, or quoted-printable.
    handler = relay_class()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        provider = SmtpProvider(parse_smtp_url(f"smtp://127.0.0.1:{port}"), 5)
        accented = replace(digest(1), text="Santé, été, 🩺\n", html="<p>Santé 🩺</p>")
        results = provider.send_batch([accented, digest(2)])
    finally:
        controller.stop()
    assert [r.outcome for r in results] == [Outcome.SENT, Outcome.SENT]
    (accented_options, accented_bytes), (plain_options, plain_bytes) = handler.data
    if relay_class is Relay:
        assert "BODY=8BITMIME" in accented_options and not accented_bytes.isascii()
    else:
        assert "BODY=8BITMIME" not in accented_options and accented_bytes.isascii()
    assert "BODY=8BITMIME" not in plain_options and plain_bytes.isascii()  # 7bit already
    message = handler.received[0][1]
    assert message.get_body(("plain",)).get_content().replace("\r\n", "\n") == "Santé, été, 🩺\n"
    assert message.get_body(("html",)).get_content() == "<p>Santé 🩺</p>"


@pytest.mark.parametrize("smtputf8", [True, False], ids=["relay-has-SMTPUTF8", "relay-has-not"])
def test_a_mailbox_name_beyond_ascii_fails_alone_and_nothing_goes_twice(smtputf8: bool) -> None:
    # smtplib failed the whole batch on such an address (a TypeError with SMTPUTF8, an
    # SMTPNotSupportedError without), after the messages before it had gone: the
    # dispatcher retried them all, and they went again.
    handler = Relay()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, enable_SMTPUTF8=smtputf8)
    controller.start()
    try:
        provider = SmtpProvider(parse_smtp_url(f"smtp://127.0.0.1:{port}"), 5)
        international = replace(digest(2), to="r\u00e9ader@example.com")
        results = provider.send_batch([digest(1), international, digest(3)])
    finally:
        controller.stop()
    assert [r.outcome for r in results] == [Outcome.SENT, Outcome.REJECTED, Outcome.SENT]
    assert [rcpts for rcpts, _ in handler.received] == [
        ["reader1@example.com"],
        ["reader3@example.com"],
    ]


def test_a_message_that_fails_for_another_reason_is_retried_alone(
    relay: tuple[Relay, int], monkeypatch
) -> None:
    # Not the address: a fault of ours, or one a later setting may cure. Retried with
    # back-off, never failed for good; the batch's other messages still go, once.
    from newsletter.providers import smtp

    handler, port = relay
    real = smtp.build_mime

    def broken_for_two(message, **options):
        if message.to == "reader2@example.com":
            raise TypeError("a bug building this one")
        return real(message, **options)

    monkeypatch.setattr(smtp, "build_mime", broken_for_two)
    provider = SmtpProvider(parse_smtp_url(f"smtp://127.0.0.1:{port}"), 5)
    results = provider.send_batch([digest(1), digest(2), digest(3)])
    assert [r.outcome for r in results] == [Outcome.SENT, Outcome.TRANSIENT, Outcome.SENT]
    assert "a bug building this one" in (results[1].error or "")
    assert len(handler.received) == 2


class SlowRelay(Relay):
    """Takes each message, then waits ``slow`` seconds before its answer to the first ``times``."""

    def __init__(self, slow: float, times: int = 1_000) -> None:
        super().__init__()
        self.slow, self.times = slow, times
        self.rcpt_slow = 0.0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        await asyncio.sleep(self.rcpt_slow)
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        answer = await super().handle_DATA(server, session, envelope)
        if self.times > 0:
            self.times -= 1
            await asyncio.sleep(self.slow)
        return answer


@contextmanager
def serving(handler: Relay) -> Iterator[int]:
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


def test_no_answer_once_the_message_went_out_is_unknown_and_ends_the_session() -> None:
    # The relay has the whole message, and no 250 comes in time: it may have taken it
    # (a plain retry would be another copy in the reader's inbox, every time).
    handler = SlowRelay(slow=1.0, times=1)
    with serving(handler) as port:
        provider = SmtpProvider(parse_smtp_url(f"smtp://127.0.0.1:{port}"), 0.3)
        results = provider.send_batch([digest(1), digest(2)])
    assert [r.outcome for r in results] == [Outcome.UNKNOWN, Outcome.TRANSIENT]
    assert (results[0].error or "").startswith("sent, no answer from the relay")
    assert results[1].error == "not tried: the session ended"
    assert len(handler.received) == 1


def test_a_timeout_before_the_message_went_out_is_a_plain_retry() -> None:
    handler = SlowRelay(slow=0.0)
    handler.rcpt_slow = 1.0  # hangs before DATA: nothing of the message was taken
    with serving(handler) as port:
        provider = SmtpProvider(parse_smtp_url(f"smtp://127.0.0.1:{port}"), 0.3)
        (result,) = provider.send_batch([digest(1)])
    assert result.outcome is Outcome.TRANSIENT
    assert handler.received == []


def test_a_relay_slower_than_the_timeout_sends_a_reader_two_copies_at_most(
    make_app: Callable[..., Flask],
) -> None:
    handler = SlowRelay(slow=0.6)  # takes every message, answers after our timeout
    with serving(handler) as port:
        app = make_app(
            EMAIL_PROVIDER="smtp", SMTP_URL=f"smtp://127.0.0.1:{port}", PROVIDER_TIMEOUT=0.2
        )
        client = app.test_client()
        assert client.post("/subscribe", json={"email": "ann@example.com"}).status_code == 202
        for _ in range(4):  # each retry used to be one more copy, without end
            dispatch(app)
        with app.app_context():
            (delivery,) = db.session.scalars(select(Delivery)).all()
            assert delivery.status is DeliveryStatus.SENT
            assert (delivery.last_error or "").startswith("sent, no answer from the relay")
    assert [rcpts for rcpts, _ in handler.received] == [["ann@example.com"]] * 2


def test_a_relay_that_is_down_is_said_in_the_log_and_the_admin_stats(
    make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each copy went back on its back-off: an outage passed with no line and no sign."""
    monkeypatch.setattr(dispatcher, "FAILED_BATCHES", FailedBatches())  # no earlier test's
    port = free_port()  # nothing listens there yet
    app = make_app(
        EMAIL_PROVIDER="smtp",
        SMTP_URL=f"smtp://127.0.0.1:{port}",
        RETRY_BASE_SECONDS=60.0,  # the copies come due again after this test
        DISPATCH_BATCH_SIZE=1,
    )
    client = app.test_client()
    for n in range(3):
        assert client.post("/subscribe", json={"email": f"r{n}@example.com"}).status_code == 202
    with said_by(dispatcher_log) as said:
        assert counts(dispatch(app)) == {"transient": 3}  # three batches, failed whole
        stats = client.get("/admin/stats", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        error = stats.get_json()["dispatch"]["last_error"]
        assert error.startswith("smtp: connect: ") and "refused" in error
        failing = [line for line in said if "failed whole" in line]
        assert len(failing) == 1, said  # once a minute at most, not once a batch

    handler = Relay()
    monkeypatch.setattr(dispatcher_log, "level", logging.INFO)  # the line back is an info
    monkeypatch.setattr(dispatcher_log, "_cache", {})
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        with said_by(dispatcher_log, logging.INFO) as said:
            assert client.post("/subscribe", json={"email": "late@example.com"}).status_code == 202
            dispatch(app)
    finally:
        controller.stop()
    assert any("sending again" in line for line in said), said
    assert [rcpts for rcpts, _ in handler.received] == [["late@example.com"]]


def test_password_is_never_sent_without_tls(relay: tuple[Relay, int]) -> None:
    _, port = relay
    provider = SmtpProvider(parse_smtp_url(f"smtp://user:secret@127.0.0.1:{port}"), 5)
    (result,) = provider.send_batch([digest(1)])
    assert result.outcome is Outcome.CONFIG_ERROR


def test_nothing_listening_is_transient() -> None:
    provider = SmtpProvider(parse_smtp_url(f"smtp://127.0.0.1:{free_port()}"), 1)
    (result,) = provider.send_batch([digest(1)])
    assert result.outcome is Outcome.TRANSIENT


def test_url_forms() -> None:
    starttls = parse_smtp_url("smtp://ses%40user:p%2Fw@email-smtp.example.com:587")
    assert (starttls.host, starttls.port, starttls.implicit_tls) == (
        "email-smtp.example.com",
        587,
        False,
    )
    assert (starttls.username, starttls.password) == ("ses@user", "p/w")
    implicit = parse_smtp_url("smtps://u:p@smtp-relay.example.com")
    assert (implicit.port, implicit.implicit_tls) == (465, True)
    with pytest.raises(ProviderConfigError):
        parse_smtp_url("http://example.com")


def test_app_sends_signups_through_smtp(
    make_app: Callable[..., Flask], relay: tuple[Relay, int]
) -> None:
    handler, port = relay
    app = make_app(EMAIL_PROVIDER="smtp", SMTP_URL=f"smtp://127.0.0.1:{port}")
    assert (
        app.test_client().post("/subscribe", json={"email": "ann@example.com"}).status_code == 202
    )

    dispatch(app)
    assert [rcpts for rcpts, _ in handler.received] == [["ann@example.com"]]


# --- TLS: STARTTLS on a submission port, and TLS from the first byte -----------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, and its key (made by openssl)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


class Logins:
    """An authenticator that takes ``user``/``secret`` and remembers every attempt."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def __call__(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        login = (auth_data.login.decode(), auth_data.password.decode())
        self.seen.append(login)
        return AuthResult(success=login == ("user", "secret"))


class TlsRelay(Relay):
    """A relay that also notes whether each message came over TLS."""

    def __init__(self) -> None:
        super().__init__()
        self.over_tls: list[bool] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        self.over_tls.append(session.ssl is not None)
        return await super().handle_DATA(server, session, envelope)


def _server_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


@pytest.fixture
def submission(certificate) -> Iterator[tuple[TlsRelay, Logins, int]]:
    """A submission port (587-style): STARTTLS required, login only over TLS."""
    handler, logins, port = TlsRelay(), Logins(), free_port()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=port,
        tls_context=_server_tls(certificate),
        require_starttls=True,
        auth_require_tls=True,
        auth_required=True,
        authenticator=logins,
    )
    controller.start()
    try:
        yield handler, logins, port
    finally:
        controller.stop()


def test_starttls_then_login_then_send(submission, certificate, monkeypatch) -> None:
    handler, logins, port = submission
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))  # trust our relay's certificate
    provider = SmtpProvider(parse_smtp_url(f"smtp://user:secret@127.0.0.1:{port}"), 5)
    results = provider.send_batch([digest(1), confirmation(2)])
    assert [r.outcome for r in results] == [Outcome.SENT, Outcome.SENT]
    assert logins.seen == [("user", "secret")]
    assert handler.over_tls == [True, True]
    assert [rcpts for rcpts, _ in handler.received] == [
        ["reader1@example.com"],
        ["new2@example.com"],
    ]


def test_an_untrusted_certificate_stops_sending_before_the_password(
    submission, monkeypatch
) -> None:
    handler, logins, port = submission
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)  # the system's CAs only
    provider = SmtpProvider(parse_smtp_url(f"smtp://user:secret@127.0.0.1:{port}"), 5)
    (result,) = provider.send_batch([digest(1)])
    assert result.outcome is Outcome.CONFIG_ERROR  # a setting to fix, not a retry to spend
    assert "certificate" in (result.error or "")
    assert logins.seen == [] and handler.received == []


def test_a_certificate_for_another_name_stops_sending_too(
    submission, certificate, monkeypatch
) -> None:
    handler, logins, port = submission
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))  # trusted, but for 127.0.0.1 only
    provider = SmtpProvider(parse_smtp_url(f"smtp://user:secret@localhost:{port}"), 5)
    (result,) = provider.send_batch([digest(1)])
    assert result.outcome is Outcome.CONFIG_ERROR
    assert "localhost" in (result.error or "")  # the name it was asked to match
    assert logins.seen == [] and handler.received == []


# The relay warns that it asks for a login without requiring TLS: it speaks only TLS.
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_smtps_is_tls_from_the_first_byte(certificate, monkeypatch) -> None:
    handler, logins, port = TlsRelay(), Logins(), free_port()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=port,
        ssl_context=_server_tls(certificate),  # it speaks nothing but TLS
        auth_required=True,
        auth_require_tls=False,  # aiosmtpd only counts STARTTLS as TLS for AUTH
        authenticator=logins,
    )
    controller.start()
    try:
        monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
        provider = SmtpProvider(parse_smtp_url(f"smtps://user:secret@127.0.0.1:{port}"), 5)
        (result,) = provider.send_batch([digest(1)])
    finally:
        controller.stop()
    assert result.outcome is Outcome.SENT
    assert logins.seen == [("user", "secret")]
    assert [rcpts for rcpts, _ in handler.received] == [["reader1@example.com"]]
