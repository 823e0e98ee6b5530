"""/readyz: the database and, when a broker is configured, the broker; 503 names the part."""

from __future__ import annotations

import os

from flask_migrate import downgrade, upgrade

from newsletter import MIGRATIONS_DIR
from newsletter.extensions import db
from tests.servers import free_port, redis_or_fail

BROKER = os.environ.get("TEST_READINESS_BROKER_URL", "redis://127.0.0.1:6379/5")


def test_ready_with_the_database_and_no_broker(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "database": "ok"}


def test_ready_checks_the_broker_when_one_is_configured(app):
    redis_or_fail(BROKER)
    app.config["CELERY_BROKER_URL"] = BROKER  # read per request; no Celery app touched
    response = app.test_client().get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "database": "ok", "broker": "ok"}


def test_not_ready_when_the_broker_does_not_answer(app):
    app.config["CELERY_BROKER_URL"] = f"redis://127.0.0.1:{free_port()}/5"
    app.config["READINESS_TIMEOUT"] = 0.5
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json() == {"status": "unavailable", "database": "ok", "broker": "down"}


def test_not_ready_when_the_database_is_gone(app_losing_its_database):
    response = app_losing_its_database.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json() == {"status": "unavailable", "database": "down"}


def test_liveness_ignores_the_broker(app):
    app.config["CELERY_BROKER_URL"] = f"redis://127.0.0.1:{free_port()}/5"
    assert app.test_client().get("/healthz").status_code == 200


def test_a_schema_behind_the_code_is_not_ready_and_signups_are_a_503(make_app):
    """`db upgrade` forgotten at a deploy: both probes said ok while every signup was a 500."""
    app = make_app(RATELIMIT_ENABLED=False)
    client = app.test_client()
    with app.app_context():
        downgrade(directory=str(MIGRATIONS_DIR), revision="0009_posts_marked_sent")
        db.engine.dispose()
    try:
        ready = client.get("/readyz", headers={"Accept": "application/json"})
        assert ready.status_code == 503
        assert ready.get_json() == {"status": "unavailable", "database": "schema_behind"}
        signup = client.post("/subscribe", json={"email": "ann@example.com"})
        assert signup.status_code == 503  # deliveries.unanswered is missing
        assert signup.get_json()["error"]["code"] == "unavailable"
        assert "Retry-After" in signup.headers
    finally:
        with app.app_context():
            upgrade(directory=str(MIGRATIONS_DIR))
            db.engine.dispose()
    assert client.get("/readyz").get_json() == {"status": "ok", "database": "ok"}
    assert client.post("/subscribe", json={"email": "ann@example.com"}).status_code == 202
