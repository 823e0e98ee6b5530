"""Building a real ``multipart/alternative`` MIME message from a ``Message``."""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr

from .base import Message


def ascii_address(address: str) -> str:
    """The address with its domain in IDNA form, as SMTP and MIME headers need it."""
    local, _, domain = address.rpartition("@")
    try:
        domain.encode("ascii")
    except UnicodeEncodeError:
        domain = domain.encode("idna").decode("ascii")
    return f"{local}@{domain}"


def build_mime(message: Message) -> EmailMessage:
    """The message as MIME: text and HTML alternatives, Message-ID, Date, our headers."""
    mime = EmailMessage()
    _, sender_address = parseaddr(message.sender)
    mime["From"] = message.sender
    mime["To"] = ascii_address(message.to)
    mime["Subject"] = message.subject
    mime["Date"] = format_datetime(datetime.now(UTC))
    mime["Message-ID"] = make_msgid(idstring=message.key, domain=sender_address.rpartition("@")[2])
    mime["X-Newsletter-Key"] = message.key
    for name, value in message.headers.items():
        mime[name] = value
    mime.set_content(message.text, cte=_transfer_encoding(message.text))
    mime.add_alternative(message.html, subtype="html", cte=_transfer_encoding(message.html))
    return mime


def _transfer_encoding(body: str) -> str:
    """Plain 7bit/8bit when every line fits, so links stay whole in the raw file."""
    if any(len(line) > 900 for line in body.splitlines()):
        return "quoted-printable"
    return "7bit" if body.isascii() else "8bit"
