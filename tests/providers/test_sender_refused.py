"""A refused sender pauses sending and fails no one; a refused recipient fails alone.

``MAIL_FROM``'s default, ``Newsletter <newsletter@localhost>``, is an address no
provider takes. SendGrid is checked through Prism on its own document, which
really refuses ``from.email`` = ``newsletter@localhost`` (its answer put in
SendGrid's error body: ``servers.SendGridErrors``); Mailgun and Resend, whose
documents type ``from`` as any string, through fakes answering as their APIs do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import pytest
from flask import Flask
from sqlalchemy import select, update

from newsletter.delivery.health import dispatch_health
from newsletter.extensions import db
from newsletter.models import Delivery, DeliveryStatus, utcnow
from newsletter.providers import Message, Outcome, build_provider
from tests.servers import serve

from .messages import confirmation, digest
from .servers import FakeMailgun, FakeResend, SendGridErrors
from .test_postmark_dispatch import READERS, counts, dispatch, sign_up, statuses
from .test_rate_limits import PROVIDERS, Scripted

pytestmark = pytest.mark.slow

SENDER = "Newsletter <newsletter@localhost>"  # MAIL_FROM's default


@dataclass
class Remote:
    """One provider's local server: the settings that point at it and its request count."""

    name: str
    settings: dict[str, object]
    requests: Callable[[], int]

    def provider(self):
        return build_provider({**self.settings, "PROVIDER_TIMEOUT": 10.0})


@pytest.fixture(params=["sendgrid", "mailgun", "resend"])
def remote(request: pytest.FixtureRequest) -> Iterator[Remote]:
    name = request.param
    if name == "sendgrid":
        server = SendGridErrors(request.getfixturevalue("sendgrid_url"))
        with serve(server) as base:
            yield Remote(
                name,
                {"EMAIL_PROVIDER": name, "SENDGRID_API_KEY": "SG.test", "SENDGRID_API_URL": base},
                lambda: server.calls,
            )
    elif name == "mailgun":
        mailgun = FakeMailgun()
        with serve(mailgun) as base:
            settings = {"MAILGUN_API_KEY": mailgun.key, "MAILGUN_DOMAIN": mailgun.domain}
            yield Remote(
                name,
                {"EMAIL_PROVIDER": name, "MAILGUN_API_URL": base, **settings},
                lambda: mailgun.calls,
            )
    else:
        resend = FakeResend()
        with serve(resend) as base:
            yield Remote(
                name,
                {"EMAIL_PROVIDER": name, "RESEND_API_KEY": resend.key, "RESEND_API_URL": base},
                lambda: len(resend.paths),
            )


def from_localhost(message: Message) -> Message:
    return replace(message, sender=SENDER)


def test_a_refused_sender_is_a_configuration_error_for_the_whole_batch(remote: Remote) -> None:
    batch = [from_localhost(m) for m in (digest(0), digest(1), digest(2), confirmation(3))]
    results = remote.provider().send_batch(batch)
    assert [r.outcome for r in results] == [Outcome.CONFIG_ERROR] * 4, results
    assert "from" in (results[0].error or "")
    # One request, then none: no one-by-one resend of the batch (SendGrid, Resend), no
    # next message (Mailgun), no next group (SendGrid's confirmation).
    assert remote.requests() == 1


def test_a_refused_recipient_fails_alone(remote: Remote) -> None:
    batch = [digest(0), digest(1, to="bob@localhost"), digest(2)]
    results = remote.provider().send_batch(batch)
    assert [r.outcome for r in results] == [Outcome.SENT, Outcome.REJECTED, Outcome.SENT]
    # SendGrid and Resend refuse the batch as a whole, then each message goes alone.
    assert remote.requests() == (3 if remote.name == "mailgun" else 4)


def test_a_refused_sender_pauses_sending_and_spends_nothing(
    make_app: Callable[..., Flask], remote: Remote
) -> None:
    app = make_app(MAIL_FROM=SENDER, RETRY_BASE_SECONDS=60.0, **remote.settings)
    sign_up(app, *READERS)
    assert counts(dispatch(app)) == {"config_error": 3}
    assert set(statuses(app).values()) == {DeliveryStatus.QUEUED}  # not failed
    with app.app_context():
        assert db.session.scalars(select(Delivery.attempts)).all() == [0, 0, 0]
        db.session.remove()
    health = dispatch_health(app)
    assert health.paused and "from" in (health.last_error or "")
    assert app.test_client().get("/healthz").get_json()["dispatch"]["paused"] is True
    assert dispatch(app).claimed == 0  # paused: the queue is not burned through
    assert remote.requests() == 1

    fixed = make_app(MAIL_FROM="Clinic News <news@clinic.example.org>", **remote.settings)
    with fixed.app_context():  # the operator fixes MAIL_FROM and restarts
        db.session.execute(update(Delivery).values(next_attempt_at=utcnow()))
        db.session.commit()
        db.session.remove()
    assert counts(dispatch(fixed)) == {"sent": 3}
    assert set(statuses(fixed).values()) == {DeliveryStatus.SENT}


# Refusals as each provider words them: naming the sender (ours: every message would be
# refused alike) or anything else (this message's, or none named).
SG_FROM = "The from email does not contain a valid address."
MG_FROM = "'from' parameter is not a valid address. please check documentation"
RE_FROM = "Invalid `from` field. The email address needs to follow the `email@example.com` format."
OURS = [
    ("sendgrid", 400, {"errors": [{"field": "from.email", "message": SG_FROM}]}),
    ("sendgrid", 400, {"errors": [{"field": "reply_to.email", "message": "invalid"}]}),
    ("sendgrid", 404, {"errors": [{"field": None, "message": "not found"}]}),
    ("mailgun", 400, {"message": MG_FROM}),
    ("mailgun", 400, {"message": "from parameter is missing."}),
    ("resend", 422, {"name": "validation_error", "message": RE_FROM}),
    ("resend", 422, {"name": "validation_error", "message": "Invalid `reply_to` field."}),
    ("resend", 422, {"name": "invalid_from_address", "message": "The from address is invalid."}),
]
THEIRS = [
    ("sendgrid", 400, {"errors": [{"field": "personalizations.0.to.0.email", "message": "x"}]}),
    ("sendgrid", 400, {"errors": [{"field": "content.0.value", "message": "x"}]}),
    ("sendgrid", 400, {"errors": [{"field": None, "message": "Bad Request"}]}),
    ("mailgun", 400, {"message": MG_FROM.replace("'from'", "to")}),
    ("mailgun", 400, {"message": "Need at least one of 'text' or 'html' parameters specified"}),
    ("mailgun", 400, "Bad Request"),
    ("resend", 422, {"name": "validation_error", "message": RE_FROM.replace("from", "to", 1)}),
    ("resend", 422, {"name": "missing_required_field", "message": "The `to` field is missing."}),
    # A reader's own value quoted after the field: never taken for our sender.
    ("mailgun", 400, {"message": "'to' parameter is not a valid address: 'from.me'"}),
    ("resend", 422, {"name": "validation_error", "message": "Invalid `to` field: `from.x`."}),
    (
        "resend",
        422,
        {"name": "validation_error", "message": "The `request.body` field must be ..."},
    ),
]


@pytest.mark.parametrize(
    ("name", "status", "body", "expected"),
    [(*c, Outcome.CONFIG_ERROR) for c in OURS] + [(*c, Outcome.REJECTED) for c in THEIRS],
)
def test_which_refusals_are_ours(name: str, status: int, body: object, expected: Outcome) -> None:
    server = Scripted([(status, {}, body)])
    with serve(server) as base:
        (result,) = PROVIDERS[name](base).send_batch([digest(0)])
    assert result.outcome is expected
