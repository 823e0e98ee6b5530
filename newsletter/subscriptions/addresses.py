"""Email addresses: validated and normalised once, the same way everywhere."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email

MAX_EMAIL_LENGTH = 254


class InvalidAddress(ValueError):
    """Not an email address we can send to; the message says why."""


def normalize_email(raw: str) -> str:
    """The canonical form of an address: unicode domain, all lower case.

    Lower-casing the local part too makes ``Ann@x.org`` and ``ann@x.org`` one
    subscriber, as every mailbox provider treats them; no DNS is consulted.
    """
    candidate = raw.strip()
    if not candidate:
        raise InvalidAddress("Please enter your email address.")
    if len(candidate) > MAX_EMAIL_LENGTH:
        raise InvalidAddress("That email address is too long.")
    try:
        result = validate_email(candidate, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidAddress(f"That is not a valid email address: {exc}") from None
    return result.normalized.lower()
