"""Which columns of an imported CSV hold the address and the name, and what separates them.

Lists come from other services and from spreadsheets: Mailchimp exports
``Email Address``, ``First Name`` and ``Last Name``; Excel in much of Europe
saves with semicolons; some tools save tab-separated text. The header line
decides: the first separator that gives it an address column wins.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass

from ..models import Status

SEPARATORS = (",", ";", "\t")
# Excel's hint line before the header ("sep=;"), which some exports carry.
SEPARATOR_HINT = re.compile(r"sep=([,;\t])", re.IGNORECASE)
# As compared by ``plain``: lower case, words only, a letter beyond ASCII a space
# ("Prénom" is "pr nom"). English, and the other languages of Europe's exports: German,
# French, Spanish, Italian, Dutch.
_EMAIL = {
    "email", "e mail", "email address", "e mail address", "mail", "emailaddress",
    "e mail adresse", "email adresse", "emailadresse", "mail adresse", "mailadresse",
    "courriel", "adresse e mail", "adresse email", "adresse mail", "adresse courriel",
    "correo", "correo electronico", "correo electr nico",
    "indirizzo email", "indirizzo e mail", "posta elettronica",
    "e mailadres", "emailadres", "e mail adres",
}  # fmt: skip
_NAME = {"name", "full name", "display name", "nom complet", "nombre completo", "naam"}
_FIRST = {
    "first name", "firstname", "fname", "given name",
    "vorname", "pr nom", "prenom", "nombre", "nome", "voornaam",
}  # fmt: skip
_LAST = {
    "last name", "lastname", "lname", "surname", "family name",
    "nachname", "familienname", "nom", "nom de famille", "apellido", "apellidos",
    "cognome", "achternaam",
}  # fmt: skip
_STATUS = {"status", "subscription status"}
# A status column's values, as compared: readers in (ours, and other tools' words for
# it), readers who never confirmed, and readers an import must never bring back (ours;
# Mailchimp's "cleaned" and "archived", Brevo's "blocklisted", Sendy's "marked as spam",
# MailerLite's "junk"...). Any other value fails its line: taken for "in", an
# "unconfirmed" or "opted out" was confirmed.
# Ours are the Status enum's values, as our export writes them.
SUBSCRIBED = {"", Status.CONFIRMED.value, "subscribed", "active", "opted in"}
NEVER_CONFIRMED = {Status.PENDING.value, "unconfirmed", "not confirmed"}
LEFT = {
    Status.UNSUBSCRIBED.value, Status.BOUNCED.value, Status.COMPLAINED.value,
    "unsubscribe", "opted out", "bounce", "hard bounce", "hardbounced", "cleaned",
    "spam", "marked as spam", "junk", "blocklisted", "blacklisted", "suppressed",
    "archived", "deleted", "inactive",
}  # fmt: skip
_NOT_WORD = re.compile(r"[^0-9a-z]+")
# The start of a zip archive: an .xlsx or .ods workbook, not text.
WORKBOOK = b"PK\x03\x04"


class LayoutError(ValueError):
    """The header line names no address column, or two."""


@dataclass(frozen=True)
class Layout:
    """The separator, and the index of each column we read (None: not in the file)."""

    separator: str
    email: int
    name: int | None = None
    first_name: int | None = None
    last_name: int | None = None
    status: int | None = None

    def name_of(self, cells: list[str]) -> str:
        """The row's name: its name column, else its first and last names joined."""
        if self.name is not None:
            return _cell(cells, self.name)
        parts = (_cell(cells, self.first_name), _cell(cells, self.last_name))
        return " ".join(part.strip() for part in parts if part.strip())

    def status_of(self, cells: list[str]) -> str:
        """The row's status column, as compared (lower case, words only); empty if none."""
        return plain(self.raw_status(cells))

    def raw_status(self, cells: list[str]) -> str:
        """The row's status column as written (empty if none)."""
        return _cell(cells, self.status).strip()


def _cell(cells: list[str], index: int | None) -> str:
    return cells[index] if index is not None and index < len(cells) else ""


def plain(title: str) -> str:
    """A column title as compared: lower case, words only (``E-Mail`` is ``e mail``)."""
    return _NOT_WORD.sub(" ", title.lower()).strip()


def layout_of(header_line: str, separators: tuple[str, ...] = SEPARATORS) -> Layout:
    """The layout the header line gives, or ``LayoutError`` saying what it found."""
    for separator in separators:
        titles = [plain(cell) for cell in next(csv.reader([header_line], delimiter=separator), [])]
        emails = [i for i, title in enumerate(titles) if title in _EMAIL]
        if len(emails) > 1:
            raise LayoutError(
                "The CSV has more than one email column "
                f"(columns {', '.join(str(i + 1) for i in emails)}): keep one."
            )
        if emails:
            return Layout(
                separator,
                emails[0],
                name=_first(titles, _NAME),
                first_name=_first(titles, _FIRST),
                last_name=_first(titles, _LAST),
                status=_first(titles, _STATUS),
            )
    first = header_line.strip()
    shown = f"reads {first[:100]!r}" if first else "is empty"
    raise LayoutError(
        "The CSV needs a header line with an 'email' column (or 'Email Address'), "
        f"separated by commas, semicolons or tabs; its first line {shown}."
    )


def _first(titles: list[str], names: set[str]) -> int | None:
    return next((i for i, title in enumerate(titles) if title in names), None)
