"""The web with Celery while the broker is down: signups are kept, and not held up."""

from __future__ import annotations

from newsletter import tasks
from tests.log_lines import said_by
from tests.servers import free_port
from tests.subscriptions.helpers import find


def test_signups_are_kept_and_the_broker_is_not_asked_again_at_once(make_app):
    # The web's connections are its own, opened by this app's enqueuer: none pooled by
    # an earlier test's app, to a broker that was up, can be reused here.
    app = make_app(CELERY_BROKER_URL=f"redis://127.0.0.1:{free_port()}/5")
    client = app.test_client()
    with said_by(tasks.log) as said:
        answers = [
            client.post("/subscribe", json={"email": f"b{n}@example.com"}).status_code
            for n in range(3)
        ]
    assert answers == [202, 202, 202]
    assert all(find(app, f"b{n}@example.com") for n in range(3))  # beat's sweep sends them
    refusals = [message for message in said if "could not queue" in message]
    # One try, then a pause: each try held its signup for the broker client's retries.
    assert len(refusals) == 1
