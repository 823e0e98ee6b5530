"""Two triggers at the same moment, through a real server, make one digest."""

from __future__ import annotations

import threading

import requests
from sqlalchemy import func, select

from newsletter.extensions import db
from newsletter.models import Delivery, Digest, Post
from tests.digests.helpers import add_confirmed, add_post
from tests.servers import serve


def test_concurrent_triggers_make_one_digest(app, client, admin_headers):
    add_confirmed(app, 200)
    for n in range(5):
        add_post(client, admin_headers, n)
    barrier = threading.Barrier(8)
    answers: list[int] = []

    def trigger(base: str) -> None:
        barrier.wait()
        response = requests.post(
            f"{base}/admin/digests", json={}, headers=admin_headers, timeout=60
        )
        answers.append(response.status_code)

    with serve(app) as base:
        threads = [threading.Thread(target=trigger, args=(base,)) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(90)
    assert sorted(answers) == [202] + [409] * 7
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Digest)) == 1
        assert db.session.scalar(select(func.count()).select_from(Delivery)) == 200
        assert db.session.scalar(select(func.count(func.distinct(Post.digest_id)))) == 1
