"""CSV import of subscribers, streamed in chunks: one bad line never sinks the rest.

Default: each new address becomes ``pending`` and gets a confirmation email.
``confirmed=True``: consent was collected elsewhere (a list moved from another
service), so new and pending addresses become ``confirmed`` with no email and
the import is recorded as their consent source. An address that unsubscribed,
bounced or complained is never brought back by an import.
"""

from __future__ import annotations

import csv
import io
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any, NamedTuple

from flask import current_app
from sqlalchemy import (
    Column,
    ColumnElement,
    Select,
    column,
    delete,
    insert,
    literal,
    select,
    table,
    true,
)
from sqlalchemy.orm import Session

from ..db_helpers import insert_ignoring_conflicts, is_postgresql, locked
from ..delivery import ledger
from ..models import (
    NAME_MAX,
    ConsentEvent,
    ConsentKind,
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    Status,
    Subscriber,
    new_message_keys,
    new_public_ids,
    utcnow,
)
from ..one_line import NOT_ONE_LINE
from .addresses import InvalidAddress, normalize_email
from .csv_layout import (
    LEFT,
    NEVER_CONFIRMED,
    SEPARATOR_HINT,
    SEPARATORS,
    SUBSCRIBED,
    WORKBOOK,
    LayoutError,
    layout_of,
)
from .csv_text import UNREADABLE, csv_text
from .erased import email_hasher, left_hashes
from .export import unescape_formula
from .import_lanes import write_in_lanes
from .service import ClientInfo, event_row

CHUNK_ROWS = 5000
_NEVER_CONFIRMED = (
    "this reader never confirmed (status pending): import such lines without "
    "?confirmed=true (--confirmed), and they are asked to confirm"
)
MAX_REPORTED_ERRORS = 1000
IMPORT = ClientInfo(source="import")  # who 'asked', in the consent ledger

# A chunk's valid, first-seen rows (the suppressed ones then removed), with the public id (and
# confirmation message key) each would get: what the set-based statements read.
STAGING = table(
    "import_staging",
    column("line"),
    column("email"),
    column("name"),
    column("email_hash"),
    column("public_id"),
    column("message_key"),
)
_STAGING_DDL = (
    "CREATE TEMPORARY TABLE {prefix}import_staging (line INTEGER, email TEXT, name TEXT, "
    "email_hash TEXT, public_id TEXT, message_key TEXT){suffix}"
)


class ImportFormatError(ValueError):
    """The file as a whole cannot be read (no ``email`` column, not UTF-8 or UTF-16 text)."""


@dataclass
class ImportReport:
    """What an import did, line by line where it failed."""

    created: int = 0
    updated: int = 0
    skipped: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    error_count: int = 0

    def error(self, line: int, message: str) -> None:
        """Count a bad line; keep its message while the list is short."""
        self.error_count += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append({"line": line, "message": message})

    def to_dict(self) -> dict[str, Any]:
        """The report as the admin API answers it."""
        return {
            "created": self.created,
            "updated": self.updated,
            "skipped": self.skipped,
            "errors": self.errors,
            "error_count": self.error_count,
        }


class Row(NamedTuple):
    """One valid line of the file."""

    line: int
    email: str
    name: str | None


def read_rows(stream: IO[bytes], report: ImportReport, confirmed: bool = False) -> Iterator[Row]:
    """Valid rows of a UTF-8 (or UTF-16) CSV with an ``email`` column; bad lines go to the report.

    Bytes that are not text fail their own line only. (Decoding strictly
    lost the whole block of text around one: about 300 good lines, unreported.)
    """
    text, encoding = csv_text(stream)
    try:
        yield from _rows(text, encoding, report, confirmed)
    finally:
        text.close()  # the caller's stream stays open: it is the caller's to close


def _rows(
    text: io.TextIOWrapper, encoding: str, report: ImportReport, confirmed: bool
) -> Iterator[Row]:
    first = text.readline()
    if first.startswith(WORKBOOK.decode()):
        raise ImportFormatError(
            "This is a spreadsheet workbook (.xlsx or .ods), not CSV: "
            "save it as 'CSV UTF-8' and import that file."
        )
    if "\x00" in first:  # UTF-16 without its mark, or UTF-32 (whose mark starts as UTF-16's)
        raise ImportFormatError(
            "The file looks like UTF-16 or UTF-32 text without a byte order mark: "
            "save it as 'CSV UTF-8' and import it again."
        )
    if UNREADABLE.search(first):
        raise ImportFormatError(
            f"The file is not {encoding}: save it as 'CSV UTF-8' and import it again."
        )
    header_at, separators = 1, SEPARATORS
    if hint := SEPARATOR_HINT.fullmatch(first.rstrip("\r\n")):
        # Excel's "sep=;" line: the header follows, with that separator.
        header_at, separators, first = 2, (hint.group(1),), text.readline()
    open_quote = "The CSV's header line has a quoted field that is not closed."
    try:
        layout = layout_of(first, separators)
    except (LayoutError, csv.Error) as exc:
        raise ImportFormatError(open_quote if _opens_a_quote(first) else str(exc)) from None
    if _opens_a_quote(first, layout.separator):
        raise ImportFormatError(open_quote)
    email_at, separator = layout.email, layout.separator
    at = [header_at]  # the line the reader's last record came from: each record is one line
    lines = _closed_lines(text, report, at, separator, first_number=header_at + 1)
    reader = csv.reader(lines, delimiter=separator)
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            report.error(at[0], f"unreadable line: {exc}")
            continue
        line = at[0]
        if not any(cell.strip() for cell in cells):
            continue
        if any(UNREADABLE.search(cell) for cell in cells):
            report.error(line, f"this line is not {encoding} (save the file as 'CSV UTF-8')")
            continue
        if email_at >= len(cells):
            report.error(line, "no email on this line")
            continue
        try:
            email = normalize_email(unescape_formula(cells[email_at]))
        except InvalidAddress as exc:
            report.error(line, str(exc))
            continue
        name = unicodedata.normalize("NFC", unescape_formula(layout.name_of(cells).strip()))
        if NOT_ONE_LINE.search(name):
            report.error(line, "the name must be a single line of text")
            continue
        if len(name) > NAME_MAX:  # as a signup's: refused, not cut unseen
            report.error(line, f"the name is longer than {NAME_MAX} characters")
            continue
        status = layout.status_of(cells)
        if status in LEFT:  # our own export (or another tool's) names readers who left
            report.skipped += 1
            continue
        if status in NEVER_CONFIRMED:
            if confirmed:
                report.error(line, _NEVER_CONFIRMED)
                continue
        elif status not in SUBSCRIBED:
            report.error(line, _unknown_status(layout.raw_status(cells)))
            continue
        yield Row(line, email, name or None)


def _unknown_status(raw: str) -> str:
    return (
        f"the status {raw[:40]!r} is not one this import knows: 'subscribed' or "
        "'confirmed' imports the line, 'pending' or 'unconfirmed' asks to confirm, "
        "'unsubscribed', 'bounced' or 'complained' skips it"
    )


def _closed_lines(
    lines: Iterable[str], report: ImportReport, at: list[int], separator: str, first_number: int
) -> Iterator[str]:
    """The file's lines for the CSV reader, less those that leave a quoted field open.

    A CSV field may hold line breaks inside quotes, so one stray quote made
    the reader swallow every following line into a single field until it
    grew past the field limit: thousands of good lines lost, reported as one
    error on the wrong line. No field we import spans lines (an address or
    a one-line name), so such a line fails alone, even when the field that
    spans lines is one we would not import (its next lines then fail as
    what they are). ``lines`` follow the header line, the first of them the
    file's line ``first_number``; ``at[0]`` is set to the number of each line
    handed on.
    """
    for number, line in enumerate(lines, start=first_number):
        # Counting quotes would not do: one inside an unquoted field is a plain character
        # (5" tall), so a line with two can still leave one open.
        if '"' in line and _opens_a_quote(line, separator):
            report.error(number, "a quoted field is not closed on this line")
            continue
        at[0] = number
        yield line


def _opens_a_quote(line: str, separator: str = ",") -> bool:
    """True when reading ``line`` alone ends inside a quoted field (its break kept in it)."""
    try:
        cells = next(csv.reader([line], delimiter=separator), [])
    except csv.Error:
        return True
    return any("\n" in cell or "\r" in cell for cell in cells)


def _chunks(rows: Iterable[Row], size: int) -> Iterator[list[Row]]:
    chunk: list[Row] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def import_csv(
    session: Session, stream: IO[bytes], confirmed: bool, connections: int | None = None
) -> ImportReport:
    """Import every valid line, committing chunk by chunk, over ``connections`` at once.

    ``connections`` defaults to the app's ``IMPORT_CONNECTIONS``; unset, 2 on
    PostgreSQL and 1 on SQLite (one writer at a time: a second connection
    would only wait, measured in ``bench/RESULTS.md``). Above one, the chunks are
    written by that many sessions of their own (``import_lanes``):
    ``session`` writes nothing, and what it has not committed they do not see.
    """
    report = ImportReport()
    detail = {"import_id": str(uuid.uuid4()), "confirmed": confirmed}
    hasher = email_hasher()
    rows = read_rows(stream, report, confirmed)
    if connections is None:
        connections = current_app.config["IMPORT_CONNECTIONS"] or (
            2 if is_postgresql(session) else 1
        )
    if connections <= 1:
        for chunk in _chunks(rows, CHUNK_ROWS):
            _import_chunk(session, chunk, confirmed, detail, hasher, report)
            session.commit()
        return report

    def write(lane_session: Session, chunk: list[Row], lane_report: ImportReport) -> None:
        _import_chunk(lane_session, chunk, confirmed, detail, hasher, lane_report)

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    lanes = write_in_lanes(app, rows, _email_of, connections, CHUNK_ROWS, write, ImportReport)
    for lane in lanes:
        report.created += lane.created
        report.updated += lane.updated
        report.skipped += lane.skipped
    return report


def _email_of(row: Row) -> bytes:
    return row.email.encode()


def _import_chunk(
    session: Session,
    chunk: list[Row],
    confirmed: bool,
    detail: dict[str, Any],
    hasher: Callable[[str], str],
    report: ImportReport,
) -> None:
    """One chunk in one transaction: new addresses set-based, known ones row by row."""
    unique = _first_of_each_address(chunk, report)
    # New rows never become ORM objects: the chunk is staged in a temporary
    # table, then one set-based statement per step unstages the suppressed
    # addresses and writes the subscribers, their consent events and their
    # confirmation emails (per-row ORM and executemany work, and a 5,000-value
    # IN list, were most of the import's time).
    _stage(session, unique.values(), hasher, with_message_keys=not confirmed)
    _drop_suppressed(session, unique, report)
    if not unique:
        return
    now = utcnow()
    created = _insert_new_subscribers(session, confirmed, now)
    report.created += len(created)
    if created:
        new = _new_subscribers(min(created.values()), max(created.values()))
        _record_consent_of_new(session, new, ConsentKind.IMPORTED, now, detail)
        if not confirmed:
            _queue_confirmations_of_new(session, new, now)
            _record_consent_of_new(session, new, ConsentKind.CONFIRMATION_QUEUED, now, None)
            ledger.mark_work_queued(session)
    existing = unique.keys() - created
    if existing:
        events = _update_existing(session, existing, unique, confirmed, detail, report)
        if events:
            session.connection().execute(insert(ConsentEvent.__table__), events)


def _first_of_each_address(chunk: list[Row], report: ImportReport) -> dict[str, Row]:
    """The chunk's rows by address; a later line with the same address is skipped."""
    unique: dict[str, Row] = {}
    for row in chunk:
        if row.email in unique:
            report.skipped += 1  # the same address twice in the file
        else:
            unique[row.email] = row
    return unique


def _drop_suppressed(session: Session, unique: dict[str, Row], report: ImportReport) -> None:
    """Unstage (and count as skipped) addresses erased after they left, bounced or complained."""
    blocked = session.connection().execute(
        delete(STAGING)
        .where(STAGING.c.email_hash.in_(left_hashes().scalar_subquery()))
        .returning(STAGING.c.email)
    )
    for email in blocked.scalars():
        del unique[email]
        report.skipped += 1


def _stage(
    session: Session, rows: Iterable[Row], hasher: Callable[[str], str], with_message_keys: bool
) -> None:
    """Put the chunk's rows, hashed and with their would-be public ids, in the staging table.

    PostgreSQL: a temporary table dropped at commit, filled by ``COPY``.
    SQLite (no ``COPY``, no ``ON COMMIT DROP``): one temporary table per
    connection, emptied first, filled by the driver's own executemany.
    """
    rows = list(rows)
    message_keys = new_message_keys(len(rows)) if with_message_keys else [None] * len(rows)
    values = [
        (*row, hasher(row.email), public_id, message_key)
        for row, public_id, message_key in zip(
            rows, new_public_ids(len(rows)), message_keys, strict=True
        )
    ]
    connection = session.connection()
    if is_postgresql(session):
        connection.exec_driver_sql(_STAGING_DDL.format(prefix="", suffix=" ON COMMIT DROP"))
        with (
            connection.connection.driver_connection.cursor() as cursor,
            cursor.copy(f"COPY {STAGING.name} ({', '.join(STAGING.c.keys())}) FROM STDIN") as copy,
        ):
            for value in values:
                copy.write_row(value)
    else:
        connection.exec_driver_sql(_STAGING_DDL.format(prefix="IF NOT EXISTS ", suffix=""))
        connection.exec_driver_sql(f"DELETE FROM {STAGING.name}")  # noqa: S608 (our name)
        connection.exec_driver_sql(
            f"INSERT INTO {STAGING.name} VALUES (?, ?, ?, ?, ?, ?)",  # noqa: S608 (our name)
            values,
        )


def _insert_new_subscribers(session: Session, confirmed: bool, now: datetime) -> dict[str, int]:
    """Insert the staged addresses we do not have yet; returns their ids by address."""
    columns = Subscriber.__table__.c
    values: dict[str, Any] = {
        "email": STAGING.c.email,
        "name": STAGING.c.name,
        "public_id": STAGING.c.public_id,
        "status": Status.CONFIRMED if confirmed else Status.PENDING,
        "round": 0,
        "soft_bounces": 0,
        "source": IMPORT.source,
        "created_at": now,
        "updated_at": now,
        "confirmed_at": now if confirmed else None,
        "last_confirmation_at": None if confirmed else now,
    }
    rows = (
        select(*(_typed(columns[name], value) for name, value in values.items()))
        # SQLite needs a WHERE before ON CONFLICT, or it reads it as a join's ON.
        .where(true())
        .order_by(STAGING.c.line)
    )
    stmt = (
        insert_ignoring_conflicts(session, Subscriber.__table__, ["email"])
        .from_select(list(values), rows)
        .returning(columns.email, columns.id)
    )
    return {email: id_ for email, id_ in session.connection().execute(stmt)}


def _new_subscribers(first_id: int, last_id: int) -> Select[Any]:
    """The subscribers this chunk inserted: their public id is the one staged for them.

    The id range (what the insert returned) keeps the join to the chunk's own
    rows: joined on public id alone, the planner hash-joined the whole table
    each chunk, and the import slowed as the table grew.
    """
    subscribers = Subscriber.__table__
    return (
        select(subscribers.c.id)
        .select_from(STAGING.join(subscribers, subscribers.c.public_id == STAGING.c.public_id))
        .where(subscribers.c.id.between(first_id, last_id))
        .order_by(STAGING.c.line)
    )


def _record_consent_of_new(
    session: Session,
    new: Select[Any],
    kind: ConsentKind,
    now: datetime,
    detail: dict[str, Any] | None,
) -> None:
    """One consent event of ``kind`` for each subscriber this chunk inserted."""
    events = ConsentEvent.__table__
    values = {"kind": kind, "at": now, "source": IMPORT.source, "detail": detail}
    rows = new.add_columns(*(_typed(events.c[name], value) for name, value in values.items()))
    session.connection().execute(insert(events).from_select(["subscriber_id", *values], rows))


def _queue_confirmations_of_new(session: Session, new: Select[Any], now: datetime) -> None:
    """A queued confirmation email for each subscriber this chunk inserted."""
    deliveries = Delivery.__table__
    # INSERT ... SELECT runs none of the model's Python-side defaults: these are
    # models.Delivery's, with the chunk's one clock (test_import checks they are queued).
    values = {
        "kind": DeliveryKind.CONFIRMATION,
        "status": DeliveryStatus.QUEUED,
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }
    rows = new.add_columns(
        STAGING.c.message_key,
        *(_typed(deliveries.c[name], value) for name, value in values.items()),
    )
    session.connection().execute(
        insert(deliveries).from_select(["subscriber_id", "message_key", *values], rows)
    )


def _typed(column: Column[Any], value: Any) -> ColumnElement[Any]:
    """A constant as a bound parameter of the column's type (or a staged column as is)."""
    return value if isinstance(value, ColumnElement) else literal(value, column.type)


def _update_existing(
    session: Session,
    emails: set[str],
    rows: dict[str, Row],
    confirmed: bool,
    detail: dict[str, Any],
    report: ImportReport,
) -> list[dict[str, Any]]:
    """Apply the file to addresses we already have; returns the consent events to add."""
    now = utcnow()
    events = []
    for subscriber in locked(session, select(Subscriber).where(Subscriber.email.in_(emails))):
        row = rows[subscriber.email]
        changed = False
        if subscriber.status not in (Status.PENDING, Status.CONFIRMED):
            report.skipped += 1  # left, bounced or complained: an import never brings back
            continue
        if confirmed and subscriber.status is Status.PENDING:
            subscriber.status = Status.CONFIRMED
            subscriber.confirmed_at = now
            events.append(
                {**event_row(subscriber.id, ConsentKind.IMPORTED, IMPORT, detail), "at": now}
            )
            changed = True
        if row.name and row.name != subscriber.name:
            subscriber.name = row.name
            changed = True
        if changed:
            report.updated += 1
        else:
            report.skipped += 1
    session.flush()
    return events
