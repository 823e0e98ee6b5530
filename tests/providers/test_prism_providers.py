"""SendGrid, Mailgun and Resend requests checked by Prism against each provider's own document."""

from __future__ import annotations

import pytest

from newsletter.providers import Outcome, SendResult
from newsletter.providers.mailgun import MailgunProvider
from newsletter.providers.merge import expand, group
from newsletter.providers.resend import ResendProvider, idempotency_key
from newsletter.providers.sendgrid import SendGridProvider

from .messages import confirmation, digest

pytestmark = pytest.mark.slow


def test_sendgrid_batch_passes_the_published_schema(sendgrid_url: str) -> None:
    provider = SendGridProvider("SG.test-key", sendgrid_url, 10)
    messages = [digest(n) for n in range(3)] + [confirmation(1)]
    results = provider.send_batch(messages)
    assert [r.outcome for r in results] == [Outcome.SENT] * 4


def test_sendgrid_takes_a_reader_at_an_idn_domain(sendgrid_url: str) -> None:
    """Its document's ``email`` format refused ``u2@bücher.example``: the reader got nothing."""
    provider = SendGridProvider("SG.test-key", sendgrid_url, 10)
    messages = [digest(1), digest(2, to="u2@bücher.example")]
    assert messages[1].to == "u2@xn--bcher-kva.example"
    results = provider.send_batch(messages)
    assert [r.outcome for r in results] == [Outcome.SENT] * 2


def test_sendgrid_request_keeps_each_recipients_own_links() -> None:
    provider = SendGridProvider("SG.test-key", "http://127.0.0.1:9", 10)
    messages = [digest(n) for n in range(3)]
    (only,) = group(messages, provider.max_batch)
    body = provider.payload(messages, only)
    assert len(body["personalizations"]) == 3
    for message, one in zip(messages, body["personalizations"], strict=True):
        assert one["to"] == [{"email": message.to}]
        assert one["custom_args"] == {"newsletter_key": message.key}
        assert one["headers"]["List-Unsubscribe"] == message.headers["List-Unsubscribe"]
        text = next(c["value"] for c in body["content"] if c["type"] == "text/plain")
        assert expand(text, one["substitutions"]) == message.text
    assert body["from"] == {"email": "news@clinic.example.org", "name": "Clinic News"}


def test_sendgrid_bodies_that_differ_otherwise_go_in_separate_requests() -> None:
    odd = digest(2)
    odd = type(odd)(**{**odd.__dict__, "text": odd.text + "P.S. just for you\n"})
    groups = group([digest(1), odd, digest(3)], 1000)
    assert [g.indexes for g in groups] == [[0, 2], [1]]


def test_prism_refuses_a_request_that_breaks_the_schema(sendgrid_url: str) -> None:
    provider = SendGridProvider("SG.test-key", sendgrid_url, 10)
    answer = provider.api.post("/v3/mail/send", json={"personalizations": [{"cc": []}]})
    assert not isinstance(answer, SendResult)
    assert answer.status_code in (400, 422), answer.text


def test_sendgrid_bad_key_is_a_configuration_error(sendgrid_url: str) -> None:
    provider = SendGridProvider("SG.test-key", sendgrid_url, 10)
    del provider.api.session.headers["Authorization"]
    (result,) = provider.send_batch([digest(1)])
    assert result.outcome is Outcome.CONFIG_ERROR


def test_mailgun_messages_pass_the_published_schema(mailgun_url: str) -> None:
    provider = MailgunProvider("key-test", "mg.example.org", mailgun_url, 10)
    results = provider.send_batch([digest(1), confirmation(2)])
    assert [r.outcome for r in results] == [Outcome.SENT, Outcome.SENT]
    assert results[0].provider_id


def test_mailgun_form_carries_key_headers_and_tag() -> None:
    provider = MailgunProvider("key-test", "mg.example.org", "http://127.0.0.1:9", 10)
    fields = dict((name, value) for name, (_, value) in provider.fields(digest(1)))
    assert fields["v:newsletter_key"] == digest(1).key
    assert fields["h:List-Unsubscribe"] == digest(1).headers["List-Unsubscribe"]
    assert fields["o:tag"] == "digest"
    assert provider.path == "/v3/mg.example.org/messages"


def test_mailgun_bad_key_is_a_configuration_error(mailgun_url: str) -> None:
    provider = MailgunProvider("key-test", "mg.example.org", mailgun_url, 10)
    provider.api.session.auth = None
    results = provider.send_batch([digest(1), digest(2)])
    assert [r.outcome for r in results] == [Outcome.CONFIG_ERROR] * 2
    assert results[1].error.startswith("not tried")


def test_resend_batch_passes_the_published_schema(resend_url: str) -> None:
    provider = ResendProvider("re_test", resend_url, 10)
    results = provider.send_batch([digest(n) for n in range(5)])
    assert [r.outcome for r in results] == [Outcome.SENT] * 5


def test_resend_payload_tags_pass_resends_character_rules() -> None:
    provider = ResendProvider("re_test", "http://127.0.0.1:9", 10)
    body = provider.payload(digest(1))
    assert {"name": "newsletter_key", "value": digest(1).key} in body["tags"]
    assert all(
        set(t["value"]) <= set("abcdefghijklmnopqrstuvwxyz0123456789-_") for t in body["tags"]
    )
    assert body["headers"]["List-Unsubscribe"] == digest(1).headers["List-Unsubscribe"]


def test_resend_idempotency_key_is_the_same_for_the_same_batch_only() -> None:
    batch = [digest(n) for n in range(3)]
    assert idempotency_key(batch) == idempotency_key([digest(n) for n in range(3)])
    assert idempotency_key(batch) != idempotency_key(batch[:2])
    assert len(idempotency_key(batch)) <= 256
