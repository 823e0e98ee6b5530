"""SMTP against a real local SMTP server (aiosmtpd)."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Callable, Iterator

import pytest
from aiosmtpd.controller import Controller
from flask import Flask

from newsletter.providers import Outcome, ProviderConfigError
from newsletter.providers.smtp import SmtpProvider, parse_smtp_url
from tests.servers import free_port

from .messages import confirmation, digest
from .test_postmark_dispatch import dispatch

pytestmark = pytest.mark.slow


class Relay:
    """Keeps what it receives; refuses recipients in ``refuse`` with 550."""

    def __init__(self) -> None:
        self.received: list[tuple[list[str], email.message.EmailMessage]] = []
        self.refuse: set[str] = set()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        if address in self.refuse:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.received.append((list(envelope.rcpt_tos), message))
        return "250 Message accepted"


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
