"""Email header injection, through every field that reaches an email, checked in the MIME.

Input validation refuses or flattens line breaks at the API (see
tests/subscriptions/test_abuse.py::test_bad_fields_get_a_clear_json_error);
these tests prove the last line of defence as well: even a hostile value
already in the database (an old row, a future import path) cannot add a
header, because every ``Message`` forces its header values onto one line and
start-up refuses multi-line sender settings.
"""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from typing import Any

import pytest
from sqlalchemy import update

from config import ConfigError
from newsletter.extensions import db
from newsletter.models import Post, Subscriber
from newsletter.providers import Message, Stream, mailgun, postmark, resend, sendgrid
from newsletter.providers.base import header_safe
from newsletter.providers.merge import group
from newsletter.providers.mime import build_mime
from tests.conftest import Outbox
from tests.digests.helpers import add_confirmed, add_post

# Every way of starting a new line a mail system, a provider or a parser might honour.
BREAKS = ["\r\n", "\n", "\r", "\r\n\t", "\x85", "\u2028", "\u2029", "\x00\r\n"]
# PostgreSQL text cannot hold NUL at all, so stored values try every other break.
STORED_BREAKS = [b for b in BREAKS if "\x00" not in b]
EVIL = "Bcc: victim@evil.example"
BASE_HEADERS = {
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "x-newsletter-key",
    "mime-version",
    "content-type",
}
DIGEST_HEADERS = BASE_HEADERS | {"list-unsubscribe", "list-unsubscribe-post", "list-id"}


def assert_no_injected_header(raw: bytes, to: str, allowed: set[str]) -> EmailMessage:
    """The raw message has only our headers, one recipient, and no header line from input."""
    head = raw.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0]
    for line in head.split(b"\n"):
        assert not line.lower().startswith((b"bcc", b"cc:", b"reply-to")), line
    message = email.message_from_bytes(raw, policy=email.policy.default)
    names = {name.lower() for name in message}
    assert names <= allowed, names - allowed
    assert message.get_all("To") == [to]
    assert len(message.get_all("Subject")) == 1 and len(message.get_all("From")) == 1
    for name, value in message.items():
        assert "\n" not in str(value) and "\r" not in str(value), (name, value)
    return message


@pytest.mark.parametrize("brk", STORED_BREAKS)
def test_hostile_values_already_stored_cannot_add_a_header(make_app, admin_headers, brk):
    """Subscriber name, post title (in the default subject) straight in the database."""
    app = make_app(RATELIMIT_ENABLED=False)
    client, outbox = app.test_client(), Outbox(app)
    client.post("/subscribe", json={"email": "new@example.com", "name": "Ann"})
    (reader,) = add_confirmed(app, 1)
    add_post(client, admin_headers, 1)
    with app.app_context():
        db.session.execute(update(Subscriber).values(name=f"Ann{brk}{EVIL}"))
        db.session.execute(update(Post).values(title=f"Hello{brk}{EVIL}"))
        db.session.commit()
    assert client.post("/admin/digests", json={}, headers=admin_headers).status_code == 202
    outbox.dispatch()

    files = {p.name: p.read_bytes() for p in outbox.folder.glob("*.eml")}
    assert len(files) == 2
    confirmation = [r for r in files.values() if b"To: new@example.com" in r]
    digest = [r for r in files.values() if f"To: {reader}".encode() in r]
    assert_no_injected_header(confirmation[0], "new@example.com", BASE_HEADERS)
    parsed = assert_no_injected_header(digest[0], reader, DIGEST_HEADERS)
    assert "Hello" in parsed["Subject"] and "victim@evil.example" in parsed["Subject"]


def test_hostile_subject_and_titles_through_the_admin_api(app, client, outbox, admin_headers):
    """The digest subject and post titles as an admin (or a stolen token) would send them."""
    (reader,) = add_confirmed(app, 1)
    add_post(client, admin_headers, 1, title=f"Title\r\n{EVIL}")
    subject = f"Subject\r\n{EVIL}\r\n\r\n<html>body</html>"
    assert client.post("/admin/digests", json={"subject": subject}, headers=admin_headers)
    outbox.dispatch()
    (raw,) = [p.read_bytes() for p in outbox.folder.glob("*.eml")]
    parsed = assert_no_injected_header(raw, reader, DIGEST_HEADERS)
    assert parsed["Subject"].startswith("Subject Bcc: victim@evil.example")


@pytest.mark.parametrize("setting", ["MAIL_FROM", "NEWSLETTER_NAME"])
@pytest.mark.parametrize("brk", BREAKS)
def test_multi_line_sender_settings_stop_start_up(make_app, setting, brk):
    value = f"News <news@example.org>{brk}{EVIL}"
    with pytest.raises(ConfigError, match=setting):
        make_app(**{setting: value})


def test_mail_from_without_an_address_stops_start_up(make_app):
    with pytest.raises(ConfigError, match="MAIL_FROM"):
        make_app(MAIL_FROM="Newsletter")


@pytest.mark.parametrize("value", ["news@a.example, ops@a.example", "A <a@a.example>, b@b.example"])
def test_mail_from_naming_two_addresses_stops_start_up(make_app, value):
    # parseaddr kept the first and dropped the second without a word.
    with pytest.raises(ConfigError, match="MAIL_FROM must be one address"):
        make_app(MAIL_FROM=value)


def test_a_sender_named_after_its_own_address_is_one_address(make_app):
    assert make_app(MAIL_FROM="news@a.example <news@a.example>").config["MAIL_FROM"]


def test_a_sender_name_holding_a_quoted_comma_is_one_address(make_app):
    assert make_app(MAIL_FROM='"Smith, Ann" <ann@a.example>').config["MAIL_FROM"]


def _hostile_message(brk: str) -> Message:
    return Message(
        key="00000000-0000-0000-0000-000000000001",
        to=f"reader@example.com{brk}{EVIL}",
        sender=f"News <news@example.org>{brk}{EVIL}",
        subject=f"Hi{brk}{EVIL}",
        text="text body\n",
        html="<p>html body</p>",
        headers={"List-Id": f"<digest.example.org>{brk}{EVIL}"},
        stream=Stream.BROADCAST,
    )


def _strings(value: Any, path: str = "") -> list[tuple[str, str]]:
    """Every string in a nested payload, with where it sits."""
    if isinstance(value, str):
        return [(path, value)]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in _strings(v, f"{path}.{k}")]
    if isinstance(value, list | tuple):
        return [s for i, v in enumerate(value) for s in _strings(v, f"{path}[{i}]")]
    return []


@pytest.mark.parametrize("brk", BREAKS)
def test_no_provider_payload_carries_a_line_break_outside_the_bodies(brk):
    """SMTP and outbox MIME, and the JSON or form payloads of every HTTP provider."""
    message = _hostile_message(brk)
    raw = build_mime(message).as_bytes()
    head = raw.split(b"\n\n", 1)[0]
    assert not any(line.startswith(b"Bcc") for line in head.split(b"\n"))
    payloads = [
        postmark.PostmarkProvider("t", "http://x", "broadcast", 1).payload(message),
        resend.ResendProvider("k", "http://x", 1).payload(message),
        dict(mailgun.MailgunProvider("k", "example.org", "http://x", 1).fields(message)),
        sendgrid.SendGridProvider("k", "http://x", 1).payload([message], group([message], 1)[0]),
    ]
    for payload in payloads:
        for where, value in _strings(payload):
            if value in (message.text, message.html):
                continue
            assert not any(c in value for c in "\r\n\x85\u2028\u2029"), (where, value)


@pytest.mark.parametrize(
    "char", [chr(c) for c in (*range(0x20), 0x7F, 0x85, 0x2028, 0x2029)], ids=repr
)
def test_header_safe_turns_every_break_and_control_into_a_space(char: str) -> None:
    # The shortcut for printable values must never let one of these through.
    assert header_safe(f" Ann{char}{char}Bcc: x ") == "Ann Bcc: x"


@pytest.mark.parametrize("value", ["Ann", " Zoë O'Brien  ", "日本語 ニュース", "a\u00a0b", ""])
def test_header_safe_leaves_printable_values_as_they_are_but_trimmed(value: str) -> None:
    assert header_safe(value) == value.strip()
