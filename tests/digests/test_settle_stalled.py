"""A digest whose last batch was recorded but never settled is finished by housekeeping."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from newsletter.delivery.digest_progress import SETTLE_EVERY_SECONDS
from newsletter.extensions import db
from newsletter.housekeeping import BY_NAME, JOBS
from newsletter.models import Digest, DigestStatus
from tests.conftest import Outbox
from tests.digests.helpers import add_confirmed, add_post


def _stalled_digest(
    app, client, admin_headers, monkeypatch: pytest.MonkeyPatch, marked: DigestStatus
) -> int:
    """A digest whose dispatcher died after recording its last batch, before settling it.

    ``marked``: what it shows: sending (its batch was marked), or queued (the
    dispatcher died before marking that too).
    """
    add_confirmed(app, 3)
    add_post(client, admin_headers, 1)
    digest = client.post("/admin/digests", json={}, headers=admin_headers).get_json()
    with monkeypatch.context() as patch:
        patch.setattr("newsletter.delivery.dispatcher.settle", lambda session, ids: set())
        if marked is DigestStatus.QUEUED:
            patch.setattr("newsletter.delivery.dispatcher.mark_sending", lambda session, ids: None)
        Outbox(app).dispatch()
    report = client.get(f"/admin/digests/{digest['id']}", headers=admin_headers).get_json()
    assert (report["status"], report["sent"], report["pending"]) == (marked.value, 3, 0)
    return digest["id"]


def _status(client, admin_headers, digest_id: int) -> tuple[str, bool]:
    report = client.get(f"/admin/digests/{digest_id}", headers=admin_headers).get_json()
    return report["status"], bool(report["finished_at"])


def test_housekeeping_leaves_a_digest_with_a_copy_still_pending(app, client, admin_headers):
    """Only a digest none of whose copies is pending is stalled: this one is still going."""
    add_confirmed(app, 3)
    add_post(client, admin_headers, 1)
    digest = client.post("/admin/digests", json={}, headers=admin_headers).get_json()
    with app.app_context():
        db.session.execute(
            update(Digest).where(Digest.id == digest["id"]).values(status=DigestStatus.SENDING)
        )
        db.session.commit()
        assert BY_NAME["settle-stalled-digests"].run() == 0
        db.session.remove()
    assert _status(client, admin_headers, digest["id"]) == ("sending", False)


@pytest.mark.parametrize("marked", [DigestStatus.QUEUED, DigestStatus.SENDING])
def test_the_dispatchers_housekeeping_settles_a_stalled_digest(
    app, client, admin_headers, monkeypatch, marked
):
    digest_id = _stalled_digest(app, client, admin_headers, monkeypatch, marked)
    job = BY_NAME["settle-stalled-digests"]
    assert job in JOBS and job.every == SETTLE_EVERY_SECONDS
    assert SETTLE_EVERY_SECONDS == 60.0
    with app.app_context():
        assert job.run() == 1
        db.session.remove()
    assert _status(client, admin_headers, digest_id) == ("sent", True)


def test_celery_beat_settles_a_stalled_digest_every_minute(app, client, admin_headers, monkeypatch):
    from newsletter import tasks

    settle = tasks.celery.conf.beat_schedule["settle-stalled-digests"]
    assert settle["schedule"] == 60.0 and settle["task"] == tasks.housekeeping.name
    digest_id = _stalled_digest(app, client, admin_headers, monkeypatch, DigestStatus.QUEUED)
    monkeypatch.setattr(tasks, "flask_app", lambda: app)
    assert tasks.housekeeping.run(*settle["args"]) == 1
    assert _status(client, admin_headers, digest_id) == ("sent", True)
