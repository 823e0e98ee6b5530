"""The MIME every SMTP and outbox message is written as: parsed back by the modern parser."""

from __future__ import annotations

import email
import email.policy
import io
from email.generator import BytesGenerator

from newsletter.providers import Message, Stream
from newsletter.providers.mime import MAX_LINE, build_mime

UNSUBSCRIBE = "<https://news.example.org/unsubscribe/" + "t" * 120 + ">"


def _message(**fields) -> Message:
    values = {
        "key": "key-1",
        "to": "réader@bücher.example",
        "sender": "Clinique Élan <news@clinic.example>",
        "subject": "Ünï digest",
        "text": "Hello é\nhttps://news.example.org/confirm/abc\n",
        "html": "<p>Hello é</p>",
        "headers": {"List-Unsubscribe": UNSUBSCRIBE, "List-Id": "<digest.clinic.example>"},
        "stream": Stream.BROADCAST,
    }
    return Message(**(values | fields))


def _parse(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)


def test_headers_and_bodies_read_back_as_given():
    raw = build_mime(_message()).as_bytes()
    parsed = _parse(raw)
    assert parsed["From"] == "Clinique Élan <news@clinic.example>"
    assert parsed["To"] == "réader@xn--bcher-kva.example"  # the domain in IDNA
    assert parsed["Subject"] == "Ünï digest"
    assert parsed["List-Unsubscribe"] == UNSUBSCRIBE  # whole, not broken before its "<"
    assert parsed["X-Newsletter-Key"] == "key-1"
    assert (
        parsed.get_body(("plain",)).get_content()
        == "Hello é\nhttps://news.example.org/confirm/abc\n"
    )
    assert parsed.get_body(("html",)).get_content() == "<p>Hello é</p>"
    assert raw.isascii() is False  # 8bit bodies, so links stay whole in the raw file
    assert b"https://news.example.org/confirm/abc" in raw


def test_every_line_fits_rfc_5322_and_smtp_gets_crlf_only():
    message = _message(subject="word " * 300, html="<p>" + "x" * 2000 + "</p>")
    buffer = io.BytesIO()
    BytesGenerator(buffer).flatten(build_mime(message), linesep="\r\n")
    raw = buffer.getvalue()
    lines = raw.split(b"\r\n")
    assert max(len(line) for line in lines) <= MAX_LINE
    assert b"\n" not in raw.replace(b"\r\n", b"")  # no bare LF anywhere
    parsed = _parse(raw)
    assert parsed["Subject"] == ("word " * 300).strip()
    assert parsed.get_body(("html",)).get_content() == "<p>" + "x" * 2000 + "</p>"
    assert parsed.get_body(("html",))["Content-Transfer-Encoding"] == "quoted-printable"


def test_each_message_has_its_own_boundary_and_message_id():
    first, second = build_mime(_message()), build_mime(_message())
    assert first.get_boundary() != second.get_boundary()
    assert first["Message-ID"] != second["Message-ID"]
    assert first["Message-ID"].endswith("@clinic.example>")


def test_a_list_id_beyond_ascii_keeps_its_id_readable():
    # NEWSLETTER_NAME="Café Zürich News": encoded whole, the header hid <digest.host>.
    message = _message(headers={"List-Id": '"Café Zürich News" <digest.news.example.org>'})
    raw = build_mime(message).as_bytes()
    assert b" <digest.news.example.org>" in raw
    assert _parse(raw)["List-Id"] == "Café Zürich News <digest.news.example.org>"
