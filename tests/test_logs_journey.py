"""Over a subscriber's whole journey, no log line holds a full address or a link token.

The app is served over real HTTP so the access log (paths with tokens and
addresses in them) is part of what is checked.
"""

from __future__ import annotations

import logging
import re

import requests

from tests.conftest import Outbox, path_of
from tests.digests.helpers import add_post
from tests.providers.servers import FakePostmark
from tests.servers import serve

ADDRESS = "journey.person@example.com"


def test_no_full_address_or_token_in_any_log_line(make_app, admin_headers, caplog):
    caplog.set_level(logging.DEBUG)
    fake = FakePostmark()
    with serve(fake) as base:
        app = make_app(
            EMAIL_PROVIDER="postmark",
            POSTMARK_SERVER_TOKEN=fake.token,
            POSTMARK_API_URL=base,
            WEBHOOK_BASIC_AUTH="hooks:pw",
        )
        client, outbox = app.test_client(), Outbox(app)
        with serve(app) as site:
            http = requests.Session()
            http.post(f"{site}/subscribe", json={"email": ADDRESS, "name": "Jo"}, timeout=10)
            outbox.dispatch()
            [confirmation] = fake.to(ADDRESS)
            confirm = re.search(r"https?://\S+/confirm/\S+", confirmation["TextBody"]).group(0)
            assert http.post(site + path_of(confirm), timeout=10).status_code == 200
            http.get(f"{site}/admin/subscribers/{ADDRESS}", headers=admin_headers, timeout=10)

        add_post(client, admin_headers, 1)
        assert client.post("/admin/digests", json={}, headers=admin_headers).status_code == 202
        outbox.dispatch()
        digest = fake.to(ADDRESS)[-1]
        headers = {h["Name"]: h["Value"] for h in digest["Headers"]}
        unsubscribe = headers["List-Unsubscribe"].strip("<>")
        assert (
            client.post(path_of(unsubscribe), data={"List-Unsubscribe": "One-Click"}).status_code
            == 200
        )
        # A refused webhook and an admin lookup log too.
        client.post("/webhooks/postmark", json={"RecordType": "Bounce", "Email": ADDRESS})

    tokens = [link.rsplit("/", 1)[1] for link in (confirm, unsubscribe)]
    lines = [record.getMessage() for record in caplog.records]
    assert lines, "the journey logged nothing: the test would prove nothing"
    assert any("webhook refused" in line for line in lines)
    assert any("/confirm/" in line for line in lines)  # the access log is in there
    for line in lines:
        assert ADDRESS not in line, line
        for token in tokens:
            assert token not in line, line
