"""The MIME every SMTP and outbox message is written as: parsed back by the modern parser."""

from __future__ import annotations

import email
import email.policy
import io
import re
from email.generator import BytesGenerator
from email.header import decode_header, make_header

import pytest

from newsletter.providers import Message, Stream
from newsletter.providers.mime import MAX_LINE, ascii_address, build_mime, phrase_header

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


def test_a_line_short_in_characters_but_long_in_octets_is_quoted_printable():
    # 500 emoji are 2,000 octets: sent as 8bit, the line broke RFC 5322's 998.
    message = _message(text="🩺" * 500 + "\n", html="<p>" + "ש" * 450 + "</p>")
    raw = build_mime(message).as_bytes()
    assert max(len(line) for line in raw.split(b"\n")) <= MAX_LINE
    parsed = _parse(raw)
    assert parsed.get_body(("plain",)).get_content() == "🩺" * 500 + "\n"
    assert parsed.get_body(("html",)).get_content() == "<p>" + "ש" * 450 + "</p>"


def test_a_sender_domain_beyond_ascii_gives_a_valid_message_id():
    raw = build_mime(_message(sender="Dr. Müller <news@clinique-é.example>")).as_bytes()
    parsed = _parse(raw)
    assert parsed["Message-ID"].endswith("@xn--clinique--j4a.example>")
    assert not parsed["Message-ID"].defects
    assert parsed["From"].addresses[0].display_name == "Dr. Müller"
    assert parsed["From"].addresses[0].addr_spec == "news@xn--clinique--j4a.example"


def _decoded(raw: bytes, name: str) -> str:
    """A header of ``raw`` as RFC 2047 reads it (adjacent encoded words joined)."""
    value = email.message_from_bytes(raw, policy=email.policy.compat32)[name]
    return str(make_header(decode_header(value)))


@pytest.mark.parametrize(
    "text",
    [
        "=?utf-8?b?WW91ciBhY2NvdW50IGlzIHN1c3BlbmRlZA==?=",
        "Clinic News: =?iso-8859-1?q?Gr=FC=DFe?= from us",
    ],
)
def test_ascii_that_looks_encoded_reads_back_as_written(text):
    # Written as it was, a mail client decoded it: the subject said "Your account is
    # suspended" while the digest's body showed the literal text.
    sender = f'"{text}" <news@clinic.example>'
    raw = build_mime(_message(subject=text, sender=sender)).as_bytes()
    assert _parse(raw)["Subject"] == text
    assert _decoded(raw, "From") == f"{text} <news@clinic.example>"
    assert str(make_header(decode_header(phrase_header(text, "List-Id")))) == text


def test_encoded_words_stay_within_rfc_2047s_75_characters():
    name = 'Clinique Sainte-Agnès 🩺 "Santé", <News> & שלום'
    message = _message(
        subject=f"Please confirm your subscription to {name}",
        sender='"Clinique Sainte-Agnès 🩺 \\"Santé\\", <News> & שלום" <news@clinic.example>',
        headers={"List-Id": f'"{name}" <digest.clinic.example>'},
    )
    raw = build_mime(message).as_bytes()
    head = raw.split(b"\n\n", 1)[0].decode("ascii")
    words = re.findall(r"=\?[^?]+\?[bBqQ]\?[^?]*\?=", head)
    assert words and max(len(word) for word in words) <= 75
    for line in head.splitlines():  # every header line we encode fits 78 as RFC 5322 asks
        if line.startswith(("Subject:", "From:", "List-Id:", " ")):
            assert len(line) <= 78, line
    assert _parse(raw)["Subject"] == f"Please confirm your subscription to {name}"
    assert _decoded(raw, "From") == f"{name} <news@clinic.example>"
    assert _decoded(raw, "List-Id") == f"{name} <digest.clinic.example>"


@pytest.mark.parametrize(
    ("address", "written"),
    [
        ("anna@straße.de", "anna@xn--strae-oqa.de"),  # IDNA 2003 made it strasse.de
        ("nikos@λέξεις.gr", "nikos@xn--ixaqmfq0a.gr"),  # and this one xn--ixaqmfq6a.gr
        ("ann@bücher.example", "ann@xn--bcher-kva.example"),
        ("ann@example.com", "ann@example.com"),
    ],
)
def test_a_domain_is_written_in_idna_2008(address: str, written: str) -> None:
    """The address the mail goes to is the one stored: no domain mapped to another's."""
    assert ascii_address(address) == written
    assert _parse(build_mime(_message(to=address)).as_bytes())["To"] == written
