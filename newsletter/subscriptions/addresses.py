"""Email addresses: validated and normalised once, the same way everywhere."""

from __future__ import annotations

import re

from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email

MAX_EMAIL_LENGTH = 254
MAX_LOCAL_PART_OCTETS = 64

# The plainest addresses, which ``email_validator`` accepts and only lower-cases:
# a dot-atom local part of common characters, LDH labels (no "--", so no IDNA),
# an alphabetic top-level label. Anything else takes the full validation.
_PLAIN = re.compile(
    r"(?P<local>[a-z0-9_+-]{1,64}(?:\.[a-z0-9_+-]{1,64})*)"
    r"@(?P<domain>(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63})",
    re.ASCII | re.IGNORECASE,
)
_SPECIAL_SUFFIXES = tuple(f".{name}" for name in SPECIAL_USE_DOMAIN_NAMES)


class InvalidAddress(ValueError):
    """Not an email address we can send to; the message says why."""


def plain_address(candidate: str) -> str | None:
    """The normalised form of a plain address without calling the validator, else None.

    Only a shortcut: every address it answers is one ``validate_email`` accepts
    and normalises to the same lower-cased string (a test checks the pair).
    """
    match = _PLAIN.fullmatch(candidate)
    if match is None:
        return None
    local, domain = match["local"], match["domain"].lower()
    if len(local) > 64 or len(domain) > 253 or "--" in domain:
        return None
    if f".{domain}".endswith(_SPECIAL_SUFFIXES):
        return None
    return f"{local}@{domain}".lower()


def normalize_email(raw: str, international: bool = False) -> str:
    """The canonical form of an address: unicode domain, all lower case.

    Lower-casing the local part too makes ``Ann@x.org`` and ``ann@x.org`` one
    subscriber, as every mailbox provider treats them; no DNS is consulted.
    A mailbox name beyond ASCII is refused unless ``international``: a new
    address may not have one, but a lookup (the admin's, a webhook's) must
    still find a subscriber stored before that rule.
    """
    candidate = raw.strip()
    if not candidate:
        raise InvalidAddress("Please enter your email address.")
    if len(candidate) > MAX_EMAIL_LENGTH:
        raise InvalidAddress("That email address is too long.")
    plain = plain_address(candidate)
    if plain is not None:
        return plain
    try:
        # No new internationalized mailbox (non-ASCII before the @): it needs SMTPUTF8 at
        # every hop, which the providers' APIs do not promise. Unicode domains are fine.
        result = validate_email(candidate, check_deliverability=False, allow_smtputf8=international)
    except EmailNotValidError as exc:
        raise InvalidAddress(f"That is not a valid email address: {exc}") from None
    if not international and len(result.local_part.encode()) > MAX_LOCAL_PART_OCTETS:
        # RFC 5321's limit, which email-validator checks in its strict mode only: a
        # relay may refuse such a mailbox. A lookup still finds one stored before.
        raise InvalidAddress("That email address is too long before the @ (64 at most).")
    return result.normalized.lower()


def lookup_form(raw: str | None) -> str | None:
    """The address as stored, for a lookup (the admin's, a webhook's); None if it cannot be one."""
    try:
        return normalize_email(raw, international=True) if raw else None
    except InvalidAddress:
        return None
