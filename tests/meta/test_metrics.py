"""/metrics: protected by the admin token, counters counted on commit, ledger gauges from the DB."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import text

from newsletter.delivery import ledger
from newsletter.extensions import db
from newsletter.metrics import count_consent
from newsletter.models import ConsentKind, DeliveryKind, utcnow
from tests.meta.scrape import sample
from tests.subscriptions.helpers import confirmed, unsubscribe_link


def scrape(client, admin_headers) -> str:
    response = client.get("/metrics", headers=admin_headers)
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    return response.get_data(as_text=True)


def test_metrics_need_the_admin_token(client, admin_headers):
    assert client.get("/metrics").status_code == 401
    # What Prometheus asks for: a machine's answer (JSON), not the HTML error page.
    prometheus = (
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
    )
    refused = client.get("/metrics", headers={"Accept": prometheus})
    assert refused.status_code == 401 and refused.get_json()["error"]["code"]
    wrong = {"Authorization": "Bearer nope"}
    assert client.get("/metrics", headers=wrong).status_code == 401
    assert "newsletter_deliveries" in scrape(client, admin_headers)


def test_metrics_public_when_configured(make_app):
    client = make_app(METRICS_PUBLIC=True, ADMIN_TOKENS=[]).test_client()
    response = client.get("/metrics")
    assert response.status_code == 200
    assert b"newsletter_delivery_queue_depth" in response.data


def test_signup_confirm_unsubscribe_are_counted(app, client, outbox, admin_headers):
    before = scrape(client, admin_headers)
    subscriber = confirmed(client, outbox, "ada@example.com")
    assert client.post(unsubscribe_link(app, subscriber)).status_code == 200
    after = scrape(client, admin_headers)
    for name in ("signups", "confirmations", "unsubscribes"):
        metric = f"newsletter_{name}_total"
        assert sample(after, metric) - sample(before, metric) == 1, name


def test_a_rolled_back_consent_step_counts_nothing(app, client, admin_headers):
    before = sample(scrape(client, admin_headers), "newsletter_signups_total")
    with app.app_context():
        db.session.execute(text("SELECT 1"))  # a service's step starts with a query
        count_consent(db.session, ConsentKind.SIGNUP)
        db.session.rollback()
        db.session.commit()
    assert sample(scrape(client, admin_headers), "newsletter_signups_total") == before


def test_ledger_gauges_and_provider_answers(app, client, outbox, admin_headers):
    before = scrape(client, admin_headers)
    assert client.post("/subscribe", json={"email": "bo@example.com"}).status_code == 202
    queued = scrape(client, admin_headers)
    assert sample(queued, "newsletter_deliveries", state="queued") == 1
    assert sample(queued, "newsletter_delivery_queue_depth") == 1
    outbox.dispatch()
    sent = scrape(client, admin_headers)
    assert sample(sent, "newsletter_deliveries", state="sent") == 1
    assert sample(sent, "newsletter_deliveries", state="queued") == 0
    assert sample(sent, "newsletter_delivery_queue_depth") == 0
    answers = "newsletter_provider_answers_total"
    labels = {"provider": "outbox", "outcome": "sent"}
    # A labelled series appears with its first value: absent before means none yet.
    assert sample(sent, answers, **labels) - sample(before, answers, 0.0, **labels) == 1
    batches = "newsletter_dispatch_batch_seconds_count"
    assert (
        sample(sent, batches, provider="outbox") - sample(before, batches, 0.0, provider="outbox")
        == 1
    )


def test_age_of_the_oldest_due_delivery(app, client, admin_headers):
    with app.app_context():
        ledger.queue(
            db.session,
            DeliveryKind.CONFIRMATION,
            to_address="x@example.com",
            next_attempt_at=utcnow() - timedelta(seconds=120),
        )
        ledger.queue(
            db.session,
            DeliveryKind.CONFIRMATION,
            to_address="y@example.com",
            next_attempt_at=utcnow() + timedelta(hours=1),
        )
        db.session.commit()
    text = scrape(client, admin_headers)
    assert 120 <= sample(text, "newsletter_delivery_oldest_due_seconds") < 180
    assert sample(text, "newsletter_delivery_queue_depth") == 2
